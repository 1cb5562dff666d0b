//! Signhook's delivery engine: claim due deliveries, send them signed,
//! record every attempt, reschedule or dead-letter.
//!
//! # Layout
//!
//! - [`payload`]: the JSON envelope a delivery carries (DESIGN §3.3).
//! - [`sender`]: one attempt: sign, POST, classify the answer.
//! - [`queue`]: the engine's seam: [`WorkQueue`] (where due work comes
//!   from and where outcomes go), [`Claim`] (what a claimed item is to the
//!   engine: its lane, its lease) and [`Attempter`] (one attempt of an
//!   item). The store's deliveries are the queue of outbound webhooks;
//!   the inbox's received requests are the queue of its forwards.
//! - [`relay`]: the other transport of an attempt, for `signhook listen`'s
//!   relay subscriptions: the same signed request over the CLI's socket.
//! - [`publisher`]: the engine's intake — group commit of publishes, their
//!   deliveries handed to this node's dispatcher already claimed.
//! - [`dispatcher`]: the loop that takes deliveries handed over at publish
//!   and claims due ones in batches under a lease, runs sends concurrently,
//!   and writes results back in batches.
//! - `agenda` (private): when the dispatcher claims — the earliest instant
//!   work is known to fall due, which no other activity postpones.
//! - [`lanes`]: per-lane (subscription, or forward target) queues,
//!   concurrency caps and rate limits;
//!   the lanes take turns for the node's send slots, so one endpoint (or
//!   tenant) never holds up another.
//!
//! The engine knows nothing of e-signatures: it moves events to endpoints.
#![deny(missing_docs)]

mod agenda;
pub mod dispatcher;
#[cfg(test)]
mod fixtures;
pub mod lanes;
pub mod metrics;
pub mod payload;
pub mod publisher;
pub mod queue;
pub mod relay;
pub mod sender;

pub use dispatcher::{Dispatcher, DispatcherConfig, Handoff, WebhookAttempts};
pub use metrics::DeliveryMetrics;
pub use publisher::Publisher;
pub use queue::{Attempter, Claim, WorkQueue};
pub use relay::RelayHub;

/// What can stop the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The HTTP client could not be built (TLS roots, …).
    #[error("could not build the HTTP client")]
    Client(#[from] reqwest::Error),
    /// The store failed.
    #[error("store error")]
    Store(#[from] signhook_store::StoreError),
}
