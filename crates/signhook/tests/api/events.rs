//! Publishing and reading events; which subscriptions an event reaches.

use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::{json, Value};

/// Publishes `event_type` and returns which of `hooks` got a delivery.
async fn reached(app: &TestApp, hooks: &[(&str, &Value)], event: Value, key: &str) -> Vec<String> {
    let (status, published) = app.request(reqwest::Method::POST, "/v1/events", key, Some(event)).await;
    assert_eq!(status, StatusCode::CREATED, "{published}");
    let mut names = Vec::new();
    for (name, hook) in hooks {
        let id = hook["id"].as_str().unwrap();
        let (_, list) = app
            .request(
                reqwest::Method::GET,
                &format!("/v1/webhooks/{id}/deliveries?limit=100"),
                key,
                None,
            )
            .await;
        let got = list["data"]
            .as_array()
            .is_some_and(|ds| ds.iter().any(|d| d["event_id"] == published["id"]));
        if got {
            names.push((*name).to_owned());
        }
    }
    names.sort();
    names
}

on_both_backends! {
async fn each_filter_decides_who_gets_an_event(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, sales) = app.post("/v1/workspaces", json!({"name": "Sales"})).await;
    let sales = sales["id"].as_str().unwrap();
    let url = "https://crm.example.com/";
    let all = app.create_webhook(url, json!({})).await;
    let exact = app
        .create_webhook(url, json!({"subscribed_events": ["signer.done"]}))
        .await;
    let namespace = app
        .create_webhook(url, json!({"subscribed_events": ["signature_request.*"]}))
        .await;
    let app_scope = app.create_webhook(url, json!({"scopes": ["app"]})).await;
    let api_scope = app.create_webhook(url, json!({"scopes": ["public_api"]})).await;
    let in_sales = app.create_webhook(url, json!({"workspaces": [sales]})).await;
    let (_, sandbox) = app
        .request(
            reqwest::Method::POST,
            "/v1/webhooks",
            &app.tenant.test_key,
            Some(json!({"url": url})),
        )
        .await;
    let hooks = [
        ("all", &all),
        ("exact", &exact),
        ("namespace", &namespace),
        ("app_scope", &app_scope),
        ("api_scope", &api_scope),
        ("in_sales", &in_sales),
    ];
    let key = app.tenant.live_key.clone();

    assert_eq!(
        reached(&app, &hooks, json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({}))}), &key).await,
        ["all", "api_scope", "exact"]
    );
    assert_eq!(
        reached(
            &app,
            &hooks,
            json!({"type": "signature_request.activated", "data": crate::helpers::lifecycle_data("signature_request.activated", json!({}))}),
            &key
        )
        .await,
        ["all", "api_scope", "namespace"]
    );
    assert_eq!(
        reached(
            &app,
            &hooks,
            json!({"type": "signer.link_opened", "data": crate::helpers::lifecycle_data("signer.link_opened", json!({})), "workspace_id": sales}),
            &key
        )
        .await,
        ["all", "api_scope", "in_sales"]
    );
    // A sandbox event reaches only sandbox subscriptions.
    let test_key = app.tenant.test_key.clone();
    assert_eq!(
        reached(
            &app,
            &[("sandbox", &sandbox)],
            json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({}))}),
            &test_key
        )
        .await,
        ["sandbox"]
    );
    let sandbox_id = sandbox["id"].as_str().unwrap();
    let (_, live_deliveries) = app
        .request(
            reqwest::Method::GET,
            &format!("/v1/webhooks/{sandbox_id}/deliveries"),
            &test_key,
            None,
        )
        .await;
    assert_eq!(
        live_deliveries["data"].as_array().unwrap().len(),
        1,
        "the live events did not reach it"
    );
}

async fn disabled_subscriptions_keep_canceled_deliveries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let hook = app
        .create_webhook("https://crm.example.com/", json!({"enabled": false}))
        .await;
    let published = app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    assert_eq!(published["deliveries"], 0);
    let delivery = app.only_delivery(hook["id"].as_str().unwrap()).await;
    assert_eq!(delivery["status"], "canceled");
}

async fn publish_returns_the_event_and_it_reads_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data = crate::helpers::lifecycle_data("signature_request.activated", json!({"note": "ünïcødé"}));
    let event = app.publish("signature_request.activated", data.clone()).await;
    let id = event["id"].as_str().unwrap();
    assert!(id.starts_with("evt_"));
    assert_eq!(event["type"], "signature_request.activated");
    assert_eq!(event["scope"], "public_api");
    assert_eq!(event["sandbox"], false);
    assert_eq!(event["data"], data);
    assert!(event["workspace_id"].as_str().unwrap().starts_with("ws_"));
    let (status, got) = app.get(&format!("/v1/events/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["data"], data);
    assert_eq!(got["created_at"], event["created_at"]);
    // Another tenant, or the sandbox, cannot see it.
    let other = app.other_tenant().await;
    let (status, _) = app
        .request(reqwest::Method::GET, &format!("/v1/events/{id}"), &other.live_key, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .request(
            reqwest::Method::GET,
            &format!("/v1/events/{id}"),
            &app.tenant.test_key,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn idempotency_key_returns_the_same_event_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let hook = app.create_webhook(&receiver.url("/"), json!({})).await;
    let body = json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({"n": 1}))});
    let send = |body: Value| {
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(&app.tenant.live_key)
            .header("Idempotency-Key", "publish-42")
            .json(&body)
            .send()
    };
    let first = send(body.clone()).await.unwrap();
    assert_eq!(first.status(), 201);
    let (_, first) = read(first).await;
    let again = send(body.clone()).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let (_, again) = read(again).await;
    assert_eq!(again["id"], first["id"]);
    let (status, err) = read(send(json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({"n": 2}))})).await.unwrap()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["error"]["code"], "idempotency_key_reused");
    // One event, one delivery.
    let (_, events) = app.get("/v1/events").await;
    assert_eq!(events["data"].as_array().unwrap().len(), 1);
    assert_eq!(app.deliveries(hook["id"].as_str().unwrap(), None).await.len(), 1);
}

async fn the_feed_pages_in_order_by_cursor_and_type(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let event_type = if i % 2 == 0 { "signer.done" } else { "signer.notified" };
        ids.push(
            app.publish(event_type, crate::helpers::lifecycle_data(event_type, json!({"i": i}))).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/events?limit=3&after={c}"),
            None => "/v1/events?limit=3".to_owned(),
        };
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if page["has_more"] == false {
            break;
        }
    }
    assert_eq!(seen, ids);
    // The last cursor is kept, and asking again later yields only what is new.
    let newer = app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
    let (_, page) = app.get(&format!("/v1/events?after={}", cursor.unwrap())).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["id"], newer["id"]);

    let (_, done) = app.get("/v1/events?type=signer.done&limit=100").await;
    assert_eq!(done["data"].as_array().unwrap().len(), 5);
    assert!(done["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["type"] == "signer.done"));
}
}
