//! Secrets at rest and in logs, with the real binary: the files it writes
//! are private to its user, and no credential — API key, webhook secret,
//! a receiver's header value, signing or file link — appears in its log at
//! any level (the hardening issue found link tokens in every request
//! span's `uri=` at debug).

use crate::esign::{signing_url, CONTRACT};
use crate::helpers::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every file and directory under `dir`, itself included.
fn tree(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut all = vec![dir.to_owned()];
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            all.extend(tree(&entry.unwrap().path()));
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_the_log_and_every_file_is_private() {
    let db = Database::new(Backend::Sqlite).await;
    let key = cli_tenant_key(&db);
    // A deployment from before: a world-readable directory and database.
    let data = db.dir.path();
    let database = data.join(signhook_store::SQLITE_FILE);
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644)).unwrap();

    // Everything at every level.
    let server = BinaryServer::start_with_env(&db, &["--dev"], &[("RUST_LOG".into(), "trace".into())]);
    let receiver = Receiver::start().await;
    let (status, hook) = server
        .post(
            &key,
            "/v1/webhooks",
            json!({"url": receiver.url("/hook"), "headers": {"Authorization": "Bearer receiver-credential-7f3a"}}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let hook_id = hook["id"].as_str().unwrap();
    let (_, rotated) = server
        .post(&key, &format!("/v1/webhooks/{hook_id}/rotate_secret"), json!({}))
        .await;
    let (_, revealed) = server.get(&key, &format!("/v1/webhooks/{hook_id}/secret")).await;
    let secrets = [hook["secret"].as_str().unwrap(), rotated["secret"].as_str().unwrap()];
    assert_eq!(revealed["secret"], secrets[1]);
    server
        .post(
            &key,
            "/v1/events",
            json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({}))}),
        )
        .await;
    receiver.wait_for(1).await;

    // A signature request signed through its link, and its files fetched.
    let client = reqwest::Client::new();
    let request = crate::esign::out_for_signature_at(
        &client,
        &server.url(""),
        &key,
        json!({"name": "MSA", "signers": [{"name": "Ada", "email": "ada@example.com"}]}),
    )
    .await;
    let id = request["id"].as_str().unwrap();
    let link = server.relink(&signing_url(&request, 0));
    let view: serde_json::Value = client.get(&link).send().await.unwrap().json().await.unwrap();
    let document = server.relink(view["documents"][0]["url"].as_str().unwrap());
    assert_eq!(
        client.get(&document).send().await.unwrap().bytes().await.unwrap(),
        CONTRACT
    );
    let signed = client
        .post(format!("{link}/sign"))
        .json(&crate::esign::signature(&json!("Ada")))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    let (_, links) = server.get(&key, &format!("/v1/signature_requests/{id}/links")).await;
    let file = server.relink(links["signed_pdf"]["url"].as_str().unwrap());
    assert_eq!(client.get(&file).send().await.unwrap().status(), 200);

    let log = server.stop_and_read_log();
    assert!(log.contains("/signing/{token}"), "the requests are in the log");
    let link_token = link.rsplit_once('.').unwrap().1;
    let file_token = file.split("token=").nth(1).unwrap();
    let mut credentials = vec![key.as_str(), "receiver-credential-7f3a", link_token, file_token];
    for secret in secrets {
        credentials.extend([secret, secret.trim_start_matches("whsec_")]);
    }
    for credential in credentials {
        assert!(!log.contains(credential), "`{credential}` is in the log");
    }

    // The directory, the database and its log, the documents: this user's.
    assert_eq!(mode(data), 0o700);
    for path in tree(data) {
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), expected, "{}", path.display());
    }
    assert!(
        tree(data).iter().any(|p| p.ends_with("signed.pdf")),
        "the blobs are there too"
    );
}

/// The id of the key that seals, from a master key file.
fn current_key_id(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let keys: Vec<&str> = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    keys[0].split(' ').next().unwrap().to_owned()
}

/// Every sealed value in the database: the subscriptions' secrets, previous
/// secrets and headers, and the link key.
async fn stored_secrets(db: &Database, backend: Backend) -> Vec<String> {
    let mut stored = db
        .query_texts(
            "SELECT secret FROM subscriptions UNION ALL \
             SELECT previous_secret FROM subscriptions WHERE previous_secret IS NOT NULL UNION ALL \
             SELECT headers FROM subscriptions",
        )
        .await;
    stored.extend(
        db.query_texts(match backend {
            Backend::Sqlite => "SELECT CAST(secret AS TEXT) FROM link_keys",
            Backend::Postgres => "SELECT convert_from(secret, 'UTF8') FROM link_keys",
        })
        .await,
    );
    stored
}

/// On SQLite: none of `secrets` is anywhere in the database's files.
fn assert_not_in_sqlite_files(db: &Database, backend: Backend, secrets: &[&str]) {
    if backend != Backend::Sqlite {
        return;
    }
    let mut raw = std::fs::read(db.dir.path().join(signhook_store::SQLITE_FILE)).unwrap();
    raw.extend(std::fs::read(db.dir.path().join("signhook.db-wal")).unwrap_or_default());
    let raw = String::from_utf8_lossy(&raw);
    for secret in secrets {
        assert!(
            !raw.contains(secret.trim_start_matches("whsec_")),
            "{secret} in the database files"
        );
    }
}

/// Publishes one event through `server` and returns the `n`th request the
/// receiver got (1-based).
async fn deliver(server: &BinaryServer, key: &str, receiver: &Receiver, n: usize) -> Received {
    let (status, event) = server
        .post(
            key,
            "/v1/events",
            json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({}))}),
        )
        .await;
    assert_eq!(status, 201, "{event}");
    receiver.wait_for(n).await.remove(n - 1)
}

/// `signhook serve` on `db` with `args`, expected to refuse to start:
/// returns what it wrote to stderr.
async fn refused_start(db: &Database, args: &[&str]) -> String {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_signhook"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(db.cli_args())
        .args(args)
        .kill_on_drop(true);
    let out = tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("the server refuses to start rather than serve")
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

on_both_backends! {
async fn secrets_are_sealed_at_rest_migrated_and_rotated(backend: Backend) {
    let db = Database::new(backend).await;
    let key = cli_tenant_key(&db);
    let key_file = db.dir.path().join("master.key");
    assert_eq!(mode(&key_file), 0o600, "the master key file is created private");
    let receiver = Receiver::start().await;

    // A subscription with a credential header and a rotated secret.
    let server = BinaryServer::start(&db, &["--dev"]);
    let (_, hook) = server
        .post(
            &key,
            "/v1/webhooks",
            json!({"url": receiver.url("/hook"), "headers": {"Authorization": "Bearer sealed-credential-91c2"}}),
        )
        .await;
    let hook_id = hook["id"].as_str().unwrap();
    let (_, rotated) = server
        .post(&key, &format!("/v1/webhooks/{hook_id}/rotate_secret"), json!({}))
        .await;
    let secrets = [hook["secret"].as_str().unwrap(), rotated["secret"].as_str().unwrap()];
    let received = deliver(&server, &key, &receiver, 1).await;
    crate::delivery::verify_standard(secrets[0], &received);
    crate::delivery::verify_standard(secrets[1], &received);
    server.terminate();

    // In the database: only sealed values, under the key file's key.
    let first = current_key_id(&key_file);
    let stored = stored_secrets(&db, backend).await;
    assert_eq!(stored.len(), 4, "{stored:?}");
    for value in &stored {
        assert!(value.starts_with(&format!("enc:v1:{first}:")), "{value}");
    }
    assert_not_in_sqlite_files(&db, backend, &[secrets[0], secrets[1], "sealed-credential-91c2"]);

    // A database from before sealing: its plaintext is sealed at start, and
    // deliveries go on with the same secret and headers.
    let legacy = "whsec_BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let raw_link_key = match backend {
        Backend::Sqlite => format!("X'{}'", "07".repeat(32)),
        Backend::Postgres => format!("'\\x{}'::bytea", "07".repeat(32)),
    };
    // Long enough to span overflow pages, which sealing frees (plaintext
    // and all) when it writes the longer sealed value elsewhere.
    let padding: String = (1..=6).map(|i| format!(",\"x-padding-{i}\":\"{}\"", "p".repeat(1000))).collect();
    db.execute(&format!(
        "UPDATE subscriptions SET secret = '{legacy}', previous_secret = NULL, \
         headers = '{{\"authorization\":\"Bearer legacy-credential-5d0e\"{padding}}}'; \
         UPDATE link_keys SET secret = {raw_link_key};"
    ))
    .await
    .unwrap();
    let server = BinaryServer::start(&db, &["--dev"]);
    let received = deliver(&server, &key, &receiver, 2).await;
    crate::delivery::verify_standard(legacy, &received);
    assert_eq!(received.header("authorization"), "Bearer legacy-credential-5d0e");
    server.terminate();
    let stored = stored_secrets(&db, backend).await;
    assert_eq!(stored.len(), 3, "{stored:?}");
    // Nor does the plaintext linger in SQLite's free pages or log.
    assert_not_in_sqlite_files(&db, backend, &[legacy, "legacy-credential-5d0e"]);
    assert!(stored.iter().all(|v| v.starts_with(&format!("enc:v1:{first}:"))), "{stored:?}");

    // Rotation: a new key seals everything, the old one leaves the file.
    let mut args = vec!["admin", "rotate-master-key"];
    let data = db.cli_args();
    args.extend(data.iter().map(String::as_str));
    let out = run_cli(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let second = current_key_id(&key_file);
    assert_eq!(answer["key_id"], second);
    assert_ne!(second, first);
    assert!(!std::fs::read_to_string(&key_file).unwrap().contains(&first));
    assert_eq!(mode(&key_file), 0o600);
    let stored = stored_secrets(&db, backend).await;
    assert!(stored.iter().all(|v| v.starts_with(&format!("enc:v1:{second}:"))), "{stored:?}");
    let server = BinaryServer::start(&db, &["--dev"]);
    crate::delivery::verify_standard(legacy, &deliver(&server, &key, &receiver, 3).await);
    server.terminate();

    // Without the key that sealed them, the server refuses to start and
    // says which key it needs.
    let elsewhere = tempfile::tempdir().unwrap();
    let other = elsewhere.path().join("other.key");
    let stderr = refused_start(&db, &["--dev", "--master-key-file", other.to_str().unwrap()]).await;
    assert!(stderr.contains(&second) && stderr.contains("master key"), "{stderr}");
}
}
