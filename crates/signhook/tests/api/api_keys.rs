//! A tenant's own API keys: made, named, listed without the key, revoked
//! with effect from the next request — on this node and, through
//! PostgreSQL, on every other (the hardening issue's finding: keys could
//! not be rotated at all).

use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::{json, Value};

async fn with_key(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    app.request(method, path, key, body).await
}

on_both_backends! {
async fn keys_are_made_listed_and_revoked_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let live = app.tenant.live_key.clone();
    let (status, made) = with_key(&app, reqwest::Method::POST, "/v1/api_keys", &live, Some(json!({"name": "CRM sync"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk_live_"), "{made}");
    assert_eq!(made["name"], "CRM sync");
    assert_eq!(made["hint"], key[key.len() - 4..]);
    let id = made["id"].as_str().unwrap().to_owned();

    // The new key works (and is now trusted from this node's memory).
    let (status, _) = with_key(&app, reqwest::Method::GET, "/v1/webhooks", &key, None).await;
    assert_eq!(status, StatusCode::OK);
    // The list shows both live keys, never a key itself.
    let (_, list) = with_key(&app, reqwest::Method::GET, "/v1/api_keys", &live, None).await;
    let names: Vec<&str> = list["data"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "CRM sync"], "{list}");
    assert!(!list.to_string().contains(&key[8..]), "{list}");

    // Revoked: the very next request with it is refused.
    let (status, revoked) = with_key(&app, reqwest::Method::DELETE, &format!("/v1/api_keys/{id}"), &live, None).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let (status, _) = with_key(&app, reqwest::Method::GET, "/v1/webhooks", &key, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The environment's last working key cannot be revoked.
    let (_, list) = with_key(&app, reqwest::Method::GET, "/v1/api_keys", &live, None).await;
    let first = list["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, body) = with_key(&app, reqwest::Method::DELETE, &format!("/v1/api_keys/{first}"), &live, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "last_api_key");

    // A sandbox key sees and touches only sandbox keys; another tenant none.
    let (_, sandbox) = with_key(&app, reqwest::Method::GET, "/v1/api_keys", &app.tenant.test_key, None).await;
    assert_eq!(sandbox["data"].as_array().unwrap().len(), 1, "{sandbox}");
    assert_eq!(sandbox["data"][0]["environment"], "test");
    let (status, _) = with_key(&app, reqwest::Method::DELETE, &format!("/v1/api_keys/{first}"), &app.tenant.test_key, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let other = app.other_tenant().await;
    let (status, _) = with_key(&app, reqwest::Method::DELETE, &format!("/v1/api_keys/{first}"), &other.live_key, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bad names are refused, naming the field; nothing is made.
    for name in [json!(""), json!("x".repeat(101)), json!(7)] {
        let (status, body) = with_key(&app, reqwest::Method::POST, "/v1/api_keys", &live, Some(json!({"name": name}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "name", "{body}");
    }
    let (_, list) = with_key(&app, reqwest::Method::GET, "/v1/api_keys", &live, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_node_is_refused_by_the_others() {
    let db = Database::new(Backend::Postgres).await;
    let live = cli_tenant_key(&db);
    let a = BinaryServer::start(&db, &["--dev", "--node-id", "node_a"]);
    let b = BinaryServer::start(&db, &["--dev", "--node-id", "node_b"]);
    let (status, made) = a.post(&live, "/v1/api_keys", json!({"name": "script"})).await;
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap();
    // Node B checks the key, and trusts it from memory from then on.
    assert_eq!(b.get(key, "/v1/webhooks").await.0, 200);
    let client = reqwest::Client::new();
    let resets = |node: &BinaryServer| {
        let (client, url) = (client.clone(), node.url("/metrics"));
        async move {
            let text = client.get(url).send().await.unwrap().text().await.unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("signhook_api_key_cache_resets_total "))
                .map_or(0.0, |v| v.parse::<f64>().unwrap())
        }
    };
    let before = resets(&b).await;

    let id = made["id"].as_str().unwrap();
    let response = client
        .delete(a.url(&format!("/v1/api_keys/{id}")))
        .bearer_auth(&live)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Node B is told, forgets what it trusted, and refuses the key.
    eventually("node B hears of the revocation", || async {
        let now = resets(&b).await;
        done_when(now > before, now)
    })
    .await;
    assert_eq!(b.get(key, "/v1/webhooks").await.0, 401);
    assert_eq!(a.get(key, "/v1/webhooks").await.0, 401);
}
