//! What the inbox counts, for `/metrics` on the admin listener (the
//! Prometheus text format): requests received, rejected by reason,
//! duplicates, forwards by outcome, the queue's depth (read from the
//! database at scrape time) and how long the 2xx took.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use signhook_store::inbox::ForwardOutcome;
use std::sync::Arc;
use std::time::Duration;

type Labels = Vec<(String, String)>;

/// The inbox's metrics. Cheap to clone; clones share their values.
#[derive(Debug, Clone)]
pub struct InboxMetrics {
    received: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    duplicates: Family<Labels, Counter>,
    forwarded: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    dead_letters: Family<Labels, Counter>,
    queue_depth: Gauge,
    ack_seconds: Histogram,
    registry: Arc<Registry>,
}

fn source(name: &str) -> Labels {
    vec![("source".to_owned(), name.to_owned())]
}

impl Default for InboxMetrics {
    fn default() -> Self {
        let received = Family::<Labels, Counter>::default();
        let rejected = Family::<Labels, Counter>::default();
        let duplicates = Family::<Labels, Counter>::default();
        let forwarded = Family::<Labels, Counter>::default();
        let retries = Family::<Labels, Counter>::default();
        let dead_letters = Family::<Labels, Counter>::default();
        let queue_depth = Gauge::default();
        // 0.1 ms to about 3 s.
        let ack_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 15));
        let mut registry = Registry::default();
        registry.register(
            "signhook_inbox_received",
            "Genuine requests stored and acknowledged",
            received.clone(),
        );
        registry.register(
            "signhook_inbox_rejected",
            "Requests refused with 401, by reason (bad_signature, stale_timestamp, invalid_timestamp, missing_header)",
            rejected.clone(),
        );
        registry.register(
            "signhook_inbox_duplicates",
            "Requests whose event id was already received: acknowledged, not forwarded again",
            duplicates.clone(),
        );
        registry.register("signhook_inbox_forwarded", "Requests the app took", forwarded.clone());
        registry.register(
            "signhook_inbox_retries",
            "Forward attempts that failed and will be retried",
            retries.clone(),
        );
        registry.register(
            "signhook_inbox_dead_letters",
            "Requests whose every forward attempt failed",
            dead_letters.clone(),
        );
        registry.register(
            "signhook_inbox_queue_depth",
            "Requests waiting to be forwarded",
            queue_depth.clone(),
        );
        registry.register(
            "signhook_inbox_ack_seconds",
            "From a request's arrival to its 2xx (verified and on disk)",
            ack_seconds.clone(),
        );
        Self {
            received,
            rejected,
            duplicates,
            forwarded,
            retries,
            dead_letters,
            queue_depth,
            ack_seconds,
            registry: Arc::new(registry),
        }
    }
}

impl InboxMetrics {
    /// A genuine request of `name` stored, acknowledged after `took`.
    pub fn received(&self, name: &str, took: Duration) {
        self.received.get_or_create(&source(name)).inc();
        self.ack_seconds.observe(took.as_secs_f64());
    }

    /// A duplicate of `name` acknowledged after `took`.
    pub fn duplicate(&self, name: &str, took: Duration) {
        self.duplicates.get_or_create(&source(name)).inc();
        self.ack_seconds.observe(took.as_secs_f64());
    }

    /// A request of `name` refused for `reason`.
    pub fn rejected(&self, name: &str, reason: &str) {
        let mut labels = source(name);
        labels.push(("reason".to_owned(), reason.to_owned()));
        self.rejected.get_or_create(&labels).inc();
    }

    /// A forward attempt of `name` ended with `outcome`.
    pub fn forward_outcome(&self, name: &str, outcome: ForwardOutcome) {
        let family = match outcome {
            ForwardOutcome::Forwarded => &self.forwarded,
            ForwardOutcome::RetryAt(_) => &self.retries,
            ForwardOutcome::Dead => &self.dead_letters,
        };
        family.get_or_create(&source(name)).inc();
    }

    /// The text exposition, with the queue's depth as given.
    pub fn encode(&self, queue_depth: u64) -> String {
        self.queue_depth.set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
