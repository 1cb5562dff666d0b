//! What the engine counts, for the Prometheus endpoint: attempts by result,
//! how long they took, how late they left (started minus due), and the
//! claims that brought them (a backlog should take few claims per
//! delivery, not one each). The server registers these beside the gauges it
//! reads from the database at scrape time.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use signhook_core::retry::Decision;
use std::time::Duration;

/// The engine's metrics. Cheap to clone; clones share their values.
#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    attempts: Family<Vec<(String, String)>, Counter>,
    attempt_seconds: Histogram,
    lateness_seconds: Histogram,
    claims: Counter,
    claimed: Counter,
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        Self {
            attempts: Family::default(),
            // 1 ms to about 33 s.
            attempt_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            // 1 ms to about 65 s.
            lateness_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            claims: Counter::default(),
            claimed: Counter::default(),
        }
    }
}

impl DeliveryMetrics {
    /// Adds the metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "signhook_delivery_attempts",
            "Delivery attempts by result: succeeded, retrying, dead_lettered (failed) or endpoint_gone",
            self.attempts.clone(),
        );
        registry.register(
            "signhook_attempt_duration_seconds",
            "How long delivery attempts took, from request to answer or failure",
            self.attempt_seconds.clone(),
        );
        registry.register(
            "signhook_attempt_lateness_seconds",
            "How late delivery attempts started: from when each was due (published, its retry's scheduled time, \
             resent) to when its request began",
            self.lateness_seconds.clone(),
        );
        registry.register(
            "signhook_claims",
            "Claims of due deliveries this node made (each one transaction on the database)",
            self.claims.clone(),
        );
        registry.register(
            "signhook_claimed_deliveries",
            "Deliveries those claims brought",
            self.claimed.clone(),
        );
    }

    /// Counts one claim of due deliveries, which brought `taken`.
    pub fn observe_claim(&self, taken: usize) {
        self.claims.inc();
        self.claimed.inc_by(taken as u64);
    }

    /// Counts one attempt, which took `took` and started `late` after it
    /// was due.
    pub fn observe(&self, decision: Decision, took: Duration, late: Duration) {
        let result = match decision {
            Decision::Succeeded => "succeeded",
            Decision::RetryAfter { .. } => "retrying",
            Decision::DeadLetter { .. } => "dead_lettered",
            Decision::DisableSubscription { .. } => "endpoint_gone",
        };
        self.attempts
            .get_or_create(&vec![("result".to_owned(), result.to_owned())])
            .inc();
        self.attempt_seconds.observe(took.as_secs_f64());
        self.lateness_seconds.observe(late.as_secs_f64());
    }
}
