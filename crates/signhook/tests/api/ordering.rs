//! Ordered delivery per key (issue 17, DESIGN §10): the events of one key
//! reach an ordered subscription one at a time and in order — with a
//! receiver that answers slowly and fails now and then, behind a dead
//! letter under `block`, across two nodes, and across a `kill -9`.

use crate::helpers::*;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What an ordered receiver saw of one key.
#[derive(Debug, Default)]
struct KeyLog {
    /// The `seq` of every request, in arrival order (retries included).
    arrivals: Vec<u64>,
    /// The `seq`s answered 2xx.
    accepted: Vec<u64>,
    /// The `seq`s of this key's requests in progress right now.
    in_flight: Vec<u64>,
}

#[derive(Default)]
struct Seen {
    keys: HashMap<String, KeyLog>,
    /// Requests that arrived while another event of their key was in
    /// progress.
    overlaps: Vec<String>,
    /// Requests that arrived while an earlier request of the same event was
    /// still in progress: a resend after the sender died mid-request (at
    /// least once), never two events of one key at once.
    resent_while_in_flight: Vec<String>,
    /// Requests per `webhook-id` so far.
    attempts: HashMap<String, u32>,
    /// `seq`s that must fail, per key, until told otherwise.
    failing: HashMap<String, u64>,
}

/// A real endpoint that checks what ordering promises: per key (the
/// envelope's `ordering_key`, or its signature request id), requests
/// arrive in `seq` order and never two at once. It answers after a short
/// pause, and fails the first two attempts of an event with a
/// probability of `fail_percent` decided by a seeded hash of the event id
/// and the attempt (so never a dead letter on the 4-attempt test
/// schedule); and always fails the `seq` of a key put in `failing`.
#[derive(Clone)]
struct OrderedReceiver {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

/// One request of a key in progress at the receiver; it ends when the
/// request is answered, or when its connection closes first (the sender was
/// killed mid-request and the server drops the handler).
struct InFlight {
    seen: Arc<Mutex<Seen>>,
    key: String,
    seq: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(log) = seen.keys.get_mut(&self.key) {
            if let Some(at) = log.in_flight.iter().position(|s| *s == self.seq) {
                log.in_flight.swap_remove(at);
            }
        }
    }
}

/// A 64-bit FNV-1a hash: the receiver's seeded randomness.
fn fnv(seed: u64, text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn key_of(envelope: &Value) -> String {
    match envelope["ordering_key"].as_str() {
        Some(key) => key.to_owned(),
        None => envelope["data"]["signature_request"]["id"]
            .as_str()
            .expect("an ordering key or a signature request")
            .to_owned(),
    }
}

impl OrderedReceiver {
    async fn start(fail_percent: u64, seed: u64) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = seen.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let seen = state.clone();
            async move {
                let envelope: Value = serde_json::from_slice(&body).unwrap();
                let key = key_of(&envelope);
                let seq = envelope["data"]["seq"].as_u64().unwrap();
                let id = headers["webhook-id"].to_str().unwrap().to_owned();
                let (attempt, forced) = {
                    let mut seen = seen.lock().unwrap();
                    let attempt = {
                        let n = seen.attempts.entry(id.clone()).or_default();
                        *n += 1;
                        *n
                    };
                    let forced = seen.failing.get(&key) == Some(&seq);
                    let log = seen.keys.entry(key.clone()).or_default();
                    let other_event = log.in_flight.iter().any(|s| *s != seq);
                    let same_event = log.in_flight.contains(&seq);
                    log.in_flight.push(seq);
                    log.arrivals.push(seq);
                    if other_event {
                        seen.overlaps.push(format!("{key}/{seq}"));
                    } else if same_event {
                        seen.resent_while_in_flight.push(format!("{key}/{seq}"));
                    }
                    (attempt, forced)
                };
                let in_flight = InFlight {
                    seen: seen.clone(),
                    key: key.clone(),
                    seq,
                };
                // Slow: the next of the key would overlap if it were sent.
                let pause = fnv(seed ^ 1, &id) % 4;
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let random_failure = attempt <= 2 && fnv(seed, &format!("{id}/{attempt}")) % 100 < fail_percent;
                let ok = !forced && !random_failure;
                drop(in_flight);
                let mut seen = seen.lock().unwrap();
                let log = seen.keys.get_mut(&key).unwrap();
                if ok {
                    log.accepted.push(seq);
                    StatusCode::OK
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}/ordered", self.addr)
    }

    fn fail(&self, key: &str, seq: u64) {
        self.seen.lock().unwrap().failing.insert(key.to_owned(), seq);
    }

    fn heal(&self) {
        self.seen.lock().unwrap().failing.clear();
    }

    fn accepted(&self, key: &str) -> Vec<u64> {
        self.seen
            .lock()
            .unwrap()
            .keys
            .get(key)
            .map(|k| k.accepted.clone())
            .unwrap_or_default()
    }

    /// Waits until every key of `keys` had `0..events` accepted.
    async fn wait_for_all(&self, keys: &[String], events: u64) {
        eventually("every event of every key accepted", || async {
            let seen = self.seen.lock().unwrap();
            let short = keys
                .iter()
                .filter(|k| {
                    let accepted = seen.keys.get(*k).map(|l| l.accepted.clone()).unwrap_or_default();
                    (0..events).any(|seq| !accepted.contains(&seq))
                })
                .count();
            done_when(short == 0, format!("{short} keys still missing events"))
        })
        .await;
    }

    /// Per key, arrivals never go back (a retry or a resend after a crash
    /// repeats the latest, never an earlier one), nothing overlapped, and
    /// each `seq` was accepted once its predecessors were.
    fn assert_in_order(&self) {
        let resent = self.seen.lock().unwrap().resent_while_in_flight.clone();
        assert!(resent.is_empty(), "sent twice at once with no crash: {resent:?}");
        self.assert_in_order_across_a_crash();
    }

    /// As [`Self::assert_in_order`], except that an event may arrive again
    /// while its earlier request is still being answered: the node that
    /// sent it was killed mid-request, so the restarted one sends it again
    /// (at least once). Another event of the key never overlaps.
    fn assert_in_order_across_a_crash(&self) {
        let seen = self.seen.lock().unwrap();
        assert!(
            seen.overlaps.is_empty(),
            "sent while another of the key was in flight: {:?}",
            seen.overlaps
        );
        for (key, log) in &seen.keys {
            assert!(
                log.arrivals.windows(2).all(|w| w[0] <= w[1]),
                "key {key} arrived out of order: {:?}",
                log.arrivals
            );
            assert!(
                log.accepted.windows(2).all(|w| w[0] <= w[1]),
                "key {key} accepted out of order: {:?}",
                log.accepted
            );
        }
    }
}

/// `signer.done`'s catalog example, as request `request` at `seq`.
fn keyed_data(request: &str, seq: u64) -> Value {
    let mut data = signhook_core::catalog::lookup("signer.done")
        .expect("signer.done is in the catalog")
        .example_data();
    data["signature_request"]["id"] = json!(request);
    data["signature_request"]["sequence"] = json!(seq + 1);
    data["seq"] = json!(seq);
    data
}

/// Publishes `events` rounds over `keys`: every key's event `seq` in one
/// round, concurrently (so they share group commits), one round after the
/// other (so each key's events are created in `seq` order).
async fn publish_rounds(base: &str, api_key: &str, keys: &[String], events: u64) {
    let client = reqwest::Client::new();
    for seq in 0..events {
        let mut round = tokio::task::JoinSet::new();
        for key in keys {
            let body = json!({"type": "signer.done", "ordering_key": key, "data": keyed_data(key, seq)});
            let request = client
                .post(format!("{base}/v1/events"))
                .bearer_auth(api_key)
                .json(&body);
            round.spawn(async move { read(request.send().await.expect("the server answers")).await });
        }
        while let Some(answer) = round.join_next().await {
            let (status, event) = answer.unwrap();
            assert_eq!(status, 201, "{event}");
        }
    }
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

on_both_backends! {

async fn each_key_arrives_in_order_one_at_a_time_though_the_receiver_fails_now_and_then(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let by_key = OrderedReceiver::start(30, 7).await;
    let by_request = OrderedReceiver::start(30, 11).await;
    let unordered = Receiver::start().await;
    let hook = app
        .create_webhook(&by_key.url(), json!({"ordering": "key"}))
        .await;
    assert_eq!(hook["ordering"], "key");
    assert_eq!(hook["ordering_on_failure"], "skip", "skip is the default");
    app.create_webhook(&by_request.url(), json!({"ordering": "signature_request"}))
        .await;
    let plain = app.create_webhook(&unordered.url("/plain"), json!({})).await;
    assert_eq!(plain["ordering"], "none", "no order is the default");

    let keys = keys("sr_doc", 50);
    publish_rounds(&app.url(""), &app.tenant.live_key, &keys, 8).await;
    by_key.wait_for_all(&keys, 8).await;
    by_request.wait_for_all(&keys, 8).await;
    unordered.wait_for(50 * 8).await;
    by_key.assert_in_order();
    by_request.assert_in_order();
    for key in &keys {
        assert_eq!(by_key.accepted(key), (0..8).collect::<Vec<_>>(), "key {key}: each event once, in order");
    }
    let envelope = unordered.received()[0].json();
    assert!(envelope["ordering_key"].as_str().is_some_and(|k| k.starts_with("sr_doc-")), "the key is echoed: {envelope}");
}

async fn a_blocking_key_waits_behind_its_dead_letter_while_the_others_flow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = OrderedReceiver::start(0, 3).await;
    let hook = app
        .create_webhook(&receiver.url(), json!({"ordering": "key", "ordering_on_failure": "block"}))
        .await;
    let hook_id = hook["id"].as_str().unwrap();
    receiver.fail("sr_stuck", 0);
    receiver.fail("sr_skipped", 0);
    let keys: Vec<String> = ["sr_stuck", "sr_skipped", "sr_free-1", "sr_free-2"].map(String::from).to_vec();
    publish_rounds(&app.url(""), &app.tenant.live_key, &keys, 3).await;

    // The free keys flow to the end while both failing keys hold.
    receiver.wait_for_all(&keys[2..], 3).await;
    let blocked = app
        .wait_until(&format!("/v1/webhooks/{hook_id}/blocked_keys"), |page| {
            page["data"].as_array().unwrap().iter().filter(|b| b["blocking_status"] == "failed").count() == 2
        })
        .await;
    let of = |key: &str| -> Value {
        blocked["data"].as_array().unwrap().iter().find(|b| b["key"] == key).cloned().unwrap()
    };
    assert_eq!(of("sr_stuck")["waiting"], 2, "{blocked}");
    assert_eq!(of("sr_stuck")["blocking_attempts"], 4, "the whole fast schedule: {blocked}");
    assert_eq!(blocked["has_more"], false);
    assert!(receiver.accepted("sr_stuck").is_empty() && receiver.accepted("sr_skipped").is_empty());
    let arrivals = receiver.seen.lock().unwrap().keys["sr_stuck"].arrivals.clone();
    assert_eq!(arrivals, vec![0, 0, 0, 0], "nothing after the dead letter left");

    // Resending the blocking delivery releases its key once it succeeds.
    receiver.heal();
    let stuck = of("sr_stuck")["blocking_delivery_id"].as_str().unwrap().to_owned();
    let (status, resent) = app.post(&format!("/v1/deliveries/{stuck}/resend"), json!({})).await;
    assert_eq!(status, 202, "{resent}");
    // Skipping one lets its key move on without it.
    let skipped = of("sr_skipped")["blocking_delivery_id"].as_str().unwrap().to_owned();
    let (status, skip) = app.post(&format!("/v1/deliveries/{skipped}/skip"), json!({})).await;
    assert_eq!(status, 200, "{skip}");
    assert_eq!(skip["status"], "canceled");
    let (status, again) = app.post(&format!("/v1/deliveries/{skipped}/skip"), json!({})).await;
    assert_eq!(status, 409, "only a dead letter can be skipped: {again}");
    assert_eq!(again["error"]["code"], "delivery_not_failed");

    receiver.wait_for_all(&keys[..1], 3).await;
    eventually("the skipped key's later events", || async {
        let accepted = receiver.accepted("sr_skipped");
        done_when(accepted == vec![1, 2], format!("{accepted:?}"))
    })
    .await;
    receiver.assert_in_order();
    let (_, blocked) = app.get(&format!("/v1/webhooks/{hook_id}/blocked_keys")).await;
    assert_eq!(blocked["data"], json!([]), "{blocked}");
}

async fn ordering_settings_are_validated_shown_and_changed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let (status, refused) = app
        .post("/v1/webhooks", json!({"url": receiver.url("/x"), "ordering": "by_document"}))
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["field"], "ordering");
    let (status, refused) = app
        .post("/v1/webhooks", json!({"url": receiver.url("/x"), "ordering_on_failure": "retry"}))
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["field"], "ordering_on_failure");

    let hook = app.create_webhook(&receiver.url("/x"), json!({})).await;
    let path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());
    let (status, changed) = app
        .patch(&path, json!({"ordering": "signature_request", "ordering_on_failure": "block"}))
        .await;
    assert_eq!(status, 200, "{changed}");
    let (_, shown) = app.get(&path).await;
    assert_eq!((shown["ordering"].as_str(), shown["ordering_on_failure"].as_str()), (Some("signature_request"), Some("block")));
    let (status, refused) = app.patch(&path, json!({"ordering": ""})).await;
    assert_eq!(status, 422, "{refused}");

    for (key, why) in [(json!(""), "empty"), (json!("x".repeat(201)), "too long"), (json!("a\u{0}b"), "control"), (json!(7), "not a string")] {
        let (status, refused) = app
            .post("/v1/events", json!({"type": "signer.done", "ordering_key": key, "data": lifecycle_data("signer.done", json!({}))}))
            .await;
        assert!(status == 422 || status == 400, "{why}: {status} {refused}");
        if status == 422 {
            assert_eq!(refused["error"]["field"], "ordering_key", "{why}: {refused}");
        }
    }
    let (status, published) = app
        .post("/v1/events", json!({"type": "signer.done", "ordering_key": "order-1", "data": lifecycle_data("signer.done", json!({}))}))
        .await;
    assert_eq!(status, 201, "{published}");
    assert_eq!(published["ordering_key"], "order-1");
    let (_, read) = app.get(&format!("/v1/events/{}", published["id"].as_str().unwrap())).await;
    assert_eq!(read["ordering_key"], "order-1");
    let (status, _) = app.get("/v1/webhooks/wh_00000000000000000000000000000000/blocked_keys").await;
    assert_eq!(status, 404);
}

}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_send_two_of_one_key_at_once() {
    let db = Database::new(Backend::Postgres).await;
    let api_key = cli_tenant_key(&db);
    let receiver = OrderedReceiver::start(30, 5).await;
    let args = ["--dev", "--retry-schedule", "20ms,20ms,20ms"];
    let a = BinaryServer::start(&db, &[&args[..], &["--node-id", "node_a"]].concat());
    let b = BinaryServer::start(&db, &[&args[..], &["--node-id", "node_b"]].concat());
    let (status, hook) = a
        .post(
            &api_key,
            "/v1/webhooks",
            json!({"url": receiver.url(), "ordering": "key"}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let keys = keys("sr_doc", 20);
    // Each round through the other node: a key's events are written by
    // both nodes, and both claim its heads and retries.
    let client = reqwest::Client::new();
    for seq in 0..6u64 {
        let node = if seq % 2 == 0 { a.url("") } else { b.url("") };
        let mut round = tokio::task::JoinSet::new();
        for key in &keys {
            let body = json!({"type": "signer.done", "ordering_key": key, "data": keyed_data(key, seq)});
            let request = client
                .post(format!("{node}/v1/events"))
                .bearer_auth(&api_key)
                .json(&body);
            round.spawn(async move { read(request.send().await.unwrap()).await });
        }
        while let Some(answer) = round.join_next().await {
            let (status, event) = answer.unwrap();
            assert_eq!(status, 201, "{event}");
        }
    }
    receiver.wait_for_all(&keys, 6).await;
    receiver.assert_in_order();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_in_the_middle_keeps_each_key_in_order() {
    let db = Database::new(Backend::Sqlite).await;
    let api_key = cli_tenant_key(&db);
    let receiver = OrderedReceiver::start(30, 13).await;
    let args = ["--dev", "--retry-schedule", "20ms,20ms,20ms"];
    let server = BinaryServer::start(&db, &args);
    let (status, hook) = server
        .post(
            &api_key,
            "/v1/webhooks",
            json!({"url": receiver.url(), "ordering": "key"}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let keys = keys("sr_doc", 20);
    publish_rounds(&server.url(""), &api_key, &keys, 5).await;
    // Killed once some, not all, have arrived.
    eventually("some deliveries", || async {
        let n: usize = receiver
            .seen
            .lock()
            .unwrap()
            .keys
            .values()
            .map(|k| k.accepted.len())
            .sum();
        done_when(n >= 10, format!("{n} so far"))
    })
    .await;
    server.kill9();
    let restarted = BinaryServer::start(&db, &args);
    receiver.wait_for_all(&keys, 5).await;
    receiver.assert_in_order_across_a_crash();
    drop(restarted);
}
