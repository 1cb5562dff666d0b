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
        .post(&key, "/v1/events", json!({"type": "signer.done", "data": {}}))
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
    let signed = client.post(format!("{link}/sign")).send().await.unwrap();
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
