//! Keeps the benchmark tool working: every scenario's `--smoke` run must
//! deliver everything with valid webhook signatures. No timing is asserted.

use signhook_testkit::PgServer;
use std::process::Command;

fn smoke(args: &[&str]) -> serde_json::Value {
    let bench = env!("CARGO_BIN_EXE_signhook-bench");
    let server = std::path::Path::new(bench).with_file_name("signhook");
    assert!(
        server.exists(),
        "{} is missing: run the workspace's tests (cargo test --workspace)",
        server.display()
    );
    let out = Command::new(bench)
        .args(args)
        .arg("--smoke")
        .output()
        .expect("the bench runs");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["missing"], 0, "{report}");
    assert_eq!(report["signature_failures"], 0, "{report}");
    assert!(report["deliveries"].as_u64().unwrap() > 0, "{report}");
    report
}

#[test]
fn every_scenario_runs_on_sqlite() {
    for scenario in ["throughput", "latency", "fanout", "slow-endpoint", "mixed"] {
        let report = smoke(&[scenario]);
        assert_eq!(report["scenario"], scenario);
        assert_eq!(report["backend"], "sqlite");
    }
}

#[test]
fn retry_punctuality_reads_every_retry_from_the_delivery_log() {
    let report = smoke(&["retry-punctuality"]);
    let retries = report["retries"].as_u64().unwrap();
    assert!(retries > 0, "{report}");
    assert_eq!(report["retries_recorded"], retries, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
}

#[tokio::test]
async fn two_nodes_on_postgres() {
    let url = PgServer::shared().create_database().await;
    let report = smoke(&["throughput", "--database-url", &url, "--nodes", "2"]);
    assert_eq!(report["backend"], "postgres");
    assert_eq!(report["nodes"], 2);
}
