//! Deliveries as a receiver sees them: signed per Standard Webhooks (checked
//! by an implementation we did not write), retried on the schedule, recorded
//! attempt by attempt.

use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::json;

pub fn verify_standard(secret: &str, received: &Received) {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&received.body, &received.headers)
        .expect("the standardwebhooks crate verifies our delivery");
    signhook_verify::Webhook::new(secret)
        .unwrap()
        .verify(&received.headers, &received.body)
        .expect("signhook-verify verifies our delivery");
}

on_both_backends! {
async fn a_delivery_is_signed_and_shaped_as_documented(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let hook = app
        .create_webhook(
            &receiver.url("/hooks"),
            json!({"description": "CRM sync", "headers": {"X-Api-Key": "k-123"}}),
        )
        .await;
    let secret = hook["secret"].as_str().unwrap();
    let event = app
        .publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({"signer": {"name": "Ada Lovelace"}})))
        .await;

    let received = receiver.wait_for(1).await.remove(0);
    verify_standard(secret, &received);
    assert_eq!(received.header("content-type"), "application/json");
    assert!(received.header("user-agent").starts_with("Signhook/"));
    assert_eq!(received.header("webhook-id"), event["id"]);
    assert_eq!(received.header("x-api-key"), "k-123");
    let body = received.json();
    assert_eq!(
        body,
        json!({
            "id": event["id"],
            "type": "signer.done",
            "created_at": event["created_at"],
            "sandbox": false,
            "scope": "public_api",
            "workspace_id": event["workspace_id"],
            "origin": "api",
            "subscription": {"id": hook["id"], "description": "CRM sync"},
            "data": crate::helpers::lifecycle_data("signer.done", json!({"signer": {"name": "Ada Lovelace"}}))
        })
    );
    let typed = signhook_verify::Webhook::new(secret)
        .unwrap()
        .verify(&received.headers, &received.body)
        .unwrap();
    assert_eq!(typed.event_type, "signer.done");

    let delivery = app.only_delivery(hook["id"].as_str().unwrap()).await;
    let settled = app.wait_until_settled(delivery["id"].as_str().unwrap()).await;
    assert_eq!(settled["status"], "succeeded");
    assert_eq!(settled["attempt_count"], 1);
    let attempt = &settled["attempts"][0];
    assert_eq!(attempt["status_code"], 200);
    assert_eq!(attempt["response_body"], "answered 200");
    assert_eq!(attempt["error_kind"], json!(null));
    assert!(attempt["node_id"].as_str().unwrap().starts_with("node_"));
}

async fn the_hex_scheme_signs_the_body_with_the_secret_text(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let hook = app
        .create_webhook(&receiver.url("/"), json!({"signature_scheme": "hmac-sha256-hex"}))
        .await;
    let secret = hook["secret"].as_str().unwrap();
    app.publish("signature_request.done", crate::helpers::lifecycle_data("signature_request.done", json!({}))).await;
    let received = receiver.wait_for(1).await.remove(0);
    assert!(signhook_verify::verify_hex_body_signature(
        secret,
        &received.body,
        received.header("x-signature")
    ));
    assert_eq!(received.header("x-client-id"), app.tenant.id);
    assert!(received.headers.get("webhook-signature").is_none());
    assert_eq!(received.header("webhook-id"), received.json()["id"]);
}

async fn failures_are_retried_with_the_same_webhook_id_until_success(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::scripted(
        vec![Reply::Status(500), Reply::Status(503), Reply::Status(404)],
        Reply::Status(204),
    )
    .await;
    let hook = app.create_webhook(&receiver.url("/"), json!({})).await;
    let secret = hook["secret"].as_str().unwrap();
    let event = app.publish("signer.notified", crate::helpers::lifecycle_data("signer.notified", json!({}))).await;

    let received = receiver.wait_for(4).await;
    for request in &received {
        assert_eq!(request.header("webhook-id"), event["id"], "the same id on every retry");
        verify_standard(secret, request);
    }
    let delivery = app.only_delivery(hook["id"].as_str().unwrap()).await;
    let settled = app.wait_until_settled(delivery["id"].as_str().unwrap()).await;
    assert_eq!(settled["status"], "succeeded");
    assert_eq!(settled["attempt_count"], 4);
    let attempts = settled["attempts"].as_array().unwrap();
    let codes: Vec<_> = attempts.iter().map(|a| a["status_code"].as_u64().unwrap()).collect();
    assert_eq!(codes, [500, 503, 404, 204]);
    let numbers: Vec<_> = attempts.iter().map(|a| a["attempt_number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    for failed in &attempts[..3] {
        assert_eq!(failed["error_kind"], "http");
        assert!(failed["response_body"].as_str().unwrap().starts_with("answered"));
        assert!(failed["duration_ms"].is_u64());
    }
    assert_eq!(receiver.received().len(), 4, "nothing more after success");
}

async fn without_auto_retry_one_failure_is_final(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::scripted(vec![], Reply::Status(500)).await;
    // Only signer events: a `*` subscriber would also get the operational
    // `delivery.failed` this dead letter raises.
    let hook = app
        .create_webhook(&receiver.url("/"), json!({"auto_retry": false, "subscribed_events": ["signer.*"]}))
        .await;
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    let delivery = app.only_delivery(hook["id"].as_str().unwrap()).await;
    let settled = app.wait_until_settled(delivery["id"].as_str().unwrap()).await;
    assert_eq!(settled["status"], "failed");
    assert_eq!(settled["attempt_count"], 1);
    assert_eq!(settled["next_attempt_at"], json!(null));
    assert_eq!(receiver.received().len(), 1);
}

async fn an_exhausted_schedule_dead_letters_the_delivery(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::scripted(vec![], Reply::Status(500)).await;
    let hook = app.create_webhook(&receiver.url("/"), json!({"subscribed_events": ["signer.*"]})).await;
    let hook_id = hook["id"].as_str().unwrap();
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    let delivery = app.only_delivery(hook_id).await;
    let settled = app.wait_until_settled(delivery["id"].as_str().unwrap()).await;
    assert_eq!(settled["status"], "failed");
    assert_eq!(settled["attempt_count"], 4, "one attempt plus three retries");
    assert_eq!(receiver.received().len(), 4);
    let dead = app.deliveries(hook_id, Some("failed")).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"], delivery["id"]);
    assert!(app.deliveries(hook_id, Some("succeeded")).await.is_empty());
}

async fn an_unreachable_endpoint_is_recorded_as_connect(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // A port held by the test, where nothing listens.
    let port = ReservedPort::new();
    // Only signer.done: the dead letter's own `delivery.failed` would
    // otherwise be a second delivery to it, racing the lookup below.
    let hook = app
        .create_webhook(
            &port.url("/"),
            json!({"auto_retry": false, "subscribed_events": ["signer.done"]}),
        )
        .await;
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    let delivery = app.only_delivery(hook["id"].as_str().unwrap()).await;
    let settled = app.wait_until_settled(delivery["id"].as_str().unwrap()).await;
    assert_eq!(settled["status"], "failed");
    let attempt = &settled["attempts"][0];
    assert_eq!(attempt["error_kind"], "connect", "{attempt}");
    assert_eq!(attempt["status_code"], json!(null));
    assert!(attempt["error_message"].as_str().unwrap().len() > 5);
}

async fn the_test_event_is_signed_like_a_real_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    // It goes out even though the subscription listens to something else.
    let hook = app
        .create_webhook(&receiver.url("/"), json!({"subscribed_events": ["signer.done"]}))
        .await;
    let hook_id = hook["id"].as_str().unwrap();
    let (status, delivery) = app.post(&format!("/v1/webhooks/{hook_id}/test"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{delivery}");
    assert_eq!(delivery["event_type"], "webhook.test");
    let received = receiver.wait_for(1).await.remove(0);
    verify_standard(hook["secret"].as_str().unwrap(), &received);
    assert_eq!(received.json()["type"], "webhook.test");
    assert_eq!(received.header("webhook-id"), delivery["event_id"]);
    let settled = app.wait_until_settled(delivery["id"].as_str().unwrap()).await;
    assert_eq!(settled["status"], "succeeded");
}

async fn a_rotated_secret_signs_beside_the_new_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let hook = app.create_webhook(&receiver.url("/"), json!({})).await;
    let hook_id = hook["id"].as_str().unwrap();
    let old_secret = hook["secret"].as_str().unwrap();
    let (status, rotated) = app
        .post(&format!("/v1/webhooks/{hook_id}/rotate_secret"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_ne!(new_secret, old_secret);
    assert!(rotated["previous_secret_expires_at"].is_string());
    let (_, revealed) = app.get(&format!("/v1/webhooks/{hook_id}/secret")).await;
    assert_eq!(revealed["secret"], new_secret);

    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    let received = receiver.wait_for(1).await.remove(0);
    assert_eq!(received.header("webhook-signature").split(' ').count(), 2);
    verify_standard(old_secret, &received);
    verify_standard(new_secret, &received);

    // Promoted: the old secret no longer signs.
    let (status, _) = app
        .post(&format!("/v1/webhooks/{hook_id}/promote_secret"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    let promoted = receiver.wait_for(2).await.remove(1);
    assert_eq!(promoted.header("webhook-signature").split(' ').count(), 1);
    verify_standard(new_secret, &promoted);
}

async fn a_rotated_hex_secret_keeps_the_old_signature_in_x_signature_until_the_overlap_ends(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let hook = app
        .create_webhook(&receiver.url("/"), json!({"signature_scheme": "hmac-sha256-hex"}))
        .await;
    let hook_id = hook["id"].as_str().unwrap();
    // The vendor snippet's check: hex HMAC-SHA256 of the raw body, keyed
    // with the secret the receiver holds, against `X-Signature` only.
    let snippet_accepts = |secret: &str, received: &Received| {
        signhook_verify::verify_hex_body_signature(secret, &received.body, received.header("x-signature"))
    };
    let rotate = || async {
        let (status, rotated) = app
            .post(&format!("/v1/webhooks/{hook_id}/rotate_secret"), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        rotated["secret"].as_str().unwrap().to_owned()
    };
    let first = hook["secret"].as_str().unwrap().to_owned();

    // During the overlap the receiver's unchanged code, still holding the
    // old secret, verifies; the new secret's signature is beside it.
    let second = rotate().await;
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    let during = receiver.wait_for(1).await.remove(0);
    assert!(snippet_accepts(&first, &during), "the old secret verifies X-Signature during the overlap");
    assert!(!snippet_accepts(&second, &during));
    assert!(signhook_verify::verify_hex_body_signature(
        &second,
        &during.body,
        during.header("x-signature-next")
    ));

    // After the overlap, the new secret alone.
    app.clock.advance(std::time::Duration::from_secs(25 * 3600));
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    let after = receiver.wait_for(2).await.remove(1);
    assert!(snippet_accepts(&second, &after), "the new secret verifies once the overlap is over");
    assert!(after.headers.get("x-signature-next").is_none());

    // Promoting ends an overlap early, for this scheme and the standard one.
    let third = rotate().await;
    let (status, promoted) = app
        .post(&format!("/v1/webhooks/{hook_id}/promote_secret"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{promoted}");
    assert_eq!(promoted["secret"], third);
    assert_eq!(promoted["previous_secret_expires_at"], json!(null));
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    let promoted = receiver.wait_for(3).await.remove(2);
    assert!(snippet_accepts(&third, &promoted));
    assert!(promoted.headers.get("x-signature-next").is_none());
    let (status, missing) = app.post("/v1/webhooks/wh_nope/promote_secret", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
}

async fn graceful_stop_finishes_what_is_in_flight(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let hook = app.create_webhook(&receiver.url("/"), json!({})).await;
    for _ in 0..20 {
        app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    }
    receiver.wait_for(20).await;
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    let db = app.stop().await;
    // Every result was recorded before the process let go of the store.
    let store = db.open_store().await;
    let sub_id = signhook_core::ids::SubscriptionId::parse(&hook_id).unwrap();
    let succeeded = signhook_store::deliveries::DeliveryQuery {
        status: Some(signhook_core::delivery::DeliveryStatus::Succeeded),
        ..Default::default()
    };
    let page = store
        .list_deliveries(&sub_id, &succeeded, 100)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 20);
    store.close().await;
}
}

on_both_backends! {
async fn a_burst_beyond_its_lane_is_delivered_once_each(backend: Backend) {
    // Lanes of 2: most of a burst's deliveries, handed over at publish,
    // wait in the node's backlog for their lane rather than going back to
    // the database.
    let app = TestApp::spawn_with(Options { per_subscription_in_flight: 2, ..Options::on(backend) }).await;
    let receiver = Receiver::start().await;
    app.create_webhook(&receiver.url("/"), json!({"subscribed_events": ["signer.done"]})).await;
    let mut publishing = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (client, url, key) = (app.client.clone(), app.url("/v1/events"), app.tenant.live_key.clone());
        publishing.spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({"i": i}))}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 201);
        });
    }
    while let Some(result) = publishing.join_next().await {
        result.unwrap();
    }
    receiver.wait_for(200).await;
    let ids: std::collections::HashSet<String> =
        receiver.received().iter().map(|r| r.header("webhook-id").to_owned()).collect();
    assert_eq!(ids.len(), 200, "every event arrived");
    assert_eq!(receiver.received().len(), 200, "none twice");
}
}
