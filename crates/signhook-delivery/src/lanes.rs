//! Per-subscription isolation: each subscription is a lane with at most
//! `cap` sends in flight on this node and, when its owner set one, a rate
//! limit. A saturated lane is left out of the next claim, so a slow or dead
//! endpoint holds at most `cap` of this node's slots and never stalls the
//! others — and deliveries are never claimed faster than they can be sent,
//! which keeps leases from running out in a queue.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use signhook_core::ids::SubscriptionId;
use signhook_store::subscriptions::Subscription;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

/// The lanes of one dispatcher.
#[derive(Debug)]
pub struct Lanes {
    cap: usize,
    lanes: Mutex<HashMap<SubscriptionId, Lane>>,
}

#[derive(Debug)]
struct Lane {
    in_flight: usize,
    rate: Option<u32>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

/// A place in a lane, held for the duration of one send.
#[derive(Debug)]
pub struct Ticket {
    lanes: Arc<Lanes>,
    subscription: SubscriptionId,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

impl Lanes {
    /// Lanes of at most `cap` sends each.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap: cap.max(1),
            lanes: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SubscriptionId, Lane>> {
        // A panic while holding this lock leaves only counters behind; they
        // are still the best information there is.
        self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The subscriptions with no room for another send.
    pub fn saturated(&self) -> Vec<SubscriptionId> {
        self.lock()
            .iter()
            .filter(|(_, lane)| lane.in_flight >= self.cap)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Takes a place in `sub`'s lane, or `None` when it is full.
    pub fn enter(self: &Arc<Self>, sub: &Subscription) -> Option<Ticket> {
        let mut lanes = self.lock();
        let lane = lanes.entry(sub.id.clone()).or_insert(Lane {
            in_flight: 0,
            rate: None,
            limiter: None,
        });
        if lane.in_flight >= self.cap {
            return None;
        }
        if lane.rate != sub.rate_limit_per_second {
            lane.rate = sub.rate_limit_per_second;
            lane.limiter = sub
                .rate_limit_per_second
                .and_then(NonZeroU32::new)
                // Evenly spaced, no burst: "N per second" holds in every
                // one-second window, not just on average.
                .map(|per_second| {
                    Arc::new(RateLimiter::direct(
                        Quota::per_second(per_second).allow_burst(NonZeroU32::MIN),
                    ))
                });
        }
        lane.in_flight += 1;
        Some(Ticket {
            lanes: self.clone(),
            subscription: sub.id.clone(),
            limiter: lane.limiter.clone(),
        })
    }
}

impl Ticket {
    /// Waits until the lane's rate limit allows one more request.
    pub async fn wait_turn(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut lanes = self.lanes.lock();
        if let Some(lane) = lanes.get_mut(&self.subscription) {
            lane.in_flight = lane.in_flight.saturating_sub(1);
            // A rate-limited lane keeps its limiter between sends; others are
            // forgotten when idle.
            if lane.in_flight == 0 && lane.limiter.is_none() {
                lanes.remove(&self.subscription);
            }
        }
    }
}
