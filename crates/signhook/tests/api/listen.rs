//! `signhook listen`: the real binary serving (`serve --dev`) and the real
//! binary listening, as a child process, forwarding to a real receiver on
//! 127.0.0.1 — the developer's app.

use crate::delivery::verify_standard;
use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::{json, Value};
use signhook_testkit::{done_when, eventually, Backend};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Retries in 50 ms, many of them: a test sees retries, never a dead letter.
const SERVE: &[&str] = &[
    "--dev",
    "--retry-schedule",
    "50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms",
];

/// A running `signhook listen`, its stdout kept line by line.
struct Listen {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Listen {
    fn start(server: &BinaryServer, key: &str, forward_to: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_signhook"))
            .args([
                "listen",
                "--api",
                &server.url("/"),
                "--key",
                key,
                "--forward-to",
                forward_to,
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("signhook listen starts");
        let stdout = child.stdout.take().expect("piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let keep = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The secret it printed at start.
    async fn secret(&self) -> String {
        eventually("listen prints its secret", || async {
            let output = self.output();
            output
                .iter()
                .find_map(|l| l.strip_prefix("Webhook signing secret: ").map(str::to_owned))
                .ok_or(output)
        })
        .await
    }

    /// Waits until it printed a line about `event_id` with `status`.
    async fn printed(&self, event_id: &str, status: &str) {
        eventually(format_args!("a line for {event_id} with {status}"), || async {
            let output = self.output();
            let found = output
                .iter()
                .any(|l| l.contains(event_id) && l.contains(&format!("  {status}  ")));
            done_when(found, output)
        })
        .await;
    }

    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL is delivered");
        self.child.wait().unwrap();
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn publish(server: &BinaryServer, key: &str, event_type: &str) -> String {
    let (status, event) = server
        .post(
            key,
            "/v1/events",
            json!({"type": event_type, "data": lifecycle_data(event_type, json!({}))}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    event["id"].as_str().unwrap().to_owned()
}

/// The relay subscription's only delivery of `event_id`, once it has
/// `attempts` attempts and has settled.
async fn delivery_of(server: &BinaryServer, key: &str, webhook_id: &str, event_id: &str, attempts: usize) -> Value {
    eventually(
        format_args!("{event_id}'s delivery with {attempts} attempts"),
        || async {
            let (_, list) = server.get(key, &format!("/v1/webhooks/{webhook_id}/deliveries")).await;
            let Some(id) = list["data"]
                .as_array()
                .and_then(|d| d.iter().find(|d| d["event_id"] == event_id))
                .map(|d| d["id"].as_str().unwrap().to_owned())
            else {
                return Err(list);
            };
            let (_, delivery) = server.get(key, &format!("/v1/deliveries/{id}")).await;
            let done =
                delivery["status"] != "pending" && delivery["attempts"].as_array().is_some_and(|a| a.len() >= attempts);
            done_when(done, delivery)
        },
    )
    .await
}

async fn relay_id(server: &BinaryServer, key: &str) -> String {
    let (status, relay) = server.get(key, "/v1/listen").await;
    assert_eq!(status, StatusCode::OK, "{relay}");
    relay["webhook_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_forwards_exact_verifiable_bytes_and_the_local_answers_are_the_attempts() {
    let db = Database::new(Backend::Sqlite).await;
    let tenant = db.create_tenant("Acme").await;
    let server = BinaryServer::start(&db, SERVE);
    // The local app: 202 to the first request, then 500 once, then 200.
    let app = Receiver::scripted(vec![Reply::Status(202), Reply::Status(500)], Reply::Status(200)).await;
    let listen = Listen::start(
        &server,
        &tenant.test_key,
        &app.url("/hooks"),
        &["--events", "signer.*,signature_request.done"],
    );
    let secret = listen.secret().await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let webhook_id = relay_id(&server, &tenant.test_key).await;

    // Listed as a relay; its URL cannot be turned into an endpoint's.
    let (_, hook) = server
        .get(&tenant.test_key, &format!("/v1/webhooks/{webhook_id}"))
        .await;
    assert_eq!(hook["kind"], "relay", "{hook}");
    assert_eq!(hook["subscribed_events"], json!(["signer.*", "signature_request.done"]));
    let request = reqwest::Client::new()
        .patch(server.url(&format!("/v1/webhooks/{webhook_id}")))
        .bearer_auth(&tenant.test_key)
        .json(&json!({"url": "https://example.com/hook"}));
    let (status, refused) = read(request.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["field"], "url");
    let request = reqwest::Client::new()
        .patch(server.url(&format!("/v1/webhooks/{webhook_id}")))
        .bearer_auth(&tenant.test_key)
        .json(&json!({"ordering": "signature_request"}));
    let (status, refused) = read(request.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["field"], "ordering");

    // An event outside the filter never arrives; one inside does, exactly.
    publish(&server, &tenant.test_key, "approver.notified").await;
    let first = publish(&server, &tenant.test_key, "signer.done").await;
    let received = app.wait_for(1).await;
    assert_eq!(received[0].header("webhook-id"), first);
    verify_standard(&secret, &received[0]);
    let (_, event) = server.get(&tenant.test_key, &format!("/v1/events/{first}")).await;
    assert_eq!(received[0].json()["data"], event["data"]);
    assert_eq!(received[0].json()["subscription"]["id"], webhook_id.as_str());
    listen.printed(&first, "202").await;
    let delivery = delivery_of(&server, &tenant.test_key, &webhook_id, &first, 1).await;
    assert_eq!(delivery["status"], "succeeded", "{delivery}");
    assert_eq!(delivery["attempts"][0]["status_code"], 202, "{delivery}");
    assert_eq!(delivery["attempts"][0]["response_body"], "answered 202", "{delivery}");

    // A 500 from the local app retries on the schedule; both answers are
    // in the log.
    let second = publish(&server, &tenant.test_key, "signature_request.done").await;
    let delivery = delivery_of(&server, &tenant.test_key, &webhook_id, &second, 2).await;
    assert_eq!(delivery["status"], "succeeded", "{delivery}");
    let codes: Vec<&Value> = delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(200)], "{delivery}");
    listen.printed(&second, "500").await;
    listen.printed(&second, "200").await;
    for received in app.received().iter().filter(|r| r.header("webhook-id") == second) {
        verify_standard(&secret, received);
    }

    // `--resend` sends one again through the resend API.
    let out = run_cli(&[
        "listen",
        "--api",
        &server.url("/"),
        "--key",
        &tenant.test_key,
        "--resend",
        &first,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually("the resent event arrives", || async {
        let copies = app
            .received()
            .iter()
            .filter(|r| r.header("webhook-id") == first)
            .count();
        done_when(copies == 2, copies)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_while_listen_is_killed_arrive_after_it_restarts_with_the_same_secret() {
    let db = Database::new(Backend::Sqlite).await;
    let tenant = db.create_tenant("Acme").await;
    let server = BinaryServer::start(&db, SERVE);
    let app = Receiver::start().await;
    let listen = Listen::start(&server, &tenant.test_key, &app.url("/hooks"), &[]);
    let secret = listen.secret().await;
    let webhook_id = relay_id(&server, &tenant.test_key).await;
    let before = publish(&server, &tenant.test_key, "signer.done").await;
    app.wait_for(1).await;
    listen.kill9();

    // The server notices the socket is gone; meanwhile nothing is tried.
    eventually("the relay is let go", || async {
        let (_, relay) = server.get(&tenant.test_key, "/v1/listen").await;
        done_when(relay["connected"] == false, relay)
    })
    .await;
    let mut missed = std::collections::HashSet::new();
    for _ in 0..3 {
        missed.insert(publish(&server, &tenant.test_key, "signer.done").await);
    }
    for id in &missed {
        let (_, list) = server
            .get(
                &tenant.test_key,
                &format!("/v1/webhooks/{webhook_id}/deliveries?status=pending"),
            )
            .await;
        assert!(
            list["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["event_id"] == id.as_str()),
            "{list}"
        );
    }

    let again = Listen::start(&server, &tenant.test_key, &app.url("/hooks"), &[]);
    assert_eq!(again.secret().await, secret, "the secret is stable for the key");
    app.wait_for_ids(&missed).await;
    for received in app.received() {
        verify_standard(&secret, &received);
    }
    assert!(app.ids_received().contains(&before));
    // Nothing was tried while no CLI listened: each went out once.
    for id in &missed {
        let delivery = delivery_of(&server, &tenant.test_key, &webhook_id, id, 1).await;
        assert_eq!(delivery["status"], "succeeded", "{delivery}");
        assert_eq!(delivery["attempts"].as_array().unwrap().len(), 1, "{delivery}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_key_listens_only_when_it_says_so_and_a_bad_filter_is_named() {
    let db = Database::new(Backend::Sqlite).await;
    let tenant = db.create_tenant("Acme").await;
    let server = BinaryServer::start(&db, SERVE);
    let (status, refused) = server.get(&tenant.live_key, "/v1/listen").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["error"]["field"], "live");
    let (status, refused) = server.get(&tenant.test_key, "/v1/listen?events=signer.nope").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["field"], "events");
    let (status, _) = server.get(&tenant.test_key, "/v1/listen").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no relay before the first listen");

    // The CLI says why and stops, rather than retrying for ever.
    let app = Receiver::start().await;
    let out = Command::new(env!("CARGO_BIN_EXE_signhook"))
        .args([
            "listen",
            "--api",
            &server.url("/"),
            "--key",
            &tenant.live_key,
            "--forward-to",
            &app.url("/"),
        ])
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("403") && stderr.contains("live=true"), "{stderr}");

    // With --live it listens to live events.
    let listen = Listen::start(&server, &tenant.live_key, &app.url("/hooks"), &["--live"]);
    listen.secret().await;
    let id = publish(&server, &tenant.live_key, "signer.done").await;
    app.wait_for(1).await;
    assert_eq!(app.received()[0].header("webhook-id"), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_newest_deliveries_wait_for_a_listener_beyond_the_backlog_limit() {
    let db = Database::new(Backend::Sqlite).await;
    let tenant = db.create_tenant("Acme").await;
    let server = BinaryServer::start(&db, &[SERVE, &["--relay-backlog", "2"]].concat());
    let app = Receiver::start().await;
    let listen = Listen::start(&server, &tenant.test_key, &app.url("/hooks"), &[]);
    let secret = listen.secret().await;
    let webhook_id = relay_id(&server, &tenant.test_key).await;
    drop(listen);
    eventually("the relay is let go", || async {
        let (_, relay) = server.get(&tenant.test_key, "/v1/listen").await;
        done_when(relay["connected"] == false, relay)
    })
    .await;

    let mut published = Vec::new();
    for _ in 0..4 {
        published.push(publish(&server, &tenant.test_key, "signer.done").await);
    }
    let again = Listen::start(&server, &tenant.test_key, &app.url("/hooks"), &[]);
    assert_eq!(again.secret().await, secret);
    let newest: std::collections::HashSet<String> = published[2..].iter().cloned().collect();
    app.wait_for_ids(&newest).await;
    eventually("listen says what waited and what was canceled", || async {
        let output = again.output();
        let said = output.iter().any(|l| l.starts_with("2 deliveries waited"))
            && output.iter().any(|l| l.starts_with("2 older deliveries were canceled"));
        done_when(said, output)
    })
    .await;
    // The older two are canceled, untried, in the log (and resendable).
    for id in &published[..2] {
        let delivery = delivery_of(&server, &tenant.test_key, &webhook_id, id, 0).await;
        assert_eq!(delivery["status"], "canceled", "{delivery}");
        assert_eq!(delivery["attempts"], json!([]), "{delivery}");
    }
    assert!(app
        .ids_received()
        .is_disjoint(&published[..2].iter().cloned().collect()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_two_nodes_the_node_holding_the_socket_sends_and_a_listener_on_the_other_takes_over() {
    let db = Database::new(Backend::Postgres).await;
    let tenant = db.create_tenant("Acme").await;
    let a = BinaryServer::start(&db, &[SERVE, &["--node-id", "node_a"]].concat());
    let b = BinaryServer::start(&db, &[SERVE, &["--node-id", "node_b"]].concat());
    let app = Receiver::start().await;
    let first = Listen::start(&a, &tenant.test_key, &app.url("/hooks"), &[]);
    let secret = first.secret().await;
    let webhook_id = relay_id(&b, &tenant.test_key).await;

    // Published on either node, every event goes out once, from node_a:
    // node_b never tries (it would record a failed `relay` attempt).
    let mut ids = std::collections::HashSet::new();
    for server in [&a, &b, &b, &a, &b] {
        ids.insert(publish(server, &tenant.test_key, "signer.done").await);
    }
    app.wait_for_ids(&ids).await;
    for id in &ids {
        let delivery = delivery_of(&b, &tenant.test_key, &webhook_id, id, 1).await;
        assert_eq!(delivery["status"], "succeeded", "{delivery}");
        let attempts = delivery["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{delivery}");
        assert_eq!(attempts[0]["node_id"], "node_a", "{delivery}");
    }

    // A listener of the same key on node_b takes the relay over: the first
    // one is told and stops; what follows goes out from node_b.
    let second = Listen::start(&b, &tenant.test_key, &app.url("/hooks"), &[]);
    assert_eq!(second.secret().await, secret);
    let first = Mutex::new(first);
    let exited = eventually("the replaced listener stops", || async {
        let mut first = first.lock().unwrap();
        let status = first.child.try_wait().unwrap();
        status.ok_or_else(|| first.output())
    })
    .await;
    assert!(!exited.success());
    let later = publish(&a, &tenant.test_key, "signer.done").await;
    app.wait_for_ids(&std::iter::once(later.clone()).collect()).await;
    let delivery = delivery_of(&a, &tenant.test_key, &webhook_id, &later, 1).await;
    assert_eq!(delivery["attempts"].as_array().unwrap().len(), 1, "{delivery}");
    assert_eq!(delivery["attempts"][0]["node_id"], "node_b", "{delivery}");
    verify_standard(&secret, app.received().last().unwrap());
}
