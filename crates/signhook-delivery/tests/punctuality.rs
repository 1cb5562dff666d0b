//! The dispatcher keeps time under load: a retry leaves when it falls due
//! however busy the node is with other tenants' work.
//!
//! Real parts: a SQLite file (or a PostgreSQL database), the real store and
//! dispatcher, HTTP endpoints on 127.0.0.1. The agenda that decides when to
//! claim is tested on virtual instants in `src/agenda.rs`; here the whole
//! loop runs in real time, because the store's queries run on threads that
//! tokio's paused clock would leap past (sqlx's pool then times out).

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use signhook_core::endpoint::{CustomHeaders, SignatureScheme, WebhookUrl};
use signhook_core::filter::{EventFilter, Scope, ScopeFilter, SubscriptionFilter, WorkspaceFilter};
use signhook_core::netguard::AddressPolicy;
use signhook_core::retry::RetryPolicy;
use signhook_core::time::{Clock, SystemClock};
use signhook_delivery::{Dispatcher, DispatcherConfig, Handoff};
use signhook_store::events::NewEvent;
use signhook_store::subscriptions::NewSubscription;
use signhook_store::tenants::CreatedTenant;
use signhook_store::Store;
use signhook_testkit::{done_when, eventually, on_both_backends, Backend, PgServer};
use signhook_verify::WebhookSecret;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// An endpoint that fails the first attempt of every event (when asked to)
/// and takes `takes` (virtual time) to answer; it notes when each request
/// arrived.
#[derive(Clone)]
struct Endpoint {
    url: String,
    arrivals: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Endpoint {
    async fn start(fail_first_attempts: bool, takes: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let arrivals: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let seen = arrivals.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let id = headers["webhook-id"].to_str().unwrap().to_owned();
                let first = {
                    let mut seen = seen.lock().unwrap();
                    let first = !seen.iter().any(|(other, _)| *other == id);
                    seen.push((id, Instant::now()));
                    first
                };
                tokio::time::sleep(takes).await;
                if first && fail_first_attempts {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, arrivals }
    }

    fn arrivals(&self) -> Vec<(String, Instant)> {
        self.arrivals.lock().unwrap().clone()
    }
}

/// A store on a fresh database of `backend`; the guard keeps a SQLite
/// file's directory alive.
async fn store(backend: Backend) -> (Option<tempfile::TempDir>, Store) {
    let (dir, store) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_sqlite(
                dir.path(),
                std::sync::Arc::new(signhook_store::sealing::Keyring::generate()),
            )
            .await
            .unwrap();
            (Some(dir), store)
        }
        Backend::Postgres => {
            let url = PgServer::shared().create_database().await;
            (
                None,
                Store::open_postgres(&url, std::sync::Arc::new(signhook_store::sealing::Keyring::generate()))
                    .await
                    .unwrap(),
            )
        }
    };
    store.migrate().await.unwrap();
    (dir, store)
}

/// A tenant with one subscription to everything, at `endpoint`.
async fn tenant(store: &Store, name: &str, endpoint: &Endpoint, now: DateTime<Utc>) -> CreatedTenant {
    let tenant = store.create_tenant(name, now).await.unwrap();
    store
        .create_subscription(
            NewSubscription {
                tenant_id: tenant.tenant_id.clone(),
                url: WebhookUrl::parse(&endpoint.url, true).unwrap(),
                description: String::new(),
                enabled: true,
                auto_retry: true,
                filter: SubscriptionFilter {
                    sandbox: false,
                    events: EventFilter::all(),
                    scopes: ScopeFilter::all(),
                    workspaces: WorkspaceFilter::all(),
                },
                headers: CustomHeaders::default(),
                signature_scheme: SignatureScheme::Standard,
                rate_limit_per_second: None,
                ordering: Default::default(),
                ordering_on_failure: Default::default(),
                secret: WebhookSecret::from_bytes(&[1; 32]),
            },
            now,
        )
        .await
        .unwrap();
    tenant
}

/// Publishes `count` events of `tenant` as `POST /v1/events` does: the
/// deliveries are written claimed for this node and handed to its
/// dispatcher.
async fn publish(store: &Store, handoff: &Handoff, clock: &dyn Clock, tenant: &CreatedTenant, count: usize) {
    let now = clock.now();
    let events = (0..count)
        .map(|_| NewEvent {
            tenant_id: tenant.tenant_id.clone(),
            sandbox: false,
            event_type: "signer.done".into(),
            scope: Scope::PublicApi,
            workspace_id: tenant.default_workspace_id.clone(),
            data: "{}".into(),
            idempotency: None,
            ordering_key: None,
        })
        .collect();
    let published = store.publish_events(events, now, Some(&handoff.lease(now))).await;
    assert!(published.results.iter().all(Result::is_ok));
    handoff.send(published.claimed).expect("the dispatcher runs");
}

/// Tenant B publishes `per_tick` events every 10 ms to an endpoint that
/// takes `b_takes` to answer, without pause, until tenant A's retry arrives
/// (or the test's patience runs out); A's one delivery fails its first
/// attempt and is due again 100 ms later. Returns how long after the
/// failure the retry came.
///
/// Nothing here is timed: the retry must simply arrive while B is still
/// publishing. The idle poll and the leases last an hour, so no timer but
/// the retry's own due time can bring it within the test's patience: only a
/// dispatcher that knows when its work falls due passes.
async fn retry_while_another_tenant_publishes(
    backend: Backend,
    per_tick: usize,
    b_takes: Duration,
    max_in_flight: usize,
) -> Duration {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (_dir, store) = store(backend).await;
    let a_endpoint = Endpoint::start(true, Duration::ZERO).await;
    let b_endpoint = Endpoint::start(false, b_takes).await;
    let a = tenant(&store, "A", &a_endpoint, clock.now()).await;
    let b = tenant(&store, "B", &b_endpoint, clock.now()).await;

    let mut config = DispatcherConfig::new(
        "node_a".into(),
        RetryPolicy::new(vec![Duration::from_millis(100)], 0.0),
        Duration::from_secs(15),
    );
    config.addresses = Arc::new(AddressPolicy {
        allow_all: true,
        allowed: Vec::new(),
    });
    config.idle_poll = Duration::from_secs(3600);
    config.lease = Duration::from_secs(3600);
    config.max_in_flight = max_in_flight;
    let dispatcher = Dispatcher::new(store.clone(), config, clock.clone()).unwrap();
    let handoff = dispatcher.handoff();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));

    let stop_traffic = CancellationToken::new();
    let traffic = {
        let (store, handoff, clock, b, stop) = (
            store.clone(),
            handoff.clone(),
            clock.clone(),
            b.clone(),
            stop_traffic.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !stop.is_cancelled() {
                tick.tick().await;
                publish(&store, &handoff, clock.as_ref(), &b, per_tick).await;
            }
        })
    };
    eventually("tenant B's traffic to flow", || async {
        let arrived = b_endpoint.arrivals().len();
        done_when(arrived >= 10, arrived)
    })
    .await;
    publish(&store, &handoff, clock.as_ref(), &a, 1).await;
    let arrivals = eventually("tenant A's retry while tenant B publishes", || async {
        let arrivals = a_endpoint.arrivals();
        done_when(arrivals.len() >= 2, arrivals)
    })
    .await;
    assert!(!traffic.is_finished(), "tenant B never stopped publishing");
    stop_traffic.cancel();
    traffic.await.unwrap();
    shutdown.cancel();
    running.await.unwrap().unwrap();
    store.close().await;
    arrivals[1].1 - arrivals[0].1
}

on_both_backends! {
async fn a_retry_leaves_while_handoffs_keep_arriving(backend: Backend) {
    let gap = retry_while_another_tenant_publishes(backend, 1, Duration::ZERO, 512).await;
    println!("retry sent {gap:?} after the failure (due after 100 ms)");
}

async fn a_retry_gets_a_send_slot_while_another_tenant_floods_them(backend: Backend) {
    // Two send slots for the whole node, and tenant B offers twice what they
    // carry (2 every 10 ms, 20 ms each): B's deliveries queue up, and A's
    // retry must take its turn beside them, not wait for B's queue to end.
    let gap = retry_while_another_tenant_publishes(backend, 2, Duration::from_millis(20), 2).await;
    println!("retry sent {gap:?} after the failure (due after 100 ms)");
}
}
