//! When endpoints fail: the outcomes of each kind of failure, dead letters
//! and replay, warn-then-disable, isolation, rate limits, the SSRF guard and
//! metrics — as a user sees them through the API.

use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::{json, Value};
use signhook_core::policy::DisablePolicy;
use signhook_core::retry::RetryPolicy;
use std::time::Duration;

/// Subscribes a receiver to the operational events, as an operator would;
/// returns it and the subscription's id.
async fn ops_subscription(app: &TestApp) -> (Receiver, String) {
    let ops = Receiver::start().await;
    let hook = app
        .create_webhook(
            &ops.url("/ops"),
            json!({"subscribed_events": ["webhook.*", "delivery.*"]}),
        )
        .await;
    (ops, hook["id"].as_str().unwrap().to_owned())
}

/// Waits until `receiver` got at least one event of `event_type`; returns them all.
async fn wait_for_type(receiver: &Receiver, event_type: &str) -> Vec<Value> {
    eventually(format_args!("a {event_type}"), || async {
        let found = receiver.of_type(event_type);
        done_when(!found.is_empty(), found)
    })
    .await
}

/// Polls `path` until `done` holds for the body.
async fn wait_until(app: &TestApp, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    app.wait_until(path, done).await
}

fn signer_events() -> Value {
    json!({"subscribed_events": ["signer.*"]})
}

on_both_backends! {
async fn retry_after_is_waited_out_within_the_cap(backend: Backend) {
    let mut options = Options::on(backend);
    options.retry_policy = RetryPolicy::new(vec![Duration::from_millis(10), Duration::from_secs(3600)], 0.0);
    let app = TestApp::spawn_with(options).await;
    let receiver = Receiver::scripted(vec![Reply::WithHeaders(503, &[("retry-after", "120")])], Reply::Status(200)).await;
    let hook = app.create_webhook(&receiver.url("/"), signer_events()).await;
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    receiver.wait_for(1).await;
    let delivery = app.only_delivery(hook["id"].as_str().unwrap()).await;
    let delivery = wait_until(&app, &format!("/v1/deliveries/{}", delivery["id"].as_str().unwrap()), |d| d["attempt_count"] == 1).await;
    let last = chrono::DateTime::parse_from_rfc3339(delivery["last_attempt_at"].as_str().unwrap()).unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(delivery["next_attempt_at"].as_str().unwrap()).unwrap();
    let wait = next - last;
    assert!(wait >= chrono::Duration::seconds(120), "Retry-After: 120 was honored, not the 10 ms step: {wait}");
    assert!(wait < chrono::Duration::seconds(3600), "and not more: {wait}");
    assert_eq!(delivery["attempts"][0]["status_code"], 503);
}

async fn gone_disables_the_subscription_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ops, _) = ops_subscription(&app).await;
    let receiver = Receiver::scripted(vec![], Reply::Status(410)).await;
    let hook = app.create_webhook(&receiver.url("/"), signer_events()).await;
    let hook_id = hook["id"].as_str().unwrap();
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    let webhook = wait_until(&app, &format!("/v1/webhooks/{hook_id}"), |w| w["enabled"] == false).await;
    assert_eq!(webhook["disabled_reason"], "gone");
    let delivery = app.only_delivery(hook_id).await;
    assert_eq!(delivery["status"], "failed");
    assert_eq!(delivery["attempt_count"], 1, "410 is not retried");
    let disabled = &wait_for_type(&ops, "webhook.disabled").await[0];
    assert_eq!(disabled["data"]["webhook"]["id"], hook_id);
    assert_eq!(disabled["data"]["webhook"]["disabled_reason"], "gone");
    // Events while disabled are kept, canceled.
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    let canceled = app.deliveries(hook_id, Some("canceled")).await;
    assert_eq!(canceled.len(), 1);
    assert_eq!(receiver.received().len(), 1);
}

async fn a_redirect_is_a_failure_that_records_where_it_pointed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver =
        Receiver::scripted(vec![Reply::WithHeaders(302, &[("location", "https://elsewhere.example.com/hook")])], Reply::Status(200)).await;
    let hook = app.create_webhook(&receiver.url("/"), signer_events()).await;
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    let delivery = app.only_delivery(hook["id"].as_str().unwrap()).await;
    let settled = app.wait_until_settled(delivery["id"].as_str().unwrap()).await;
    assert_eq!(settled["status"], "succeeded", "retried, and the retry succeeded");
    let first = &settled["attempts"][0];
    assert_eq!(first["status_code"], 302);
    assert_eq!(first["error_kind"], "http");
    assert_eq!(first["location"], "https://elsewhere.example.com/hook");
    assert_eq!(receiver.received().len(), 2, "the redirect was not followed");
}

async fn timeouts_and_dns_failures_are_named(backend: Backend) {
    let mut options = Options::on(backend);
    options.request_timeout = Duration::from_millis(300);
    let app = TestApp::spawn_with(options).await;
    let hanging = Receiver::scripted(vec![], Reply::Hang).await;
    let slow = app.create_webhook(&hanging.url("/"), json!({"auto_retry": false, "subscribed_events": ["signer.*"]})).await;
    let nowhere = app
        .create_webhook("http://does-not-exist.invalid/hook", json!({"auto_retry": false, "subscribed_events": ["signer.*"]}))
        .await;
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    for (hook, kind) in [(&slow, "timeout"), (&nowhere, "dns")] {
        let delivery = app.only_delivery(hook["id"].as_str().unwrap()).await;
        let settled = app.wait_until_settled(delivery["id"].as_str().unwrap()).await;
        assert_eq!(settled["status"], "failed");
        assert_eq!(settled["attempts"][0]["error_kind"], kind, "{settled}");
    }
}

async fn dead_letters_are_resent_one_by_one_or_recovered_in_bulk(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::scripted(vec![], Reply::Status(500)).await;
    let hook = app.create_webhook(&receiver.url("/"), signer_events()).await;
    let hook_id = hook["id"].as_str().unwrap();
    let since = signhook_core::time::rfc3339(chrono::Utc::now() - chrono::Duration::seconds(1));
    for i in 0..4 {
        app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({"i": i}))).await;
    }
    let dead = eventually("4 dead letters", || async {
        let dead = app.deliveries(hook_id, Some("failed")).await;
        done_when(dead.len() == 4, dead)
    })
    .await;
    // The receiver is back.
    receiver.set_reply(Reply::Status(200));

    // One by one: the same delivery, the same webhook-id, a fresh schedule.
    let one = dead[0]["id"].as_str().unwrap();
    let (status, resent) = app.post(&format!("/v1/deliveries/{one}/resend"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{resent}");
    let settled = app.wait_until_settled(one).await;
    assert_eq!(settled["status"], "succeeded");
    assert_eq!(settled["attempt_count"], 5);
    let (status, err) = app.post(&format!("/v1/deliveries/{one}/resend"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "a succeeded delivery can be replayed: {err}");
    app.wait_until_settled(one).await;

    // In bulk: the other three.
    let (status, job) = app.post(&format!("/v1/webhooks/{hook_id}/recover"), json!({"since": since})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["total"], 3);
    let job_id = job["id"].as_str().unwrap();
    let job = wait_until(&app, &format!("/v1/recoveries/{job_id}"), |j| j["status"] == "done").await;
    assert_eq!(job["resent"], 3);
    eventually("the recovered deliveries to succeed", || async {
        let succeeded = app.deliveries(hook_id, Some("succeeded")).await.len();
        done_when(succeeded == 4, succeeded)
    })
    .await;
    let ids: std::collections::HashSet<String> =
        receiver.received().iter().map(|r| r.header("webhook-id").to_owned()).collect();
    assert_eq!(ids.len(), 4, "every event arrived, each under its own webhook-id");

    // Bad requests.
    let (status, err) = app.post(&format!("/v1/webhooks/{hook_id}/recover"), json!({"since": "yesterday"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "since");
    let (status, _) = app.get("/v1/recoveries/rcv_00000000000000000000000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn any_event_can_be_sent_to_any_subscription(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = Receiver::start().await;
    app.create_webhook(&first.url("/"), signer_events()).await;
    let event = app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({"n": 1}))).await;
    first.wait_for(1).await;
    let late = Receiver::start().await;
    let newcomer = app.create_webhook(&late.url("/"), json!({"subscribed_events": ["signature_request.done"]})).await;
    let event_id = event["id"].as_str().unwrap();
    let (status, delivery) =
        app.post(&format!("/v1/events/{event_id}/resend"), json!({"webhook_id": newcomer["id"]})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{delivery}");
    let received = late.wait_for(1).await;
    assert_eq!(received[0].header("webhook-id"), event_id);
    verify(&newcomer, &received[0]);
    let (status, _) = app
        .post(&format!("/v1/events/{event_id}/resend"), json!({"webhook_id": "wh_00000000000000000000000000000000"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn failing_subscriptions_are_warned_then_disabled_and_recover(backend: Backend) {
    let smtp = SmtpSink::start().await;
    let mut options = Options::on(backend);
    // Production's policy (warned after 24 h and 10 failures, disabled 7 days
    // later), its days crossed by moving the server's clock; twelve quick
    // attempts make the failures.
    options.retry_policy = RetryPolicy::new(vec![Duration::from_millis(5); 11], 0.0);
    options.disable_policy = DisablePolicy::default();
    options.scheduler_interval = Duration::from_millis(20);
    options.smtp = Some((smtp.url(), "signhook@example.com".into()));
    options.admin_email = Some("ops@acme.example".into());
    let app = TestApp::spawn_with(options).await;
    let (ops, ops_id) = ops_subscription(&app).await;
    let receiver = Receiver::scripted(vec![], Reply::Status(500)).await;
    let hook = app.create_webhook(&receiver.url("/crm"), json!({"subscribed_events": ["signer.*"], "description": "CRM"})).await;
    let hook_id = hook["id"].as_str().unwrap();
    let since = signhook_core::time::rfc3339(chrono::Utc::now() - chrono::Duration::seconds(1));
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({"i": 0}))).await;
    // Twelve failures, all within a second: failing, but not for a day yet.
    let failing = wait_until(&app, &format!("/v1/webhooks/{hook_id}"), |w| w["failure_count"] == 12).await;
    assert_eq!(failing["enabled"], true);
    wait_for_type(&ops, "delivery.failed").await;
    assert!(ops.of_type("webhook.disabling_soon").is_empty(), "no warning within the first day");
    // Nothing in flight when the clock jumps: a lease it jumped over would
    // send that delivery again.
    app.wait_until_none_pending(&ops_id).await;

    app.clock.advance(Duration::from_secs(24 * 60 * 60));
    let warnings = wait_for_type(&ops, "webhook.disabling_soon").await;
    assert_eq!(warnings[0]["data"]["webhook"]["id"], hook_id);
    let mail = smtp.wait_for_message().await;
    assert!(mail[0].contains("ops@acme.example"), "{}", mail[0]);
    assert!(mail[0].contains(hook_id), "{}", mail[0]);
    let (_, warned) = app.get(&format!("/v1/webhooks/{hook_id}")).await;
    assert_eq!(warned["enabled"], true, "a warning disables nothing");
    app.wait_until_none_pending(&ops_id).await;

    app.clock.advance(Duration::from_secs(7 * 24 * 60 * 60));
    let webhook = wait_until(&app, &format!("/v1/webhooks/{hook_id}"), |w| w["enabled"] == false).await;
    assert_eq!(webhook["disabled_reason"], "failing");
    let disabled = wait_for_type(&ops, "webhook.disabled").await;
    assert_eq!(disabled[0]["data"]["webhook"]["disabled_reason"], "failing");
    assert_eq!(ops.of_type("webhook.disabling_soon").len(), 1, "warned exactly once");

    // Missed while disabled: kept as canceled.
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({"i": 1}))).await;
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({"i": 2}))).await;
    let attempts_while_disabled = receiver.received().len();

    // The owner fixes the endpoint, enables the subscription and recovers.
    receiver.set_reply(Reply::Status(200));
    let (status, enabled) = app.patch(&format!("/v1/webhooks/{hook_id}"), json!({"enabled": true})).await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert_eq!(enabled["disabled_reason"], json!(null));
    let (status, job) = app.post(&format!("/v1/webhooks/{hook_id}/recover"), json!({"since": since})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    wait_until(&app, &format!("/v1/recoveries/{}", job["id"].as_str().unwrap()), |j| j["status"] == "done").await;
    eventually("the 3 missed events, recovered", || async {
        let seen: std::collections::HashSet<i64> = receiver
            .received()
            .iter()
            .skip(attempts_while_disabled)
            .filter_map(|r| r.json()["data"]["i"].as_i64())
            .collect();
        done_when(seen.len() == 3, seen)
    })
    .await;
    let (_, webhook) = app.get(&format!("/v1/webhooks/{hook_id}")).await;
    assert_eq!(webhook["enabled"], true, "a success after re-enabling keeps it enabled");
}

async fn one_success_resets_the_streak(backend: Backend) {
    let mut options = Options::on(backend);
    options.retry_policy = RetryPolicy::new(vec![Duration::from_millis(5); 12], 0.0);
    // Production's policy; the server's clock is moved past its first day.
    options.disable_policy = DisablePolicy::default();
    options.scheduler_interval = Duration::from_millis(20);
    let app = TestApp::spawn_with(options).await;
    let (ops, ops_id) = ops_subscription(&app).await;
    let receiver = Receiver::scripted(vec![], Reply::Status(500)).await;
    let hook = app.create_webhook(&receiver.url("/"), signer_events()).await;
    let hook_id = hook["id"].as_str().unwrap();
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    let failing = wait_until(&app, &format!("/v1/webhooks/{hook_id}"), |w| w["failure_count"] == 13).await;
    assert!(failing["failing_since"].is_string());
    wait_for_type(&ops, "delivery.failed").await;
    app.wait_until_none_pending(&ops_id).await;
    app.clock.advance(Duration::from_secs(24 * 60 * 60));
    wait_for_type(&ops, "webhook.disabling_soon").await;
    // The endpoint recovers; one success clears the streak and the warning.
    receiver.set_reply(Reply::Status(200));
    let dead = app.deliveries(hook_id, Some("failed")).await;
    let (status, _) = app.post(&format!("/v1/deliveries/{}/resend", dead[0]["id"].as_str().unwrap()), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let healthy = wait_until(&app, &format!("/v1/webhooks/{hook_id}"), |w| w["failure_count"] == 0).await;
    assert_eq!(healthy["failing_since"], json!(null));
    assert_eq!(healthy["enabled"], true);
}

async fn a_hanging_endpoint_does_not_hold_up_another(backend: Backend) {
    let mut options = Options::on(backend);
    options.request_timeout = Duration::from_secs(120);
    let app = TestApp::spawn_with(options).await;
    let hanging = Receiver::scripted(vec![], Reply::Hang).await;
    let fast = Receiver::start().await;
    app.create_webhook(&hanging.url("/slow"), json!({"subscribed_events": ["signer.done"]})).await;
    app.create_webhook(&fast.url("/fast"), json!({"subscribed_events": ["signer.notified"]})).await;
    for _ in 0..30 {
        app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    }
    for _ in 0..50 {
        app.publish("signer.notified", crate::helpers::lifecycle_data("signer.notified", json!({}))).await;
    }
    fast.wait_for(50).await;
    let stuck = hanging.received().len();
    assert!(stuck <= 10, "at most 10 requests in flight to one endpoint, saw {stuck}");
}

async fn a_rate_limit_is_observed_at_the_receiver(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let hook = app.create_webhook(&receiver.url("/"), json!({"subscribed_events": ["signer.*"], "rate_limit_per_second": 5})).await;
    assert_eq!(hook["rate_limit_per_second"], 5);
    for _ in 0..15 {
        app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    }
    receiver.wait_for(15).await;
    let times = receiver.arrival_times();
    // A burst of at most 5, then one every 200 ms: any 6 consecutive
    // arrivals span at least a second (a slower machine only widens it).
    for window in times.windows(6) {
        let span = window[5] - window[0];
        assert!(span >= Duration::from_millis(950), "6 deliveries within {span:?}");
    }
    let (status, err) = app.patch(&format!("/v1/webhooks/{}", hook["id"].as_str().unwrap()), json!({"rate_limit_per_second": 0})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "rate_limit_per_second");
    let (_, cleared) = app.patch(&format!("/v1/webhooks/{}", hook["id"].as_str().unwrap()), json!({"rate_limit_per_second": null})).await;
    assert_eq!(cleared["rate_limit_per_second"], json!(null));
}

async fn private_addresses_are_refused_without_dev(backend: Backend) {
    let mut options = Options::on(backend);
    options.dev = false;
    options.allowed_endpoint_ranges = vec!["10.20.0.0/16".parse().unwrap()];
    let app = TestApp::spawn_with(options).await;
    for url in [
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://172.16.5.4/hook",
        "https://192.168.1.10/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hook",
        "https://0.0.0.0/hook",
        "https://[::1]/hook",
        "https://[fc00::1]/hook",
        "https://[fe80::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
    ] {
        let (status, err) = app.post("/v1/webhooks", json!({"url": url})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {err}");
        assert_eq!(err["error"]["field"], "url");
    }
    // An allowed range passes.
    app.create_webhook("https://10.20.1.2/hook", json!({"subscribed_events": ["approver.*"]})).await;
    // A name that resolves to loopback passes creation, and is refused at
    // send time, after DNS: recorded as `blocked`, never retried.
    let hook = app.create_webhook("https://localhost:9/hook", signer_events()).await;
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    let delivery = app.only_delivery(hook["id"].as_str().unwrap()).await;
    let settled = app.wait_until_settled(delivery["id"].as_str().unwrap()).await;
    assert_eq!(settled["status"], "failed");
    assert_eq!(settled["attempt_count"], 1);
    assert_eq!(settled["attempts"][0]["error_kind"], "blocked", "{settled}");
    assert!(settled["attempts"][0]["error_message"].as_str().unwrap().contains("loopback"));
}

async fn metrics_count_outcomes_and_the_backlog(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::scripted(vec![Reply::Status(500)], Reply::Status(200)).await;
    app.create_webhook(&receiver.url("/"), signer_events()).await;
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    receiver.wait_for(2).await;
    eventually("both attempts counted in /metrics", || async {
        let response = app.client.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        for name in [
            "signhook_deliveries_due",
            "signhook_oldest_due_delivery_age_seconds",
            "signhook_subscriptions_disabled",
            "signhook_attempt_duration_seconds_bucket",
            "signhook_attempt_lateness_seconds_bucket",
        ] {
            assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
        }
        let counted = text.contains("signhook_delivery_attempts_total{result=\"succeeded\"} 1")
            && text.contains("signhook_delivery_attempts_total{result=\"retrying\"} 1");
        done_when(counted, text)
    })
    .await;
}
}

fn verify(hook: &Value, received: &Received) {
    signhook_verify::Webhook::new(hook["secret"].as_str().unwrap())
        .unwrap()
        .verify(&received.headers, &received.body)
        .expect("signed like any delivery");
}
