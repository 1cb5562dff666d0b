//! The engine's seam: where due work comes from and where its outcomes go.
//!
//! The dispatcher knows its work only through a [`WorkQueue`]: claim due
//! deliveries under a lease, learn when more falls due, record outcomes
//! (the queue applies what follows from them), give claims back, and be
//! told when work is written — by this process, or by other nodes.
//! `signhook-store` is the queue of outbound webhooks (the implementation
//! below); the receiving gateway's forwarder is meant to be the second.
//!
//! What a queue hands out is still the webhook's [`ClaimedDelivery`]: the
//! shape of a claimed item that both a webhook and a forwarded request fit
//! is for the forwarder to settle, with both implementations in view.

use chrono::{DateTime, Utc};
use signhook_core::ids::SubscriptionId;
use signhook_store::claims::{ClaimedDelivery, Held};
use signhook_store::deliveries::AttemptRecord;
use signhook_store::work::WorkSignal;
use signhook_store::{Store, StoreError, WorkListener};
use std::future::Future;
use std::sync::Arc;

/// Where a dispatcher's work comes from and where its outcomes go.
pub trait WorkQueue: Clone + Send + Sync + 'static {
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
        skip: &[SubscriptionId],
    ) -> impl Future<Output = Result<Vec<ClaimedDelivery>, StoreError>> + Send;

    /// When a claim could next bring something, leaving out `skip`.
    fn next_due_at(
        &self,
        skip: &[SubscriptionId],
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;

    /// Records attempts and what follows from them, while `node` still
    /// holds their claims.
    fn record(
        &self,
        node: &str,
        records: &[AttemptRecord],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives claims back unsent: due again at once.
    fn release(
        &self,
        node: &str,
        held: &[Held],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// When the work this process writes falls due.
    fn announcements(&self) -> Arc<WorkSignal>;

    /// Other nodes' announcements; `None` when there are no other nodes.
    fn other_nodes(&self) -> impl Future<Output = Result<Option<WorkListener>, StoreError>> + Send;
}

/// Outbound webhooks: the deliveries of the store.
impl WorkQueue for Store {
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

    async fn next_due_at(&self, skip: &[SubscriptionId]) -> Result<Option<DateTime<Utc>>, StoreError> {
        Store::next_due_at(self, skip).await
    }

    async fn record(&self, node: &str, records: &[AttemptRecord], now: DateTime<Utc>) -> Result<(), StoreError> {
        self.record_attempts(node, records, now).await
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
