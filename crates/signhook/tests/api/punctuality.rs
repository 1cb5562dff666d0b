//! Due work leaves on time under steady traffic, as an operator would try
//! it: the real server, real receivers, and publishing that does not stop.
//! Each test keeps the other traffic flowing until what it waits for has
//! happened, so "on time" means "while the node is busy", never "once it
//! is idle" — the way production sees it.

use crate::helpers::*;
use axum::http::StatusCode;
use chrono::DateTime;
use serde_json::{json, Value};
use signhook_core::policy::DisablePolicy;
use signhook_core::retry::RetryPolicy;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Events published as one tenant at a steady pace until stopped.
struct Traffic {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<usize>,
}

impl Traffic {
    /// Publishes a `signer.done` as `key` every `every`.
    fn start(app: &TestApp, key: &str, every: Duration) -> Self {
        let (client, url, key) = (app.client.clone(), app.url("/v1/events"), key.to_owned());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut published = 0;
            while !stopped.is_cancelled() {
                tick.tick().await;
                let response = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({"i": published}))}))
                    .send()
                    .await
                    .expect("the server answers");
                assert_eq!(response.status(), StatusCode::CREATED);
                published += 1;
            }
            published
        });
        Self { stop, task }
    }

    /// Whether it is still publishing (it only stops when told to).
    fn is_flowing(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops it; how many events it published.
    async fn stop(self) -> usize {
        self.stop.cancel();
        self.task.await.expect("the traffic task ends without panicking")
    }
}

fn at(value: &Value) -> DateTime<chrono::FixedOffset> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("a timestamp, not {value}"))).unwrap()
}

/// A margin that holds on a loaded 2-core machine running a debug build;
/// the figure itself is measured by `signhook-bench retry-punctuality`.
const MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

on_both_backends! {
async fn a_retry_leaves_on_time_while_another_tenant_publishes(backend: Backend) {
    let mut options = Options::on(backend);
    options.retry_policy = RetryPolicy::new(vec![Duration::from_millis(100)], 0.0);
    let app = TestApp::spawn_with(options).await;
    let busy = app.other_tenant().await;
    let busy_receiver = Receiver::start().await;
    let (status, _) = app
        .request(
            reqwest::Method::POST,
            "/v1/webhooks",
            &busy.live_key,
            Some(json!({"url": busy_receiver.url("/"), "subscribed_events": ["signer.*"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let receiver = Receiver::scripted(vec![Reply::Status(500)], Reply::Status(200)).await;
    let hook = app.create_webhook(&receiver.url("/"), json!({"subscribed_events": ["signer.*"]})).await;

    let traffic = Traffic::start(&app, &busy.live_key, Duration::from_millis(20));
    busy_receiver.wait_for(5).await;
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    receiver.wait_for(2).await;
    assert!(traffic.is_flowing(), "the retry waited for the other tenant to stop publishing");
    traffic.stop().await;

    // The delivery log says when the retry was due and when it left.
    let delivery = app.only_delivery(hook["id"].as_str().unwrap()).await;
    let settled = app.wait_until_settled(delivery["id"].as_str().unwrap()).await;
    let (failed, retry) = (&settled["attempts"][0], &settled["attempts"][1]);
    assert_eq!(failed["status_code"], 500);
    let scheduled = at(&retry["scheduled_at"]);
    assert!(
        scheduled - at(&failed["started_at"]) >= chrono::TimeDelta::milliseconds(100),
        "due 100 ms after the failure: {settled}"
    );
    let late = at(&retry["started_at"]) - scheduled;
    assert!(late < MARGIN, "the retry left {late} after it was due: {settled}");
}

async fn every_retry_of_a_busy_endpoint_leaves_while_it_keeps_receiving(backend: Backend) {
    // One subscription, 20 events a second, and the first attempt of each
    // fails: each retry is due 100 ms after its failure, in the thick of
    // the next publishes.
    let mut options = Options::on(backend);
    options.retry_policy = RetryPolicy::new(vec![Duration::from_millis(100)], 0.0);
    let app = TestApp::spawn_with(options).await;
    let receiver = Receiver::scripted(vec![], Reply::FirstAttemptOfEach(500)).await;
    app.create_webhook(&receiver.url("/"), json!({"subscribed_events": ["signer.*"]})).await;

    let traffic = Traffic::start(&app, &app.tenant.live_key, Duration::from_millis(50));
    let retried = |receiver: &Receiver| {
        let mut attempts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for received in receiver.received() {
            *attempts.entry(received.header("webhook-id").to_owned()).or_default() += 1;
        }
        attempts.values().filter(|n| **n >= 2).count()
    };
    eventually("40 events retried while their endpoint keeps receiving new ones", || async {
        let retried = retried(&receiver);
        done_when(retried >= 40, retried)
    })
    .await;
    assert!(traffic.is_flowing(), "the retries waited for publishing to stop");
    let published = traffic.stop().await;
    assert!(published > 40, "{published} published");
}

async fn a_warning_leaves_when_raised_and_before_the_endpoint_is_disabled(backend: Backend) {
    let mut options = Options::on(backend);
    options.retry_policy = RetryPolicy::new(vec![Duration::from_millis(5); 11], 0.0);
    // Production's policy; its day and week crossed by moving the server's
    // clock.
    options.disable_policy = DisablePolicy::default();
    options.scheduler_interval = Duration::from_millis(50);
    let app = TestApp::spawn_with(options).await;
    let ops = Receiver::start().await;
    let ops_hook = app.create_webhook(&ops.url("/ops"), json!({"subscribed_events": ["webhook.*"]})).await;
    let failing = Receiver::scripted(vec![], Reply::Status(500)).await;
    let crm = app.create_webhook(&failing.url("/crm"), json!({"subscribed_events": ["signer.*"]})).await;
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    // Dead after twelve failures: nothing is in flight when the clock jumps.
    app.wait_until(&format!("/v1/webhooks/{}", crm["id"].as_str().unwrap()), |w| w["failure_count"] == 12).await;

    app.clock.advance(Duration::from_secs(24 * 60 * 60));
    ops.wait_for(1).await;
    app.wait_until_none_pending(ops_hook["id"].as_str().unwrap()).await;
    app.clock.advance(Duration::from_secs(7 * 24 * 60 * 60));
    let types = eventually("the warning and the disabling to reach the owner", || async {
        let types: Vec<String> =
            ops.received().iter().map(|r| r.json()["type"].as_str().unwrap().to_owned()).collect();
        done_when(types.len() >= 2, types)
    })
    .await;
    assert_eq!(types, ["webhook.disabling_soon", "webhook.disabled"], "warned first, then disabled");
    // Each left when it was raised (its delivery was due when the sweep
    // wrote it).
    for delivery in app.deliveries(ops_hook["id"].as_str().unwrap(), None).await {
        let settled = app.wait_until_settled(delivery["id"].as_str().unwrap()).await;
        let first = &settled["attempts"][0];
        let late = at(&first["started_at"]) - at(&first["scheduled_at"]);
        assert!(late < chrono::TimeDelta::seconds(1), "{} left {late} after it was raised", settled["event_type"]);
    }
}
}
