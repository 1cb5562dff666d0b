//! The HTTP listener: accepts connections under a cap and serves them with
//! hyper, with the timeouts that keep silent, idle or dribbling clients
//! from holding the server's connections (slowloris).
//!
//! - A connection must deliver a request's headers within
//!   `header_read_timeout` of opening, and of its previous response on a
//!   kept-alive connection: hyper's header-read timer, which only runs when
//!   a timer is installed (`axum::serve` installs none, so a silent
//!   connection was held forever).
//! - A request body that stops arriving for `body_timeout` ends the request
//!   (a 408 from the extractor that reads it).
//! - At most `max_connections` are open at once. Beyond, new connections
//!   wait in the kernel's backlog until one closes, instead of taking the
//!   process's last file descriptors ("Too many open files", after which
//!   nothing — `/healthz` included — could be accepted).
//!
//! Shutdown: accepting stops at once; requests in progress finish; idle
//! kept-alive connections are closed.

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

/// The limits of the listener; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// The most connections open at once.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, from its
    /// start or from its previous response.
    pub header_read_timeout: Duration,
    /// How long a request body may pause.
    pub body_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// File descriptors kept for everything but client connections (the
/// database, blob files, deliveries' outbound connections, PDF workers'
/// pipes): a quarter of the limit, at most this many.
const RESERVED_DESCRIPTORS: u64 = 1024;

impl ConnectionLimits {
    /// Raises this process's soft limit on open files to its hard limit and
    /// lowers `max_connections` if it would not leave a quarter of it (at
    /// most [`RESERVED_DESCRIPTORS`]) free, saying so. Process-wide: for the
    /// binary's `serve`, before the listener starts.
    pub fn fit_to_open_file_limit(self) -> Self {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid rlimit for the duration of each call.
        let soft = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return self;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
            limit.rlim_cur
        };
        let reserved = (soft / 4).min(RESERVED_DESCRIPTORS);
        let room = usize::try_from(soft.saturating_sub(reserved).max(1)).unwrap_or(usize::MAX);
        if self.max_connections > room {
            tracing::warn!(
                open_file_limit = soft,
                max_connections = room,
                "the open-file limit leaves room for fewer client connections than asked; raise it (ulimit -n) for more"
            );
            return Self {
                max_connections: room,
                ..self
            };
        }
        self
    }
}

/// Serves `router` on `listener` until `shutdown`, then finishes what is in
/// progress. Returns an error only if the listener itself fails for good.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_timeout));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // hyper-util's `GracefulShutdown` does not take an upgradeable HTTP/1
    // connection: each connection watches `shutdown` itself.
    let connections = tokio_util::task::TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    loop {
        // A free slot first: at the cap, new connections wait in the
        // kernel's backlog, not in this process's file descriptors.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the connection slots stay open"),
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or a connection reset before
                    // it was accepted: not fatal; try again shortly.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let router = router.clone();
        // The peer address is recorded in signature requests' audit trail
        // (`ConnectInfo`), as `into_make_service_with_connect_info` did.
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move { router.call(request).await }
        });
        // With upgrades, for `GET /v1/listen`'s WebSocket. An upgraded
        // connection leaves hyper: the relay's own loop closes it at
        // shutdown.
        let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = shutdown.cancelled() => {
                    // Idle: closed now; mid-request: after its response.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            // A client that goes away mid-request is routine.
            if let Err(e) = ended {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}
