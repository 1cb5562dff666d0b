//! Every bad input gets its own clear error — status, code, the field — and
//! writes nothing.

use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::{json, Value};

/// Sends raw bytes to `path` with `content_type`.
async fn raw(app: &TestApp, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth(&app.tenant.live_key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    read(response).await
}

async fn webhook_count(app: &TestApp) -> usize {
    app.get("/v1/webhooks?limit=100").await.1["data"]
        .as_array()
        .unwrap()
        .len()
}

async fn event_count(app: &TestApp) -> usize {
    app.get("/v1/events?limit=100").await.1["data"]
        .as_array()
        .unwrap()
        .len()
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str, field: Option<&str>) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    match field {
        Some(field) => assert_eq!(body["error"]["field"], field, "{body}"),
        None => assert!(
            body["error"].get("field").is_some(),
            "the field key is always present: {body}"
        ),
    }
}

on_both_backends! {
async fn bad_webhooks_are_refused_field_by_field_and_write_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({}), "url", "missing field"),
        (json!({"url": "not a url"}), "url", "not a valid URL"),
        (json!({"url": "ftp://x.example.com/"}), "url", "https://"),
        (
            json!({"url": "https://x.example.com/", "colour": "red"}),
            "colour",
            "unknown field",
        ),
        (
            json!({"url": "https://x.example.com/", "enabled": "yes"}),
            "enabled",
            "invalid type",
        ),
        (
            json!({"url": "https://x.example.com/", "subscribed_events": ["signer.signed"]}),
            "subscribed_events",
            "signature_request.done",
        ),
        (
            json!({"url": "https://x.example.com/", "subscribed_events": ["*", "signer.done"]}),
            "subscribed_events",
            "only element",
        ),
        (
            json!({"url": "https://x.example.com/", "subscribed_events": []}),
            "subscribed_events",
            "at least one",
        ),
        (
            json!({"url": "https://x.example.com/", "scopes": ["api"]}),
            "scopes",
            "public_api",
        ),
        (
            json!({"url": "https://x.example.com/", "workspaces": ["sales"]}),
            "workspaces",
            "workspace",
        ),
        (
            json!({"url": "https://x.example.com/", "headers": {"Webhook-Id": "x"}}),
            "headers",
            "cannot be overridden",
        ),
        (
            json!({"url": "https://x.example.com/", "headers": {"User-Agent": "x"}}),
            "headers",
            "cannot be overridden",
        ),
        (
            json!({"url": "https://x.example.com/", "headers": {"Host": "x"}}),
            "headers",
            "cannot be overridden",
        ),
        (
            json!({"url": "https://x.example.com/", "signature_scheme": "md5"}),
            "signature_scheme",
            "hmac-sha256-hex",
        ),
        (
            json!({"url": "https://x.example.com/", "description": "d".repeat(501)}),
            "description",
            "500",
        ),
    ];
    for (body, field, needle) in cases {
        let (status, err) = app.post("/v1/webhooks", body.clone()).await;
        assert_error(
            status,
            &err,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some(field),
        );
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body} → {message}");
    }
    assert_eq!(webhook_count(&app).await, 0);
}

async fn unknown_event_types_list_the_valid_ones(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, err) = app
        .post(
            "/v1/webhooks",
            json!({"url": "https://x.example.com/", "subscribed_events": ["document.signed"]}),
        )
        .await;
    assert_error(
        status,
        &err,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("subscribed_events"),
    );
    let message = err["error"]["message"].as_str().unwrap();
    for name in signhook_core::catalog::all_names() {
        assert!(message.contains(name), "{name} missing from {message}");
    }
    let (status, err) = app
        .post("/v1/events", json!({"type": "document.signed", "data": {}}))
        .await;
    assert_error(
        status,
        &err,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("type"),
    );
    assert!(err["error"]["message"].as_str().unwrap().contains("signer.done"));
    let (status, err) = app
        .post("/v1/events", json!({"type": "webhook.disabled", "data": {}}))
        .await;
    assert_error(
        status,
        &err,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("type"),
    );
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("emitted by Signhook"));
    assert_eq!(event_count(&app).await, 0);
}

async fn bad_events_are_refused_and_write_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let other = app.other_tenant().await;
    let (_, other_ws) = app
        .request(reqwest::Method::GET, "/v1/workspaces", &other.live_key, None)
        .await;
    let other_ws = other_ws["data"][0]["id"].clone();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"data": {}}), "type"),
        (json!({"type": "signer.done"}), "data"),
        (json!({"type": "signer.done", "data": [1, 2]}), "data"),
        (
            json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({})), "workspace_id": "ws_nope"}),
            "workspace_id",
        ),
        (
            json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({})), "workspace_id": other_ws}),
            "workspace_id",
        ),
        (json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({})), "extra": 1}), "extra"),
    ];
    for (body, field) in cases {
        let (status, err) = app.post("/v1/events", body.clone()).await;
        assert_error(
            status,
            &err,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some(field),
        );
    }
    assert_eq!(event_count(&app).await, 0);
}

async fn malformed_json_oversized_bodies_and_wrong_media_types(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, err) = raw(&app, "/v1/webhooks", "application/json", b"{\"url\": ".to_vec()).await;
    assert_error(status, &err, StatusCode::BAD_REQUEST, "malformed_json", None);
    let (status, err) = raw(&app, "/v1/events", "application/json", b"{not json}".to_vec()).await;
    assert_error(status, &err, StatusCode::BAD_REQUEST, "malformed_json", None);
    let (status, err) = raw(&app, "/v1/webhooks", "application/json", b"[]".to_vec()).await;
    assert_error(status, &err, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", Some("body"));
    let (status, err) = raw(&app, "/v1/webhooks", "text/plain", b"{}".to_vec()).await;
    assert_error(
        status,
        &err,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );
    let big = format!(
        r#"{{"type": "signer.done", "data": {{"blob": "{}"}}}}"#,
        "x".repeat(1024 * 1024 + 1)
    );
    let (status, err) = raw(&app, "/v1/events", "application/json", big.into_bytes()).await;
    assert_error(status, &err, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
    assert_eq!(webhook_count(&app).await, 0);
    assert_eq!(event_count(&app).await, 0);
}

async fn missing_or_wrong_keys_are_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app.client.get(app.url("/v1/webhooks")).send().await.unwrap();
    let (status, err) = read(response).await;
    assert_error(status, &err, StatusCode::UNAUTHORIZED, "unauthorized", None);
    for key in [
        "sk_live_wrong",
        "nonsense",
        &app.tenant.live_key.replace("sk_live_", "sk_test_"),
    ] {
        let (status, err) = app.request(reqwest::Method::GET, "/v1/webhooks", key, None).await;
        assert_error(status, &err, StatusCode::UNAUTHORIZED, "unauthorized", None);
    }
    let response = app
        .client
        .get(app.url("/v1/webhooks"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

async fn unknown_ids_routes_and_methods(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, err) = app.get("/v1/webhooks/wh_00000000000000000000000000000000").await;
    assert_error(status, &err, StatusCode::NOT_FOUND, "not_found", None);
    let (status, err) = app.get("/v1/webhooks/garbage").await;
    assert_error(status, &err, StatusCode::NOT_FOUND, "not_found", None);
    let (status, err) = app.get("/v1/deliveries/dlv_00000000000000000000000000000000").await;
    assert_error(status, &err, StatusCode::NOT_FOUND, "not_found", None);
    let (status, err) = app.get("/v1/nothing-here").await;
    assert_error(status, &err, StatusCode::NOT_FOUND, "not_found", None);
    let (status, err) = app
        .request(reqwest::Method::PUT, "/v1/webhooks", &app.tenant.live_key, None)
        .await;
    assert_error(status, &err, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
}

async fn bad_query_parameters_name_the_parameter(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let hook = app.create_webhook("https://x.example.com/", json!({})).await;
    let id = hook["id"].as_str().unwrap();
    for (path, field) in [
        ("/v1/events?limit=0".to_owned(), "limit"),
        ("/v1/events?limit=abc".to_owned(), "limit"),
        ("/v1/events?after=nope".to_owned(), "after"),
        ("/v1/events?type=signer.signed".to_owned(), "type"),
        ("/v1/events?colour=red".to_owned(), "colour"),
        (format!("/v1/webhooks/{id}/deliveries?status=lost"), "status"),
        (format!("/v1/webhooks/{id}/deliveries?cursor=x"), "cursor"),
    ] {
        let (status, err) = app.get(&path).await;
        assert_error(
            status,
            &err,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some(field),
        );
    }
}

async fn http_endpoints_need_dev_mode(backend: Backend) {
    let app = TestApp::spawn_with(Options {
        dev: false,
        ..Options::on(backend)
    })
    .await;
    let (status, err) = app
        .post("/v1/webhooks", json!({"url": "http://crm.example.com/"}))
        .await;
    assert_error(
        status,
        &err,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("url"),
    );
    assert!(err["error"]["message"].as_str().unwrap().contains("--dev"));
    let created = app.create_webhook("https://crm.example.com/", json!({})).await;
    let (status, err) = app
        .patch(
            &format!("/v1/webhooks/{}", created["id"].as_str().unwrap()),
            json!({"url": "http://crm.example.com/"}),
        )
        .await;
    assert_error(
        status,
        &err,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("url"),
    );
    assert_eq!(webhook_count(&app).await, 1);
}

async fn a_failed_patch_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app
        .create_webhook("https://crm.example.com/", json!({"description": "before"}))
        .await;
    let id = created["id"].as_str().unwrap();
    let (status, _) = app
        .patch(
            &format!("/v1/webhooks/{id}"),
            json!({"description": "after", "subscribed_events": ["nope"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, err) = app.patch(&format!("/v1/webhooks/{id}"), json!({"sandbox": true})).await;
    assert_error(
        status,
        &err,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("sandbox"),
    );
    let (_, got) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(got["description"], "before");
    assert_eq!(got["updated_at"], created["updated_at"]);
}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_over_its_rate_is_429_while_others_go_on() {
    // One request per second per key: a script's burst is refused at once,
    // however slow the machine (it would need a second per request to pass).
    let app = TestApp::spawn_with(Options {
        api_rate_limit: std::num::NonZeroU32::new(1),
        ..Options::on(Backend::Sqlite)
    })
    .await;
    let mut refused = None;
    for _ in 0..20 {
        let response = app
            .client
            .get(app.url("/v1/webhooks"))
            .bearer_auth(&app.tenant.live_key)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("a burst of 20 at 1/s is refused");
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    let (_, body) = read(refused).await;
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("1 requests per second"));
    // The limit is the key's: the same tenant's sandbox key and another
    // tenant's key are answered meanwhile.
    let other = app.other_tenant().await;
    for key in [&app.tenant.test_key, &other.live_key] {
        let (status, body) = app.request(reqwest::Method::GET, "/v1/webhooks", key, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}
