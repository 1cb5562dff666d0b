//! `signhook`: the command line. It parses flags (each with a `SIGNHOOK_…`
//! environment variable), wires the library crates together and reports
//! errors with their causes; the logic lives in the libraries.

mod inbox;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use signhook_core::duration::{parse_duration, parse_duration_list};
use signhook_core::netguard::Cidr;
use signhook_core::retry::{RetryPolicy, DEFAULT_JITTER};
use signhook_core::time::{Clock, SystemClock};
use signhook_server::{Application, Settings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(name = "signhook", version, about = "Webhooks for an e-signature platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API and the delivery dispatcher.
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(DataArgs),
    /// Administrative tasks.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Relay a tenant's events to an app on this machine (local
    /// development, no public URL needed).
    Listen(ListenArgs),
    /// A gateway in front of an app: verify webhooks, ack them once on
    /// disk, forward them with retries; `list`, `show`, `replay`.
    Inbox(Box<inbox::InboxArgs>),
    /// Print the OpenAPI document of the API.
    Openapi,
    /// Run one PDF job from stdin to stdout, under the limits the server
    /// sets (the server's own use; see `signhook_server::pdf`).
    #[command(hide = true)]
    PdfWorker,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create a tenant; prints {"tenant_id", "live_key", "test_key"} as JSON.
    CreateTenant {
        /// The tenant's name.
        #[arg(long)]
        name: String,
        /// Where failure warnings are e-mailed (when SMTP is configured).
        #[arg(long)]
        admin_email: Option<String>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Create a dashboard user of a tenant; prints {"user_id", "email",
    /// "role", "set_password_url"}: a one-time link, valid 7 days, where
    /// they choose their password and are logged in.
    CreateUser {
        /// The tenant (`tnt_…`).
        #[arg(long)]
        tenant: String,
        /// Their login.
        #[arg(long)]
        email: String,
        /// `admin` (everything) or `viewer` (read-only, no secrets).
        #[arg(long, default_value = "admin")]
        role: String,
        /// The server's public URL, the base of the printed link.
        #[arg(long, env = "SIGNHOOK_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
        public_url: url::Url,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Seal every secret in the database with a new master key, then drop
    /// the old ones from the key file; prints {"key_id"}. Stop the servers
    /// first, and give every node the new file before starting them again.
    RotateMasterKey {
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Debug, Args)]
struct DataArgs {
    /// Where the SQLite database lives.
    #[arg(long, env = "SIGNHOOK_DATA_DIR", default_value = "./signhook-data")]
    data_dir: PathBuf,
    /// `postgres://user:password@host/db` to use PostgreSQL instead of SQLite
    /// (run several nodes on one database).
    #[arg(long, env = "SIGNHOOK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The file of master keys that seal the secrets kept in the database
    /// (created, mode 0600, if missing). Every node of a cluster needs the
    /// same file. Default: `<data-dir>/master.key`.
    #[arg(long, env = "SIGNHOOK_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
}

impl DataArgs {
    async fn open_store(&self) -> anyhow::Result<signhook_store::Store> {
        signhook_server::open_store(
            self.database_url.as_deref(),
            &self.data_dir,
            self.master_key_file.as_deref(),
        )
        .await
        .context("opening the database")
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The address the API listens on.
    #[arg(long, env = "SIGNHOOK_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    data: DataArgs,
    /// The base of links put in payloads; defaults to http://{listen}.
    #[arg(long, env = "SIGNHOOK_PUBLIC_URL")]
    public_url: Option<url::Url>,
    /// Development mode: allow http:// endpoints. Never in production.
    #[arg(long, env = "SIGNHOOK_DEV")]
    dev: bool,
    /// The waits between attempts, e.g. `5s,30s,2m,10m,30m,1h,3h,6h,12h,24h`
    /// (each jittered ±20 %).
    #[arg(long, env = "SIGNHOOK_RETRY_SCHEDULE", default_value = "5s,30s,2m,10m,30m,1h,3h,6h,12h,24h", value_parser = parse_schedule)]
    retry_schedule: Schedule,
    /// How long one delivery attempt may take.
    #[arg(long, env = "SIGNHOOK_REQUEST_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// How long a rotated-out secret keeps signing beside the new one.
    #[arg(long, env = "SIGNHOOK_SECRET_OVERLAP", default_value = "24h", value_parser = parse_duration)]
    secret_overlap: Duration,
    /// How long a claimed delivery (or recovery job) stays leased to this node (default: the
    /// request timeout twice plus 30 s). After a crash, the node started again gives its
    /// claims back at once; another node takes them when their lease ends.
    #[arg(long, env = "SIGNHOOK_DELIVERY_LEASE", value_parser = parse_duration)]
    delivery_lease: Option<Duration>,
    /// How long sends in flight may finish at shutdown before their claims
    /// are released (default: the request timeout, at most 10 s).
    #[arg(long, env = "SIGNHOOK_SHUTDOWN_GRACE", value_parser = parse_duration)]
    shutdown_grace: Option<Duration>,
    /// This node's id in leases and attempts: 1 to 64 letters, digits, `_`,
    /// `-` or `.`. Default: the one kept in `<data-dir>/node-id`, made there
    /// on first start. Two live nodes must never share one.
    #[arg(long, env = "SIGNHOOK_NODE_ID")]
    node_id: Option<signhook_core::ids::NodeId>,
    /// A subscription failing this long (and at least 10 times) gets a
    /// `webhook.disabling_soon` warning.
    #[arg(long, env = "SIGNHOOK_DISABLE_AFTER", default_value = "24h", value_parser = parse_duration)]
    disable_after: Duration,
    /// Still failing this long after the warning: disabled.
    #[arg(long, env = "SIGNHOOK_DISABLE_GRACE", default_value = "7d", value_parser = parse_duration)]
    disable_grace: Duration,
    /// How often the disable sweep and recovery jobs run.
    #[arg(long, env = "SIGNHOOK_SCHEDULER_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    scheduler_interval: Duration,
    /// Private address ranges endpoints may use anyway, e.g. 10.20.0.0/16
    /// (repeat the flag, or separate with commas).
    #[arg(long, env = "SIGNHOOK_ALLOW_ENDPOINT_CIDR", value_delimiter = ',')]
    allow_endpoint_cidr: Vec<Cidr>,
    /// A proxy for deliveries, `http://host:port` (credentials as
    /// `http://user:password@host:port`). Endpoint addresses are vetted
    /// before it is asked. Proxy variables in the environment
    /// (`HTTPS_PROXY`, …) are never used for deliveries.
    #[arg(long, env = "SIGNHOOK_OUTBOUND_PROXY", value_parser = parse_proxy_url)]
    outbound_proxy: Option<url::Url>,
    /// The most deliveries in flight to one endpoint on this node.
    #[arg(long, env = "SIGNHOOK_ENDPOINT_CONCURRENCY", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    endpoint_concurrency: u16,
    /// SMTP server for e-mailing failure warnings to tenants' admins, e.g.
    /// `smtp://mail.internal:25` or `smtps://user:password@smtp.example.com`.
    #[arg(long, env = "SIGNHOOK_SMTP_URL", hide_env_values = true, requires = "smtp_from")]
    smtp_url: Option<String>,
    /// The sender address of those e-mails.
    #[arg(long, env = "SIGNHOOK_SMTP_FROM", requires = "smtp_url")]
    smtp_from: Option<String>,
    /// How long events are kept (with their deliveries and attempts) before
    /// they are purged; also how long a deleted signature request stays
    /// before it is purged for good.
    #[arg(long, env = "SIGNHOOK_RETENTION", default_value = "30d", value_parser = parse_duration)]
    retention: Duration,
    /// How long a link to a signed PDF or an audit certificate stays valid.
    #[arg(long, env = "SIGNHOOK_LINK_TTL", default_value = "30m", value_parser = parse_duration)]
    link_ttl: Duration,
    /// How long a dashboard session lasts unused before it must log in again.
    #[arg(long, env = "SIGNHOOK_SESSION_IDLE", default_value = "12h", value_parser = parse_duration)]
    session_idle: Duration,
    /// The sites whose pages may show the embeddable portal in an iframe:
    /// space-separated origins (`https://app.example.com`) or 'self'. Without
    /// it no site may frame the portal (its links still open on their own).
    #[arg(long, env = "SIGNHOOK_PORTAL_FRAME_ANCESTORS", value_parser = signhook_server::pages::portal::parse_frame_ancestors)]
    portal_frame_ancestors: Option<String>,
    /// Where documents and signed files live: `s3://bucket/prefix` (with the
    /// usual AWS_* variables; AWS_ENDPOINT_URL for S3-compatible stores) or
    /// `file:///abs/dir`. Default: `<data-dir>/blobs`.
    #[arg(long, env = "SIGNHOOK_BLOB_URL")]
    blob_url: Option<String>,
    /// Requests per second each API key may send to this node (a burst of
    /// one second's worth); beyond, 429 with Retry-After. 0 turns it off.
    #[arg(long, env = "SIGNHOOK_API_RATE_LIMIT", default_value_t = 1000)]
    api_rate_limit: u32,
    /// How long reading one PDF (an upload's check, the signed PDF) may take
    /// in its worker process before the upload is refused.
    #[arg(long, env = "SIGNHOOK_PDF_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pdf_timeout: Duration,
    /// A TrueType or OpenType font file the signature page and the audit
    /// certificate are set in, tried for each character before the built-in
    /// DejaVu Sans and Droid Sans Fallback. Several are tried in order:
    /// repeat the flag, or separate them with `:` as in PATH. Checked at
    /// start: a file that is missing or not a font stops the server.
    #[arg(
        long = "pdf-font",
        env = "SIGNHOOK_PDF_FONT",
        value_delimiter = ':',
        value_name = "FILE"
    )]
    pdf_fonts: Vec<PathBuf>,
    /// The most client connections open at once; beyond, new ones wait
    /// until one closes. Lowered to fit the open-file limit.
    #[arg(long, env = "SIGNHOOK_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// How long a connection may take to send a request's headers, from its
    /// start or from its previous response (also how long an idle
    /// kept-alive connection is kept).
    #[arg(long, env = "SIGNHOOK_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// How long a request body may pause before the request is ended (408).
    #[arg(long, env = "SIGNHOOK_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    body_timeout: Duration,
    /// The certificate that seals every signed PDF and audit certificate
    /// (a PDF digital signature): a PKCS#12 file (.p12, .pfx), or a PEM
    /// file with the unencrypted private key (PKCS#8, SEC1 or PKCS#1; ECDSA
    /// P-256/P-384 or RSA) and the certificate chain. Default: a
    /// self-signed certificate made on first start in `<data-dir>/seal.pem`.
    #[arg(long, env = "SIGNHOOK_SEAL_CERT")]
    seal_cert: Option<PathBuf>,
    /// The password of the --seal-cert PKCS#12 file (prefer the
    /// environment variable: a flag shows in the process list).
    #[arg(
        long,
        env = "SIGNHOOK_SEAL_CERT_PASSWORD",
        hide_env_values = true,
        requires = "seal_cert"
    )]
    seal_cert_password: Option<String>,
    /// The most deliveries a `signhook listen` relay keeps waiting while no
    /// CLI is connected; when one connects, older ones are canceled (still
    /// in the delivery log, resendable).
    #[arg(long, env = "SIGNHOOK_RELAY_BACKLOG", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    relay_backlog: u32,
}

/// `signhook listen`: a tenant's events, relayed to an app on this machine.
#[derive(Debug, Args)]
struct ListenArgs {
    /// The Signhook server's base URL.
    #[arg(long, env = "SIGNHOOK_API", default_value = "http://127.0.0.1:8080")]
    api: url::Url,
    /// The API key: `sk_test_…` (a `sk_live_…` key needs `--live`).
    #[arg(long, env = "SIGNHOOK_API_KEY", hide_env_values = true)]
    key: String,
    /// Where each delivery is posted, e.g. http://localhost:3000/hooks.
    #[arg(long, required_unless_present = "resend")]
    forward_to: Option<url::Url>,
    /// Comma-separated event types and wildcards (`signer.*,signature_request.done`).
    #[arg(long, default_value = "*")]
    events: String,
    /// Let a live key listen: production events come to this machine.
    #[arg(long)]
    live: bool,
    /// How long the local app may take to answer one delivery.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    forward_timeout: Duration,
    /// Send this event (`evt_…`) again to the relay subscription and exit.
    #[arg(long, value_name = "EVENT_ID")]
    resend: Option<String>,
}

/// A retry schedule given as one comma-separated value. (A bare `Vec` would
/// make clap expect one duration per occurrence of the flag.)
#[derive(Debug, Clone)]
struct Schedule(Vec<Duration>);

/// An `--outbound-proxy`: an `http://` or `https://` URL with a host and
/// nothing after it.
fn parse_proxy_url(text: &str) -> Result<url::Url, String> {
    let url =
        url::Url::parse(text).map_err(|e| format!("not a URL ({e}); write it like http://proxy.internal:3128"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the proxy's scheme must be http or https, not `{}`",
            url.scheme()
        ));
    }
    if url.host().is_none() || !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err("write the proxy as scheme://host:port, with nothing after it".into());
    }
    Ok(url)
}

fn parse_schedule(text: &str) -> Result<Schedule, signhook_core::duration::DurationError> {
    parse_duration_list(text).map(Schedule)
}

impl ServeArgs {
    fn into_settings(self) -> Settings {
        let mut settings = Settings::new(self.data.data_dir);
        settings.database_url = self.data.database_url;
        settings.master_key_file = self.data.master_key_file;
        settings.listen = self.listen;
        settings.dev = self.dev;
        settings.retry_policy = RetryPolicy::new(self.retry_schedule.0, DEFAULT_JITTER);
        settings.request_timeout = self.request_timeout;
        settings.secret_overlap = self.secret_overlap;
        settings.delivery_lease = self.delivery_lease;
        settings.shutdown_grace = self.shutdown_grace;
        settings.node_id = self.node_id;
        settings.disable_policy.after = self.disable_after;
        settings.disable_policy.grace = self.disable_grace;
        settings.scheduler_interval = self.scheduler_interval;
        settings.allowed_endpoint_ranges = self.allow_endpoint_cidr;
        settings.outbound_proxy = self.outbound_proxy;
        settings.pdf_timeout = self.pdf_timeout;
        settings.pdf_fonts = self.pdf_fonts;
        settings.api_rate_limit = std::num::NonZeroU32::new(self.api_rate_limit);
        settings.per_subscription_in_flight = usize::from(self.endpoint_concurrency);
        settings.smtp = self.smtp_url.zip(self.smtp_from);
        settings.retention = self.retention;
        settings.connections = signhook_server::listener::ConnectionLimits {
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            header_read_timeout: self.header_read_timeout,
            body_timeout: self.body_timeout,
        };
        settings.public_url = self.public_url;
        settings.link_ttl = self.link_ttl;
        settings.session_idle = self.session_idle;
        settings.portal_frame_ancestors = self.portal_frame_ancestors;
        settings.blob_url = self.blob_url;
        settings.seal_cert = self.seal_cert.map(|path| signhook_server::seal_cert::SealCertFile {
            path,
            password: self.seal_cert_password,
        });
        settings.relay_backlog = self.relay_backlog;
        settings
    }
}

fn main() -> ExitCode {
    // Everything Signhook writes — the database and its log, documents,
    // signed files, the master key — is for this user alone.
    // A write past a file-size limit (RLIMIT_FSIZE, a quota) is a failed
    // write the store answers 503 for, not a signal that kills the server.
    // SAFETY: umask sets the file-creation mask; ignoring SIGXFSZ installs
    // no handler.
    unsafe {
        libc::umask(0o077);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = Cli::parse();
    if let Command::PdfWorker = cli.command {
        // On the main thread, without a runtime: the server limits this
        // thread's stack and the process's memory.
        return pdf_worker();
    }
    init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn,sqlx=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (the log's disk is full) is
        // dropped. Reporting it would `eprintln!` to the same stderr, which
        // panics when that write fails too — and took the request with it.
        .log_internal_errors(false)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate(data) => {
            let store = data.open_store().await?;
            tracing::info!(backend = store.backend_name(), "migrations applied");
            store.close().await;
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::CreateTenant {
                    name,
                    admin_email,
                    data,
                },
        } => {
            let name = name.trim();
            anyhow::ensure!(
                !name.is_empty() && name.chars().count() <= 200,
                "--name must be 1 to 200 characters"
            );
            if let Some(email) = &admin_email {
                let valid = email.split_once('@').is_some_and(|(user, host)| {
                    !user.is_empty() && host.contains('.') && !email.chars().any(char::is_whitespace)
                });
                anyhow::ensure!(valid, "--admin-email must be an e-mail address like ops@example.com");
            }
            let store = data.open_store().await?;
            let tenant = store
                .create_tenant_with_admin(name, admin_email.as_deref(), SystemClock.now())
                .await
                .context("creating the tenant")?;
            store.close().await;
            // Written by hand to keep the documented key order.
            println!(
                "{{\"tenant_id\":{},\"live_key\":{},\"test_key\":{}}}",
                serde_json::Value::from(tenant.tenant_id.as_str()),
                serde_json::Value::from(tenant.live_key),
                serde_json::Value::from(tenant.test_key),
            );
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::CreateUser {
                    tenant,
                    email,
                    role,
                    public_url,
                    data,
                },
        } => {
            let tenant = signhook_core::ids::TenantId::parse(&tenant)
                .map_err(|_| anyhow::anyhow!("--tenant must be a tenant id like tnt_01…"))?;
            let email = signhook_core::auth::UserEmail::parse(&email)
                .map_err(|_| anyhow::anyhow!("--email must be an e-mail address like ada@example.com"))?;
            let role = signhook_core::auth::Role::parse(&role)
                .ok_or_else(|| anyhow::anyhow!("--role must be `admin` or `viewer`"))?;
            let store = data.open_store().await?;
            let now = SystemClock.now();
            let valid_until = now + signhook_server::pages::team::INVITATION_VALIDITY;
            // Beside a running server on SQLite this write waits for the
            // server's writer, up to the busy timeout. Should the server hold
            // it longer (a long maintenance transaction), the transaction
            // changed nothing, and trying it again is safe.
            let mut created = store.create_user(&tenant, email.as_str(), role, now, valid_until).await;
            for _ in 0..2 {
                if !created.as_ref().is_err_and(|e| e.is_busy()) {
                    break;
                }
                tracing::warn!("the database was locked by another process; trying again");
                created = store.create_user(&tenant, email.as_str(), role, now, valid_until).await;
            }
            store.close().await;
            let created = match created {
                Ok(Some(created)) => created,
                Ok(None) => anyhow::bail!("no tenant {tenant} exists"),
                Err(signhook_store::StoreError::Conflict { .. }) => {
                    anyhow::bail!("{email} already has a dashboard account")
                }
                Err(e) => return Err(anyhow::Error::new(e).context("creating the user")),
            };
            let link = public_url
                .join(&format!("password/{}", created.link_token))
                .context("--public-url cannot be the base of a link")?;
            println!(
                "{}",
                serde_json::json!({
                    "user_id": created.user.id.as_str(),
                    "email": created.user.email,
                    "role": created.user.role.as_str(),
                    "set_password_url": link.as_str(),
                })
            );
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::RotateMasterKey { data },
        } => {
            let path = signhook_server::master_key_path(&data.data_dir, data.master_key_file.as_deref());
            let old = signhook_server::load_master_keys(&data.data_dir, data.master_key_file.as_deref())?;
            // The new key first, the old ones still there to open: a crash
            // from here on leaves a file that opens everything.
            let rotated = old.with_new_key();
            rotated.save(&path)?;
            let store = data.open_store().await?;
            store.close().await;
            // Everything is sealed with the new key now.
            let rotated = rotated.without_old_keys();
            rotated.save(&path)?;
            tracing::info!(path = %path.display(), key_id = rotated.current_id(), "master key rotated");
            println!("{{\"key_id\":{}}}", serde_json::Value::from(rotated.current_id()));
            Ok(())
        }
        Command::Inbox(args) => inbox::run(*args).await,
        Command::Openapi => {
            print!("{}", signhook_server::openapi::document());
            Ok(())
        }
        Command::Listen(args) => listen(args).await,
        Command::PdfWorker => unreachable!("handled before the runtime starts"),
    }
}

async fn listen(args: ListenArgs) -> anyhow::Result<()> {
    let options = signhook_listen::Options {
        api: args.api,
        key: args.key,
        // Only `--resend` goes without it (clap requires it otherwise).
        forward_to: args
            .forward_to
            .unwrap_or_else(|| url::Url::parse("http://localhost/").expect("a valid URL")),
        events: args.events.split(',').map(|e| e.trim().to_owned()).collect(),
        live: args.live,
        forward_timeout: args.forward_timeout,
    };
    if let Some(event_id) = args.resend {
        let delivery = signhook_listen::resend(&options, &event_id)
            .await
            .context("resending")?;
        println!("resent {event_id} to the relay: delivery {delivery}");
        return Ok(());
    }
    let shutdown = CancellationToken::new();
    let signals = ShutdownSignals::listen().context("listening for SIGINT and SIGTERM")?;
    tokio::spawn(signals.cancel(shutdown.clone()));
    signhook_listen::listen(options, shutdown).await?;
    Ok(())
}

/// `signhook pdf-worker`: one job, stdin to stdout.
fn pdf_worker() -> ExitCode {
    use std::io::{Read, Write};
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("error: reading the job: {e}");
        return ExitCode::FAILURE;
    }
    let answer = signhook_server::pdf::serve(&input);
    match std::io::stdout()
        .write_all(&answer)
        .and_then(|()| std::io::stdout().flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the answer: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let public_url = args.public_url.clone();
    let mut settings = args.into_settings();
    settings.connections = settings.connections.fit_to_open_file_limit();
    if settings.dev {
        tracing::warn!(
            "DEVELOPMENT MODE (--dev): http:// endpoints are allowed. Never run a production server like this."
        );
    }
    let data_dir = settings.data_dir.clone();
    let postgres = settings.database_url.is_some();
    let app = Application::build(settings, Arc::new(SystemClock))
        .await
        .context("starting the server")?;
    let addr = app.local_addr();
    let public_url = public_url.map_or_else(|| format!("http://{addr}"), |u| u.to_string());
    let database = if postgres {
        "postgres".to_owned()
    } else {
        data_dir.display().to_string()
    };
    // Listening for the signals starts before "serving" is said: a SIGTERM
    // sent the moment the server says it serves stops it gracefully, not
    // by the signal's default action.
    let shutdown = CancellationToken::new();
    let signals = ShutdownSignals::listen().context("listening for SIGINT and SIGTERM")?;
    tokio::spawn(signals.cancel(shutdown.clone()));
    tracing::info!(%addr, %public_url, node_id = app.node_id(), %database, "signhook is serving");
    app.run(shutdown).await.context("serving")?;
    tracing::info!("signhook stopped");
    Ok(())
}

/// SIGINT and SIGTERM, listened for from the moment they are made.
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Cancels `shutdown` on the first of them.
    async fn cancel(mut self, shutdown: CancellationToken) {
        tokio::select! {
            _ = self.interrupt.recv() => tracing::info!("SIGINT received: shutting down"),
            _ = self.terminate.recv() => tracing::info!("SIGTERM received: shutting down"),
        }
        shutdown.cancel();
    }
}
