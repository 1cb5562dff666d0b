//! Per-subscription isolation and fairness. Each subscription is a lane:
//! at most `cap` sends in flight on this node and, when its owner set one,
//! a rate limit, so a slow or dead endpoint holds at most its own lane.
//!
//! Deliveries to send wait in their lane's queue, first come first served,
//! whether a publish on this node handed them over or a claim brought them
//! from the database (retries, resends, other nodes' work). From the queue
//! they become send tasks, the lanes taking turns, at most `2 × cap` per
//! lane: `cap` sending and `cap` waiting for a turn, so that a lane's next
//! send starts the moment one ends, without waiting for the dispatcher. A
//! task sends once it holds a turn of its lane and then one of the node's
//! send slots, which are handed out first come first served: a tenant that
//! publishes a flood fills its own lanes' queues, and another tenant's
//! retry waits for the tasks already waiting — at most two rounds of each
//! busy lane — not for the flood.
//!
//! A lane with two rounds of deliveries on hand already is left out of
//! claims ([`Lanes::full`]): a claim never brings more than a lane can start
//! within about one request timeout, well inside the claim's lease. The
//! dispatcher owns its lanes; nothing here locks or waits.
//!
//! A lane is whatever its items' [`Claim::lane`] names: a subscription for
//! webhooks, a target for the inbox's forwards; "subscription" below is
//! the webhook's case.

use crate::queue::Claim;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use signhook_store::claims::ClaimedDelivery;
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// A lane's rate limit, shared with the sends that wait for it.
pub type RateLimit = Arc<DefaultDirectRateLimiter>;

/// The lanes of one dispatcher, of items `C` (webhook deliveries unless
/// said otherwise), each lane named by [`Claim::lane`].
#[derive(Debug)]
pub struct Lanes<C: Claim = ClaimedDelivery> {
    cap: usize,
    lanes: HashMap<C::Lane, Lane<C>>,
    /// Lanes with a delivery queued and room for another task, in turn
    /// order.
    turns: VecDeque<C::Lane>,
    /// Deliveries queued in all lanes.
    queued: usize,
}

#[derive(Debug)]
struct Lane<C> {
    /// Send tasks: sending, or waiting for a turn. At most `2 × cap`.
    tasks: usize,
    /// `cap` permits: a task sends only while it holds one.
    turn: Arc<Semaphore>,
    /// Waiting for a task, oldest first.
    queue: VecDeque<C>,
    /// The limit per second and its limiter, when the owner set one.
    rate: Option<(u32, RateLimit)>,
    /// Whether the lane is in `turns`.
    has_turn: bool,
}

/// A delivery to start as a send task, with what the task waits for.
#[derive(Debug)]
pub struct Start<C = ClaimedDelivery> {
    /// The delivery.
    pub claim: C,
    /// Its lane's turns: the task sends while it holds one.
    pub turn: Arc<Semaphore>,
    /// Its lane's rate limit, if any.
    pub rate: Option<RateLimit>,
}

impl<C: Claim> Lanes<C> {
    /// Lanes of at most `cap` sends each.
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            lanes: HashMap::new(),
            turns: VecDeque::new(),
            queued: 0,
        }
    }

    /// The most deliveries of one subscription a claim should bring.
    pub fn claim_per_subscription(&self) -> u32 {
        u32::try_from(self.cap).unwrap_or(u32::MAX)
    }

    /// Deliveries queued in every lane, not yet send tasks.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Queues `claim` at the back of its lane.
    pub fn push(&mut self, claim: C) {
        let rate_limit_per_second = claim.rate_limit_per_second();
        let cap = self.cap;
        let lane = self.lanes.entry(claim.lane().clone()).or_insert_with(|| Lane {
            tasks: 0,
            turn: Arc::new(Semaphore::new(cap)),
            queue: VecDeque::new(),
            rate: None,
            has_turn: false,
        });
        if lane.rate.as_ref().map(|(per_second, _)| *per_second) != rate_limit_per_second {
            // Evenly spaced, no burst: "N per second" holds in every
            // one-second window, not just on average.
            lane.rate = rate_limit_per_second.and_then(|per_second| {
                let quota = Quota::per_second(NonZeroU32::new(per_second)?).allow_burst(NonZeroU32::MIN);
                Some((per_second, Arc::new(RateLimiter::direct(quota))))
            });
        }
        let id = claim.lane().clone();
        lane.queue.push_back(claim);
        self.queued += 1;
        if lane.tasks < 2 * cap && !lane.has_turn {
            lane.has_turn = true;
            self.turns.push_back(id);
        }
    }

    /// The next delivery to start as a send task, the lanes taking turns.
    /// It counts as one of its lane's tasks until [`Lanes::finished`].
    pub fn next_start(&mut self) -> Option<Start<C>> {
        while let Some(id) = self.turns.pop_front() {
            let Some(lane) = self.lanes.get_mut(&id) else { continue };
            lane.has_turn = false;
            if lane.tasks >= 2 * self.cap {
                continue;
            }
            let Some(claim) = lane.queue.pop_front() else { continue };
            self.queued -= 1;
            lane.tasks += 1;
            if lane.tasks < 2 * self.cap && !lane.queue.is_empty() {
                lane.has_turn = true;
                self.turns.push_back(id);
            }
            return Some(Start {
                claim,
                turn: lane.turn.clone(),
                rate: lane.rate.as_ref().map(|(_, limiter)| limiter.clone()),
            });
        }
        None
    }

    /// A send task of `sub`'s lane ended (or was never started).
    pub fn finished(&mut self, sub: &C::Lane) {
        let Some(lane) = self.lanes.get_mut(sub) else { return };
        lane.tasks = lane.tasks.saturating_sub(1);
        if !lane.queue.is_empty() && !lane.has_turn {
            lane.has_turn = true;
            self.turns.push_back(sub.clone());
        }
        // A rate-limited lane keeps its limiter between sends; others are
        // forgotten when idle.
        if lane.tasks == 0 && lane.queue.is_empty() && lane.rate.is_none() {
            self.lanes.remove(sub);
        }
    }

    /// Whether `sub`'s lane has two rounds of deliveries on hand already
    /// (tasks and queue together).
    pub fn is_full(&self, sub: &C::Lane) -> bool {
        self.lanes.get(sub).is_some_and(|lane| self.lane_is_full(lane))
    }

    fn lane_is_full(&self, lane: &Lane<C>) -> bool {
        lane.tasks + lane.queue.len() >= 2 * self.cap
    }

    /// The lanes a claim should leave out for now (see [`Lanes::is_full`]).
    pub fn full(&self) -> Vec<C::Lane> {
        self.lanes
            .iter()
            .filter(|(_, lane)| self.lane_is_full(lane))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Takes every delivery still queued (at shutdown).
    pub fn drain(&mut self) -> Vec<C> {
        self.turns.clear();
        self.queued = 0;
        self.lanes
            .values_mut()
            .flat_map(|lane| {
                lane.has_turn = false;
                lane.queue.drain(..)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::delivery;
    use signhook_core::ids::{DeliveryId, SubscriptionId};
    use signhook_store::subscriptions::Subscription;

    fn subscription(rate: Option<u32>) -> Arc<Subscription> {
        crate::fixtures::subscription("https://example.com/", rate)
    }

    /// Which subscription each of the next `n` started tasks belongs to.
    fn next_starts(lanes: &mut Lanes<ClaimedDelivery>, n: usize) -> Vec<SubscriptionId> {
        (0..n)
            .map_while(|_| lanes.next_start())
            .map(|start| start.claim.subscription.id.clone())
            .collect()
    }

    #[test]
    fn lanes_take_turns_so_a_flood_does_not_hold_up_another_lane() {
        let mut lanes = Lanes::new(10);
        let (flood, retry) = (subscription(None), subscription(None));
        for _ in 0..100 {
            lanes.push(delivery(&flood));
        }
        // The flood's first task starts; then the retry, queued after a
        // hundred of it, starts next but one.
        assert_eq!(next_starts(&mut lanes, 1), std::slice::from_ref(&flood.id));
        lanes.push(delivery(&retry));
        assert_eq!(next_starts(&mut lanes, 2), [flood.id.clone(), retry.id.clone()]);
        assert_eq!(lanes.queued(), 98);
    }

    #[test]
    fn a_lane_keeps_two_rounds_of_tasks_and_starts_more_as_they_end() {
        let mut lanes = Lanes::new(2);
        let sub = subscription(None);
        for _ in 0..6 {
            lanes.push(delivery(&sub));
        }
        let started: Vec<Start> = std::iter::from_fn(|| lanes.next_start()).collect();
        assert_eq!(started.len(), 4, "two sending and two waiting for a turn, at most");
        assert_eq!(
            started[0].turn.available_permits(),
            2,
            "the lane's turns: two sends at once"
        );
        lanes.finished(&sub.id);
        assert_eq!(next_starts(&mut lanes, 6).len(), 1);
        assert_eq!(lanes.queued(), 1);
    }

    #[test]
    fn a_lane_with_two_rounds_on_hand_is_left_out_of_claims() {
        let mut lanes = Lanes::new(2);
        let sub = subscription(None);
        for _ in 0..3 {
            lanes.push(delivery(&sub));
        }
        assert!(!lanes.is_full(&sub.id), "three on hand: room for a claim");
        lanes.push(delivery(&sub));
        assert!(lanes.is_full(&sub.id), "four on hand");
        assert_eq!(lanes.full(), std::slice::from_ref(&sub.id));
        next_starts(&mut lanes, 4);
        assert!(lanes.is_full(&sub.id), "four tasks");
        lanes.finished(&sub.id);
        assert!(!lanes.is_full(&sub.id));
    }

    #[test]
    fn idle_lanes_are_forgotten_unless_rate_limited() {
        let mut lanes = Lanes::new(2);
        let (plain, limited) = (subscription(None), subscription(Some(5)));
        lanes.push(delivery(&plain));
        lanes.push(delivery(&limited));
        let started: Vec<Start> = std::iter::from_fn(|| lanes.next_start()).collect();
        assert!(started
            .iter()
            .any(|start| start.claim.subscription.id == limited.id && start.rate.is_some()));
        lanes.finished(&plain.id);
        lanes.finished(&limited.id);
        assert_eq!(lanes.lanes.len(), 1, "only the rate-limited lane is kept");
        assert!(lanes.drain().is_empty());
    }

    /// Lanes named by letters, for tables: `'A'` is one subscription's lane,
    /// `'B'` another's.
    struct Named {
        lanes: Lanes<ClaimedDelivery>,
        subscriptions: HashMap<char, Arc<Subscription>>,
        /// Every delivery pushed, in order, with its lane's letter.
        pushed: Vec<(char, DeliveryId)>,
    }

    impl Named {
        fn new(cap: usize) -> Self {
            Self {
                lanes: Lanes::new(cap),
                subscriptions: HashMap::new(),
                pushed: Vec::new(),
            }
        }

        /// The subscription of lane `letter`.
        fn lane(&mut self, letter: char) -> Arc<Subscription> {
            let sub = self.subscriptions.entry(letter).or_insert_with(|| subscription(None));
            sub.clone()
        }

        fn letter(&self, sub: &SubscriptionId) -> char {
            let named = self.subscriptions.iter().find(|(_, named)| named.id == *sub);
            *named.expect("only named lanes are pushed").0
        }

        /// Pushes one delivery per letter of `letters`.
        fn push(&mut self, letters: &str) {
            for letter in letters.chars() {
                let claim = delivery(&self.lane(letter));
                self.pushed.push((letter, claim.delivery_id.clone()));
                self.lanes.push(claim);
            }
        }

        /// Starts every task the lanes have room for: each one's lane and
        /// delivery.
        fn start_all(&mut self) -> Vec<(char, DeliveryId)> {
            let started: Vec<Start> = std::iter::from_fn(|| self.lanes.next_start()).collect();
            self.named(started.into_iter().map(|start| start.claim))
        }

        fn named(&self, claims: impl IntoIterator<Item = ClaimedDelivery>) -> Vec<(char, DeliveryId)> {
            claims
                .into_iter()
                .map(|claim| (self.letter(&claim.subscription.id), claim.delivery_id))
                .collect()
        }

        fn finished(&mut self, letter: char) {
            let id = self.lane(letter).id.clone();
            self.lanes.finished(&id);
        }
    }

    fn letters(deliveries: &[(char, DeliveryId)]) -> String {
        deliveries.iter().map(|(letter, _)| letter).collect()
    }

    /// The deliveries of lane `letter`, in the order given.
    fn of_lane(deliveries: &[(char, DeliveryId)], letter: char) -> Vec<DeliveryId> {
        let of_lane = deliveries.iter().filter(|(lane, _)| *lane == letter);
        of_lane.map(|(_, id)| id.clone()).collect()
    }

    #[test]
    fn the_lanes_take_turns_and_each_lane_starts_in_arrival_order() {
        let cases = [
            // (cap, pushed, started, left queued)
            (10, "AAABCC", "ABCACA", 0),
            (10, "CBA", "CBA", 0),
            // Two tasks a lane at most: A's third waits.
            (1, "AAAB", "ABA", 1),
            (1, "ABABAB", "ABAB", 2),
            // A cap of 0 is taken as 1.
            (0, "AAA", "AA", 1),
            (3, "", "", 0),
        ];
        for (cap, pushed, expected, left) in cases {
            let mut named = Named::new(cap);
            named.push(pushed);
            let started = named.start_all();
            assert_eq!(letters(&started), expected, "cap {cap}, pushed {pushed}");
            assert_eq!(named.lanes.queued(), left, "cap {cap}, pushed {pushed}");
            // Within a lane, first come first served.
            for letter in ['A', 'B', 'C'] {
                let started = of_lane(&started, letter);
                let pushed_first = &of_lane(&named.pushed, letter)[..started.len()];
                assert_eq!(started, pushed_first, "cap {cap}, pushed {pushed}: lane {letter}");
            }
        }
    }

    #[test]
    fn a_lane_at_its_limit_lets_others_start_and_resumes_as_its_tasks_end() {
        let mut named = Named::new(1);
        named.push("AAAA");
        assert_eq!(letters(&named.start_all()), "AA", "two tasks: one sending, one waiting");
        named.push("B");
        assert_eq!(letters(&named.start_all()), "B", "A is at its limit, B is not");
        named.finished('B');
        assert_eq!(letters(&named.start_all()), "", "B's end frees nothing of A's");
        named.finished('A');
        let next = named.start_all();
        assert_eq!(letters(&next), "A");
        assert_eq!(next[0].1, named.pushed[2].1, "A's third delivery, the oldest waiting");
        assert_eq!(named.lanes.queued(), 1);
    }

    #[test]
    fn a_lane_is_full_with_two_rounds_of_tasks_and_queue_together() {
        let cases = [
            // (cap, pushed, started, finished, full)
            (2, 3, 0, 0, false),
            (2, 4, 0, 0, true),
            (2, 4, 2, 0, true),
            (2, 4, 4, 0, true),
            (2, 4, 4, 1, false),
            (2, 5, 4, 1, true),
            (2, 4, 4, 4, false),
            (1, 1, 1, 0, false),
            (1, 2, 0, 0, true),
            (1, 3, 2, 2, false),
        ];
        for (cap, pushed, started, finished, full) in cases {
            let mut named = Named::new(cap);
            named.push(&"A".repeat(pushed));
            let id = named.lane('A').id.clone();
            for _ in 0..started {
                named.lanes.next_start().expect("room for the task");
            }
            for _ in 0..finished {
                named.finished('A');
            }
            let case = format!("cap {cap}, pushed {pushed}, started {started}, finished {finished}");
            assert_eq!(named.lanes.is_full(&id), full, "{case}");
            assert_eq!(named.lanes.full().contains(&id), full, "{case}");
        }
    }

    #[test]
    fn a_lane_keeps_its_rate_limiter_until_the_limit_changes() {
        #[derive(Debug, PartialEq)]
        enum Limiter {
            None,
            Same,
            Replaced,
        }
        let cases = [
            // (limit, then limit, the limiter of the second send)
            (Some(5), Some(5), Limiter::Same),
            (Some(5), Some(7), Limiter::Replaced),
            (None, Some(3), Limiter::Replaced),
            (Some(5), None, Limiter::None),
            (None, None, Limiter::None),
        ];
        for (before, after, expected) in cases {
            let mut lanes = Lanes::new(2);
            let sub = subscription(before);
            let mut changed = (*sub).clone();
            changed.rate_limit_per_second = after;
            let changed = Arc::new(changed);
            lanes.push(delivery(&sub));
            let first = lanes.next_start().expect("an idle lane starts").rate;
            lanes.push(delivery(&changed));
            let second = lanes.next_start().expect("a lane with one task starts").rate;
            let limiter = match (&first, &second) {
                (_, None) => Limiter::None,
                (Some(first), Some(second)) if Arc::ptr_eq(first, second) => Limiter::Same,
                (_, Some(_)) => Limiter::Replaced,
            };
            assert_eq!(limiter, expected, "{before:?} then {after:?}");
            assert_eq!(first.is_some(), before.is_some(), "{before:?}");
        }
    }

    #[test]
    fn a_lanes_tasks_share_its_turns_and_no_other_lanes() {
        let mut named = Named::new(3);
        named.push("AB");
        named.push("A");
        let starts: Vec<Start> = std::iter::from_fn(|| named.lanes.next_start()).collect();
        let [a, b, a_again] = &starts[..] else {
            panic!("three starts, got {}", starts.len())
        };
        assert!(Arc::ptr_eq(&a.turn, &a_again.turn));
        assert!(!Arc::ptr_eq(&a.turn, &b.turn));
        assert_eq!(b.turn.available_permits(), 3, "cap sends at once");
    }

    #[test]
    fn drain_takes_what_waits_and_leaves_the_tasks_counted() {
        let mut named = Named::new(1);
        named.push("AAABB");
        named.lanes.next_start().expect("A starts");
        named.lanes.next_start().expect("B starts");
        let waiting = named.lanes.drain();
        let drained = named.named(waiting);
        assert_eq!(drained.len(), 3);
        let pushed = |i: usize| named.pushed[i].1.clone();
        assert_eq!(
            of_lane(&drained, 'A'),
            [pushed(1), pushed(2)],
            "A's waiting, oldest first"
        );
        assert_eq!(of_lane(&drained, 'B'), [pushed(4)]);
        assert_eq!(named.lanes.queued(), 0);
        assert!(named.lanes.next_start().is_none());
        // A's task still runs: one more may start, not two.
        named.push("AA");
        assert_eq!(letters(&named.start_all()), "A");
    }

    #[test]
    fn finishing_in_a_lane_never_seen_changes_nothing() {
        let mut named = Named::new(1);
        named.push("A");
        named.lanes.finished(&SubscriptionId::generate());
        assert_eq!(named.lanes.queued(), 1);
        assert_eq!(letters(&named.start_all()), "A");
    }
}
