//! `signhook inbox` with real processes: a sender (the real `serve`, or
//! the test signing as a vendor would) → the real inbox binary → a real
//! app receiver on loopback.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use signhook_testkit::{done_when, eventually};
use signhook_verify::{sign, WebhookSecret};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const FORWARD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const FAST: &str = "50ms,50ms,50ms";

/// The real `signhook inbox` process.
struct InboxProcess {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    /// Everything it logged, shown when a test fails.
    log: Arc<Mutex<String>>,
}

impl InboxProcess {
    /// `signhook inbox --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0
    /// --data-dir DIR ARGS…`, once it says where it listens.
    fn start(data_dir: &Path, args: &[&str]) -> Self {
        Self::start_on(data_dir, "127.0.0.1:0", args)
    }

    /// As [`InboxProcess::start`], receiving on `listen`.
    fn start_on(data_dir: &Path, listen: &str, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_signhook"))
            .arg("inbox")
            .args(["--listen", listen, "--admin-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let keep = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                keep.lock().unwrap().push_str(&format!("{line}\n"));
                if line.contains("signhook inbox is receiving") {
                    let field = |name: &str| -> SocketAddr {
                        let rest = line.split(&format!(" {name}=")).nth(1).expect("the line names it");
                        rest.split_whitespace().next().unwrap().parse().unwrap()
                    };
                    if let Some(tx) = tx.take() {
                        let _ = tx.send((field("addr"), field("admin")));
                    }
                }
            }
        });
        let Ok((addr, admin)) = rx.recv_timeout(std::time::Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("the inbox did not start: {}", log.lock().unwrap());
        };
        Self {
            child,
            addr,
            admin,
            log,
        }
    }

    /// One source of the given scheme forwarding to `app`.
    fn with_source(data_dir: &Path, app: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            "--retry-schedule",
            FAST,
            "--source-path",
            "/hooks",
            "--secret",
            SECRET,
            "--forward-to",
            app,
        ];
        args.extend(extra);
        Self::start(data_dir, &args)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// `signhook inbox ARGS… --admin URL`, its JSON output.
    fn cli(&self, args: &[&str]) -> Value {
        let admin = self.admin_url();
        let out = run_cli(&[&["inbox"], args, &["--admin", &admin]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    async fn metrics(&self) -> String {
        let response = reqwest::get(format!("{}/metrics", self.admin_url())).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL is delivered");
        self.child.wait().unwrap();
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        self.child.wait().unwrap()
    }
}

impl Drop for InboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A header a test sends.
type Header = (&'static str, String);

/// A request signed as Standard Webhooks with `SECRET`, at `timestamp`.
fn signed(id: &str, body: &[u8], timestamp: i64) -> Vec<Header> {
    let secret = WebhookSecret::parse(SECRET).unwrap();
    vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sign(&secret, id, timestamp, body)),
        ("content-type", "application/json".to_owned()),
    ]
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn post(url: &str, headers: &[(&str, String)], body: &[u8]) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().post(url).body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("the inbox answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn event(id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"id": id, "type": "signer.done", "data": {"signature_request": {"id": "sr_1"}}}))
        .unwrap()
}

#[tokio::test]
async fn serve_to_inbox_to_app_every_forward_verifies_with_the_original_headers() {
    let db = Database::new(Backend::Sqlite).await;
    let key = cli_tenant_key(&db);
    let server = BinaryServer::start(&db, &["--dev", "--retry-schedule", FAST]);
    let app = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The inbox learns the subscription's secret once it is made: start it
    // after, on a port the webhook already names.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let (_, hook) = server
        .post(
            &key,
            "/v1/webhooks",
            json!({"url": format!("http://127.0.0.1:{port}/hooks")}),
        )
        .await;
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let listen = format!("127.0.0.1:{port}");
    let inbox = InboxProcess::start_on(
        dir.path(),
        &listen,
        &[
            "--retry-schedule",
            FAST,
            "--source-path",
            "/hooks",
            "--secret",
            &secret,
            "--forward-to",
            &app.url("/app"),
        ],
    );
    let mut published = HashSet::new();
    for i in 0..5 {
        let (status, event) = server
            .post(
                &key,
                "/v1/events",
                json!({"type": "signer.done", "data": lifecycle_data("signer.done", json!({"i": i}))}),
            )
            .await;
        assert!(status.is_success(), "{event}");
        published.insert(event["id"].as_str().unwrap().to_owned());
    }
    app.wait_for_ids(&published).await;
    let verifier = signhook_verify::Webhook::new(&secret).unwrap();
    for forward in app.received() {
        verifier
            .verify(&forward.headers, &forward.body)
            .expect("the app verifies what the inbox forwards");
        assert_eq!(forward.header("x-signhook-inbox-attempt"), "1");
        assert!(!forward.header("x-signhook-inbox-received-at").is_empty());
    }
    drop(inbox);
}

#[tokio::test]
async fn forged_stale_and_tampered_requests_are_401_and_never_reach_the_app() {
    let app = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let inbox = InboxProcess::with_source(dir.path(), &app.url("/app"), &[]);
    let body = event("evt_good");
    let mut forged = signed("evt_good", &body, now());
    forged[2].1 = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    let stale = signed("evt_good", &body, now() - 600);
    let tampered_body = event("evt_other");
    let cases: [(&[Header], &[u8], &str, &str); 4] = [
        (&forged, &body, "bad_signature", "webhook-signature"),
        (&stale, &body, "stale_timestamp", "webhook-timestamp"),
        (
            &signed("evt_good", &body, now()),
            &tampered_body,
            "bad_signature",
            "webhook-signature",
        ),
        (&[], &body, "missing_header", "webhook-id"),
    ];
    for (headers, body, code, field) in cases {
        let (status, answer) = post(&inbox.url("/hooks"), headers, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{code}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    let (status, answer) = post(&inbox.url("/hooks"), &signed("evt_good", &body, now()), &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    app.wait_for(1).await;
    let metrics = inbox.metrics().await;
    assert!(
        metrics.contains(r#"signhook_inbox_rejected_total{source="/hooks",reason="bad_signature"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"reason="stale_timestamp"} 1"#), "{metrics}");
    // Once the genuine one is through, nothing else is on its way.
    let listed = inbox.cli(&["list"]);
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "only the genuine one is stored: {listed}"
    );
    assert_eq!(app.received().len(), 1);
    let (status, _) = post(&inbox.url("/elsewhere"), &signed("evt_good", &body, now()), &body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_same_event_id_twice_reaches_the_app_once() {
    let app = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let inbox = InboxProcess::with_source(dir.path(), &app.url("/app"), &[]);
    for id in ["evt_1", "evt_1", "evt_2"] {
        let body = event(id);
        let (status, answer) = post(&inbox.url("/hooks"), &signed(id, &body, now()), &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    // evt_2 was received after the copy of evt_1; once both forwards are
    // recorded, the copy has had every chance to go out.
    eventually("both forwarded", || async {
        let listed = inbox.cli(&["list", "--status", "forwarded"]);
        let n = listed["data"].as_array().unwrap().len();
        done_when(n == 2, format!("{n} forwarded"))
    })
    .await;
    let ids: Vec<String> = app
        .received()
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(inbox
        .metrics()
        .await
        .contains(r#"signhook_inbox_duplicates_total{source="/hooks"} 1"#));
}

#[tokio::test]
async fn an_app_down_for_a_while_gets_the_request_when_it_returns() {
    let app = Receiver::scripted(vec![Reply::Status(503), Reply::Status(500)], Reply::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let inbox = InboxProcess::with_source(dir.path(), &app.url("/app"), &[]);
    let body = event("evt_1");
    let (status, _) = post(&inbox.url("/hooks"), &signed("evt_1", &body, now()), &body).await;
    assert_eq!(status, StatusCode::OK);
    let received = app.wait_for(3).await;
    let attempts: Vec<&str> = received.iter().map(|r| r.header("x-signhook-inbox-attempt")).collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    assert!(received.iter().all(|r| r.body == body), "the body unchanged");
    let shown = eventually("recorded", || async {
        let shown = inbox.cli(&["show", "evt_1"]);
        done_when(shown["status"] == "forwarded", shown)
    })
    .await;
    let codes: Vec<&Value> = shown["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(codes, [&json!(503), &json!(500), &json!(200)]);
}

#[tokio::test]
async fn an_app_that_always_fails_leaves_a_dead_letter_that_replay_delivers() {
    let app = Receiver::scripted(vec![], Reply::Status(500)).await;
    let dir = tempfile::tempdir().unwrap();
    let inbox = InboxProcess::with_source(dir.path(), &app.url("/app"), &[]);
    for id in ["evt_1", "evt_2"] {
        let body = event(id);
        let (status, _) = post(&inbox.url("/hooks"), &signed(id, &body, now()), &body).await;
        assert_eq!(status, StatusCode::OK);
    }
    eventually("two dead letters", || async {
        let dead = inbox.cli(&["list", "--status", "dead"]);
        let n = dead["data"].as_array().unwrap().len();
        done_when(n == 2, format!("{n} dead"))
    })
    .await;
    // Four attempts each: the first and the schedule's three retries.
    assert_eq!(app.received().len(), 8);
    app.set_reply(Reply::Status(200));
    let replayed = inbox.cli(&["replay", "evt_1"]);
    assert_eq!(replayed["was"], "dead", "{replayed}");
    let forwarded = app.wait_for(9).await;
    assert_eq!(forwarded[8].header("webhook-id"), "evt_1");
    assert_eq!(forwarded[8].header("x-signhook-inbox-attempt"), "5");
    let all = inbox.cli(&["replay", "--dead-letters", "--since", "2000-01-01T00:00:00Z"]);
    assert_eq!(all["replayed"], 1, "{all}");
    app.wait_for(10).await;
    eventually("none dead", || async {
        let dead = inbox.cli(&["list", "--status", "dead"]);
        let n = dead["data"].as_array().unwrap().len();
        done_when(n == 0, format!("{n} dead"))
    })
    .await;
    let metrics = inbox.metrics().await;
    assert!(
        metrics.contains(r#"signhook_inbox_dead_letters_total{source="/hooks"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn re_signed_forwards_verify_with_any_standard_webhooks_library() {
    let app = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let inbox = InboxProcess::with_source(dir.path(), &app.url("/app"), &["--forward-secret", FORWARD_SECRET]);
    let body = event("evt_1");
    let (status, _) = post(&inbox.url("/hooks"), &signed("evt_1", &body, now()), &body).await;
    assert_eq!(status, StatusCode::OK);
    let forward = &app.wait_for(1).await[0];
    assert_eq!(forward.header("webhook-id"), "evt_1");
    standardwebhooks::Webhook::new(FORWARD_SECRET)
        .unwrap()
        .verify(&forward.body, &forward.headers)
        .expect("the standardwebhooks crate verifies the re-signed forward");
    signhook_verify::Webhook::new(FORWARD_SECRET)
        .unwrap()
        .verify_signature_at(&forward.headers, &forward.body, now())
        .expect("signhook-verify does too");
    assert!(
        signhook_verify::Webhook::new(SECRET)
            .unwrap()
            .verify_signature_at(&forward.headers, &forward.body, now())
            .is_err(),
        "the sender's signature was replaced"
    );
}

#[tokio::test]
async fn sigkill_under_load_loses_no_acknowledged_request() {
    let app = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let inbox = InboxProcess::with_source(dir.path(), &app.url("/app"), &[]);
    let url = inbox.url("/hooks");
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    // Four senders, each sending until the inbox is gone (bounded).
    let senders: Vec<_> = (0..4)
        .map(|n| {
            let (url, acked, stop) = (url.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in 0..2_000 {
                    if stop.is_cancelled() {
                        break;
                    }
                    let id = format!("evt_{n}_{i}");
                    let body = event(&id);
                    let mut request = client.post(&url).body(body.clone());
                    for (name, value) in signed(&id, &body, now()) {
                        request = request.header(name, value);
                    }
                    match request.send().await {
                        Ok(response) if response.status().is_success() => {
                            acked.lock().unwrap().insert(id);
                        }
                        Ok(_) => {}
                        // The inbox was killed: what it never answered is the
                        // sender's to retry.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    eventually("a steady load", || async {
        let n = app.received().len();
        done_when(n >= 100, format!("{n} forwarded"))
    })
    .await;
    inbox.kill9();
    stop.cancel();
    for sender in senders {
        sender.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 100, "{} acknowledged", acked.len());
    let _restarted = InboxProcess::with_source(dir.path(), &app.url("/app"), &[]);
    app.wait_for_ids(&acked).await;
}

#[tokio::test]
async fn sigterm_drains_and_a_toml_config_with_hex_and_prefixed_sources_works() {
    let app = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inbox.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            retry_schedule = "{FAST}"
            [[source]]
            name = "krebit"
            path = "/hooks/krebit"
            scheme = "hex"
            secrets = ["krebit-secret"]
            forward_to = "{app}"
            event_id_pointer = "/id"

            [[source]]
            name = "signbee"
            path = "/hooks/signbee"
            scheme = "prefixed"
            secrets = ["{SECRET}"]
            forward_to = "{app}"
            "#,
            app = app.url("/app")
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let inbox = InboxProcess::start(&data, &["--config", config.to_str().unwrap()]);
    let body = event("evt_k");
    let hex = vec![(
        "x-signature",
        signhook_verify::hex_body_signature("krebit-secret", &body),
    )];
    let (status, answer) = post(&inbox.url("/hooks/krebit"), &hex, &body).await;
    assert_eq!(
        (status, &answer["event_id"]),
        (StatusCode::OK, &json!("evt_k")),
        "{answer}"
    );
    let (status, _) = post(&inbox.url("/hooks/krebit"), &hex, &event("evt_x")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a body the signature is not of");
    let body_b = event("evt_b");
    let secret = WebhookSecret::parse(SECRET).unwrap();
    let ts = now();
    let prefixed = vec![
        ("X-Signbee-Event-Id", "evt_b".to_owned()),
        ("X-Signbee-Timestamp", ts.to_string()),
        ("X-Signbee-Signature", sign(&secret, "evt_b", ts, &body_b)),
    ];
    let (status, answer) = post(&inbox.url("/hooks/signbee"), &prefixed, &body_b).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let received = app.wait_for(2).await;
    assert!(received
        .iter()
        .any(|r| r.headers.get("x-signature").is_some() && r.body == body));
    assert!(received
        .iter()
        .any(|r| r.headers.get("x-signbee-event-id").is_some_and(|v| v == "evt_b") && r.body == body_b));
    let log = inbox.log();
    assert!(inbox.terminate().success(), "SIGTERM stops it cleanly: {log}");
}

#[tokio::test]
async fn an_ordered_source_forwards_one_per_key_in_arrival_order() {
    // Each event's first attempt fails: without ordering, a key's later
    // events would overtake its retrying first one.
    let app = Receiver::scripted(vec![], Reply::FirstAttemptOfEach(500)).await;
    let dir = tempfile::tempdir().unwrap();
    let inbox = InboxProcess::with_source(
        dir.path(),
        &app.url("/app"),
        &["--ordering-key", "/data/signature_request/id"],
    );
    let sent = [
        ("a1", "sr_a"),
        ("b1", "sr_b"),
        ("a2", "sr_a"),
        ("a3", "sr_a"),
        ("b2", "sr_b"),
    ];
    for (id, key) in sent {
        let body = serde_json::to_vec(&json!({"id": id, "data": {"signature_request": {"id": key}}})).unwrap();
        let (status, _) = post(&inbox.url("/hooks"), &signed(id, &body, now()), &body).await;
        assert_eq!(status, StatusCode::OK);
    }
    let received = app.wait_for(10).await;
    let of_key = |prefix: char| -> Vec<String> {
        received
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .filter(|id| id.starts_with(prefix))
            .collect()
    };
    // One in flight per key: each event's failure and its retry before the
    // next event of its key is tried at all.
    assert_eq!(of_key('a'), ["a1", "a1", "a2", "a2", "a3", "a3"]);
    assert_eq!(of_key('b'), ["b1", "b1", "b2", "b2"]);
}
