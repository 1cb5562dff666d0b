//! Signhook's server: the HTTP API over the store, and the wiring that runs
//! the API and the delivery dispatcher as one process.
//!
//! # Layout
//!
//! - [`Application`]: built from [`Settings`], binds its own listener (port 0
//!   in tests), runs until a shutdown token fires. Used by `signhook serve`
//!   and by the test harness alike.
//! - [`error`]: the one [`ApiError`](error::ApiError) and its response.
//! - [`listener`]: accepts connections under a cap, with header-read,
//!   idle and body timeouts (no silent client holds a connection).
//! - [`extract`]: authentication, strict JSON and query parsing.
//! - [`routes`]: one module per resource, plus health.
//! - [`openapi`]: the OpenAPI document generated from the handlers.
//! - [`pages`]: the pages people open in a browser (askama templates
//!   compiled in, one embedded stylesheet); the signer's and approver's
//!   page behind their link.
//! - [`lifecycle`]: the e-signature lifecycle as a service (state machine,
//!   signed PDF and audit certificate, invitations); [`links`]: signing,
//!   approval and file links, HMAC-signed; [`pdf`]: every parse of an
//!   uploaded PDF, in a worker process under kernel limits.
//! - [`node`]: this node's id, kept in the data directory, so a restarted
//!   process takes back at once the claims its previous run held.
//! - [`seal_cert`]: the certificate that seals signed PDFs and audit
//!   certificates (`--seal-cert`, or a self-signed one in the data
//!   directory).
//! - [`schedulers`]: the warn-then-disable sweep, recovery jobs, retention,
//!   and the lifecycle's expiry, reminders and purges; [`mail`] e-mails
//!   warnings and invitations when SMTP is configured.
#![deny(missing_docs)]

pub mod error;
pub mod extract;
pub mod lifecycle;
pub mod links;
pub mod listener;
pub mod mail;
pub mod node;
pub mod openapi;
pub mod pages;
pub mod pdf;
pub mod routes;
pub mod schedulers;
pub mod seal_cert;
pub mod state;

use schedulers::Schedulers;
use signhook_core::netguard::{AddressPolicy, Cidr};
use signhook_core::policy::DisablePolicy;
use signhook_core::retry::RetryPolicy;
use signhook_core::time::Clock;
use signhook_delivery::{Dispatcher, DispatcherConfig};
use signhook_store::{Location, Store};
use state::{ApiSettings, AppState};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Everything `signhook serve` can be told, resolved into typed values.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the API listens (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Where the SQLite database lives.
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of SQLite.
    pub database_url: Option<String>,
    /// `--dev`: allow `http://` endpoints.
    pub dev: bool,
    /// The retry schedule.
    pub retry_policy: RetryPolicy,
    /// How long one delivery attempt may take.
    pub request_timeout: Duration,
    /// How long a rotated-out secret keeps signing.
    pub secret_overlap: Duration,
    /// How long a claimed delivery stays leased (defaults to the request
    /// timeout twice plus 30 s).
    pub delivery_lease: Option<Duration>,
    /// How long sends in flight may finish at shutdown.
    pub shutdown_grace: Option<Duration>,
    /// This node's id; when not given, the one kept in the data directory
    /// (made there the first time, see [`node`]).
    pub node_id: Option<signhook_core::ids::NodeId>,
    /// When failing subscriptions are warned, then disabled.
    pub disable_policy: DisablePolicy,
    /// How often the schedulers (disable sweep, recovery jobs) run.
    pub scheduler_interval: Duration,
    /// `--allow-endpoint-cidr`: private ranges endpoints may use anyway.
    pub allowed_endpoint_ranges: Vec<Cidr>,
    /// `--api-rate-limit`: requests per second per API key on this node;
    /// `None` for no limit.
    pub api_rate_limit: Option<std::num::NonZeroU32>,
    /// The master key file (default `<data-dir>/master.key`).
    pub master_key_file: Option<PathBuf>,
    /// `--outbound-proxy`: the proxy deliveries go through, if any.
    pub outbound_proxy: Option<url::Url>,
    /// The most sends in flight to one subscription on this node.
    pub per_subscription_in_flight: usize,
    /// `--smtp-url` and `--smtp-from`, to e-mail failure warnings.
    pub smtp: Option<(String, String)>,
    /// How long events (with their deliveries and attempts) are kept, and
    /// how long a deleted signature request stays before it is purged.
    pub retention: Duration,
    /// The base of links put in payloads and API answers (signing links,
    /// file links); `http://` + the bound address when not given.
    pub public_url: Option<url::Url>,
    /// How long a file link stays valid.
    pub link_ttl: Duration,
    /// How long a dashboard session lasts unused.
    pub session_idle: Duration,
    /// Who may frame the embeddable portal: CSP `frame-ancestors` sources
    /// (`https://app.example.com`); nobody when `None`.
    pub portal_frame_ancestors: Option<String>,
    /// Where documents and signed files live: `s3://bucket/prefix` or
    /// `file:///dir`; `<data-dir>/blobs` when not given.
    pub blob_url: Option<String>,
    /// The `signhook` binary, run as `signhook pdf-worker` for every parse
    /// of an uploaded PDF; this program itself when not set otherwise.
    pub pdf_worker: std::path::PathBuf,
    /// How long one PDF job (an upload's check, a signed PDF) may take.
    pub pdf_timeout: Duration,
    /// `--pdf-font`: font files the signature page and the audit
    /// certificate are set in, tried in order before the built-in ones.
    pub pdf_fonts: Vec<PathBuf>,
    /// The HTTP listener's connection cap and timeouts.
    pub connections: listener::ConnectionLimits,
    /// `--seal-cert`: the key and chain that seal the signed PDFs and
    /// audit certificates; a self-signed one kept in the data directory
    /// when not given.
    pub seal_cert: Option<seal_cert::SealCertFile>,
    /// `--relay-backlog`: the most deliveries a `signhook listen` relay
    /// keeps waiting while no CLI is connected.
    pub relay_backlog: u32,
}

impl Settings {
    /// The defaults of DESIGN §7 for a data directory.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir,
            database_url: None,
            dev: false,
            retry_policy: RetryPolicy::default(),
            request_timeout: Duration::from_secs(15),
            secret_overlap: Duration::from_secs(24 * 60 * 60),
            delivery_lease: None,
            shutdown_grace: None,
            node_id: None,
            disable_policy: DisablePolicy::default(),
            scheduler_interval: Duration::from_secs(30),
            allowed_endpoint_ranges: Vec::new(),
            outbound_proxy: None,
            master_key_file: None,
            api_rate_limit: std::num::NonZeroU32::new(1000),
            per_subscription_in_flight: 10,
            smtp: None,
            retention: Duration::from_secs(30 * 24 * 60 * 60),
            public_url: None,
            link_ttl: Duration::from_secs(30 * 60),
            session_idle: Duration::from_secs(12 * 60 * 60),
            portal_frame_ancestors: None,
            blob_url: None,
            pdf_worker: std::env::current_exe().unwrap_or_else(|_| "signhook".into()),
            pdf_timeout: Duration::from_secs(60),
            pdf_fonts: Vec::new(),
            connections: listener::ConnectionLimits::default(),
            seal_cert: None,
            relay_backlog: 1000,
        }
    }
}

/// What can keep the server from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The node id file could not be read or made.
    #[error("cannot read or make the node id file {path}")]
    NodeIdFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The node id file holds no valid node id.
    #[error(
        "the node id file {path} does not hold a node id: correct it, or remove it to have a new one made \
         (this node's claims from before then wait out their leases)"
    )]
    MalformedNodeId {
        /// The file.
        path: PathBuf,
        /// What is wrong with its text.
        #[source]
        source: signhook_core::ids::NodeIdError,
    },
    /// A `--pdf-font` file cannot be read or is not a font.
    #[error(transparent)]
    PdfFont(#[from] pdf::PdfFontError),
    /// The store failed to open or migrate.
    #[error(transparent)]
    Store(#[from] signhook_store::StoreError),
    /// The delivery engine failed.
    #[error(transparent)]
    Delivery(#[from] signhook_delivery::DeliveryError),
    /// The HTTP server failed.
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
    /// The SMTP settings are unusable.
    #[error(transparent)]
    Mail(#[from] mail::MailError),
    /// The blob store cannot be opened.
    #[error(transparent)]
    Blobs(#[from] signhook_store::blobs::BlobError),
    /// The `--seal-cert` file cannot be read.
    #[error("cannot read --seal-cert {path}")]
    SealCertUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The `--seal-cert` file holds no key and certificate that can seal.
    #[error("--seal-cert {path} cannot seal")]
    SealCert {
        /// The file.
        path: PathBuf,
        /// Why, in words that say what to change.
        #[source]
        source: signhook_documents::SealKeyError,
    },
    /// The self-signed seal file could not be read or made.
    #[error("cannot read or make the self-signed seal file {path}")]
    SealFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The self-signed seal file holds no key and certificate that can
    /// seal.
    #[error(
        "the seal file {path} cannot seal: remove it to have a new self-signed certificate made \
         (what the old one sealed stays valid)"
    )]
    MalformedSealFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: signhook_documents::SealKeyError,
    },
    /// The seal's certificate has expired.
    #[error(
        "the seal certificate in {path} expired at {expired_at}: give --seal-cert a current one \
         (or, for the self-signed one, remove the file to have a new one made)"
    )]
    SealCertExpired {
        /// The file.
        path: PathBuf,
        /// When it expired.
        expired_at: chrono::DateTime<chrono::Utc>,
    },
}

/// Opens the store named by `--database-url`, or SQLite in `data_dir`
/// (creating the directory), and applies migrations.
///
/// Secrets in the database are sealed with the master keys of
/// `master_key_file` (default `<data-dir>/master.key`, created if missing);
/// any still in plaintext, or sealed with an older key, are sealed anew.
pub async fn open_store(
    database_url: Option<&str>,
    data_dir: &std::path::Path,
    master_key_file: Option<&std::path::Path>,
) -> Result<Store, ServerError> {
    let location = Location::new(database_url, data_dir)?;
    if let Location::SqliteDir(dir) = &location {
        signhook_store::private_dir(dir).map_err(|source| ServerError::DataDir {
            path: dir.clone(),
            source,
        })?;
        // Files made before modes were tightened (or copied in) are made
        // private too; those not there yet are created so.
        for suffix in ["", "-wal", "-shm"] {
            let file = dir.join(format!("{}{suffix}", signhook_store::SQLITE_FILE));
            private_file(&file).map_err(|source| ServerError::DataDir { path: file, source })?;
        }
    }
    let keys = load_master_keys(data_dir, master_key_file)?;
    let store = Store::open(&location, Arc::new(keys)).await?;
    store.migrate().await?;
    let resealed = store.reseal().await?;
    if resealed > 0 {
        tracing::info!(resealed, "sealed secrets with the current master key");
    }
    Ok(store)
}

/// Where the master key file is: `master_key_file`, or `master.key` in the
/// data directory.
pub fn master_key_path(data_dir: &std::path::Path, master_key_file: Option<&std::path::Path>) -> PathBuf {
    master_key_file.map_or_else(|| data_dir.join("master.key"), std::path::Path::to_owned)
}

/// The master keys, from their file (created in a private directory if
/// missing).
pub fn load_master_keys(
    data_dir: &std::path::Path,
    master_key_file: Option<&std::path::Path>,
) -> Result<signhook_store::sealing::Keyring, ServerError> {
    let path = master_key_path(data_dir, master_key_file);
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty() && !dir.exists()) {
        signhook_store::private_dir(dir).map_err(|source| ServerError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    Ok(signhook_store::sealing::Keyring::load_or_create(&path).map_err(signhook_store::StoreError::from)?)
}

/// Makes an existing `file` readable by this user only (0600); a missing
/// one is left for whoever creates it (under the binary's umask, 077).
fn private_file(file: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// A built, bound, not yet running server.
pub struct Application {
    listener: TcpListener,
    store: Store,
    router: axum::Router,
    dispatcher: Dispatcher,
    schedulers: Schedulers,
    node_id: String,
    connections: listener::ConnectionLimits,
    key_revocations: KeyRevocations,
}

/// What forgets the API keys this node trusts from memory when another node
/// revokes one ([`routes::api_keys::forget_revoked_keys`]).
struct KeyRevocations {
    store: Store,
    caches: Arc<state::Caches>,
    resets: prometheus_client::metrics::counter::Counter,
}

impl Application {
    /// Opens the store, migrates, binds the listener and builds the API and
    /// the dispatcher.
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, ServerError> {
        // First: a broken font is the operator's to fix before anything runs.
        let pdf_fonts = pdf::PdfFonts::load(&settings.pdf_fonts)?;
        let store = open_store(
            settings.database_url.as_deref(),
            &settings.data_dir,
            settings.master_key_file.as_deref(),
        )
        .await?;
        let node_id = String::from(node::resolve(settings.node_id.clone(), &settings.data_dir)?);
        let seal = seal_cert::resolve(settings.seal_cert.as_ref(), &settings.data_dir, &node_id, clock.now())?;
        // Before anything of this node claims: what its previous run held
        // when it died is due again now, not when the leases end.
        let released = store.release_leases_of_previous_run(&node_id, clock.now()).await?;
        if released != signhook_store::claims::Released::default() {
            tracing::info!(
                node_id,
                deliveries = released.deliveries,
                recoveries = released.recoveries,
                "released the claims this node's previous run held"
            );
        }
        let mut config =
            DispatcherConfig::new(node_id.clone(), settings.retry_policy.clone(), settings.request_timeout);
        if let Some(lease) = settings.delivery_lease {
            config.lease = lease;
        }
        if let Some(grace) = settings.shutdown_grace {
            config.shutdown_grace = grace;
        }
        let addresses = Arc::new(AddressPolicy {
            allow_all: settings.dev,
            allowed: settings.allowed_endpoint_ranges.clone(),
        });
        config.addresses = addresses.clone();
        config.outbound_proxy = settings.outbound_proxy.clone();
        config.per_subscription_in_flight = settings.per_subscription_in_flight;
        let mut relays = routes::listen::Relays::new(config.relays.clone(), node_id.clone());
        relays.backlog = settings.relay_backlog;
        let metrics = Arc::new(state::Metrics::new(&config.metrics));
        let lease = config.lease;
        let dispatcher = Dispatcher::new(store.clone(), config, clock.clone())?;
        let jobs = Arc::new(tokio::sync::Notify::new());
        let mailer = match &settings.smtp {
            Some((url, from)) => Some(mail::Mailer::new(url, from)?),
            None => None,
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: settings.listen,
                source,
            })?;
        let public_url = match &settings.public_url {
            Some(url) => url.clone(),
            None => {
                let addr = listener.local_addr().map_err(|source| ServerError::Bind {
                    addr: settings.listen,
                    source,
                })?;
                url::Url::parse(&format!("http://{addr}")).expect("an address makes a URL")
            }
        };
        let blobs = signhook_store::blobs::BlobStore::open(settings.blob_url.as_deref(), &settings.data_dir)?;
        tracing::info!(blobs = %blobs.describe(), public_url = %public_url, "files and links");
        let lifecycle = Arc::new(lifecycle::Lifecycle {
            store: store.clone(),
            blobs,
            clock: clock.clone(),
            links: links::Links::new(
                store.link_key(clock.now()).await?,
                public_url.clone(),
                settings.link_ttl,
            ),
            mailer: mailer.clone(),
            pdf: pdf::PdfWorkers::new(
                settings.pdf_worker.clone(),
                std::thread::available_parallelism().map_or(1, usize::from),
                settings.pdf_timeout,
                pdf_fonts,
            ),
            seal,
        });
        let schedulers = Schedulers {
            lifecycle: lifecycle.clone(),
            store: store.clone(),
            clock: clock.clone(),
            node_id: node_id.clone(),
            policy: settings.disable_policy,
            interval: settings.scheduler_interval,
            // Recovery jobs are claims too, held like deliveries.
            lease,
            mailer,
            wake: jobs.clone(),
            retention: settings.retention,
        };
        let storage = Arc::new(state::StorageWatch::new(node_id.clone(), &metrics));
        let state = AppState {
            store: store.clone(),
            jobs,
            api: Arc::new(ApiSettings {
                dev: settings.dev,
                secret_overlap: settings.secret_overlap,
                addresses,
                session_idle: settings.session_idle,
                secure_cookies: public_url.scheme() == "https",
                portal_frame_ancestors: settings.portal_frame_ancestors.clone(),
                public_url: public_url.clone(),
            }),
            metrics,
            publisher: signhook_delivery::Publisher::start(store.clone(), clock.clone(), dispatcher.handoff()),
            clock,
            caches: Arc::default(),
            lifecycle,
            rate_limit: settings.api_rate_limit.map(|n| Arc::new(state::ApiRateLimit::new(n))),
            storage,
            relays: Arc::new(relays),
        };
        // Revocations on other nodes reach this one's key cache.
        let key_revocations = KeyRevocations {
            store: store.clone(),
            caches: state.caches.clone(),
            resets: state.metrics.key_cache_resets.clone(),
        };
        let router = routes::router(state);
        Ok(Self {
            listener,
            store,
            router,
            dispatcher,
            schedulers,
            node_id,
            connections: settings.connections,
            key_revocations,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound TCP listener has an address")
    }

    /// The store this node runs on (a handle to the same connections).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        self.store.backend_name()
    }

    /// Runs the API and the dispatcher until `shutdown` fires or one of them
    /// fails; then stops both (the API stops accepting, the dispatcher
    /// finishes or releases what it has in flight) and closes the store.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let Application {
            listener,
            store,
            router,
            dispatcher,
            schedulers,
            connections,
            key_revocations,
            ..
        } = self;
        let revocations = tokio::spawn(routes::api_keys::forget_revoked_keys(
            key_revocations.store,
            key_revocations.caches,
            key_revocations.resets,
            shutdown.clone(),
        ));
        let api = listener::serve(listener, router, connections, shutdown.clone());
        let api = async move { api.await.map_err(ServerError::Serve) };
        let dispatch = dispatcher.run(shutdown.clone());
        // The schedulers only stop on shutdown; they log their own failures.
        let scheduling = tokio::spawn(schedulers.run(shutdown.clone()));
        tokio::pin!(api, dispatch);
        let (first, result) = tokio::select! {
            r = &mut api => ("api", r),
            r = &mut dispatch => ("dispatcher", r.map_err(ServerError::from)),
        };
        match &result {
            Ok(()) => tracing::info!(part = first, "stopped"),
            Err(e) => tracing::error!(part = first, error = %error::error_chain(e), "stopped with an error"),
        }
        // Whichever stopped first, stop the others too and wait for them.
        shutdown.cancel();
        let other = if first == "api" {
            dispatch.await.map_err(ServerError::from)
        } else {
            api.await
        };
        if scheduling.await.is_err() {
            tracing::error!(part = "schedulers", "stopped by a panic");
        }
        if revocations.await.is_err() {
            tracing::error!(part = "key revocations", "stopped by a panic");
        }
        store.close().await;
        result.and(other)
    }
}
