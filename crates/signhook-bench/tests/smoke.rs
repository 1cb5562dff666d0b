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

/// Runs `signhook-bench` with `args` and `--smoke`; its JSON report.
fn smoke_run(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_signhook-bench"))
        .args(args)
        .arg("--smoke")
        .output()
        .expect("the bench runs");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

/// `big-db` fills a database by formulas in each backend's SQL, then
/// `lists` reads every list page of it, each answering 200 (the bench
/// fails otherwise) for rows it names by those same formulas.
fn a_prepared_month_serves_its_list_pages(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--db-dir", dir.path().to_str().unwrap()];
    if let Some(url) = database_url {
        args.extend(["--database-url", url]);
    }
    let big = smoke_run(&[&["big-db"], &args[..]].concat());
    let written = &big["written"];
    assert_eq!(written["events"], 20_000, "{big}");
    assert_eq!(written["deliveries"], 40_000, "{big}");
    assert!(
        written["attempts"].as_u64().unwrap() > 40_000,
        "retries and dead letters: {big}"
    );
    assert_eq!(written["signature_requests"], 2_000, "{big}");
    let lists = smoke_run(&[&["lists"], &args[..]].concat());
    let pages = lists["latency_ms"].as_object().unwrap();
    assert_eq!(pages.len(), 9, "{lists}");
    // And the usual scenarios run on it, beside the month.
    let report = smoke(&[&["throughput"], &args[..]].concat());
    assert_eq!(report["missing"], 0);
}

#[test]
fn a_prepared_month_on_sqlite() {
    a_prepared_month_serves_its_list_pages(None);
}

#[tokio::test]
async fn a_prepared_month_on_postgres() {
    let url = PgServer::shared().create_database().await;
    a_prepared_month_serves_its_list_pages(Some(&url));
}

#[test]
fn a_backlog_drains_beside_fresh_traffic() {
    let report = smoke(&["drain"]);
    assert_eq!(report["backlog_delivered"], report["backlog"], "{report}");
    assert!(report["claims"].as_f64().unwrap() >= 1.0, "{report}");
}

#[test]
fn bursts_and_many_tenants_deliver_everything() {
    let burst = smoke(&["burst"]);
    assert_eq!(burst["duplicates"], 0, "{burst}");
    assert_eq!(burst["phases"]["burst"]["events"], 500, "{burst}");
    let tenants = smoke(&["many-tenants"]);
    assert_eq!(tenants["subscriptions"], 20, "{tenants}");
}

/// `ordered` delivers the same requests' events unordered, then ordered:
/// the ordered run has none out of `sequence` order.
#[test]
fn ordered_delivers_each_request_in_sequence() {
    let report = smoke(&["ordered"]);
    assert_eq!(report["scenario"], "ordered");
    assert_eq!(report["out_of_order_ordered"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["runs"][1]["ordering"], "signature_request", "{report}");
}

/// `drain --baseline` (the fresh traffic with no backlog), as
/// BENCHMARKS.md runs it.
#[test]
fn drain_runs_with_its_baseline() {
    let report = smoke(&["drain", "--baseline"]);
    assert_eq!(report["baseline"], true, "{report}");
}

/// `inbox` posts signed requests to a real `signhook inbox`, which acks
/// each and forwards it to the sink, where it still verifies.
#[test]
fn inbox_acks_and_forwards_every_request() {
    let report = smoke(&["inbox"]);
    assert_eq!(report["scenario"], "inbox");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["deliveries"], 400, "{report}");
    assert!(
        report["ack_latency_ms_at_rate"]["p99"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}
