//! Per-subscription isolation: each subscription is a lane with at most
//! `cap` sends in flight on this node and, when its owner set one, a rate
//! limit. A slow or dead endpoint therefore holds at most its lane and never
//! stalls the others.
//!
//! A lane also holds up to `cap` claimed deliveries waiting for a turn, and
//! it is left out of claims while it has more than `cap` members. With at
//! most `cap` claimed per subscription per batch, a claim never brings more
//! than a lane can take: nothing is claimed only to be handed back, and a
//! waiting delivery starts within one request timeout — well inside its
//! lease.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use signhook_core::ids::SubscriptionId;
use signhook_store::subscriptions::Subscription;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The lanes of one dispatcher.
#[derive(Debug)]
pub struct Lanes {
    cap: usize,
    lanes: Mutex<HashMap<SubscriptionId, Lane>>,
}

#[derive(Debug)]
struct Lane {
    /// Sending or waiting to send.
    members: usize,
    /// `cap` permits: one per send in flight.
    sending: Arc<Semaphore>,
    rate: Option<u32>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

/// A place in a lane, held for the duration of one send.
#[derive(Debug)]
pub struct Ticket {
    lanes: Arc<Lanes>,
    subscription: SubscriptionId,
    sending: Arc<Semaphore>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    turn: Option<OwnedSemaphorePermit>,
}

impl Lanes {
    /// Lanes of at most `cap` sends each.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap: cap.max(1),
            lanes: Mutex::new(HashMap::new()),
        })
    }

    /// The most deliveries of one subscription a claim should bring.
    pub fn claim_per_subscription(&self) -> u32 {
        u32::try_from(self.cap).unwrap_or(u32::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SubscriptionId, Lane>> {
        // A panic while holding this lock leaves only counters behind; they
        // are still the best information there is.
        self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The subscriptions that should not be claimed for now.
    pub fn saturated(&self) -> Vec<SubscriptionId> {
        self.lock()
            .iter()
            .filter(|(_, lane)| lane.members > self.cap)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether `sub`'s lane should not be claimed for now (see
    /// [`Lanes::saturated`]).
    pub fn is_saturated(&self, sub: &SubscriptionId) -> bool {
        self.lock().get(sub).is_some_and(|lane| lane.members > self.cap)
    }

    /// Joins `sub`'s lane, or `None` when it is full.
    pub fn enter(self: &Arc<Self>, sub: &Subscription) -> Option<Ticket> {
        let mut lanes = self.lock();
        let lane = lanes.entry(sub.id.clone()).or_insert_with(|| Lane {
            members: 0,
            sending: Arc::new(Semaphore::new(self.cap)),
            rate: None,
            limiter: None,
        });
        if lane.members >= 2 * self.cap {
            return None;
        }
        if lane.rate != sub.rate_limit_per_second {
            lane.rate = sub.rate_limit_per_second;
            // Evenly spaced, no burst: "N per second" holds in every
            // one-second window, not just on average.
            lane.limiter = sub.rate_limit_per_second.and_then(NonZeroU32::new).map(|per_second| {
                Arc::new(RateLimiter::direct(
                    Quota::per_second(per_second).allow_burst(NonZeroU32::MIN),
                ))
            });
        }
        lane.members += 1;
        Some(Ticket {
            lanes: self.clone(),
            subscription: sub.id.clone(),
            sending: lane.sending.clone(),
            limiter: lane.limiter.clone(),
            turn: None,
        })
    }
}

impl Ticket {
    /// Waits for a free sending place in the lane, then for the rate limit.
    pub async fn wait_turn(&mut self) {
        if self.turn.is_none() {
            self.turn = self.sending.clone().acquire_owned().await.ok();
        }
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut lanes = self.lanes.lock();
        if let Some(lane) = lanes.get_mut(&self.subscription) {
            lane.members = lane.members.saturating_sub(1);
            // A rate-limited lane keeps its limiter between sends; others are
            // forgotten when idle.
            if lane.members == 0 && lane.limiter.is_none() {
                lanes.remove(&self.subscription);
            }
        }
    }
}
