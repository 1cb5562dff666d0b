//! Several `signhook serve` nodes on one PostgreSQL: they share the work,
//! never send a delivery twice while its lease holds, cover for a node that
//! dies, and ride out a database restart.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

const EVENTS: usize = 5000;

async fn post(client: &reqwest::Client, url: String, key: &str, body: Value) -> (axum::http::StatusCode, Value) {
    read(
        client
            .post(url)
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("the node answers"),
    )
    .await
}

/// Publishes `count` events, alternating between `nodes`, 16 at a time;
/// returns their ids.
async fn publish_across(nodes: &[String], key: &str, count: usize) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut ids = Vec::with_capacity(count);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let url = format!("{}/v1/events", nodes[i % nodes.len()]);
        let (client, key) = (client.clone(), key.to_owned());
        tasks.spawn(async move {
            let (status, event) = post(
                &client,
                url,
                &key,
                json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({"i": i}))}),
            )
            .await;
            assert_eq!(status, 201, "{event}");
            event["id"].as_str().unwrap().to_owned()
        });
        if tasks.len() >= 16 {
            ids.push(tasks.join_next().await.unwrap().unwrap());
        }
    }
    while let Some(id) = tasks.join_next().await {
        ids.push(id.unwrap());
    }
    ids
}

/// Publishes `count` events round-robin over `nodes`, 16 at a time, the way
/// a client behind a load balancer does: a node that does not answer is
/// skipped for the next one. Returns the ids of the acknowledged events.
async fn publish_with_failover(nodes: Vec<String>, key: String, count: usize) -> Vec<String> {
    let client = reqwest::Client::new();
    let nodes = Arc::new(nodes);
    let mut ids = Vec::with_capacity(count);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let (client, key, nodes) = (client.clone(), key.clone(), nodes.clone());
        tasks.spawn(async move {
            for attempt in 0..nodes.len() {
                let url = format!("{}/v1/events", nodes[(i + attempt) % nodes.len()]);
                let body = json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({"i": i}))});
                let Ok(response) = client.post(url).bearer_auth(&key).json(&body).send().await else {
                    continue; // that node is gone; try the next
                };
                let (status, event) = read(response).await;
                assert_eq!(status, 201, "{event}");
                return event["id"].as_str().unwrap().to_owned();
            }
            panic!("no node took event {i}");
        });
        if tasks.len() >= 16 {
            ids.push(tasks.join_next().await.unwrap().unwrap());
        }
    }
    while let Some(id) = tasks.join_next().await {
        ids.push(id.unwrap());
    }
    ids
}

/// How many times each `webhook-id` arrived.
fn arrivals(receiver: &Receiver) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in receiver.received() {
        *counts.entry(request.header("webhook-id").to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Attempts per node and attempt number, read straight from the database.
fn attempts_by_node_and_number(db: &Database) -> HashMap<(String, u32), u64> {
    let out = PgServer::shared().psql(
        db.url.as_ref().unwrap(),
        "SELECT node_id, attempt_number, count(*) FROM attempts GROUP BY node_id, attempt_number",
    );
    out.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('|').collect();
            let key = (fields[0].to_owned(), fields[1].parse().unwrap());
            (key, fields[2].trim().parse().unwrap())
        })
        .collect()
}

/// Retries made by a node other than the one that made the delivery's
/// first attempt: retries that went to the shared pool and were taken there.
fn retries_taken_by_the_other_node(db: &Database) -> u64 {
    let out = PgServer::shared().psql(
        db.url.as_ref().unwrap(),
        "SELECT count(*) FROM attempts first JOIN attempts retry ON retry.delivery_id = first.delivery_id \
         WHERE first.attempt_number = 1 AND retry.attempt_number = 2 AND retry.node_id <> first.node_id",
    );
    out.trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_work_and_send_nothing_twice() {
    let db = Database::new(Backend::Postgres).await;
    let key = cli_tenant_key(&db);
    // Every delivery fails its first attempt: each node records retries
    // that fall due within milliseconds, and both nodes claim from that one
    // pool of due retries at once — the FOR UPDATE SKIP LOCKED path, where
    // first attempts (claimed at publish by the node that took it) never go.
    let receiver = Receiver::scripted(vec![], Reply::FirstAttemptOfEach(500)).await;
    let args = ["--dev", "--retry-schedule", "20ms,20ms,20ms"];
    let a = BinaryServer::start(&db, &[&args[..], &["--node-id", "node_a"]].concat());
    let b = BinaryServer::start(&db, &[&args[..], &["--node-id", "node_b"]].concat());
    let (status, hook) = post(
        &reqwest::Client::new(),
        a.url("/v1/webhooks"),
        &key,
        json!({"url": receiver.url("/hook")}),
    )
    .await;
    assert_eq!(status, 201, "{hook}");

    let ids = publish_across(&[a.url(""), b.url("")], &key, EVENTS).await;
    eventually("every event failed once and then delivered", || async {
        let counts = arrivals(&receiver);
        let short = ids
            .iter()
            .filter(|id| counts.get(*id).copied().unwrap_or(0) < 2)
            .count();
        done_when(short == 0, format!("{short} events still short of their two requests"))
    })
    .await;
    // Anything still on its way (a claim sent late) would come before the
    // sentinels: one published through each node, failed once and retried
    // like the rest.
    let sentinels = publish_across(&[a.url(""), b.url("")], &key, 2).await;
    eventually("both sentinels failed once and then delivered", || async {
        let counts = arrivals(&receiver);
        let short = sentinels
            .iter()
            .filter(|id| counts.get(*id).copied().unwrap_or(0) < 2)
            .count();
        done_when(short == 0, short)
    })
    .await;
    let counts = arrivals(&receiver);
    let extra: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n != 2).collect();
    assert!(
        extra.is_empty(),
        "each event arrives exactly twice (the failed first attempt, the retry that succeeds): \
         no retry was claimed by both nodes; off: {extra:?}"
    );
    assert_eq!(counts.len(), EVENTS + 2, "nothing else arrived");

    // Results are written back in batches just after the requests; wait for
    // the last ones.
    let total = 2 * (EVENTS + 2) as u64;
    let by_node = eventually("every attempt recorded", || async {
        let by_node = attempts_by_node_and_number(&db);
        done_when(by_node.values().sum::<u64>() >= total, by_node)
    })
    .await;
    println!("attempts by node and number: {by_node:?}");
    assert_eq!(
        by_node.values().sum::<u64>(),
        total,
        "one failure and one success per event"
    );
    for node in ["node_a", "node_b"] {
        for number in [1, 2] {
            let made = by_node.get(&(node.to_owned(), number)).copied().unwrap_or(0);
            assert!(made > 0, "{node} made attempts number {number}: {by_node:?}");
        }
    }
    let crossed = retries_taken_by_the_other_node(&db);
    println!("retries claimed by the node that did not make the first attempt: {crossed}");
    assert!(crossed > 0, "both nodes claimed from the same due retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_node_is_killed_the_other_delivers_its_share() {
    let db = Database::new(Backend::Postgres).await;
    let key = cli_tenant_key(&db);
    // The first requests hang, so node a surely dies with sends in flight.
    let receiver = Receiver::scripted(vec![Reply::Hang; 20], Reply::Status(200)).await;
    // A short lease, so the survivor takes over the dead node's claims soon.
    let args = ["--dev", "--delivery-lease", "2s", "--request-timeout", "1s"];
    let a = BinaryServer::start(&db, &[&args[..], &["--node-id", "node_a"]].concat());
    let b = BinaryServer::start(&db, &[&args[..], &["--node-id", "node_b"]].concat());
    let (status, _) = post(
        &reqwest::Client::new(),
        a.url("/v1/webhooks"),
        &key,
        json!({"url": receiver.url("/hook")}),
    )
    .await;
    assert_eq!(status, 201);

    // Publish across both nodes; a quarter of the way in, node a dies.
    let publishing = tokio::spawn(publish_with_failover(vec![a.url(""), b.url("")], key.clone(), EVENTS));
    receiver.wait_for(EVENTS / 4).await;
    a.kill9();
    let everything = publishing.await.expect("every event is acknowledged by a live node");
    assert_eq!(everything.len(), EVENTS);

    let counts = eventually("every event after node a died", || async {
        let counts = arrivals(&receiver);
        let missing = everything.iter().filter(|id| !counts.contains_key(*id)).count();
        done_when(missing == 0, counts).map_err(|_| format!("{missing} missing"))
    })
    .await;
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    // Only deliveries the dead node had in flight may arrive twice.
    println!("duplicates after killing a node mid-run: {duplicates} (of {EVENTS} events)");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_is_a_503_then_nothing_acknowledged_is_lost() {
    let pg = PgServer::start();
    // A server of its own, which this test stops and starts again.
    let url = pg.create_database_named("restart").await;
    let db = Database {
        dir: tempfile::tempdir().unwrap(),
        url: Some(url),
    };
    let key = cli_tenant_key(&db);
    let receiver = Receiver::start().await;
    let node = BinaryServer::start(&db, &["--dev"]);
    let client = reqwest::Client::new();
    let (status, _) = post(
        &client,
        node.url("/v1/webhooks"),
        &key,
        json!({"url": receiver.url("/hook")}),
    )
    .await;
    assert_eq!(status, 201);
    let mut acknowledged = publish_across(&[node.url("")], &key, 50).await;

    pg.stop();
    let (status, body) = post(
        &client,
        node.url("/v1/events"),
        &key,
        json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({}))}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let (status, _) = read(client.get(node.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 503);

    pg.restart();
    let event = eventually("the node to accept publishes again", || async {
        let (status, event) = post(
            &client,
            node.url("/v1/events"),
            &key,
            json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({}))}),
        )
        .await;
        assert!(
            status == 201 || status == 503,
            "only 503 while the database comes back: {event}"
        );
        done_when(status == 201, event)
    })
    .await;
    acknowledged.push(event["id"].as_str().unwrap().to_owned());
    acknowledged.extend(publish_across(&[node.url("")], &key, 50).await);

    eventually("every acknowledged event across the restart", || async {
        let counts = arrivals(&receiver);
        let missing = acknowledged.iter().filter(|id| !counts.contains_key(*id)).count();
        done_when(missing == 0, format!("{missing} missing"))
    })
    .await;
}

/// Two nodes on one PostgreSQL and one S3-compatible bucket: a document
/// uploaded through one node is signed through the other, the signed PDF is
/// served by either, and deadlines expire once although both nodes' schedulers
/// race for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_documents_on_s3_and_expire_each_request_once() {
    let s3 = signhook_testkit::s3::S3Server::start();
    let db = Database::new(Backend::Postgres).await;
    let key = cli_tenant_key(&db);
    let receiver = Receiver::start().await;
    let blob_url = s3.bucket_url();
    let args = ["--dev", "--blob-url", blob_url.as_str(), "--scheduler-interval", "20ms"];
    // One data directory for both (and so one master key file): each needs
    // an id of its own.
    let a = BinaryServer::start_with_env(&db, &[&args[..], &["--node-id", "node_a"]].concat(), &s3.env());
    let b = BinaryServer::start_with_env(&db, &[&args[..], &["--node-id", "node_b"]].concat(), &s3.env());
    let client = reqwest::Client::new();
    let (status, _) = post(
        &client,
        a.url("/v1/webhooks"),
        &key,
        json!({"url": receiver.url("/hook")}),
    )
    .await;
    assert_eq!(status, 201);

    let body = json!({"name": "MSA", "signers": [{"name": "Ada", "email": "ada@example.com"}]});
    let active = crate::esign::out_for_signature_at(&client, &a.url(""), &key, body).await;
    let id = active["id"].as_str().unwrap();
    // Node B signs (and so renders the signed PDF from A's upload).
    let sign = b.relink(&format!("{}/sign", crate::esign::signing_url(&active, 0)));
    let body = crate::esign::signature(&json!("Ada"));
    let (status, view) = read(client.post(sign).json(&body).send().await.unwrap()).await;
    assert_eq!(status, 200, "{view}");
    // Ada signs without opening her link: it is opened first.
    let done = crate::esign::events_of(&receiver, id, 5).await;
    assert_eq!(done[2]["type"], "signer.link_opened");
    assert_eq!(done[4]["type"], "signature_request.done");
    for node in [&a, &b] {
        let link = done[4]["data"]["links"]["signed_pdf"]["url"].as_str().unwrap();
        let response = client.get(node.relink(link)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let pdf = response.bytes().await.unwrap();
        assert_eq!(signhook_documents::inspect(&pdf).unwrap().pages, 3);
    }

    // Twenty ongoing requests whose deadline is made to pass at once.
    let mut ids = Vec::new();
    for i in 0..20 {
        let body = json!({"name": format!("NDA {i}"), "signers": [{"name": "Ada", "email": "ada@example.com"}]});
        let active = crate::esign::out_for_signature_at(&client, &b.url(""), &key, body).await;
        let id = active["id"].as_str().unwrap().to_owned();
        ids.push(id);
    }
    db.execute("UPDATE signature_requests SET expires_at = 0 WHERE status = 'ongoing'")
        .await
        .unwrap();
    for id in &ids {
        crate::esign::events_of(&receiver, id, 3).await;
    }
    let response = client
        .get(a.url("/v1/events?type=signature_request.expired&limit=100"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let (_, feed) = read(response).await;
    let mut expired: Vec<&str> = feed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["signature_request"]["id"].as_str().unwrap())
        .collect();
    expired.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(expired, expected, "each request expired exactly once");
}

#[tokio::test]
async fn dashboard_sessions_and_portal_links_hold_across_two_nodes() {
    let db = Database::new(Backend::Postgres).await;
    let mut args: Vec<String> = ["admin", "create-tenant", "--name", "Acme"].map(String::from).to_vec();
    args.extend(db.cli_args());
    let out = run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let tenant: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = tenant["live_key"].as_str().unwrap().to_owned();
    let a = BinaryServer::start(&db, &["--dev", "--node-id", "node_a"]);
    let b = BinaryServer::start(&db, &["--dev", "--node-id", "node_b"]);
    let mut args: Vec<String> = [
        "admin",
        "create-user",
        "--tenant",
        tenant["tenant_id"].as_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    args.extend(
        [
            "--email",
            "ada@example.com",
            "--role",
            "admin",
            "--public-url",
            &a.url("/"),
        ]
        .map(String::from),
    );
    args.extend(db.cli_args());
    let out = run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let user: Value = serde_json::from_slice(&out.stdout).unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The password set on node A opens a session that node B knows.
    let HttpSession { cookie, .. } = http_session_of(&a.url(""), &user).await;
    let on_b = client
        .get(b.url("/webhooks"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(on_b.status(), 200);
    let csrf = csrf_of(&on_b.text().await.unwrap());
    // Logged out on B: refused on A from the next request.
    let out = client
        .post(b.url("/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let on_a = client
        .get(a.url("/webhooks"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (on_a.status().as_u16(), on_a.headers()["location"].to_str().unwrap()),
        (303, "/login")
    );

    // A portal link made on A opens once, on B; A then refuses it.
    let (status, link) = post(&client, a.url("/v1/portal_sessions"), &key, json!({})).await;
    assert_eq!(status, 201, "{link}");
    let path = url::Url::parse(link["url"].as_str().unwrap())
        .unwrap()
        .path()
        .to_owned();
    let opened = client.get(b.url(&path)).send().await.unwrap();
    assert_eq!(opened.status(), 303);
    let session = opened.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(client.get(a.url(&path)).send().await.unwrap().status(), 410);
    // The portal session works on A too.
    assert_eq!(client.get(a.url(&session)).send().await.unwrap().status(), 200);
    a.terminate();
    b.terminate();
}
