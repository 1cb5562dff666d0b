//! What the engine counts, for the Prometheus endpoint: attempts by result,
//! how long they took, and how late they left (started minus due). The server registers these beside the gauges it
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
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        Self {
            attempts: Family::default(),
            // 1 ms to about 33 s.
            attempt_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            // 1 ms to about 65 s.
            lateness_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
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
