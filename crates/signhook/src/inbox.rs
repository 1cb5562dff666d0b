//! `signhook inbox`: runs the gateway (from `--config inbox.toml`, or the
//! flags of one source), and its admin subcommands `list`, `show`,
//! `replay` against a running inbox's admin listener. Wiring only: the
//! gateway is `signhook-inbox`.

use anyhow::Context;
use clap::{Args, Subcommand};
use signhook_core::time::SystemClock;
use signhook_inbox::admin_client::AdminClient;
use signhook_inbox::settings::{RawConfig, RawSource};
use signhook_inbox::Inbox;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct InboxArgs {
    #[command(subcommand)]
    command: Option<InboxCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// A TOML file of settings and `[[source]]` tables (see the README).
    #[arg(long, env = "SIGNHOOK_INBOX_CONFIG")]
    config: Option<PathBuf>,
    /// Where senders reach the inbox (default 127.0.0.1:8800).
    #[arg(long, env = "SIGNHOOK_INBOX_LISTEN")]
    listen: Option<String>,
    /// The admin listener: /metrics, /healthz, /readyz, the admin routes
    /// (default 127.0.0.1:8801). Off loopback, --admin-token is required.
    #[arg(long, env = "SIGNHOOK_INBOX_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// The bearer token of the admin routes.
    #[arg(long, env = "SIGNHOOK_INBOX_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Where the inbox's database lives (default ./signhook-inbox).
    #[arg(long, env = "SIGNHOOK_INBOX_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The waits between forward attempts, e.g. 5s,30s,2m,10m,30m,1h.
    #[arg(long, env = "SIGNHOOK_INBOX_RETRY_SCHEDULE")]
    retry_schedule: Option<String>,
    /// One source: its path on the listener.
    #[arg(long)]
    source_path: Option<String>,
    /// One source: standard-webhooks, hex or prefixed.
    #[arg(long)]
    scheme: Option<String>,
    /// One source: a secret that verifies it (repeat while rotating).
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// One source: the app's URL.
    #[arg(long)]
    forward_to: Option<String>,
    /// One source: a whsec_ secret to re-sign forwards with.
    #[arg(long, hide_env_values = true)]
    forward_secret: Option<String>,
    /// One source: a JSON pointer to the ordering key.
    #[arg(long)]
    ordering_key: Option<String>,
    /// One source (hex): the signature's header (default X-Signature).
    #[arg(long)]
    signature_header: Option<String>,
    /// One source (hex): a JSON pointer to the event id.
    #[arg(long)]
    event_id_pointer: Option<String>,
    /// One source (prefixed): the headers' prefix (default X-Signbee).
    #[arg(long)]
    header_prefix: Option<String>,
}

#[derive(Debug, Subcommand)]
enum InboxCommand {
    /// The newest requests received.
    List {
        /// Only these: pending, forwarded or dead.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// One request by its sender's event id: headers, body, attempts.
    Show {
        /// The sender's event id.
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Forward a request again, or every dead letter (since T).
    Replay {
        /// The sender's event id.
        #[arg(required_unless_present = "dead_letters", conflicts_with = "dead_letters")]
        id: Option<String>,
        /// Every dead letter instead.
        #[arg(long)]
        dead_letters: bool,
        /// With --dead-letters: only those that died at or after this
        /// RFC 3339 time.
        #[arg(long, requires = "dead_letters")]
        since: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Args)]
struct AdminArgs {
    /// The inbox's admin listener.
    #[arg(long, env = "SIGNHOOK_INBOX_ADMIN", default_value = "http://127.0.0.1:8801")]
    admin: String,
    /// Its admin token, if it has one.
    #[arg(long, env = "SIGNHOOK_INBOX_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

pub async fn run(args: InboxArgs) -> anyhow::Result<()> {
    let Some(command) = args.command else {
        return serve(args.run).await;
    };
    let answer = match command {
        InboxCommand::List { status, admin } => admin.client()?.list(status.as_deref()).await,
        InboxCommand::Show { id, admin } => admin.client()?.show(&id).await,
        InboxCommand::Replay {
            id,
            dead_letters,
            since,
            admin,
        } => {
            let client = admin.client()?;
            match id {
                Some(id) if !dead_letters => client.replay(&id).await,
                _ => client.replay_dead(since.as_deref()).await,
            }
        }
    };
    let answer = answer.context("inbox admin")?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

impl AdminArgs {
    fn client(self) -> anyhow::Result<AdminClient> {
        AdminClient::new(&self.admin, self.admin_token).context("--admin")
    }
}

async fn serve(args: RunArgs) -> anyhow::Result<()> {
    let mut raw = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            RawConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => RawConfig::default(),
    };
    // Flags win over the file's values.
    raw.listen = args.listen.or(raw.listen);
    raw.admin_listen = args.admin_listen.or(raw.admin_listen);
    raw.admin_token = args.admin_token.or(raw.admin_token);
    raw.data_dir = args.data_dir.or(raw.data_dir);
    raw.retry_schedule = args.retry_schedule.or(raw.retry_schedule);
    if let Some(path) = args.source_path {
        raw.sources.push(RawSource {
            name: None,
            path,
            scheme: args.scheme.unwrap_or_else(|| "standard-webhooks".into()),
            secrets: args.secrets,
            forward_to: args
                .forward_to
                .context("--forward-to: the app's URL is required with --source-path")?,
            forward_secret: args.forward_secret,
            rate_limit: None,
            ordering_key: args.ordering_key,
            signature_header: args.signature_header,
            event_id_pointer: args.event_id_pointer,
            header_prefix: args.header_prefix,
        });
    }
    let settings = raw.resolve().context("inbox settings")?;
    let inbox = Inbox::build(settings, Arc::new(SystemClock))
        .await
        .context("starting the inbox")?;
    let shutdown = CancellationToken::new();
    let signals = super::ShutdownSignals::listen().context("listening for SIGINT and SIGTERM")?;
    tokio::spawn(signals.cancel(shutdown.clone()));
    inbox.run(shutdown).await.context("running the inbox")?;
    tracing::info!("signhook inbox stopped");
    Ok(())
}
