//! `signhook inbox`: a gateway that stands in front of an app. It verifies
//! each webhook it receives, commits the genuine ones to its own SQLite
//! file (group commit, `fsync` before the answer), answers 2xx at once,
//! and forwards them to the app through Signhook's delivery engine — per
//! source concurrency cap and rate limit, backoff with jitter,
//! `Retry-After`, dead letters, replay (DESIGN §6).
//!
//! # Layout
//!
//! - [`settings`]: the TOML file or the flags, resolved once.
//! - [`verify`]: the three schemes, and the event id of each request.
//! - [`intake`]: group commit of receipts; the stored requests handed to
//!   the dispatcher already claimed.
//! - [`forward`]: the database as the engine's queue, and one forward.
//! - [`http`]: the senders' listener and the admin listener (`/metrics`,
//!   `/healthz`, `/readyz`, the admin routes of `signhook inbox list|show|replay`).
//! - [`metrics`]: what `/metrics` shows.
//! - [`admin_client`]: the CLI's side of the admin routes.
//!
//! [`Inbox::build`] opens the database and binds both listeners (port 0
//! works: tests and `main` alike); [`Inbox::run`] serves until its token
//! is cancelled, then drains: no new requests, forwards in flight get the
//! grace period to finish and be recorded, the rest are given back.
#![deny(missing_docs)]

pub mod admin_client;
pub mod forward;
pub mod http;
pub mod intake;
pub mod metrics;
pub mod settings;
pub mod verify;

use forward::{ForwardAttempts, ForwardQueue};
use settings::Settings;
use signhook_core::time::Clock;
use signhook_delivery::{Dispatcher, DispatcherConfig};
use signhook_store::inbox::InboxStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The inbox's node id: one inbox per database file, so a fixed name; a
/// restart under it gives the crashed run's leases back at once.
pub const NODE_ID: &str = "inbox";

/// What can stop an inbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboxError {
    /// The database failed.
    #[error("inbox database")]
    Store(#[from] signhook_store::StoreError),
    /// A listener could not be bound.
    #[error("binding {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// The HTTP client could not be built.
    #[error("building the HTTP client")]
    Client(#[from] reqwest::Error),
    /// The delivery engine stopped with an error.
    #[error("the forwarder")]
    Delivery(#[from] signhook_delivery::DeliveryError),
    /// Serving HTTP failed.
    #[error("serving")]
    Serve(#[source] std::io::Error),
}

/// A built inbox, its listeners bound.
pub struct Inbox {
    settings: Settings,
    store: InboxStore,
    clock: Arc<dyn Clock>,
    listener: tokio::net::TcpListener,
    admin_listener: tokio::net::TcpListener,
    metrics: metrics::InboxMetrics,
}

impl Inbox {
    /// Opens (and migrates) the database, gives back the leases of a
    /// previous run, binds both listeners.
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, InboxError> {
        let store = InboxStore::open(&settings.data_dir).await?;
        let released = store.release_leases_of(NODE_ID, clock.now()).await?;
        if released > 0 {
            tracing::info!(released, "gave back the forwards the previous run held");
        }
        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| InboxError::Bind(addr, e))
        };
        let listener = bind(settings.listen).await?;
        let admin_listener = bind(settings.admin_listen).await?;
        Ok(Self {
            settings,
            store,
            clock,
            listener,
            admin_listener,
            metrics: metrics::InboxMetrics::default(),
        })
    }

    /// Where senders reach it.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where the admin listener is.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then drains (module docs).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), InboxError> {
        let Inbox {
            settings,
            store,
            clock,
            listener,
            admin_listener,
            metrics,
        } = self;
        let mut config = DispatcherConfig::new(
            NODE_ID.to_owned(),
            settings.retry_policy.clone(),
            settings.request_timeout,
        );
        config.per_subscription_in_flight = settings.concurrency;
        let queue = ForwardQueue::new(store.clone(), &settings.sources);
        let attempts = ForwardAttempts::new(
            settings.retry_policy.clone(),
            settings.request_timeout,
            clock.clone(),
            metrics.clone(),
        )?;
        let dispatcher = Dispatcher::with_attempts(queue.clone(), attempts, config, clock.clone());
        let intake = intake::Intake::start(store.clone(), queue, dispatcher.handoff());
        let forwarding = tokio::spawn(dispatcher.run(shutdown.clone()));
        let purging = tokio::spawn(purge_loop(
            store.clone(),
            clock.clone(),
            settings.clone(),
            shutdown.clone(),
        ));

        let ingest = http::ingest_router(&settings.sources, intake, metrics.clone(), clock.clone());
        let admin = http::admin_router(store, metrics, settings.admin_token.clone(), clock);
        tracing::info!(
            addr = %listener.local_addr().map_err(InboxError::Serve)?,
            admin = %admin_listener.local_addr().map_err(InboxError::Serve)?,
            sources = settings.sources.len(),
            "signhook inbox is receiving"
        );
        let serve_admin = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                axum::serve(admin_listener, admin)
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await
            })
        };
        let served = axum::serve(listener, ingest)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        // The senders' listener has stopped: every request it answered is
        // committed. The forwarder drains by the same token.
        let forwarded = forwarding.await;
        purging.abort();
        let admin_served = serve_admin.await;
        served.map_err(InboxError::Serve)?;
        match forwarded {
            Ok(result) => result?,
            Err(e) => tracing::error!(error = %e, "the forwarder panicked"),
        }
        if let Ok(Err(e)) = admin_served {
            return Err(InboxError::Serve(e));
        }
        Ok(())
    }
}

/// Purges forwarded requests past retention and event ids past the
/// deduplication window, every minute (and once at start).
async fn purge_loop(store: InboxStore, clock: Arc<dyn Clock>, settings: Settings, shutdown: CancellationToken) {
    loop {
        match store
            .purge(clock.now(), settings.retention, settings.dedup_window)
            .await
        {
            Ok(purged) if purged.requests + purged.seen > 0 => {
                tracing::info!(requests = purged.requests, event_ids = purged.seen, "purged")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %signhook_core::error_chain(&e), "purge failed; trying again later"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}
