//! `signhook-bench`: measures a real `signhook serve` from the outside, as
//! its users would. It starts a receiving sink (verifying every webhook
//! signature with `signhook-verify` and timing every arrival), starts one or
//! more servers on a fresh database, creates a tenant and subscriptions,
//! publishes events, waits for every delivery, and prints one JSON object.
//!
//! Scenarios: `throughput` (one subscription, as fast as 64 publishers go),
//! `latency` (a fixed rate, default 1,000 events/s), `fanout` (one event to
//! 1,000 subscriptions), `slow-endpoint` (one endpoint that never answers
//! beside 10 fast ones; latency is the fast ones'), `mixed` (1 % of
//! endpoints answer 500), `retry-punctuality` (one tenant publishes at a
//! stated fraction of the throughput measured first in the same run, while
//! another tenant's endpoint fails half of its first attempts: how late do
//! the retries leave?), `ceiling` (no server: `wrk` posts one signed
//! delivery to the same sink as fast as it can — the loopback ceiling the
//! other figures are a fraction of). `--smoke` runs a tiny version whose only purpose is
//! to prove the tool still works; the test suite runs it.

mod fill;
mod inbox;
mod ordered;
mod prepared;
mod shapes;

use anyhow::{bail, ensure, Context};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Throughput,
    Latency,
    Fanout,
    SlowEndpoint,
    Mixed,
    /// Retries under steady traffic: how late they leave.
    RetryPunctuality,
    /// The loopback ceiling: `wrk` posting one signed delivery to the sink
    /// as fast as it can, no server in between.
    Ceiling,
    /// Fills `--db-dir` with a month of data (10 M events by default).
    BigDb,
    /// The list pages' latency on a database `big-db` prepared.
    Lists,
    /// A backlog after an outage drains while fresh events flow.
    Drain,
    /// 10× the sustained rate for 5 s.
    Burst,
    /// 1,000 tenants, 10 subscriptions each, events spread evenly.
    ManyTenants,
    /// Signature requests' events to an unordered, then an ordered
    /// subscription: the cost of order, and arrivals out of order.
    Ordered,
    /// `signhook inbox` in front of the sink: ack latency at `--rate`
    /// (1,000/s), then acks per second flat out; every request forwarded.
    Inbox,
}

#[derive(Debug, Parser)]
#[command(
    name = "signhook-bench",
    about = "Load generator and sink for Signhook; prints figures as JSON"
)]
struct Cli {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Run on PostgreSQL (a database the tool may fill) instead of a fresh SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// Servers to start on the same database (PostgreSQL only beyond 1).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Events to publish (default per scenario).
    #[arg(long)]
    events: Option<usize>,
    /// Publish at this many events per second instead of as fast as
    /// possible (`retry-punctuality`: the busy tenant's rate, instead of
    /// `--load`; 0 for no busy tenant at all).
    #[arg(long)]
    rate: Option<u64>,
    /// Concurrent publishing connections (wrk's connections for `ceiling`).
    /// Default: 64 for `throughput` (one subscription keeps pace with its
    /// publishers there: see BENCHMARKS.md), 32 otherwise.
    #[arg(long)]
    concurrency: Option<usize>,
    /// A tiny run that checks correctness only (used by the test suite).
    #[arg(long)]
    smoke: bool,
    /// The `signhook` binary (default: the one beside this program).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 120)]
    wait_seconds: u64,
    /// `slow-endpoint` without its hanging endpoint, `drain` without its
    /// backlog: the same load on the healthy endpoints, to compare their
    /// latency with and without the trouble.
    #[arg(long)]
    baseline: bool,
    /// `retry-punctuality`: the busy tenant publishes at this fraction of
    /// the throughput measured at the start of the run.
    #[arg(long, default_value_t = 0.5)]
    load: f64,
    /// `retry-punctuality`: how long the steady traffic lasts, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// `retry-punctuality`: events per second of the tenant whose endpoint
    /// fails first attempts.
    #[arg(long, default_value_t = 20.0)]
    retrying_rate: f64,
    /// `retry-punctuality`: the share of that endpoint's first attempts that
    /// fail (every n-th event, evenly spread).
    #[arg(long, default_value_t = 0.5)]
    fail_share: f64,
    /// `retry-punctuality`: the server's one retry step, in milliseconds.
    #[arg(long, default_value_t = 200)]
    retry_ms: u64,
    /// Keep the database in DIR: `big-db` fills it; `lists`, `throughput`,
    /// `latency` … then run on it instead of on a fresh one.
    #[arg(long)]
    db_dir: Option<PathBuf>,
    /// Measure the loopback ceiling first (`wrk`), in the same invocation,
    /// and give each throughput as a fraction of it too.
    #[arg(long)]
    with_ceiling: bool,
    /// `big-db`, `many-tenants`: how many tenants (default 100 for
    /// `big-db`, 1,000 for `many-tenants`).
    #[arg(long)]
    tenants: Option<u64>,
    /// `big-db`, `many-tenants`: subscriptions per tenant.
    #[arg(long, default_value_t = 10)]
    subscriptions_per_tenant: u64,
    /// `drain`: endpoints coming back (and as many receiving fresh events).
    #[arg(long, default_value_t = 100)]
    endpoints: usize,
    /// `drain`: deliveries due at once when they come back.
    #[arg(long, default_value_t = 500_000)]
    backlog: u64,
    /// `drain`: how long the returning endpoints take to answer, in
    /// milliseconds (0: at once).
    #[arg(long, default_value_t = 0)]
    response_ms: u64,
    /// `ordered`: signature requests.
    #[arg(long, default_value_t = 1_000)]
    requests: usize,
    /// `ordered`: events per signature request.
    #[arg(long, default_value_t = 10)]
    events_per_request: usize,
}

/// How a sink path answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behavior {
    Fast,
    Hang,
    Fail,
    /// 500 to the first attempt of a share of the events (every n-th, by
    /// arrival), then 204.
    FailFirstAttempts,
    /// 204 after the sink's `slow_ms`.
    Slow,
}

/// The receiving end: verifies, times and counts every delivery.
#[derive(Default)]
struct Sink {
    verifiers: RwLock<HashMap<usize, (signhook_verify::Webhook, Behavior)>>,
    /// Per event and endpoint: when it was first answered 2xx, and how
    /// many times it was.
    arrivals: Mutex<HashMap<(String, usize), (Instant, u32)>>,
    /// Per event and endpoint: when its first attempt was answered 500 on
    /// purpose.
    failed_first: Mutex<HashMap<(String, usize), Instant>>,
    /// Events seen first by the endpoints that fail a share of them.
    first_attempts: AtomicU64,
    /// That share, in thousandths.
    fail_per_mille: AtomicU64,
    bad_signatures: AtomicU64,
    requests: AtomicU64,
    /// How long `Slow` endpoints take to answer, in milliseconds.
    slow_ms: AtomicU64,
    /// Whether to note each 2xx arrival's signature request `sequence`.
    record_sequences: AtomicBool,
    /// Per endpoint and signature request: the `sequence`s of its 2xx
    /// arrivals, in arrival order.
    sequences: Mutex<HashMap<(usize, String), Vec<u64>>>,
}

impl Sink {
    /// Notes a delivery of event `id` at endpoint `index`, answered 2xx:
    /// when it first came, and how many times it did.
    fn arrived(&self, id: String, index: usize, arrived: Instant) {
        self.arrivals
            .lock()
            .expect("no panics hold this lock")
            .entry((id, index))
            .and_modify(|(_, n)| *n += 1)
            .or_insert((arrived, 1));
    }

    /// Notes the signature request `sequence` of a delivery's `body` at
    /// endpoint `index`.
    fn note_sequence(&self, index: usize, body: &[u8]) {
        let Ok(envelope) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let request = &envelope["data"]["signature_request"];
        if let (Some(id), Some(sequence)) = (request["id"].as_str(), request["sequence"].as_u64()) {
            self.sequences
                .lock()
                .expect("no panics hold this lock")
                .entry((index, id.to_owned()))
                .or_default()
                .push(sequence);
        }
    }

    /// Whether this request, of event `id` at endpoint `index`, is a first
    /// attempt that fails on purpose (noted with its arrival time): a share
    /// of the new events' first attempts, the n-th of every 1/share, so the
    /// failures are evenly spread.
    fn fails_first_attempt(&self, id: &str, index: usize, arrived: Instant) -> bool {
        let key = (id.to_owned(), index);
        let mut failed = self.failed_first.lock().expect("no panics hold this lock");
        if failed.contains_key(&key)
            || self
                .arrivals
                .lock()
                .expect("no panics hold this lock")
                .contains_key(&key)
        {
            return false;
        }
        let per_mille = self.fail_per_mille.load(Ordering::Relaxed);
        let n = self.first_attempts.fetch_add(1, Ordering::Relaxed);
        let fails = (n + 1) * per_mille / 1000 > n * per_mille / 1000;
        if fails {
            failed.insert(key, arrived);
        }
        fails
    }
}

async fn receive(
    State(sink): State<Arc<Sink>>,
    Path(index): Path<usize>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let arrived = Instant::now();
    sink.requests.fetch_add(1, Ordering::Relaxed);
    let (verified, behavior) = {
        let verifiers = sink.verifiers.read().expect("no panics hold this lock");
        match verifiers.get(&index) {
            Some((webhook, behavior)) => (webhook.verify(&headers, &body).is_ok(), *behavior),
            None => (false, Behavior::Fast),
        }
    };
    if !verified {
        sink.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    match behavior {
        Behavior::Hang => std::future::pending().await,
        Behavior::Fail => StatusCode::INTERNAL_SERVER_ERROR,
        Behavior::FailFirstAttempts if sink.fails_first_attempt(&id, index, arrived) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        Behavior::Slow => {
            tokio::time::sleep(Duration::from_millis(sink.slow_ms.load(Ordering::Relaxed))).await;
            sink.arrived(id, index, arrived);
            StatusCode::NO_CONTENT
        }
        Behavior::Fast | Behavior::FailFirstAttempts => {
            if sink.record_sequences.load(Ordering::Relaxed) {
                sink.note_sequence(index, &body);
            }
            sink.arrived(id, index, arrived);
            StatusCode::NO_CONTENT
        }
    }
}

/// The `signhook` binary: `--server-bin`, or the one beside this program.
fn server_binary(cli: &Cli) -> anyhow::Result<PathBuf> {
    let bin = match &cli.server_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?.with_file_name("signhook"),
    };
    ensure!(
        bin.exists(),
        "{} not found: build it first (cargo build --release -p signhook) or pass --server-bin",
        bin.display()
    );
    Ok(bin)
}

/// The address a `signhook` child process names (`addr=…`) on the stderr
/// line holding `marker` once it listens; its stderr is drained meanwhile.
fn announced_addr(child: &mut Child, marker: &'static str) -> anyhow::Result<SocketAddr> {
    let stderr = child.stderr.take().context("the child's stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(marker) {
                let addr = line
                    .split(" addr=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_owned);
                if let (Some(tx), Some(addr)) = (tx.take(), addr) {
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .with_context(|| format!("the child never logged `{marker}` with its address"))?;
    Ok(addr.parse()?)
}

/// One `signhook serve` child process.
struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Node {
    fn start(bin: &std::path::Path, db_args: &[String], node_id: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            // The engine is measured, not the per-key limit that shields
            // tenants from each other.
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--dev",
                "--api-rate-limit",
                "0",
                "--node-id",
                node_id,
            ])
            .args(db_args)
            .env("RUST_LOG", "warn,signhook=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let addr = announced_addr(&mut child, "signhook is serving")?;
        Ok(Self { child, addr })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Resident memory now and at its peak, in MiB (Linux).
    fn rss_mib(&self) -> (f64, f64) {
        rss_mib_of(&self.child)
    }
}

/// A child process's resident memory now and at its peak, in MiB (Linux;
/// 0 where unknown).
fn rss_mib_of(child: &Child) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shape of one run.
struct Plan {
    events: usize,
    /// Concurrent publishing connections.
    concurrency: usize,
    rate: Option<u64>,
    /// Behavior of each subscription's endpoint.
    endpoints: Vec<Behavior>,
}

fn plan(cli: &Cli) -> Plan {
    let smoke = cli.smoke;
    let (events, rate, endpoints) = match cli.scenario {
        Scenario::Throughput => (if smoke { 200 } else { 20_000 }, None, vec![Behavior::Fast]),
        Scenario::Latency => (
            if smoke { 100 } else { 10_000 },
            Some(if smoke { 200 } else { 1_000 }),
            vec![Behavior::Fast],
        ),
        Scenario::Fanout => (1, None, vec![Behavior::Fast; if smoke { 20 } else { 1_000 }]),
        Scenario::SlowEndpoint => {
            let mut endpoints = vec![Behavior::Fast; 10];
            if !cli.baseline {
                endpoints.push(Behavior::Hang);
            }
            // 30 s: twice the hanging endpoint's 15 s timeout, so its
            // sends time out and are retried during the measurement.
            (
                if smoke { 50 } else { 6_000 },
                Some(if smoke { 100 } else { 200 }),
                endpoints,
            )
        }
        // No server and no events: wrk does the posting.
        Scenario::Ceiling => (0, None, vec![Behavior::Fast]),
        // Planned by their own functions (see `retry_punctuality`, the
        // `prepared` and `shapes` modules).
        Scenario::RetryPunctuality
        | Scenario::BigDb
        | Scenario::Lists
        | Scenario::Drain
        | Scenario::Burst
        | Scenario::ManyTenants
        | Scenario::Ordered
        | Scenario::Inbox => (0, None, Vec::new()),
        Scenario::Mixed => {
            let count = if smoke { 10 } else { 100 };
            let mut endpoints = vec![Behavior::Fast; count];
            endpoints[0] = Behavior::Fail;
            (
                if smoke { 50 } else { 2_000 },
                Some(if smoke { 100 } else { 200 }),
                endpoints,
            )
        }
    };
    let concurrency = match cli.scenario {
        Scenario::Throughput if !smoke => 64,
        _ => 32,
    };
    Plan {
        events: cli.events.unwrap_or(events),
        concurrency: cli.concurrency.unwrap_or(concurrency),
        rate: cli.rate.or(rate),
        endpoints,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ensure!(
        !cli.baseline || matches!(cli.scenario, Scenario::SlowEndpoint | Scenario::Drain),
        "--baseline applies to slow-endpoint and drain only"
    );
    // The ceiling first, so the scenario's own load cannot lower it.
    let ceiling_per_s = if cli.with_ceiling && cli.scenario != Scenario::Ceiling {
        let (sink, sink_addr) = start_sink().await?;
        ceiling(&cli, &sink, sink_addr).await?["requests_per_s"].as_f64()
    } else {
        None
    };
    let mut report = run(&cli).await?;
    if let (Some(ceiling_per_s), Some(fields)) = (ceiling_per_s, report.as_object_mut()) {
        let fractions: Vec<(String, Value)> = fields
            .iter()
            .filter(|(name, _)| name.ends_with("_per_s"))
            .filter_map(|(name, value)| {
                Some((
                    format!("{name}_of_ceiling"),
                    json!(round(value.as_f64()? / ceiling_per_s)),
                ))
            })
            .collect();
        fields.insert("ceiling_requests_per_s".to_owned(), json!(round(ceiling_per_s)));
        fields.extend(fractions);
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    // (`big-db` and `lists` deliver nothing, so they have neither.)
    if cli.smoke {
        ensure!(
            report.get("missing").is_none_or(|missing| missing == 0),
            "smoke run: deliveries missing"
        );
        ensure!(
            report.get("signature_failures").is_none_or(|bad| bad == 0),
            "smoke run: bad webhook signatures"
        );
    }
    Ok(())
}

/// `wrk` against the sink alone, with one real signed delivery as the body:
/// every request is verified exactly as a delivery is.
async fn ceiling(cli: &Cli, sink: &Sink, sink_addr: SocketAddr) -> anyhow::Result<Value> {
    let secret = signhook_verify::WebhookSecret::from_bytes(&[7; 32]);
    let secret_text = secret.expose().to_owned();
    sink.verifiers
        .write()
        .expect("no panics hold this lock")
        .insert(0, (signhook_verify::Webhook::new(&secret_text)?, Behavior::Fast));
    let id = "evt_01a2000000007000800000000000ceil";
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let body = json!({
        "id": id, "type": "signer.done", "created_at": "2026-11-22T10:04:05.123Z", "sandbox": false,
        "scope": "public_api", "workspace_id": "ws_01a2000000007000800000000000wksp",
        "subscription": {"id": "wh_01a2000000007000800000000000hook", "description": ""},
        "data": {"i": 1}
    })
    .to_string();
    let signature = signhook_verify::sign(&secret, id, timestamp, body.as_bytes());
    let script = tempfile::NamedTempFile::new()?;
    std::fs::write(
        script.path(),
        format!(
            "wrk.method = \"POST\"\nwrk.body = {body:?}\nwrk.headers[\"content-type\"] = \"application/json\"\n\
             wrk.headers[\"webhook-id\"] = \"{id}\"\nwrk.headers[\"webhook-timestamp\"] = \"{timestamp}\"\n\
             wrk.headers[\"webhook-signature\"] = \"{signature}\"\n"
        ),
    )?;
    let seconds = if cli.smoke { 1 } else { 10 };
    // Beside another scenario (`--with-ceiling`), the ceiling's own
    // default connections, whatever that scenario's.
    let connections = match cli.scenario {
        Scenario::Ceiling => plan(cli).concurrency,
        _ => 32,
    };
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .arg("-s")
        .arg(script.path())
        .arg(format!("http://{sink_addr}/s/0"))
        .output()
        .context("running wrk (install it: apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests_per_s: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rest| rest.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output: {text}"))?;
    Ok(json!({
        "scenario": "ceiling",
        "tool": "wrk -t2",
        "connections": connections,
        "seconds": seconds,
        "requests_per_s": round(requests_per_s),
        "requests_verified": sink.requests.load(Ordering::Relaxed) - sink.bad_signatures.load(Ordering::Relaxed),
        "signature_failures": sink.bad_signatures.load(Ordering::Relaxed),
        "missing": 0,
    }))
}

/// The `signhook` servers of a run, on a fresh database (or the prepared
/// one of `--db-dir`), with what they were started with.
struct Servers {
    nodes: Vec<Node>,
    db_args: Vec<String>,
    /// The flags every node is started with.
    server_args: Vec<String>,
    bin: PathBuf,
    dir: PathBuf,
    // Removes the SQLite file and blobs when the run ends, unless the
    // database is a prepared one.
    _temporary: Option<tempfile::TempDir>,
}

impl Servers {
    /// Starts `cli.nodes` servers with `extra` flags, on a fresh database
    /// or on `--db-dir`'s.
    async fn start(cli: &Cli, extra: &[&str]) -> anyhow::Result<Self> {
        let mut servers = Self::prepare(cli, extra)?;
        servers.restart(cli.nodes)?;
        Ok(servers)
    }

    /// What [`Servers::start`] would run, with no node started yet.
    fn prepare(cli: &Cli, extra: &[&str]) -> anyhow::Result<Self> {
        if cli.nodes > 1 && cli.database_url.is_none() {
            bail!("--nodes above 1 needs --database-url postgres://…: SQLite serves one node");
        }
        let bin = server_binary(cli)?;
        let (dir, temporary) = match &cli.db_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                (dir.clone(), None)
            }
            None => {
                let temporary = tempfile::tempdir()?;
                (temporary.path().to_owned(), Some(temporary))
            }
        };
        let mut db_args = vec!["--data-dir".to_owned(), dir.display().to_string()];
        if let Some(url) = &cli.database_url {
            db_args.extend(["--database-url".to_owned(), url.clone()]);
        }
        let mut server_args = db_args.clone();
        server_args.extend(extra.iter().map(|a| (*a).to_owned()));
        Ok(Self {
            nodes: Vec::new(),
            db_args,
            server_args,
            bin,
            dir,
            _temporary: temporary,
        })
    }

    /// Stops every node (`kill -9`: what was acknowledged is on disk).
    fn stop(&mut self) {
        self.nodes.clear();
    }

    /// Starts `nodes` nodes on the database (after [`Servers::stop`]).
    fn restart(&mut self, nodes: usize) -> anyhow::Result<()> {
        self.nodes = (0..nodes)
            .map(|i| Node::start(&self.bin, &self.server_args, &format!("bench_{i}")))
            .collect::<anyhow::Result<_>>()?;
        Ok(())
    }

    /// A new tenant (`signhook admin create-tenant`); its live key.
    fn tenant(&self, name: &str) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .args(["admin", "create-tenant", "--name", name])
            .args(&self.db_args)
            .output()?;
        ensure!(
            out.status.success(),
            "create-tenant failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tenant: Value = serde_json::from_slice(&out.stdout)?;
        Ok(tenant["live_key"].as_str().context("a live key")?.to_owned())
    }

    /// Every node's `POST /v1/events`.
    fn publish_urls(&self) -> Arc<Vec<String>> {
        Arc::new(self.nodes.iter().map(|n| n.url("/v1/events")).collect())
    }

    /// The largest resident memory of any node now, and at its peak, in MiB.
    fn rss_mib(&self) -> (f64, f64) {
        self.nodes
            .iter()
            .map(Node::rss_mib)
            .fold((0.0, 0.0), |(now, peak), (n, p)| (f64::max(now, n), f64::max(peak, p)))
    }
}

/// Creates a subscription of `key`'s tenant with `attributes`; the API's
/// answer (with its id and secret).
async fn create_subscription(
    client: &reqwest::Client,
    servers: &Servers,
    key: &str,
    attributes: Value,
) -> anyhow::Result<Value> {
    let response = client
        .post(servers.nodes[0].url("/v1/webhooks"))
        .bearer_auth(key)
        .json(&attributes)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(
        status == StatusCode::CREATED,
        "creating a subscription: {status} {body}"
    );
    Ok(body)
}

/// Subscribes `key`'s tenant to `signer.*` at the sink's path `index`,
/// which answers as `behavior`.
async fn subscribe(
    client: &reqwest::Client,
    servers: &Servers,
    key: &str,
    sink: &Sink,
    sink_addr: SocketAddr,
    index: usize,
    behavior: Behavior,
) -> anyhow::Result<String> {
    let created = create_subscription(
        client,
        servers,
        key,
        json!({"url": format!("http://{sink_addr}/s/{index}"), "subscribed_events": ["signer.*"]}),
    )
    .await?;
    let secret = created["secret"].as_str().context("a secret")?;
    sink.verifiers
        .write()
        .expect("no panics hold this lock")
        .insert(index, (signhook_verify::Webhook::new(secret)?, behavior));
    Ok(created["id"].as_str().context("an id")?.to_owned())
}

/// What a run of publishes left: when each event's publish call began, by
/// event id, and how long each call took until the API acknowledged it
/// (the 201, which means the event is on disk).
pub(crate) struct Published {
    pub(crate) begun: HashMap<String, Instant>,
    pub(crate) ack_ms: Vec<f64>,
}

/// Publishing: `events` events of `key`'s tenant over `concurrency`
/// connections, at `rate` per second in all when given.
async fn publish(
    client: &reqwest::Client,
    urls: Arc<Vec<String>>,
    key: &str,
    events: usize,
    concurrency: usize,
    rate: Option<f64>,
) -> anyhow::Result<Published> {
    publish_as(client, urls, Arc::new(vec![key.to_owned()]), events, concurrency, rate).await
}

/// As [`publish`], the `i`-th event by the tenant of `keys[i % keys.len()]`.
async fn publish_as(
    client: &reqwest::Client,
    urls: Arc<Vec<String>>,
    keys: Arc<Vec<String>>,
    events: usize,
    concurrency: usize,
    rate: Option<f64>,
) -> anyhow::Result<Published> {
    let started: Arc<Mutex<Vec<(String, Instant, f64)>>> = Arc::new(Mutex::new(Vec::with_capacity(events)));
    let (client, recorded) = (client.clone(), started.clone());
    paced(events, concurrency, rate, move |i| {
        let (client, urls, keys, started) = (client.clone(), urls.clone(), keys.clone(), recorded.clone());
        async move {
            let begun = Instant::now();
            let event = json!({"type": "signer.done", "data": signer_done_data(i)});
            let response = post_event(&client, &urls[i % urls.len()], &keys[i % keys.len()], &event).await?;
            let event: Value = response.json().await?;
            let acked = begun.elapsed().as_secs_f64() * 1000.0;
            let id = event["id"].as_str().context("an event id")?.to_owned();
            started
                .lock()
                .expect("no panics hold this lock")
                .push((id, begun, acked));
            Ok(())
        }
    })
    .await?;
    let started = std::mem::take(&mut *started.lock().expect("no panics hold this lock"));
    let ack_ms = started.iter().map(|(_, _, acked)| *acked).collect();
    let begun = started.into_iter().map(|(id, begun, _)| (id, begun)).collect();
    Ok(Published { begun, ack_ms })
}

/// `POST /v1/events` of `event` as `key`'s tenant, which must answer 201.
async fn post_event(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    event: &Value,
) -> anyhow::Result<reqwest::Response> {
    let response = client.post(url).bearer_auth(key).json(event).send().await?;
    ensure!(
        response.status() == StatusCode::CREATED,
        "publish answered {}",
        response.status()
    );
    Ok(response)
}

/// Runs `job(i)` for every `i` in `0..count` over `concurrency` workers,
/// each taking the next `i` when its job is done; at `rate` per second in
/// all when given (each worker ticks at its share of it, the workers' ticks
/// spread evenly), flat out otherwise. The first error ends the run.
async fn paced<F, Fut>(count: usize, concurrency: usize, rate: Option<f64>, job: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let interval = rate.map(|rate| Duration::from_secs_f64(concurrency as f64 / rate));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (job, next) = (job.clone(), next.clone());
        workers.spawn(async move {
            let mut ticker = interval.map(|every| {
                let mut t = tokio::time::interval_at(
                    tokio::time::Instant::now() + every.mul_f64(worker as f64 / concurrency as f64),
                    every,
                );
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                t
            });
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                }
                job(i).await?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

/// Waits until the sink has `expected` first arrivals (or the run's
/// patience ends), noting the peak of `rss_mib` (the servers' memory, or
/// the inbox's) meanwhile.
async fn wait_for_arrivals(cli: &Cli, sink: &Sink, rss_mib: impl Fn() -> f64, expected: usize) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(cli.wait_seconds);
    let mut peak_rss: f64 = 0.0;
    loop {
        peak_rss = peak_rss.max(rss_mib());
        let arrived = sink.arrivals.lock().expect("no panics hold this lock").len();
        if arrived >= expected || Instant::now() > deadline {
            return peak_rss;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// p50, p90, p99 and max of `values`, rounded.
fn distribution(values: &mut [f64]) -> Value {
    values.sort_by(f64::total_cmp);
    json!({
        "p50": round(percentile(values, 50.0)),
        "p90": round(percentile(values, 90.0)),
        "p99": round(percentile(values, 99.0)),
        "max": round(values.last().copied().unwrap_or(0.0)),
    })
}

/// The sink, listening on 127.0.0.1.
async fn start_sink() -> anyhow::Result<(Arc<Sink>, SocketAddr)> {
    let sink = Arc::new(Sink::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/s/{index}", axum::routing::post(receive))
        .with_state(sink.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((sink, sink_addr))
}

/// `"sqlite"` or `"postgres"`: what the run's servers store in.
fn backend_name(cli: &Cli) -> &'static str {
    if cli.database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

async fn run(cli: &Cli) -> anyhow::Result<Value> {
    let (sink, sink_addr) = start_sink().await?;
    match cli.scenario {
        Scenario::Ceiling => return ceiling(cli, &sink, sink_addr).await,
        Scenario::RetryPunctuality => return retry_punctuality(cli, &sink, sink_addr).await,
        Scenario::BigDb => return prepared::big_db(cli).await,
        Scenario::Lists => return prepared::lists(cli).await,
        Scenario::Drain => return prepared::drain(cli, &sink, sink_addr).await,
        Scenario::Burst => return shapes::burst(cli, &sink, sink_addr).await,
        Scenario::ManyTenants => return shapes::many_tenants(cli, &sink, sink_addr).await,
        Scenario::Ordered => return ordered::ordered(cli, &sink, sink_addr).await,
        Scenario::Inbox => return inbox::inbox(cli, &sink, sink_addr).await,
        _ => {}
    }
    let plan = plan(cli);
    let servers = Servers::start(cli, &[]).await?;
    let key = servers.tenant("bench")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = servers.rss_mib().0;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency)
        .build()?;
    for (index, behavior) in plan.endpoints.iter().enumerate() {
        subscribe(&client, &servers, &key, &sink, sink_addr, index, *behavior).await?;
    }

    let publish_start = Instant::now();
    let Published {
        begun: started,
        mut ack_ms,
    } = publish(
        &client,
        servers.publish_urls(),
        &key,
        plan.events,
        plan.concurrency,
        plan.rate.map(|r| r as f64),
    )
    .await?;
    let publish_seconds = publish_start.elapsed().as_secs_f64();

    // Wait for every delivery to the answering endpoints.
    let answering = plan.endpoints.iter().filter(|b| **b == Behavior::Fast).count();
    let expected = plan.events * answering;
    let peak_rss = wait_for_arrivals(cli, &sink, || servers.rss_mib().1, expected).await;
    let arrivals = sink.arrivals.lock().expect("no panics hold this lock").clone();
    let mut latencies = Vec::with_capacity(arrivals.len());
    let mut duplicates = 0u64;
    let mut last_arrival = publish_start;
    for ((id, _), (at, count)) in &arrivals {
        duplicates += u64::from(count - 1);
        last_arrival = last_arrival.max(*at);
        if let Some(begun) = started.get(id) {
            latencies.push(at.saturating_duration_since(*begun).as_secs_f64() * 1000.0);
        }
    }
    let span = last_arrival
        .saturating_duration_since(publish_start)
        .as_secs_f64()
        .max(f64::EPSILON);
    Ok(json!({
        "scenario": cli.scenario.to_possible_value().map(|v| v.get_name().to_owned()),
        "baseline": cli.baseline,
        "backend": backend_name(cli),
        "nodes": cli.nodes,
        "subscriptions": plan.endpoints.len(),
        "publishers": plan.concurrency,
        "events_published": plan.events,
        "publish_seconds": round(publish_seconds),
        "events_accepted_per_s": round(plan.events as f64 / publish_seconds),
        "deliveries": arrivals.len(),
        "deliveries_per_s": round(arrivals.len() as f64 / span),
        "latency_ms": distribution(&mut latencies),
        "publish_ack_ms": distribution(&mut ack_ms),
        "signature_failures": sink.bad_signatures.load(Ordering::Relaxed),
        "duplicates": duplicates,
        "missing": expected.saturating_sub(arrivals.len()),
        "server_idle_rss_mib": round(idle_rss),
        "server_peak_rss_mib": round(peak_rss),
    }))
}

/// `retry-punctuality`. First the run measures what it compares against:
/// the deliveries per second one subscription of a busy tenant takes, as
/// in `throughput`. Then that tenant publishes steadily at `--load` of it
/// (or at `--rate`) for `--seconds`, while a second tenant publishes
/// `--retrying-rate` events a second to an endpoint that fails
/// `--fail-share` of its first attempts; the server retries `--retry-ms`
/// (±20 %) later. How late each retry left is read from the server's own
/// delivery log (`started_at - scheduled_at` of the retry), and,
/// independently, seen at the sink: the gap from the failed first attempt
/// to the retry's arrival.
async fn retry_punctuality(cli: &Cli, sink: &Arc<Sink>, sink_addr: SocketAddr) -> anyhow::Result<Value> {
    ensure!(
        cli.load > 0.0 && cli.load <= 1.0,
        "--load is a fraction of the measured throughput, in (0, 1]"
    );
    ensure!(
        (0.0..=1.0).contains(&cli.fail_share),
        "--fail-share is a fraction, in [0, 1]"
    );
    ensure!(cli.retrying_rate > 0.0, "--retrying-rate must be above 0");
    sink.fail_per_mille
        .store((cli.fail_share * 1000.0).round() as u64, Ordering::Relaxed);
    let schedule = format!("{}ms", cli.retry_ms);
    let servers = Servers::start(cli, &["--retry-schedule", &schedule]).await?;
    let busy = servers.tenant("busy")?;
    let retrying = servers.tenant("retrying")?;
    let publishers = cli.concurrency.unwrap_or(64);
    let client = reqwest::Client::builder().pool_max_idle_per_host(publishers).build()?;
    subscribe(&client, &servers, &busy, sink, sink_addr, 0, Behavior::Fast).await?;
    let retrying_hook = subscribe(
        &client,
        &servers,
        &retrying,
        sink,
        sink_addr,
        1,
        Behavior::FailFirstAttempts,
    )
    .await?;

    // The capacity the load is a fraction of, unless a fixed --rate makes it
    // moot (and the server then starts the steady phase fresh, as after a
    // restart).
    let probe_events = match (cli.rate, cli.smoke) {
        (Some(_), _) => 0,
        (None, true) => 200,
        (None, false) => 10_000,
    };
    let capacity = if probe_events > 0 {
        let probe_start = Instant::now();
        publish(&client, servers.publish_urls(), &busy, probe_events, publishers, None).await?;
        wait_for_arrivals(cli, sink, || servers.rss_mib().1, probe_events).await;
        let arrivals = sink.arrivals.lock().expect("no panics hold this lock");
        let last = arrivals.values().map(|(at, _)| *at).max().unwrap_or(probe_start);
        let span = last.saturating_duration_since(probe_start).as_secs_f64();
        Some(arrivals.len() as f64 / span.max(f64::EPSILON))
    } else {
        None
    };
    let rate = match (cli.rate, capacity) {
        (Some(rate), _) => rate as f64,
        (None, capacity) => capacity.unwrap_or_default() * cli.load,
    };
    let seconds = if cli.smoke { 2 } else { cli.seconds };

    // Steady traffic, and the retries in the middle of it.
    let (busy_events, retrying_events) = (
        (rate * seconds as f64).round() as usize,
        (cli.retrying_rate * seconds as f64).round() as usize,
    );
    let steady_start = Instant::now();
    let (busy_published, retrying_published) = tokio::join!(
        publish(
            &client,
            servers.publish_urls(),
            &busy,
            busy_events,
            publishers.min(busy_events.max(1)),
            (busy_events > 0).then_some(rate)
        ),
        publish(
            &client,
            servers.publish_urls(),
            &retrying,
            retrying_events,
            4,
            Some(cli.retrying_rate)
        ),
    );
    let (busy_published, retrying_published) = (busy_published?, retrying_published?);
    let steady_seconds = steady_start.elapsed().as_secs_f64();
    let expected = probe_events + busy_events + retrying_events;
    wait_for_arrivals(cli, sink, || servers.rss_mib().1, expected).await;

    let arrivals = sink.arrivals.lock().expect("no panics hold this lock").clone();
    let failed_first = sink.failed_first.lock().expect("no panics hold this lock").clone();
    let duplicates: u64 = arrivals.values().map(|(_, n)| u64::from(n - 1)).sum();
    let mut gaps: Vec<f64> = failed_first
        .iter()
        .filter_map(|(key, failed_at)| {
            arrivals
                .get(key)
                .map(|(at, _)| (*at - *failed_at).as_secs_f64() * 1000.0)
        })
        .collect();
    // The server's own record of each retry: when it was due, when it left.
    let mut lateness = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = client
            .get(servers.nodes[0].url(&format!("/v1/webhooks/{retrying_hook}/deliveries?limit=100{cursor}")))
            .bearer_auth(&retrying)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for delivery in page["data"].as_array().context("a page")? {
            if delivery["attempt_count"].as_u64().unwrap_or(0) < 2 {
                continue;
            }
            let id = delivery["id"].as_str().context("a delivery id")?;
            let full: Value = client
                .get(servers.nodes[0].url(&format!("/v1/deliveries/{id}")))
                .bearer_auth(&retrying)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let retry = &full["attempts"][1];
            let (Some(due), Some(left)) = (retry["scheduled_at"].as_str(), retry["started_at"].as_str()) else {
                continue; // a server that does not record when attempts were due
            };
            let late = chrono::DateTime::parse_from_rfc3339(left)? - chrono::DateTime::parse_from_rfc3339(due)?;
            lateness.push(late.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    Ok(json!({
        "scenario": "retry-punctuality",
        "backend": backend_name(cli),
        "nodes": cli.nodes,
        "capacity_deliveries_per_s": capacity.map(round),
        "load": if cli.rate.is_some() { Value::Null } else { json!(cli.load) },
        "busy_rate_per_s": round(rate),
        "busy_events_accepted_per_s": round(busy_published.begun.len() as f64 / steady_seconds),
        "retrying_rate_per_s": cli.retrying_rate,
        "fail_share": cli.fail_share,
        "retry_schedule_ms": cli.retry_ms,
        "steady_seconds": round(steady_seconds),
        "retries": failed_first.len(),
        "retries_recorded": lateness.len(),
        "lateness_ms": distribution(&mut lateness),
        "retry_gap_ms": distribution(&mut gaps),
        "deliveries": arrivals.len(),
        "signature_failures": sink.bad_signatures.load(Ordering::Relaxed),
        "duplicates": duplicates,
        "missing": expected.saturating_sub(arrivals.len()),
        "retrying_events_published": retrying_published.begun.len(),
    }))
}

/// A `signer.done` `data` that satisfies the type's schema (the server
/// checks published built-in types against the catalog's), numbered `i`.
fn signer_done_data(i: usize) -> serde_json::Value {
    json!({
        "i": i,
        "signature_request": {
            "id": "sr_01936f0e7c4a7b2e9d1f0a3b5c6d7e8f", "name": "Bench", "status": "ongoing", "sequence": 2,
            "expires_at": "2026-12-22T10:00:00.000Z", "ordered_signers": false, "metadata": {}
        },
        "signer": {
            "id": "sg_01936f0e7c4a7b2e9d1f0a3b5c6d7e90", "name": "Ada Lovelace", "email": "ada@example.com",
            "status": "done", "notified_at": "2026-11-22T10:00:00.000Z", "link_opened_at": null,
            "signed_at": "2026-11-22T10:04:05.123Z", "declined_at": null, "typed_name": "Ada Lovelace"
        }
    })
}
