//! The API document against the real server: schemathesis generates
//! requests for every operation of `/openapi.json` (its coverage, fuzzing
//! and stateful phases) and fails on any server error, any status the
//! document does not list, and any response, content type or header that
//! does not match it. Before the hardening issue it found 38 statuses the
//! document left out (401 on 21 operations, 415, 400, 422).
//!
//! Needs `schemathesis` on the PATH (`python3 -m pip install
//! 'schemathesis>=4.32,<5'`; `.ci/run` installs it); without it this test
//! fails, it never skips.

use crate::helpers::*;
use std::path::Path;
use std::time::Duration;

const CHECKS: &str = "not_a_server_error,status_code_conformance,response_schema_conformance,\
                      content_type_conformance,response_headers_conformance";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_the_real_server() {
    let db = Database::new(Backend::Sqlite).await;
    let key = cli_tenant_key(&db);
    // --dev: generated endpoint URLs may be anything; no rate limit: the
    // run sends thousands of requests with one key.
    let server = BinaryServer::start(&db, &["--dev", "--api-rate-limit", "0"]);
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut command = tokio::process::Command::new("schemathesis");
    command
        .args(["run", &server.url("/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--checks", CHECKS, "--max-examples", "50"])
        .args(["--generation-deterministic", "--no-color"])
        // Registers a serializer for document uploads (application/pdf).
        .env("PYTHONPATH", hooks)
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let run = match command.spawn() {
        Ok(child) => child.wait_with_output(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("schemathesis is not installed: python3 -m pip install 'schemathesis>=4.32,<5' (.ci/run does)")
        }
        Err(e) => panic!("schemathesis does not start: {e}"),
    };
    // Generous: a few thousand requests to a debug build on loaded cores.
    let out = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .expect("schemathesis finishes")
        .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{report}");
    let tested = report.lines().find(|l| l.trim_start().starts_with("Tested:"));
    let selected = report.lines().find(|l| l.trim_start().starts_with("Selected:"));
    assert!(tested.is_some() && selected.is_some(), "no summary:\n{report}");
    // Every operation selected was tested: "Selected: N/N", "Tested: N".
    let selected = selected.unwrap().split(':').nth(1).unwrap().trim().to_owned();
    let tested = tested.unwrap().split(':').nth(1).unwrap().trim().to_owned();
    assert_eq!(selected, format!("{tested}/{tested}"), "{report}");
}
