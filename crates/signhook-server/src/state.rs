//! What every handler shares.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use signhook_core::netguard::AddressPolicy;
use signhook_core::time::Clock;
use signhook_delivery::{DeliveryMetrics, Waker};
use signhook_store::Store;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The API's shared state. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Persistence.
    pub store: Store,
    /// The injected clock.
    pub clock: Arc<dyn Clock>,
    /// Wakes the dispatcher after a publish.
    pub waker: Waker,
    /// Wakes the schedulers (a recovery job was created).
    pub jobs: Arc<Notify>,
    /// Settings the handlers need.
    pub api: Arc<ApiSettings>,
    /// The Prometheus registry and the gauges read at scrape time.
    pub metrics: Arc<Metrics>,
    /// Publishes events with group commit.
    pub publisher: crate::publisher::Publisher,
    /// The e-signature lifecycle: signature requests, links, files.
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
}

/// The settings that change how the API behaves.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `--dev`: allow `http://` endpoints.
    pub dev: bool,
    /// How long a rotated-out secret keeps signing.
    pub secret_overlap: Duration,
    /// Which endpoint addresses may be used (checked at creation for IP
    /// literals; at send time for everything).
    pub addresses: Arc<AddressPolicy>,
}

/// Everything `/metrics` shows.
#[derive(Debug)]
pub struct Metrics {
    /// The registry that is encoded.
    pub registry: Registry,
    /// Pending deliveries that are due and unclaimed.
    pub due: Gauge,
    /// How long the oldest of them has been due, in seconds.
    pub oldest_due_seconds: Gauge<f64, AtomicU64>,
    /// Subscriptions disabled (by their owner or by policy).
    pub disabled: Gauge,
}

impl Metrics {
    /// The registry with the engine's metrics and the gauges.
    pub fn new(delivery: &DeliveryMetrics) -> Self {
        let mut registry = Registry::default();
        delivery.register(&mut registry);
        let metrics = Self {
            due: Gauge::default(),
            oldest_due_seconds: Gauge::default(),
            disabled: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "signhook_deliveries_due",
            "Pending deliveries that are due and not yet claimed",
            metrics.due.clone(),
        );
        registry.register(
            "signhook_oldest_due_delivery_age_seconds",
            "How long the oldest due, unclaimed delivery has been waiting",
            metrics.oldest_due_seconds.clone(),
        );
        registry.register(
            "signhook_subscriptions_disabled",
            "Subscriptions that are disabled",
            metrics.disabled.clone(),
        );
        Self { registry, ..metrics }
    }
}
