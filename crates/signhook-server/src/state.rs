//! What every handler shares.

use signhook_core::time::Clock;
use signhook_delivery::Waker;
use signhook_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// The API's shared state. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Persistence.
    pub store: Store,
    /// The injected clock.
    pub clock: Arc<dyn Clock>,
    /// Wakes the dispatcher after a publish.
    pub waker: Waker,
    /// Settings the handlers need.
    pub api: Arc<ApiSettings>,
}

/// The settings that change how the API behaves.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `--dev`: allow `http://` endpoints.
    pub dev: bool,
    /// How long a rotated-out secret keeps signing.
    pub secret_overlap: Duration,
}
