//! The engine's seam: where due work comes from, what a claimed item is,
//! how one attempt is made, and where its outcomes go.
//!
//! The dispatcher knows its work only through three traits:
//!
//! - [`Claim`]: one claimed item — the lane it waits in (the unit of the
//!   concurrency cap and the rate limit), the lease that proves the claim
//!   ([`Claim::held`], [`Claim::lease_until`]).
//! - [`WorkQueue`]: claim due items under a lease, learn when more falls
//!   due, record outcomes (the queue applies what follows from them), give
//!   claims back, and be told when work is written — by this process, or
//!   by other nodes.
//! - [`Attempter`]: make one attempt of an item and decide what follows
//!   (with [`signhook_core::retry::decide`]), as the queue records it.
//!
//! `signhook-store`'s deliveries are the queue of outbound webhooks (the
//! implementation below; their attempter is
//! [`WebhookAttempts`](crate::dispatcher::WebhookAttempts)); the inbox's
//! received requests are the second, forwarded to the app behind it. So
//! both share the lanes, the agenda, the recorder and the shutdown drain;
//! each brings its own item, attempt and record.

use chrono::{DateTime, Utc};
use signhook_core::ids::SubscriptionId;
use signhook_store::claims::{ClaimedDelivery, Held};
use signhook_store::deliveries::AttemptRecord;
use signhook_store::work::WorkSignal;
use signhook_store::{Store, StoreError, WorkListener};
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

/// One item a dispatcher has claimed.
pub trait Claim: Debug + Send + Sync + 'static {
    /// What names a lane: items of one lane share its concurrency cap and
    /// rate limit (a subscription, for webhooks; a target, for forwards).
    type Lane: Clone + Eq + Hash + Debug + Send + Sync + 'static;
    /// The proof of the claim, given back with a release.
    type Held: Debug + Send + Sync + 'static;

    /// The lane this item waits in.
    fn lane(&self) -> &Self::Lane;
    /// The lane's rate limit per second, if its owner set one.
    fn rate_limit_per_second(&self) -> Option<u32>;
    /// The lease's end, in milliseconds since the epoch.
    fn lease_until(&self) -> i64;
    /// The claim, as proof when giving the item back.
    fn held(&self) -> Self::Held;
}

/// The lane of a queue's items.
pub type LaneOf<Q> = <<Q as WorkQueue>::Item as Claim>::Lane;
/// The claim proof of a queue's items.
pub type HeldOf<Q> = <<Q as WorkQueue>::Item as Claim>::Held;

/// Where a dispatcher's work comes from and where its outcomes go.
pub trait WorkQueue: Clone + Send + Sync + 'static {
    /// A claimed item.
    type Item: Claim;
    /// One attempt's outcome and what was decided after it.
    type Record: Send + Sync + 'static;

    /// Claims up to `limit` due items for `node` until `lease_until`, oldest
    /// due first, at most `per_lane` of any one lane, none of the lanes in
    /// `skip` (full on this node).
    fn claim(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_lane: u32,
        skip: &[LaneOf<Self>],
    ) -> impl Future<Output = Result<Vec<Self::Item>, StoreError>> + Send;

    /// When a claim by `node` could next bring something, leaving out
    /// `skip`.
    fn next_due_at(
        &self,
        node: &str,
        skip: &[LaneOf<Self>],
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;

    /// Records attempts and what follows from them, while `node` still
    /// holds their claims. Returns the work they let go that is claimed
    /// for `node` until `next_lease` at once (an ordered key's next
    /// delivery), which the dispatcher sends without claiming it.
    fn record(
        &self,
        node: &str,
        records: &[Self::Record],
        now: DateTime<Utc>,
        next_lease: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Self::Item>, StoreError>> + Send;

    /// Gives claims back unsent: due again at once.
    fn release(
        &self,
        node: &str,
        held: &[HeldOf<Self>],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// When the work this process writes falls due.
    fn announcements(&self) -> Arc<WorkSignal>;

    /// Other nodes' announcements; `None` when there are no other nodes.
    fn other_nodes(&self) -> impl Future<Output = Result<Option<WorkListener>, StoreError>> + Send;
}

/// How one attempt of a queue's item is made: send it, classify the
/// answer, decide what follows. Runs in a send task, once the item holds a
/// turn of its lane and a send slot of the node.
pub trait Attempter<Q: WorkQueue>: Send + Sync + 'static {
    /// Makes one attempt of `item`. Can take up to the request timeout.
    fn attempt(&self, item: &Q::Item) -> impl Future<Output = Q::Record> + Send;
}

/// A webhook delivery waits in its subscription's lane.
impl Claim for ClaimedDelivery {
    type Lane = SubscriptionId;
    type Held = Held;

    fn lane(&self) -> &SubscriptionId {
        &self.subscription.id
    }

    fn rate_limit_per_second(&self) -> Option<u32> {
        self.subscription.rate_limit_per_second
    }

    fn lease_until(&self) -> i64 {
        self.lease_until
    }

    fn held(&self) -> Held {
        ClaimedDelivery::held(self)
    }
}

/// Outbound webhooks: the deliveries of the store.
impl WorkQueue for Store {
    type Item = ClaimedDelivery;
    type Record = AttemptRecord;

    async fn claim(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_lane: u32,
        skip: &[SubscriptionId],
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.claim_due_deliveries(node, now, lease_until, limit, per_lane, skip)
            .await
    }

    async fn next_due_at(&self, node: &str, skip: &[SubscriptionId]) -> Result<Option<DateTime<Utc>>, StoreError> {
        Store::next_due_at(self, node, skip).await
    }

    async fn record(
        &self,
        node: &str,
        records: &[AttemptRecord],
        now: DateTime<Utc>,
        next_lease: DateTime<Utc>,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.record_attempts(node, records, now, next_lease).await
    }

    async fn release(&self, node: &str, held: &[Held], now: DateTime<Utc>) -> Result<(), StoreError> {
        self.release_deliveries(node, held, now).await
    }

    fn announcements(&self) -> Arc<WorkSignal> {
        self.work_signal()
    }

    async fn other_nodes(&self) -> Result<Option<WorkListener>, StoreError> {
        self.work_listener().await
    }
}
