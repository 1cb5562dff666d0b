//! Crash safety with the real binary: SIGKILL with deliveries pending or in
//! flight loses nothing; SIGTERM releases what is in flight.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::HashSet;

async fn call(server: &BinaryServer, key: &str, path: &str, body: Value) -> Value {
    let (status, value) = server.post(key, path, body).await;
    assert!(status.is_success(), "{status}: {value}");
    value
}

/// Publishes `count` events through `server`; returns their ids.
async fn publish(server: &BinaryServer, key: &str, count: usize) -> HashSet<String> {
    let mut accepted = HashSet::new();
    for i in 0..count {
        let event = call(
            server,
            key,
            "/v1/events",
            json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({"i": i}))}),
        )
        .await;
        accepted.insert(event["id"].as_str().unwrap().to_owned());
    }
    accepted
}

const FAST: &[&str] = &["--dev", "--retry-schedule", "100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms"];

on_both_backends! {
async fn sigkill_with_the_receiver_down_loses_no_accepted_event(backend: Backend) {
    let db = Database::new(backend).await;
    let key = cli_tenant_key(&db);
    // The receiver's port, held: nothing listens there yet.
    let port = ReservedPort::new();
    let mut args = FAST.to_vec();
    args.extend(["--request-timeout", "1s", "--delivery-lease", "2s"]);

    let server = BinaryServer::start(&db, &args);
    call(&server, &key, "/v1/webhooks", json!({"url": port.url("/hook")})).await;
    let accepted = publish(&server, &key, 50).await;
    server.kill9();

    let receiver = port.receiver(vec![], Reply::Status(200));
    let _restarted = BinaryServer::start(&db, &args);
    receiver.wait_for_ids(&accepted).await;
}

async fn sigkill_mid_send_is_sent_by_another_node_when_the_lease_ends(backend: Backend) {
    let db = Database::new(backend).await;
    let key = cli_tenant_key(&db);
    // The first 10 requests hang (the server is killed while waiting on them);
    // everything after is answered.
    let receiver = Receiver::scripted(vec![Reply::Hang; 10], Reply::Status(200)).await;
    let mut args = FAST.to_vec();
    args.extend(["--request-timeout", "30s", "--delivery-lease", "2s"]);

    let server = BinaryServer::start(&db, &[&args[..], &["--node-id", "node_a"]].concat());
    call(&server, &key, "/v1/webhooks", json!({"url": receiver.url("/hook")})).await;
    let accepted = publish(&server, &key, 10).await;
    receiver.wait_for(10).await;
    server.kill9();

    // Another node takes over (on SQLite: the same data under another
    // id). Nothing gives node_a's claims back: they wait out their lease.
    let _other = BinaryServer::start(&db, &[&args[..], &["--node-id", "node_b"]].concat());
    let received = receiver.wait_for(20).await;
    let answered: HashSet<String> = received[10..]
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(
        answered, accepted,
        "every in-flight delivery was sent again after its lease ended"
    );
}

async fn sigkill_mid_send_is_sent_again_within_seconds_of_a_restart(backend: Backend) {
    const EVENTS: usize = 50;
    let db = Database::new(backend).await;
    let key = cli_tenant_key(&db);
    // Every request hangs until the kill: the process dies with all 50 in
    // flight, each under the default lease (60 s: the 15 s request timeout
    // twice, plus 30 s), and room for all of them at once in the lane.
    let receiver = Receiver::scripted(vec![], Reply::Hang).await;
    let args = ["--dev", "--endpoint-concurrency", "50"];
    let server = BinaryServer::start(&db, &args);
    call(&server, &key, "/v1/webhooks", json!({"url": receiver.url("/hook")})).await;
    let accepted = publish(&server, &key, EVENTS).await;
    receiver.wait_for(EVENTS).await;
    let node_id = server.node_id();
    server.kill9();

    receiver.set_reply(Reply::Status(200));
    let restarted = BinaryServer::start(&db, &args);
    let restart = std::time::Instant::now();
    // A third of the lease the dead process's claims still hold: only the
    // restarted node giving them back makes them due in time.
    eventually_within(
        std::time::Duration::from_secs(20),
        "every delivery in flight at the kill, sent again after the restart",
        || async {
            let answered: HashSet<String> = receiver.received()[EVENTS..]
                .iter()
                .map(|r| r.header("webhook-id").to_owned())
                .collect();
            let missing = accepted.difference(&answered).count();
            done_when(missing == 0, format!("{missing} missing"))
        },
    )
    .await;
    println!("every delivery in flight at the kill arrived {:?} after the restart", restart.elapsed());
    assert_eq!(restarted.node_id(), node_id, "the node id is kept in the data directory");
    let log = restarted.log();
    assert!(
        log.lines().any(|line| line.contains("released") && line.contains("deliveries=50")),
        "the restart logs what it released:\n{log}"
    );
}

async fn sigterm_releases_sends_in_flight_so_a_restart_sends_them_at_once(backend: Backend) {
    let db = Database::new(backend).await;
    let key = cli_tenant_key(&db);
    let receiver = Receiver::scripted(vec![Reply::Hang; 5], Reply::Status(200)).await;
    // A lease far longer than the test's patience: only an explicit release
    // can make these deliveries due again in time.
    let mut args = FAST.to_vec();
    args.extend([
        "--request-timeout",
        "60s",
        "--delivery-lease",
        "1h",
        "--shutdown-grace",
        "100ms",
    ]);

    let server = BinaryServer::start(&db, &args);
    call(&server, &key, "/v1/webhooks", json!({"url": receiver.url("/hook")})).await;
    let accepted = publish(&server, &key, 5).await;
    receiver.wait_for(5).await;
    let status = server.terminate();
    assert!(status.success(), "a clean exit on SIGTERM: {status}");

    let _restarted = BinaryServer::start(&db, &args);
    let received = receiver.wait_for(10).await;
    let answered: HashSet<String> = received[5..]
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(answered, accepted);
}
}

on_both_backends! {
async fn a_recovery_job_survives_sigkill_and_finishes(backend: Backend) {
    let db = Database::new(backend).await;
    let key = cli_tenant_key(&db);
    let receiver = Receiver::scripted(vec![], Reply::Status(500)).await;
    // A lease far longer than the test: whatever the killed process still
    // held (the job, if it was not done yet; deliveries it had claimed) goes
    // on only because the restarted node gives it back. (Whether it held
    // anything depends on timing; the store's tests release a held job.)
    let args = ["--dev", "--scheduler-interval", "100ms", "--delivery-lease", "1h"];
    let server = BinaryServer::start(&db, &args);
    let hook = call(&server, &key, "/v1/webhooks", json!({"url": receiver.url("/"), "auto_retry": false, "subscribed_events": ["signer.*"]})).await;
    let since = signhook_core::time::rfc3339(chrono::Utc::now() - chrono::Duration::seconds(1));
    let accepted = publish(&server, &key, 300).await;
    receiver.wait_for(300).await;
    receiver.set_reply(Reply::Status(200));
    // Dead letters take a moment to be recorded; wait for all 300.
    let hook_id = hook["id"].as_str().unwrap();
    let client = reqwest::Client::new();
    eventually("300 dead letters recorded", || async {
        let mut dead = 0;
        let mut cursor = String::new();
        loop {
            let url = server.url(&format!("/v1/webhooks/{hook_id}/deliveries?status=failed&limit=100{cursor}"));
            let (_, page) = read(client.get(url).bearer_auth(&key).send().await.unwrap()).await;
            dead += page["data"].as_array().unwrap().len();
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        done_when(dead == 300, dead)
    })
    .await;
    let job = call(&server, &key, &format!("/v1/webhooks/{hook_id}/recover"), json!({"since": since})).await;
    server.kill9();

    let restarted = BinaryServer::start(&db, &args);
    let job_url = restarted.url(&format!("/v1/recoveries/{}", job["id"].as_str().unwrap()));
    let state = eventually("the recovery job to finish", || async {
        let (_, state) = read(client.get(&job_url).bearer_auth(&key).send().await.unwrap()).await;
        done_when(state["status"] == "done", state)
    })
    .await;
    assert_eq!(state["total"], 300, "{state}");
    assert_eq!(state["resent"], 300, "{state}");
    wait_for_all_answered(&receiver, &accepted, 300).await;
}
}

/// Waits until every id in `expected` got an answered (post-`skip`) request.
async fn wait_for_all_answered(receiver: &Receiver, expected: &HashSet<String>, skip: usize) {
    eventually("every recovered event", || async {
        let answered: HashSet<String> = receiver
            .received()
            .iter()
            .skip(skip)
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        let missing = expected.difference(&answered).count();
        done_when(missing == 0, format!("{missing} missing"))
    })
    .await;
}

on_both_backends! {
async fn sigkill_during_completion_leaves_no_done_or_a_done_whose_links_work(backend: Backend) {
    const REQUESTS: usize = 12;
    let db = Database::new(backend).await;
    let key = cli_tenant_key(&db);
    let receiver = Receiver::start().await;
    let server = BinaryServer::start(&db, &["--dev"]);
    call(&server, &key, "/v1/webhooks", json!({"url": receiver.url("/hook")})).await;
    let client = reqwest::Client::new();
    let mut signing_urls = Vec::new();
    for i in 0..REQUESTS {
        let body = json!({"name": format!("Contract {i}"), "signers": [{"name": "Ada", "email": "ada@example.com"}]});
        let active = crate::esign::out_for_signature_at(&client, &server.url(""), &key, body).await;
        let id = active["id"].as_str().unwrap().to_owned();
        signing_urls.push((id, crate::esign::signing_url(&active, 0)));
    }
    // Every signer signs at once; the server is killed as soon as the first
    // completion is answered, with the others anywhere between rendering
    // their PDFs and committing.
    let mut signing = tokio::task::JoinSet::new();
    for (_, url) in &signing_urls {
        let (client, url) = (client.clone(), format!("{url}/sign"));
        let body = crate::esign::signature(&serde_json::json!("A Signer"));
        signing.spawn(async move { client.post(url).json(&body).send().await.map(|r| r.status().as_u16()) });
    }
    let first = signing.join_next().await.expect("a signing task").expect("it does not panic");
    server.kill9();
    while signing.join_next().await.is_some() {}

    let restarted = BinaryServer::start(&db, &["--dev"]);
    let mut done = 0;
    for (id, _) in &signing_urls {
        let response = client
            .get(restarted.url(&format!("/v1/signature_requests/{id}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        let (_, request) = read(response).await;
        let response = client
            .get(restarted.url("/v1/events?type=signature_request.done&limit=100"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        let (_, feed) = read(response).await;
        let done_events: Vec<&Value> = feed["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["data"]["signature_request"]["id"] == id.as_str())
            .collect();
        match request["status"].as_str().unwrap() {
            "done" => {
                done += 1;
                assert_eq!(done_events.len(), 1, "one done event for {id}");
                for file in ["signed_pdf", "audit_certificate"] {
                    let link = done_events[0]["data"]["links"][file]["url"].as_str().unwrap();
                    let response = client.get(restarted.relink(link)).send().await.unwrap();
                    assert_eq!(response.status().as_u16(), 200, "{file} of {id}");
                    let bytes = response.bytes().await.unwrap();
                    signhook_documents::inspect(&bytes).expect("a readable PDF");
                }
            }
            "ongoing" => {
                assert!(done_events.is_empty(), "no done event for unfinished {id}");
                assert_eq!(request["signers"][0]["status"], "notified", "{request}");
            }
            other => panic!("{id} is {other}"),
        }
    }
    if first.is_ok_and(|status| status == 200) {
        assert!(done >= 1, "the first answered completion is durable");
    }
    eprintln!("{done} of {REQUESTS} requests completed before the SIGKILL");
    // The unfinished ones can still be signed after the restart.
    for (id, url) in &signing_urls {
        let status = client
            .post(restarted.relink(&format!("{url}/sign")))
            .json(&crate::esign::signature(&serde_json::json!("A Signer")))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.as_u16() == 200 || status.as_u16() == 409, "{id}: {status}");
    }
}
}
