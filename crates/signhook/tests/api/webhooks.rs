//! Subscriptions through the API: every attribute, the secret, rotation,
//! deletion, tenancy.

use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::json;

on_both_backends! {
async fn create_with_every_attribute_then_read_it_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, workspace) = app.post("/v1/workspaces", json!({"name": "Sales"})).await;
    let ws = workspace["id"].as_str().unwrap();
    let created = app
        .create_webhook(
            "https://crm.example.com/hooks",
            json!({
                "description": "CRM sync",
                "enabled": false,
                "auto_retry": false,
                "subscribed_events": ["signer.*", "signature_request.done"],
                "scopes": ["public_api"],
                "workspaces": [ws],
                "headers": {"X-Api-Key": "abc123"},
                "signature_scheme": "hmac-sha256-hex"
            }),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("wh_"));
    let secret = created["secret"].as_str().unwrap();
    signhook_verify::WebhookSecret::parse(secret).expect("a whsec_ secret of 24+ bytes");
    assert!(secret.starts_with("whsec_"));

    let (status, got) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["url"], "https://crm.example.com/hooks");
    assert_eq!(got["description"], "CRM sync");
    assert_eq!(got["sandbox"], false);
    assert_eq!(got["enabled"], false);
    assert_eq!(got["disabled_reason"], "manual");
    assert_eq!(got["auto_retry"], false);
    assert_eq!(got["subscribed_events"], json!(["signer.*", "signature_request.done"]));
    assert_eq!(got["scopes"], json!(["public_api"]));
    assert_eq!(got["workspaces"], json!([ws]));
    assert_eq!(got["headers"], json!({"x-api-key": "abc123"}));
    assert_eq!(got["signature_scheme"], "hmac-sha256-hex");
    assert!(
        got.get("secret").is_none(),
        "the secret is only in the creation response and the reveal"
    );

    let (status, revealed) = app.get(&format!("/v1/webhooks/{id}/secret")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(revealed["secret"], secret);
}

async fn defaults_are_everything_enabled_retrying_standard(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app.create_webhook("https://crm.example.com/hooks", json!({})).await;
    assert_eq!(created["subscribed_events"], json!(["*"]));
    assert_eq!(created["scopes"], json!(["*"]));
    assert_eq!(created["workspaces"], json!(["*"]));
    assert_eq!(created["enabled"], true);
    assert_eq!(created["auto_retry"], true);
    assert_eq!(created["signature_scheme"], "standard");
    assert_eq!(created["description"], "");
}

async fn patch_changes_only_what_is_given_and_reenables(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app
        .create_webhook("https://a.example.com/", json!({"description": "one"}))
        .await;
    let id = created["id"].as_str().unwrap();
    let (status, patched) = app
        .patch(
            &format!("/v1/webhooks/{id}"),
            json!({"enabled": false, "subscribed_events": ["signer.done"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["disabled_reason"], "manual");
    assert_eq!(patched["subscribed_events"], json!(["signer.done"]));
    assert_eq!(patched["description"], "one");
    assert_eq!(patched["url"], "https://a.example.com/");
    let (_, patched) = app
        .patch(
            &format!("/v1/webhooks/{id}"),
            json!({"enabled": true, "url": "https://b.example.com/x", "headers": {"X-Team": "ops"}}),
        )
        .await;
    assert_eq!(patched["enabled"], true);
    assert_eq!(patched["disabled_reason"], json!(null));
    assert_eq!(patched["url"], "https://b.example.com/x");
    assert_eq!(patched["headers"], json!({"x-team": "ops"}));
    assert_eq!(patched["subscribed_events"], json!(["signer.done"]));
}

async fn list_pages_with_a_cursor(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let created = app
            .create_webhook(&format!("https://h{i}.example.com/"), json!({}))
            .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let (_, first) = app.get("/v1/webhooks?limit=2").await;
    assert_eq!(first["has_more"], true);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app.get(&format!("/v1/webhooks?limit=2&after={cursor}")).await;
    let (_, third) = app
        .get(&format!(
            "/v1/webhooks?limit=2&after={}",
            second["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(third["has_more"], false);
    let seen: Vec<String> = [&first, &second, &third]
        .iter()
        .flat_map(|page| {
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w["id"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(seen, ids);
}

async fn delete_hides_it_and_cancels_pending_deliveries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // A receiver that never answers keeps the delivery pending.
    let receiver = Receiver::scripted(vec![], Reply::Hang).await;
    let created = app.create_webhook(&receiver.url("/"), json!({})).await;
    let id = created["id"].as_str().unwrap();
    app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    let delivery = app.only_delivery(id).await;
    let (status, _) = app.delete(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.delete(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let settled = app.wait_until_settled(delivery["id"].as_str().unwrap()).await;
    assert_eq!(settled["status"], "canceled", "{settled}");
}

async fn another_tenants_webhook_is_404_everywhere(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app.create_webhook("https://crm.example.com/", json!({})).await;
    let id = created["id"].as_str().unwrap();
    let other = app.other_tenant().await;
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/webhooks/{id}")),
        (reqwest::Method::DELETE, format!("/v1/webhooks/{id}")),
        (reqwest::Method::GET, format!("/v1/webhooks/{id}/secret")),
        (reqwest::Method::POST, format!("/v1/webhooks/{id}/rotate_secret")),
        (reqwest::Method::POST, format!("/v1/webhooks/{id}/test")),
        (reqwest::Method::GET, format!("/v1/webhooks/{id}/deliveries")),
    ] {
        let (status, body) = app.request(method.clone(), &path, &other.live_key, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    let (status, _) = app
        .request(
            reqwest::Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            &other.live_key,
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Nor does the owner's sandbox key see the live subscription.
    let (status, _) = app
        .request(
            reqwest::Method::GET,
            &format!("/v1/webhooks/{id}"),
            &app.tenant.test_key,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // And it is untouched.
    let (_, got) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(got["enabled"], true);
}

async fn test_key_makes_sandbox_subscriptions_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, created) = app
        .request(
            reqwest::Method::POST,
            "/v1/webhooks",
            &app.tenant.test_key,
            Some(json!({"url": "https://s.example.com/"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["sandbox"], true);
    let (status, err) = app
        .request(
            reqwest::Method::POST,
            "/v1/webhooks",
            &app.tenant.test_key,
            Some(json!({"url": "https://s.example.com/", "sandbox": false})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "sandbox");
    let (_, live_list) = app.get("/v1/webhooks").await;
    assert_eq!(
        live_list["data"].as_array().unwrap().len(),
        0,
        "live and sandbox are apart"
    );
}

async fn workspaces_are_created_listed_and_unique(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, list) = app.get("/v1/workspaces").await;
    let list = list["data"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["is_default"], true);
    let (status, sales) = app.post("/v1/workspaces", json!({"name": "Sales"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(sales["id"].as_str().unwrap().starts_with("ws_"));
    let (status, err) = app.post("/v1/workspaces", json!({"name": "Sales"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["error"]["field"], "name");
    let (status, err) = app.post("/v1/workspaces", json!({"name": "  "})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "name");
    let (_, list) = app.get("/v1/workspaces").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    // Another tenant's workspace cannot be subscribed to.
    let other = app.other_tenant().await;
    let (status, err) = app
        .request(
            reqwest::Method::POST,
            "/v1/webhooks",
            &other.live_key,
            Some(json!({"url": "https://x.example.com/", "workspaces": [sales["id"]]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "workspaces");
}

async fn event_types_are_served_with_examples(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app.get("/v1/event_types").await;
    assert_eq!(status, StatusCode::OK);
    let types = body["data"].as_array().unwrap();
    let names: Vec<&str> = types.iter().map(|t| t["name"].as_str().unwrap()).collect();
    for expected in signhook_core::catalog::all_names() {
        assert!(names.contains(&expected), "{expected}");
    }
    let done = types.iter().find(|t| t["name"] == "signature_request.done").unwrap();
    assert!(done["description"].as_str().unwrap().len() > 10);
    assert_eq!(done["example"]["type"], "signature_request.done");
    assert!(done["example"]["data"]["links"]["signed_pdf"]["url"].is_string());
}
}
