//! The one test harness: `TestApp::spawn()` runs the real server on port 0
//! over a fresh SQLite file, with typed helpers per route; `Receiver` is a
//! real HTTP endpoint on 127.0.0.1 that records what it gets and answers as
//! scripted; `BinaryServer` runs the real `signhook` binary for tests that
//! must kill a process.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use signhook_core::netguard::Cidr;
use signhook_core::policy::DisablePolicy;
use signhook_core::retry::RetryPolicy;
use signhook_core::time::ShiftedClock;
use signhook_server::{Application, Settings};
pub use signhook_testkit::{done_when, eventually, eventually_within, on_both_backends, Backend, PgServer, PATIENCE};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A millisecond retry schedule: 3 retries, so 4 attempts in all.
pub fn fast_schedule() -> RetryPolicy {
    RetryPolicy::new(vec![Duration::from_millis(20); 3], 0.2)
}

/// A tenant's credentials.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub live_key: String,
    pub test_key: String,
}

/// A fresh database of either backend: a SQLite file in a temp dir, or a new
/// database on the shared test PostgreSQL.
pub struct Database {
    pub dir: tempfile::TempDir,
    pub url: Option<String>,
}

impl Database {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgServer::shared().create_database().await),
        };
        Self { dir, url }
    }

    pub async fn open_store(&self) -> signhook_store::Store {
        signhook_server::open_store(self.url.as_deref(), self.dir.path(), None)
            .await
            .expect("the store opens")
    }

    /// Runs raw SQL against the database (to inject a failure).
    pub async fn execute(&self, sql: &str) -> Result<(), String> {
        let file = self.dir.path().join(signhook_store::SQLITE_FILE);
        signhook_testkit::execute_sql(self.url.as_deref(), &file, sql)
            .await
            .map_err(|e| e.to_string())
    }

    /// The first column of every row `sql` selects, as text.
    pub async fn query_texts(&self, sql: &str) -> Vec<String> {
        let file = self.dir.path().join(signhook_store::SQLITE_FILE);
        signhook_testkit::query_texts(self.url.as_deref(), &file, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// `--data-dir DIR` and, on PostgreSQL, `--database-url URL`.
    pub fn cli_args(&self) -> Vec<String> {
        let mut args = vec!["--data-dir".to_owned(), self.dir.path().display().to_string()];
        if let Some(url) = &self.url {
            args.extend(["--database-url".to_owned(), url.clone()]);
        }
        args
    }

    /// Creates a tenant the way `signhook admin create-tenant` does.
    pub async fn create_tenant(&self, name: &str) -> Tenant {
        self.create_tenant_with_admin(name, None).await
    }

    pub async fn create_tenant_with_admin(&self, name: &str, admin_email: Option<&str>) -> Tenant {
        let store = self.open_store().await;
        let created = store
            .create_tenant_with_admin(name, admin_email, chrono::Utc::now())
            .await
            .expect("a tenant");
        store.close().await;
        Tenant {
            id: created.tenant_id.to_string(),
            live_key: created.live_key,
            test_key: created.test_key,
        }
    }
}

/// The real server, in-process, on a random port and its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: Database,
    pub client: reqwest::Client,
    pub tenant: Tenant,
    /// The server's clock: `clock.advance(…)` jumps over deadlines.
    pub clock: Arc<ShiftedClock>,
    /// The server's own store (its connections), for setting up what a
    /// test needs beside the running server without a second SQLite writer.
    pub store: signhook_store::Store,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Sends the in-process servers' warnings and errors (a 500's cause among
/// them) to libtest's capture, which prints them beside a failed test's
/// assertion and hides them for a passing one. `RUST_LOG` picks more.
fn keep_server_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        // Fails only if a subscriber is already set, which is as good.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Options for [`TestApp::spawn_with`].
pub struct Options {
    pub backend: Backend,
    pub dev: bool,
    pub retry_policy: RetryPolicy,
    pub request_timeout: Duration,
    pub disable_policy: DisablePolicy,
    pub scheduler_interval: Duration,
    pub allowed_endpoint_ranges: Vec<Cidr>,
    pub smtp: Option<(String, String)>,
    pub admin_email: Option<String>,
    pub link_ttl: Duration,
    pub blob_url: Option<String>,
    pub per_subscription_in_flight: usize,
    pub api_rate_limit: Option<std::num::NonZeroU32>,
    pub portal_frame_ancestors: Option<String>,
}

impl Options {
    pub fn on(backend: Backend) -> Self {
        Self {
            backend,
            dev: true,
            retry_policy: fast_schedule(),
            request_timeout: Duration::from_secs(5),
            disable_policy: DisablePolicy::default(),
            scheduler_interval: Duration::from_millis(50),
            allowed_endpoint_ranges: Vec::new(),
            smtp: None,
            admin_email: None,
            link_ttl: Duration::from_secs(30 * 60),
            blob_url: None,
            per_subscription_in_flight: 10,
            api_rate_limit: std::num::NonZeroU32::new(1000),
            portal_frame_ancestors: None,
        }
    }
}

impl TestApp {
    /// The server in `--dev` mode (tests' receivers are http://127.0.0.1)
    /// with a millisecond retry schedule.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(Options::on(backend)).await
    }

    pub async fn spawn_with(options: Options) -> Self {
        let db = Database::new(options.backend).await;
        let tenant = db
            .create_tenant_with_admin("Acme", options.admin_email.as_deref())
            .await;
        Self::spawn_on(db, tenant, options).await
    }

    /// The server on a database the test prepared, with `tenant` in it.
    pub async fn spawn_on(db: Database, tenant: Tenant, options: Options) -> Self {
        keep_server_logs();
        let mut settings = Settings::new(db.dir.path().to_owned());
        settings.disable_policy = options.disable_policy;
        settings.scheduler_interval = options.scheduler_interval;
        settings.api_rate_limit = options.api_rate_limit;
        settings.allowed_endpoint_ranges = options.allowed_endpoint_ranges;
        settings.smtp = options.smtp;
        settings.database_url = db.url.clone();
        settings.listen = "127.0.0.1:0".parse().unwrap();
        settings.dev = options.dev;
        settings.retry_policy = options.retry_policy;
        settings.request_timeout = options.request_timeout;
        settings.link_ttl = options.link_ttl;
        settings.blob_url = options.blob_url;
        settings.per_subscription_in_flight = options.per_subscription_in_flight;
        settings.portal_frame_ancestors = options.portal_frame_ancestors;
        // The test binary is not `signhook`: PDF jobs go to the real one.
        settings.pdf_worker = PathBuf::from(env!("CARGO_BIN_EXE_signhook"));
        let clock = Arc::new(ShiftedClock::default());
        let app = Application::build(settings, clock.clone())
            .await
            .expect("the server builds");
        let addr = app.local_addr();
        let store = app.store().clone();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move { app.run(token).await.expect("the server runs and stops cleanly") });
        Self {
            addr,
            db,
            client: reqwest::Client::new(),
            tenant,
            clock,
            store,
            shutdown,
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Another tenant on the same server.
    pub async fn other_tenant(&self) -> Tenant {
        self.db.create_tenant("Other").await
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path)).bearer_auth(key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.expect("the server answers");
        read(response).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, &self.tenant.live_key, None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, &self.tenant.live_key, Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::PATCH, path, &self.tenant.live_key, Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::DELETE, path, &self.tenant.live_key, None)
            .await
    }

    /// Creates a subscription to `url` with extra attributes; panics unless 201.
    pub async fn create_webhook(&self, url: &str, attributes: Value) -> Value {
        let mut body = json!({ "url": url });
        merge(&mut body, attributes);
        let (status, webhook) = self.post("/v1/webhooks", body).await;
        assert_eq!(status, StatusCode::CREATED, "{webhook}");
        webhook
    }

    /// Publishes an event; panics unless 201.
    pub async fn publish(&self, event_type: &str, data: Value) -> Value {
        let (status, event) = self
            .post("/v1/events", json!({ "type": event_type, "data": data }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{event}");
        event
    }

    /// The deliveries of a subscription (newest first), optionally of one status.
    pub async fn deliveries(&self, webhook_id: &str, status: Option<&str>) -> Vec<Value> {
        let path = match status {
            Some(s) => format!("/v1/webhooks/{webhook_id}/deliveries?status={s}&limit=100"),
            None => format!("/v1/webhooks/{webhook_id}/deliveries?limit=100"),
        };
        let (code, body) = self.get(&path).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        body["data"].as_array().unwrap().clone()
    }

    /// Polls a delivery until it leaves `pending`; returns it with its attempts.
    pub async fn wait_until_settled(&self, delivery_id: &str) -> Value {
        self.wait_until(&format!("/v1/deliveries/{delivery_id}"), |d| d["status"] != "pending")
            .await
    }

    /// Polls `path` until `done` holds for its body; returns the body.
    pub async fn wait_until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        eventually(format_args!("{path} to reach the expected state"), || async {
            let (status, body) = self.get(path).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            done_when(done(&body), body)
        })
        .await
    }

    /// Waits until no delivery of `webhook_id` is pending: none is in
    /// flight or waiting, so moving the clock jumps over no lease.
    pub async fn wait_until_none_pending(&self, webhook_id: &str) {
        eventually(format_args!("no pending delivery to {webhook_id}"), || async {
            let pending = self.deliveries(webhook_id, Some("pending")).await.len();
            done_when(pending == 0, format!("{pending} pending"))
        })
        .await;
    }

    /// The single delivery of `webhook_id`, once it exists.
    pub async fn only_delivery(&self, webhook_id: &str) -> Value {
        let deliveries = self.deliveries(webhook_id, None).await;
        assert_eq!(deliveries.len(), 1, "{deliveries:?}");
        deliveries[0].clone()
    }

    /// Stops the server the way SIGTERM would; hands back its database for
    /// inspection.
    pub async fn stop(mut self) -> Database {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("the server task ends without panicking");
        }
        let placeholder = Database {
            dir: tempfile::tempdir().expect("a temp dir"),
            url: None,
        };
        std::mem::replace(&mut self.db, placeholder)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let text = response.text().await.expect("a readable body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

pub fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        for (k, v) in extra {
            target.insert(k, v);
        }
    }
}

/// A valid `data` for the built-in type `event_type` (its catalog
/// example, which satisfies the type's schema) with `extra` merged in,
/// object into object: what a test publishes of a built-in type now that
/// `POST /v1/events` checks `data` against the type's schema.
pub fn lifecycle_data(event_type: &str, extra: Value) -> Value {
    fn deep_merge(target: &mut Value, extra: Value) {
        match (target, extra) {
            (Value::Object(target), Value::Object(extra)) => {
                for (k, v) in extra {
                    match target.get_mut(&k) {
                        Some(existing) if existing.is_object() && v.is_object() => deep_merge(existing, v),
                        _ => {
                            target.insert(k, v);
                        }
                    }
                }
            }
            (target, extra) => *target = extra,
        }
    }
    let mut data = signhook_core::catalog::lookup(event_type)
        .unwrap_or_else(|| panic!("{event_type} is not a built-in type"))
        .example_data();
    deep_merge(&mut data, extra);
    data
}

/// What a receiver answers.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// A status with extra response headers.
    WithHeaders(u16, &'static [(&'static str, &'static str)]),
    /// Accept the request and never answer.
    Hang,
    /// This status to the first attempt of each event (by `webhook-id`),
    /// 200 to every later one.
    FirstAttemptOfEach(u16),
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header"))
    }
}

struct ReceiverState {
    received: Mutex<Vec<(Received, std::time::Instant)>>,
    script: Mutex<VecDeque<Reply>>,
    then: Mutex<Reply>,
}

/// A real HTTP endpoint on 127.0.0.1.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
    shutdown: CancellationToken,
}

impl Receiver {
    /// Answers 200 to everything.
    pub async fn start() -> Self {
        Self::scripted(vec![], Reply::Status(200)).await
    }

    /// Answers with `script` in order, then `then` forever.
    pub async fn scripted(script: Vec<Reply>, then: Reply) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(listener, script, then)
    }

    /// Serves on a listener the test already bound (to know the port early).
    pub fn on(listener: tokio::net::TcpListener, script: Vec<Reply>, then: Reply) -> Self {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ReceiverState {
            received: Mutex::new(Vec::new()),
            script: Mutex::new(script.into()),
            then: Mutex::new(then),
        });
        let handler_state = state.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let state = handler_state.clone();
            async move {
                let then = *state.then.lock().unwrap();
                let reply = state.script.lock().unwrap().pop_front().unwrap_or(then);
                let first_attempt = {
                    let mut received = state.received.lock().unwrap();
                    let id = headers.get("webhook-id");
                    let first = !received.iter().any(|(r, _)| r.headers.get("webhook-id") == id);
                    received.push((Received { headers, body }, std::time::Instant::now()));
                    first
                };
                let (code, extra): (u16, &[(&str, &str)]) = match reply {
                    Reply::Status(code) => (code, &[]),
                    Reply::WithHeaders(code, headers) => (code, headers),
                    Reply::Hang => std::future::pending().await,
                    Reply::FirstAttemptOfEach(code) if first_attempt => (code, &[]),
                    Reply::FirstAttemptOfEach(_) => (200, &[]),
                };
                let mut response = axum::response::IntoResponse::into_response((
                    StatusCode::from_u16(code).unwrap(),
                    format!("answered {code}"),
                ));
                for (name, value) in extra {
                    response.headers_mut().insert(*name, value.parse().unwrap());
                }
                response
            }
        });
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
                .unwrap();
        });
        Self { addr, state, shutdown }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state
            .received
            .lock()
            .unwrap()
            .iter()
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// When each request arrived.
    pub fn arrival_times(&self) -> Vec<std::time::Instant> {
        self.state.received.lock().unwrap().iter().map(|(_, at)| *at).collect()
    }

    /// From now on, answer with `reply` once the script is used up.
    pub fn set_reply(&self, reply: Reply) {
        *self.state.then.lock().unwrap() = reply;
    }

    /// The bodies of the requests of event type `event_type`.
    pub fn of_type(&self, event_type: &str) -> Vec<Value> {
        self.received()
            .iter()
            .map(Received::json)
            .filter(|e| e["type"] == event_type)
            .collect()
    }

    /// Waits until at least `n` requests arrived, and returns all of them.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        eventually(format_args!("{n} requests"), || async {
            let received = self.received();
            let count = received.len();
            if count >= n {
                Ok(received)
            } else {
                Err(format!("{count} requests"))
            }
        })
        .await
    }
}

impl Receiver {
    /// The `webhook-id`s received so far.
    pub fn ids_received(&self) -> std::collections::HashSet<String> {
        self.received()
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect()
    }

    /// Waits until every event id in `expected` was received.
    pub async fn wait_for_ids(&self, expected: &std::collections::HashSet<String>) {
        eventually(format_args!("all {} events", expected.len()), || async {
            let missing = expected.difference(&self.ids_received()).count();
            done_when(missing == 0, format!("{missing} missing"))
        })
        .await;
    }
}

/// A port on 127.0.0.1 that the test holds without listening on it: a
/// connection there is refused, as by an endpoint that is down, and no other
/// process can take the port meanwhile — so the test can later serve there
/// ([`ReservedPort::receiver`]) with nothing in between. (A port found free,
/// let go and bound again later may be taken by anyone in between.)
pub struct ReservedPort {
    socket: tokio::net::TcpSocket,
    pub addr: SocketAddr,
}

impl ReservedPort {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("a free port");
        let addr = socket.local_addr().expect("a bound socket has an address");
        Self { socket, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts listening on the port: a [`Receiver`] answering as scripted.
    pub fn receiver(self, script: Vec<Reply>, then: Reply) -> Receiver {
        Receiver::on(
            self.socket.listen(1024).expect("listening on the held port"),
            script,
            then,
        )
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The real `signhook` binary, started as a user would.
pub struct BinaryServer {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything the server wrote to stderr (its log), and the thread
    /// that reads it.
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl BinaryServer {
    /// Runs `signhook serve --listen 127.0.0.1:0 DATABASE ARGS…` and waits
    /// until it says where it listens.
    pub fn start(db: &Database, args: &[&str]) -> Self {
        Self::start_with_env(db, args, &[])
    }

    /// As [`BinaryServer::start`], with extra environment variables.
    pub fn start_with_env(db: &Database, args: &[&str], env: &[(String, String)]) -> Self {
        let mut command = Self::command(db, args);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        Self::launch(command)
    }

    /// As [`BinaryServer::start`], in a process allowed at most
    /// `open_files` open file descriptors (soft and hard limit alike), as
    /// a small machine or container would be.
    pub fn start_with_open_file_limit(db: &Database, args: &[&str], open_files: u64) -> Self {
        use std::os::unix::process::CommandExt;
        let mut command = Self::command(db, args);
        let limit = libc::rlimit {
            rlim_cur: open_files,
            rlim_max: open_files,
        };
        // SAFETY: only setrlimit, async-signal-safe, runs between fork and
        // exec.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Self::launch(command)
    }

    fn command(db: &Database, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_signhook"));
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(db.cli_args())
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    fn launch(mut command: Command) -> Self {
        let mut child = command.spawn().expect("the binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let keep = log.clone();
        let reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut kept = keep.lock().unwrap();
                kept.push_str(&line);
                kept.push('\n');
                drop(kept);
                if let Some(addr) = serving_address(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                // Keep draining so the server never blocks on a full pipe.
            }
        });
        let addr = rx.recv_timeout(PATIENCE).expect("the server reports its address");
        Self {
            child,
            addr,
            log,
            reader: Some(reader),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The node id the server said it runs as.
    pub fn node_id(&self) -> String {
        let log = self.log();
        let serving = log
            .lines()
            .find(|line| line.contains("signhook is serving"))
            .expect("the server said it is serving");
        let id = serving.split("node_id=").nth(1).expect("the line names the node id");
        // A text field is logged quoted.
        id.split_whitespace().next().unwrap().trim_matches('"').to_owned()
    }

    /// `POST path` with `body` as `key`'s tenant.
    pub async fn post(&self, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let request = reqwest::Client::new().post(self.url(path)).bearer_auth(key).json(&body);
        read(request.send().await.expect("the server answers")).await
    }

    /// `GET path` as `key`'s tenant.
    pub async fn get(&self, key: &str, path: &str) -> (StatusCode, Value) {
        let request = reqwest::Client::new().get(self.url(path)).bearer_auth(key);
        read(request.send().await.expect("the server answers")).await
    }

    /// A link made by another process (or node) pointed at this one: its
    /// path and query are what count, and the link key is in the database.
    pub fn relink(&self, link: &str) -> String {
        let url = url::Url::parse(link).unwrap();
        match url.query() {
            Some(query) => self.url(&format!("{}?{query}", url.path())),
            None => self.url(url.path()),
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL is delivered");
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        self.child.wait().unwrap()
    }

    /// SIGTERM, wait for the exit, and return the server's whole log.
    pub fn stop_and_read_log(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the log reader ends with the server");
        }
        let log = self.log.lock().unwrap();
        log.clone()
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in the server's `signhook is serving addr=…` log line, if
/// `line` is that line: how a test learns where a server started with
/// `--listen 127.0.0.1:0` listens.
pub fn serving_address(line: &str) -> Option<SocketAddr> {
    let rest = line
        .split("addr=")
        .nth(1)
        .filter(|_| line.contains("signhook is serving"))?;
    Some(
        rest.split_whitespace()
            .next()?
            .parse()
            .expect("the logged address parses"),
    )
}

/// Creates a tenant with `signhook admin create-tenant` on `db`; returns its
/// live key.
pub fn cli_tenant_key(db: &Database) -> String {
    let mut args: Vec<String> = ["admin", "create-tenant", "--name", "Acme"].map(String::from).to_vec();
    args.extend(db.cli_args());
    let out = run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tenant: Value = serde_json::from_slice(&out.stdout).unwrap();
    tenant["live_key"].as_str().unwrap().to_owned()
}

/// Runs `signhook ARGS…` to completion.
pub fn run_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_signhook"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// The workspace root (for committed files like docs/openapi.json).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An e-mail as the SMTP sink received it, its MIME structure taken apart.
#[derive(Debug)]
pub struct Mail {
    /// The top-level headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Each leaf part's `Content-Type` and decoded text (one part, the
    /// body itself, for a message that is not multipart).
    pub parts: Vec<(String, String)>,
}

impl Mail {
    /// Takes a raw message apart: headers, then the parts of a multipart
    /// body (one level), each decoded from base64 when so encoded.
    pub fn parse(raw: &str) -> Self {
        let (head, body) = raw.split_once("\n\n").unwrap_or((raw, ""));
        let headers = unfold_headers(head);
        let content_type = header_of(&headers, "content-type").unwrap_or_default();
        let parts = match content_type.split("boundary=").nth(1) {
            Some(boundary) => {
                let boundary = format!("--{}", boundary.trim_matches('"'));
                body.split(&boundary)
                    .skip(1)
                    .filter(|part| !part.starts_with("--"))
                    .map(|part| {
                        let (head, body) = part.trim_start_matches('\n').split_once("\n\n").unwrap_or((part, ""));
                        let headers = unfold_headers(head);
                        let kind = header_of(&headers, "content-type").unwrap_or_default();
                        (kind, decode_part(&headers, body))
                    })
                    .collect()
            }
            None => vec![(content_type.clone(), decode_part(&headers, body))],
        };
        Self { headers, parts }
    }

    /// The first line of the plain-text part that is a link.
    pub fn link(&self) -> String {
        let (_, text) = &self.parts[0];
        text.lines()
            .find(|line| line.starts_with("http://") || line.starts_with("https://"))
            .unwrap_or_else(|| panic!("no link in {text}"))
            .to_owned()
    }

    /// A top-level header's value, its RFC 2047 encoded words decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        header_of(&self.headers, name).map(|v| decode_words(&v))
    }
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`);
/// whitespace between two encoded words is dropped, as the RFC says.
fn decode_words(value: &str) -> String {
    use base64::Engine;
    let mut out = String::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, word) = rest.split_at(start);
        let parts: Vec<&str> = word[2..].splitn(3, '?').collect();
        let Some(end) = parts.get(2).and_then(|p| p.find("?=")) else {
            break;
        };
        if !(after_word && before.trim().is_empty()) {
            out.push_str(before);
        }
        let text = &parts[2][..end];
        let bytes = match parts[1].to_ascii_lowercase().as_str() {
            "b" => base64::engine::general_purpose::STANDARD
                .decode(text)
                .expect("an encoded word decodes"),
            _ => {
                let text = text.replace('_', " ");
                let mut bytes = Vec::new();
                let mut i = 0;
                let raw = text.as_bytes();
                while i < raw.len() {
                    if raw[i] == b'=' && i + 2 < raw.len() {
                        bytes.push(u8::from_str_radix(&text[i + 1..i + 3], 16).expect("a hex escape"));
                        i += 3;
                    } else {
                        bytes.push(raw[i]);
                        i += 1;
                    }
                }
                bytes
            }
        };
        out.push_str(&String::from_utf8(bytes).expect("a header is UTF-8"));
        rest = &parts[2][end + 2..];
        after_word = true;
    }
    out.push_str(rest);
    out
}

fn unfold_headers(head: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    headers
}

fn header_of(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

fn decode_part(headers: &[(String, String)], body: &str) -> String {
    use base64::Engine;
    match header_of(headers, "content-transfer-encoding").as_deref() {
        Some(encoding) if encoding.eq_ignore_ascii_case("base64") => {
            let compact: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .expect("a base64 part decodes");
            String::from_utf8(bytes).expect("a text part is UTF-8")
        }
        // Quoted-printable's soft breaks joined again.
        _ => body.replace("=\n", ""),
    }
}

/// A minimal SMTP server on 127.0.0.1 that accepts every message and keeps
/// its raw text: enough for lettre to deliver to.
pub struct SmtpSink {
    pub port: u16,
    messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let store = messages.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 sink ESMTP\r\n").await.ok();
                    let mut data: Option<String> = None;
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(body) = data.as_mut() {
                            if line == "." {
                                store.lock().unwrap().push(std::mem::take(body));
                                data = None;
                                write.write_all(b"250 queued\r\n").await.ok();
                            } else {
                                body.push_str(&line);
                                body.push('\n');
                            }
                            continue;
                        }
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250 sink\r\n",
                            "DATA" => {
                                data = Some(String::new());
                                b"354 go ahead\r\n"
                            }
                            // An address with "bounce" in it does not exist.
                            "RCPT" if line.contains("bounce") => b"550 5.1.1 no such user\r\n",
                            "QUIT" => {
                                write.write_all(b"221 bye\r\n").await.ok();
                                break;
                            }
                            _ => b"250 ok\r\n",
                        };
                        write.write_all(reply).await.ok();
                    }
                });
            }
        });
        Self { port, messages }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Waits for the message to `address` whose subject contains `subject`.
    pub async fn mail_to(&self, address: &str, subject: &str) -> Mail {
        eventually(format_args!("an e-mail to {address} about {subject}"), || async {
            let messages = self.messages.lock().unwrap().clone();
            let parsed: Vec<Mail> = messages.iter().map(|raw| Mail::parse(raw)).collect();
            let found = parsed.into_iter().find(|mail| {
                mail.header("to").is_some_and(|to| to.contains(address))
                    && mail.header("subject").is_some_and(|s| s.contains(subject))
            });
            found.ok_or(messages.len())
        })
        .await
    }

    /// Waits until a message arrived; returns all.
    pub async fn wait_for_message(&self) -> Vec<String> {
        eventually("an e-mail", || async {
            let messages = self.messages.lock().unwrap().clone();
            done_when(!messages.is_empty(), messages)
        })
        .await
    }
}

// --- The dashboard's users ---------------------------------------------

/// A dashboard user of the app's tenant with `role`, made as `signhook admin
/// create-user` makes one, through the server's own store; the JSON that
/// command prints. In process, which saves a process start per user; the
/// command itself runs in `dashboard::a_user_from_the_command_line…` and,
/// beside a busy server, in `dashboard::create_user_from_the_command_line…`.
pub async fn create_user(app: &TestApp, email: &str, role: &str) -> Value {
    create_user_for(app, &app.tenant.id, email, role).await
}

/// As [`create_user`], for any tenant of the app's database.
pub async fn create_user_for(app: &TestApp, tenant: &str, email: &str, role: &str) -> Value {
    let tenant = signhook_core::ids::TenantId::parse(tenant).expect("a tenant id");
    let role = signhook_core::auth::Role::parse(role).expect("admin or viewer");
    let now = signhook_core::time::Clock::now(app.clock.as_ref());
    let created = app
        .store
        .create_user(
            &tenant,
            &email.trim().to_lowercase(),
            role,
            now,
            now + signhook_server::pages::team::INVITATION_VALIDITY,
        )
        .await
        .expect("the user is created")
        .expect("the tenant exists");
    json!({
        "user_id": created.user.id.to_string(),
        "email": created.user.email,
        "role": created.user.role.as_str(),
        "set_password_url": app.url(&format!("/password/{}", created.link_token)),
    })
}

/// The one-time link of a user made by [`create_user`].
pub fn set_password_link(user: &Value) -> &str {
    user["set_password_url"]
        .as_str()
        .expect("create-user prints a set_password_url")
}

/// Opens a user's one-time link in the browser and sets their password:
/// they are logged in after.
pub async fn set_password_in(browser: &signhook_testkit::browser::Browser, link: &str, password: &str) {
    browser.open(link).await;
    browser.fill("#password", password).await;
    browser.fill("#confirm", password).await;
    browser.submit("#save").await;
}

/// A user of `role` made with the CLI, logged in to a fresh browser.
pub async fn signed_in_browser(app: &TestApp, email: &str, role: &str) -> signhook_testkit::browser::Browser {
    let user = create_user(app, email, role).await;
    let browser = signhook_testkit::browser::Browser::start().await;
    set_password_in(&browser, set_password_link(&user), "correct horse battery").await;
    browser
}

/// A dashboard session over plain HTTP: the session's cookie (`name=value`)
/// and its forms' CSRF token.
pub struct HttpSession {
    pub cookie: String,
    pub csrf: String,
}

/// The token of the first form on `html`.
pub fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a form with its CSRF token")
        .to_owned()
}

/// Sets the password of a user made by [`create_user`] (its JSON) at `base`
/// (the server that should answer) and reads the session that opens.
pub async fn http_session_of(base: &str, user: &Value) -> HttpSession {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let link = set_password_link(user);
    let path = &link[link.find("/password/").expect("a set-password link")..];
    let set = client
        .post(format!("{base}{path}"))
        .form(&[
            ("password", "a long enough secret"),
            ("confirm", "a long enough secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 303, "the password is set");
    let cookie = set.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = client
        .get(format!("{base}/webhooks"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    HttpSession {
        cookie,
        csrf: csrf_of(&html),
    }
}

/// A user of the app's tenant with `role`, signed in over plain HTTP.
pub async fn http_session(app: &TestApp, email: &str, role: &str) -> HttpSession {
    let user = create_user(app, email, role).await;
    http_session_of(&app.url(""), &user).await
}
