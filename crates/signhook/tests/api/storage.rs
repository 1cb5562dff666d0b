//! A full disk is a clear, recoverable state (the hardening issue: with the
//! data directory on a 24 MB file system the server answered 500s and
//! dropped connections while `/healthz` and `/readyz` said 200).
//!
//! The real binary's disk is "filled" by lowering its file-size limit
//! (RLIMIT_FSIZE) to the size its files have: every write that needs more
//! space fails, as on a full disk, until the limit is raised again.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::HashSet;

/// Sets the running process `pid`'s soft limit on file size.
fn set_file_size_limit(pid: u32, bytes: Option<u64>) {
    let limit = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: prlimit reads `limit` and writes nothing back (null).
    let done = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(done, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// The binary on `db`, a tenant's key and a receiver subscribed to
/// everything.
async fn serving_one_webhook(db: &Database) -> (String, Receiver, BinaryServer) {
    let key = cli_tenant_key(db);
    let receiver = Receiver::start().await;
    let server = BinaryServer::start(db, &["--dev"]);
    let (status, _) = server
        .post(&key, "/v1/webhooks", json!({"url": receiver.url("/hook")}))
        .await;
    assert_eq!(status, 201);
    (key, receiver, server)
}

async fn status_of(client: &reqwest::Client, url: String) -> u16 {
    client.get(url).send().await.map_or(0, |r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_503_and_unready_then_everything_resumes() {
    let db = Database::new(Backend::Sqlite).await;
    let (key, receiver, server) = serving_one_webhook(&db).await;
    let client = reqwest::Client::new();
    let payload = json!({"filler": "x".repeat(20_000)});
    let publish = || async {
        server
            .post(
                &key,
                "/v1/events",
                json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", payload.clone())}),
            )
            .await
    };

    // The disk fills: no file may grow past what it holds now.
    let files = ["", "-wal", "-shm"].map(|s| db.dir.path().join(format!("{}{s}", signhook_store::SQLITE_FILE)));
    let largest = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .max()
        .unwrap();
    set_file_size_limit(server.child.id(), Some(largest));
    let accepted = std::sync::Mutex::new(HashSet::new());
    let refusal: Value = eventually("a publish refused for want of space", || async {
        let (status, body) = publish().await;
        match status.as_u16() {
            201 => {
                let mut accepted = accepted.lock().unwrap();
                accepted.insert(body["id"].as_str().unwrap().to_owned());
                Err(format!("{} accepted so far", accepted.len()))
            }
            503 => Ok(body),
            other => panic!("neither accepted nor refused as unavailable: {other} {body}"),
        }
    })
    .await;
    let mut acknowledged = accepted.into_inner().unwrap();
    assert_eq!(refusal["error"]["code"], "storage_unavailable", "{refusal}");
    let response = client
        .post(server.url("/v1/events"))
        .bearer_auth(&key)
        .json(&json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", payload.clone())}))
        .send()
        .await
        .expect("an answer, not a dropped connection");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "10");
    // The load balancer is told; the process lives, and reads still work.
    assert_eq!(status_of(&client, server.url("/readyz")).await, 503);
    assert_eq!(status_of(&client, server.url("/healthz")).await, 200);
    let (status, _) = server.get(&key, "/v1/webhooks").await;
    assert_eq!(status, 200);
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("signhook_storage_ready 0"), "{metrics}");

    // Space returns: readiness and publishing come back by themselves.
    set_file_size_limit(server.child.id(), None);
    eventually("/readyz is ready again", || async {
        let status = status_of(&client, server.url("/readyz")).await;
        done_when(status == 200, status)
    })
    .await;
    let (status, body) = publish().await;
    assert_eq!(status, 201, "{body}");
    acknowledged.insert(body["id"].as_str().unwrap().to_owned());

    // Nothing acknowledged was lost: every one is delivered.
    receiver.wait_for_ids(&acknowledged).await;
    // One warning for the whole episode, not one per request.
    let log = server.stop_and_read_log();
    assert_eq!(log.matches("the database refuses writes").count(), 1, "{log}");
    assert_eq!(db.query_texts("PRAGMA integrity_check").await, ["ok"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_that_refuses_writes_is_a_503_then_everything_resumes() {
    let db = Database::new(Backend::Postgres).await;
    let url = db.url.clone().unwrap();
    let name = url::Url::parse(&url).unwrap().path().trim_start_matches('/').to_owned();
    let (key, receiver, server) = serving_one_webhook(&db).await;
    let client = reqwest::Client::new();
    let publish = || async {
        server
            .post(
                &key,
                "/v1/events",
                json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({}))}),
            )
            .await
    };
    let (status, first) = publish().await;
    assert_eq!(status, 201);
    let mut acknowledged = HashSet::from([first["id"].as_str().unwrap().to_owned()]);

    // The database turns read-only, for connections old and new.
    let pg = PgServer::shared();
    let reconnect_all = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid();"
    );
    pg.psql(
        &pg.url("postgres"),
        &format!("ALTER DATABASE {name} SET default_transaction_read_only = on; {reconnect_all}"),
    );
    let refusal = eventually("a publish refused by the read-only database", || async {
        let (status, body) = publish().await;
        done_when(body["error"]["code"] == "storage_unavailable", (status, body))
    })
    .await;
    assert_eq!(refusal.0, 503, "{}", refusal.1);
    assert_eq!(status_of(&client, server.url("/readyz")).await, 503);
    assert_eq!(status_of(&client, server.url("/healthz")).await, 200);

    pg.psql(
        &pg.url("postgres"),
        &format!("ALTER DATABASE {name} RESET default_transaction_read_only; {reconnect_all}"),
    );
    eventually("/readyz is ready again", || async {
        let status = status_of(&client, server.url("/readyz")).await;
        done_when(status == 200, status)
    })
    .await;
    let (status, body) = eventually("publishing again", || async {
        let (status, body) = publish().await;
        done_when(status == 201, (status, body))
    })
    .await;
    assert_eq!(status, 201);
    acknowledged.insert(body["id"].as_str().unwrap().to_owned());
    receiver.wait_for_ids(&acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_cannot_be_written_fails_no_request() {
    // The log on the full disk (the hardening issue: connections then closed
    // without any answer): the server's stderr is a file that may not grow.
    let db = Database::new(Backend::Sqlite).await;
    let key = cli_tenant_key(&db);
    let log_path = db.dir.path().join("server.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_signhook"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .args(db.cli_args())
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    // It picks its port and says which in its log.
    let addr = eventually("the server to log where it listens", || async {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        log.lines().find_map(serving_address).ok_or(log)
    })
    .await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    eventually("the server answers", || async {
        let status = status_of(&client, url("/healthz")).await;
        done_when(status == 200, status)
    })
    .await;
    let logged = std::fs::metadata(&log_path).unwrap().len();
    assert!(logged > 0, "the server logs to the file");
    set_file_size_limit(child.id(), Some(logged));
    // Every request logs at debug, and none of it can be written now.
    for _ in 0..5 {
        let response = client
            .get(url("/v1/webhooks"))
            .bearer_auth(&key)
            .send()
            .await
            .expect("an answer, not a closed connection");
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        std::fs::metadata(&log_path).unwrap().len(),
        logged,
        "the log did not grow"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
