//! The command line as an operator uses it, and the committed OpenAPI file.

use crate::helpers::*;
use serde_json::Value;

#[test]
fn create_tenant_prints_its_keys_once_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(&[
        "admin",
        "create-tenant",
        "--name",
        "Acme",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let keys: Vec<&str> = ["\"tenant_id\"", "\"live_key\"", "\"test_key\""].into_iter().collect();
    let positions: Vec<usize> = keys.iter().map(|k| text.find(k).unwrap()).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "documented key order: {text}"
    );
    let tenant: Value = serde_json::from_str(&text).unwrap();
    assert!(tenant["tenant_id"].as_str().unwrap().starts_with("tnt_"));
    assert!(tenant["live_key"].as_str().unwrap().starts_with("sk_live_"));
    assert!(tenant["test_key"].as_str().unwrap().starts_with("sk_test_"));
    assert!(dir.path().join("signhook.db").exists());
}

#[test]
fn create_tenant_refuses_an_empty_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(&[
        "admin",
        "create-tenant",
        "--name",
        " ",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--name"));
}

#[test]
fn migrate_creates_the_database_and_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested/data");
    for _ in 0..2 {
        let out = run_cli(&["migrate", "--data-dir", data_dir.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(data_dir.join("signhook.db").exists());
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    let out = run_cli(&["serve", "--retry-schedule", "5s,soon"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--retry-schedule") && stderr.contains("soon"),
        "{stderr}"
    );
    let out = run_cli(&["serve", "--request-timeout", "fast"]);
    assert!(!out.status.success());
}

#[test]
fn serve_refuses_to_start_with_a_pdf_font_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    // The listen address is taken: were the font not checked first, the
    // server would stop on that instead of running on.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let serve = |fonts: &[&str], env: Option<String>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_signhook"));
        command.args(["serve", "--data-dir", &data_dir, "--listen", &listen]);
        for font in fonts {
            command.args(["--pdf-font", font]);
        }
        command.env_remove("SIGNHOOK_PDF_FONT");
        if let Some(value) = env {
            command.env("SIGNHOOK_PDF_FONT", value);
        }
        let out = command.output().expect("the binary runs");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = serve(&["/nonexistent/brand.ttf"], None);
    assert!(
        stderr.contains("cannot read the PDF font /nonexistent/brand.ttf: No such file"),
        "{stderr}"
    );
    let not_a_font = repo_root().join("Cargo.toml");
    let stderr = serve(&[not_a_font.to_str().unwrap()], None);
    assert!(
        stderr.contains("cannot be used: it is not a TrueType or OpenType font"),
        "{stderr}"
    );
    // Several in the variable, separated as in PATH: each is checked.
    let good = repo_root().join("crates/signhook-documents/fonts/DejaVuSans.ttf");
    let stderr = serve(&[], Some(format!("{}:/nonexistent/second.ttf", good.display())));
    assert!(
        stderr.contains("cannot read the PDF font /nonexistent/second.ttf"),
        "{stderr}"
    );
    // Good fonts pass the check: the server gets as far as the taken port.
    let stderr = serve(&[good.to_str().unwrap()], None);
    assert!(stderr.contains(&format!("cannot listen on {listen}")), "{stderr}");
}

#[test]
fn the_committed_openapi_document_is_current() {
    let generated = signhook_server::openapi::document();
    let committed = std::fs::read_to_string(repo_root().join("docs/openapi.json")).unwrap_or_default();
    assert!(
        generated == committed,
        "docs/openapi.json is stale: run `cargo run -q -p signhook -- openapi > docs/openapi.json`"
    );
    let printed = run_cli(&["openapi"]);
    assert_eq!(String::from_utf8(printed.stdout).unwrap(), generated);
}

#[tokio::test]
async fn the_served_openapi_document_lists_every_route() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = app.client.get(app.url("/openapi.json")).send().await.unwrap();
    let (status, doc) = read(response).await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/event_types",
        "/v1/workspaces",
        "/v1/webhooks",
        "/v1/webhooks/{id}",
        "/v1/webhooks/{id}/secret",
        "/v1/webhooks/{id}/rotate_secret",
        "/v1/webhooks/{id}/test",
        "/v1/webhooks/{id}/deliveries",
        "/v1/deliveries/{id}",
        "/v1/events",
        "/v1/events/{id}",
    ] {
        assert!(paths.contains_key(path), "{path} missing from /openapi.json");
    }
    let (status, _) = read(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let (status, _) = read(app.client.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_node_id_is_kept_in_the_data_dir_and_a_malformed_one_stops_the_server() {
    use std::os::unix::fs::PermissionsExt;
    let db = Database::new(Backend::Sqlite).await;
    let server = BinaryServer::start(&db, &["--dev"]);
    let kept = server.node_id();
    assert!(server.terminate().success());
    let file = db.dir.path().join("node-id");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{kept}\n"));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let server = BinaryServer::start(&db, &["--dev"]);
    assert_eq!(server.node_id(), kept, "the same node after a restart");
    assert!(server.terminate().success());
    let server = BinaryServer::start(&db, &["--dev", "--node-id", "node-b"]);
    assert_eq!(server.node_id(), "node-b", "--node-id overrides the file");
    assert!(server.terminate().success());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!("{kept}\n"),
        "and leaves it alone"
    );

    std::fs::write(&file, "node a\n").unwrap();
    let serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_signhook"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .args(db.cli_args())
        .output();
    let out = tokio::time::timeout(PATIENCE, serve)
        .await
        .expect("the server stops at once")
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&file.display().to_string()) && stderr.contains("does not hold a node id"),
        "{stderr}"
    );
    let out = run_cli(&["serve", "--node-id", "node a"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node-id"));
}
