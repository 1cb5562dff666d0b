//! The tenant's own event types (issue 17, DESIGN §10): registering
//! `invoice.paid` with a JSON Schema, publishes checked against it (a 422
//! naming the failing path, nothing written), `invoice.*` subscribers
//! reached, deprecation and archiving, tenant isolation, the envelope's
//! `origin`, and the setting that refuses built-in publishes.

use crate::esign::{events_of, out_for_signature_at};
use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::{json, Value};

fn invoice_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["invoice_id", "amount", "customer"],
        "properties": {
            "invoice_id": {"type": "string"},
            "amount": {"type": "integer", "minimum": 0},
            "customer": {
                "type": "object",
                "required": ["id"],
                "properties": {"id": {"type": "string"}, "email": {"type": "string"}}
            },
            "lines": {
                "type": "array",
                "items": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}}
            }
        }
    })
}

fn invoice() -> Value {
    json!({"invoice_id": "INV-1", "amount": 4200, "customer": {"id": "cus_1"}, "lines": [{"sku": "A", "qty": 1}]})
}

async fn register(app: &TestApp, key: &str, name: &str) -> (StatusCode, Value) {
    app.request(
        reqwest::Method::POST,
        "/v1/event_types",
        key,
        Some(json!({"name": name, "description": "An invoice was paid.", "schema": invoice_schema(), "example": invoice()})),
    )
    .await
}

async fn publish_raw(app: &TestApp, key: &str, event_type: &str, data: Value) -> (StatusCode, Value) {
    app.request(
        reqwest::Method::POST,
        "/v1/events",
        key,
        Some(json!({"type": event_type, "data": data})),
    )
    .await
}

fn assert_refused(status: StatusCode, body: &Value, field: &str, words: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(words), "{message}");
}

async fn event_count(app: &TestApp) -> usize {
    let (status, page) = app.get("/v1/events?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["data"].as_array().unwrap().len()
}

on_both_backends! {
async fn registration_checks_name_schema_and_example(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = app.tenant.live_key.clone();
    let (status, created) = register(&app, &key, "invoice.paid").await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "invoice.paid");
    assert_eq!(created["source"], "tenant");
    assert_eq!(created["schema"], invoice_schema());
    assert_eq!(created["example"]["data"], invoice());
    assert_eq!(created["example"]["origin"], "api");
    assert_eq!((created["deprecated"].clone(), created["archived"].clone()), (json!(false), json!(false)));

    let (status, again) = register(&app, &key, "invoice.paid").await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["field"], "name");

    let attempt = |body: Value| {
        let app = &app;
        let key = key.clone();
        async move { app.request(reqwest::Method::POST, "/v1/event_types", &key, Some(body)).await }
    };
    for (name, words) in [
        ("signer.paid", "reserved namespace `signer.`"),
        ("webhook.custom", "reserved namespace"),
        ("delivery.late", "reserved namespace"),
        ("Invoice.Paid", "not a valid event type name"),
        ("invoice", "not a valid event type name"),
        ("invoice.*", "not a valid event type name"),
    ] {
        let (status, body) = attempt(json!({"name": name, "schema": {"type": "object"}, "example": {}})).await;
        assert_refused(status, &body, "name", words);
    }
    let (status, body) = attempt(json!({"name": "contract.renewed", "schema": {"type": "objekt"}, "example": {}})).await;
    assert_refused(status, &body, "schema", "not a valid JSON Schema");
    let (status, body) = attempt(json!({"name": "contract.renewed", "schema": {"properties": {"n": {"minimum": "five"}}}, "example": {}})).await;
    assert_refused(status, &body, "schema", "/properties/n/minimum");
    let (status, body) = attempt(json!({"name": "contract.renewed", "schema": {"$ref": "https://example.com/s.json"}, "example": {}})).await;
    assert_refused(status, &body, "schema", "remote references are never fetched");
    let (status, body) = attempt(json!({"name": "contract.renewed", "schema": invoice_schema(), "example": {"invoice_id": "I", "amount": "12", "customer": {"id": "c"}}})).await;
    assert_refused(status, &body, "example", "example/amount must be an integer");

    // Only what passed exists: the list has the built-ins and invoice.paid.
    let (_, list) = app.get("/v1/event_types").await;
    let tenant: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["source"] == "tenant")
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tenant, ["invoice.paid"]);
    let builtin = list["data"].as_array().unwrap().iter().find(|t| t["name"] == "signer.done").unwrap();
    assert_eq!(builtin["source"], "builtin");
    assert_eq!(builtin["schema"]["properties"]["signer"]["type"], "object");
    let (status, one) = app.get("/v1/event_types/invoice.paid").await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["description"], "An invoice was paid.");
}
}

on_both_backends! {
async fn publishes_are_checked_against_the_schema_and_name_the_failing_path(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = app.tenant.live_key.clone();
    register(&app, &key, "invoice.paid").await;
    let receiver = Receiver::start().await;
    app.create_webhook(&receiver.url("/hooks"), json!({"subscribed_events": ["invoice.paid"]})).await;

    let mut wrong_type = invoice();
    wrong_type["amount"] = json!("42.00");
    let mut nested = invoice();
    nested["customer"]["id"] = json!(17);
    let mut missing_nested = invoice();
    missing_nested["customer"] = json!({"email": "a@example.com"});
    let mut array_item = invoice();
    array_item["lines"] = json!([{"sku": "A"}, {"sku": "B", "qty": "two"}]);
    let mut missing = invoice();
    missing.as_object_mut().unwrap().remove("invoice_id");
    let mut below = invoice();
    below["amount"] = json!(-1);
    for (data, path, rule) in [
        (wrong_type, "data/amount", "must be an integer"),
        (nested, "data/customer/id", "must be a string"),
        (missing_nested, "data/customer/id", "is required"),
        (array_item, "data/lines/1/qty", "must be an integer"),
        (missing, "data/invoice_id", "is required"),
        (below, "data/amount", "minimum"),
    ] {
        let (status, body) = publish_raw(&app, &key, "invoice.paid", data).await;
        assert_refused(status, &body, path, &format!("{path} "));
        assert!(body["error"]["message"].as_str().unwrap().contains(rule), "{body}");
    }
    // A built-in type is checked against the catalog's schema the same way.
    let mut bad = lifecycle_data("signer.done", json!({}));
    bad["signature_request"]["sequence"] = json!("seven");
    let (status, body) = publish_raw(&app, &key, "signer.done", bad).await;
    assert_refused(status, &body, "data/signature_request/sequence", "must be an integer");
    let (status, body) = publish_raw(&app, &key, "signer.done", json!({})).await;
    assert_refused(status, &body, "data/signature_request", "is required");
    // Nothing of it was written, and nothing was sent.
    assert_eq!(event_count(&app).await, 0);

    let good = app.publish("invoice.paid", invoice()).await;
    assert_eq!(good["origin"], "api");
    let received = receiver.wait_for(1).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].json()["id"], good["id"]);
    assert_eq!(event_count(&app).await, 1);
}
}

on_both_backends! {
async fn namespace_wildcards_reach_the_tenants_types(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = app.tenant.live_key.clone();
    // Before any invoice type exists, `invoice.*` is unknown, and the
    // refusal lists what is valid.
    let (status, body) = app
        .post("/v1/webhooks", json!({"url": "https://crm.example.com/", "subscribed_events": ["invoice.*"]}))
        .await;
    assert_refused(status, &body, "subscribed_events", "`invoice.*` is not a known event type");
    register(&app, &key, "invoice.paid").await;
    let (status, _) = register(&app, &key, "invoice.voided").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .post("/v1/webhooks", json!({"url": "https://crm.example.com/", "subscribed_events": ["invoice.pain"]}))
        .await;
    assert_refused(status, &body, "subscribed_events", "invoice.paid");
    assert!(body["error"]["message"].as_str().unwrap().contains("invoice.*"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("signer.done"), "{body}");

    let invoices = Receiver::start().await;
    let hook = app.create_webhook(&invoices.url("/hooks"), json!({"subscribed_events": ["invoice.*"]})).await;
    assert_eq!(hook["subscribed_events"], json!(["invoice.*"]));
    let signers = Receiver::start().await;
    app.create_webhook(&signers.url("/hooks"), json!({"subscribed_events": ["signer.*"]})).await;
    // PATCH checks the same way.
    let hook_id = hook["id"].as_str().unwrap();
    let (status, patched) = app
        .patch(&format!("/v1/webhooks/{hook_id}"), json!({"subscribed_events": ["invoice.*", "invoice.paid"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");

    let paid = app.publish("invoice.paid", invoice()).await;
    let voided = app.publish("invoice.voided", invoice()).await;
    app.publish("signer.done", lifecycle_data("signer.done", json!({}))).await;
    let expected = [paid["id"].as_str().unwrap().to_owned(), voided["id"].as_str().unwrap().to_owned()];
    invoices.wait_for_ids(&expected.iter().cloned().collect()).await;
    let got = signers.wait_for(1).await;
    assert_eq!(got[0].json()["type"], "signer.done");
    assert!(invoices.received().iter().all(|r| r.json()["type"] != "signer.done"));
    // The feed filters on a tenant type too.
    let (status, feed) = app.get("/v1/events?type=invoice.paid").await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    assert_eq!(feed["data"].as_array().unwrap().len(), 1);
}
}

on_both_backends! {
async fn deprecated_types_publish_archived_ones_do_not(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = app.tenant.live_key.clone();
    register(&app, &key, "invoice.paid").await;
    let (status, t) = app.patch("/v1/event_types/invoice.paid", json!({"deprecated": true})).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["deprecated"], true);
    let first = app.publish("invoice.paid", invoice()).await;

    let (status, t) = app.patch("/v1/event_types/invoice.paid", json!({"archived": true})).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["archived"], true);
    let (status, body) = publish_raw(&app, &key, "invoice.paid", invoice()).await;
    assert_refused(status, &body, "type", "archived");
    // History stays: the event reads back, and the type is still listed.
    let (status, _) = app.get(&format!("/v1/events/{}", first["id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = app.get("/v1/event_types").await;
    let listed = list["data"].as_array().unwrap().iter().find(|t| t["name"] == "invoice.paid").unwrap().clone();
    assert_eq!((listed["deprecated"].clone(), listed["archived"].clone()), (json!(true), json!(true)));
    let (status, _) = app.patch("/v1/event_types/invoice.paid", json!({"archived": false})).await;
    assert_eq!(status, StatusCode::OK);
    app.publish("invoice.paid", invoice()).await;
}
}

on_both_backends! {
async fn changes_keep_schema_and_example_consistent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = app.tenant.live_key.clone();
    register(&app, &key, "invoice.paid").await;
    // A schema alone must accept the stored example.
    let mut stricter = invoice_schema();
    stricter["required"] = json!(["invoice_id", "amount", "customer", "currency"]);
    let (status, body) = app.patch("/v1/event_types/invoice.paid", json!({"schema": stricter})).await;
    assert_refused(status, &body, "schema", "example/currency is required");
    // With a new example that satisfies it, it takes.
    let mut example = invoice();
    example["currency"] = json!("EUR");
    let (status, t) = app
        .patch("/v1/event_types/invoice.paid", json!({"schema": stricter, "example": example, "description": "Paid."}))
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["description"], "Paid.");
    // An example alone must satisfy the stored schema.
    let (status, body) = app.patch("/v1/event_types/invoice.paid", json!({"example": invoice()})).await;
    assert_refused(status, &body, "example", "example/currency is required");
    // The new schema is what publishes are checked against now.
    let (status, body) = publish_raw(&app, &key, "invoice.paid", invoice()).await;
    assert_refused(status, &body, "data/currency", "is required");
    app.publish("invoice.paid", example).await;
    // Built-in types cannot be changed; unknown ones are a 404.
    let (status, body) = app.patch("/v1/event_types/signer.done", json!({"deprecated": true})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("built-in"), "{body}");
    let (status, _) = app.patch("/v1/event_types/contract.renewed", json!({"deprecated": true})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
}

on_both_backends! {
async fn another_tenants_types_are_unknown_to_you(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let other = app.other_tenant().await;
    register(&app, &app.tenant.live_key.clone(), "invoice.paid").await;
    let key = other.live_key.as_str();
    let (status, _) = app.request(reqwest::Method::GET, "/v1/event_types/invoice.paid", key, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .request(reqwest::Method::PATCH, "/v1/event_types/invoice.paid", key, Some(json!({"archived": true})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = app.request(reqwest::Method::GET, "/v1/event_types", key, None).await;
    assert!(list["data"].as_array().unwrap().iter().all(|t| t["source"] == "builtin"), "{list}");
    let (status, body) = publish_raw(&app, key, "invoice.paid", invoice()).await;
    assert_refused(status, &body, "type", "not a known event type");
    let (status, body) = app
        .request(
            reqwest::Method::POST,
            "/v1/webhooks",
            key,
            Some(json!({"url": "https://crm.example.com/", "subscribed_events": ["invoice.*"]})),
        )
        .await;
    assert_refused(status, &body, "subscribed_events", "not a known event type");
    // The other tenant may register the same name as its own.
    let (status, _) = register(&app, key, "invoice.paid").await;
    assert_eq!(status, StatusCode::CREATED);
    // And the first tenant's type is unaffected by it.
    let (status, t) = app.get("/v1/event_types/invoice.paid").await;
    assert_eq!((status, t["archived"].clone()), (StatusCode::OK, json!(false)));
}
}

on_both_backends! {
async fn envelopes_say_where_each_event_came_from(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let hook = app.create_webhook(&receiver.url("/hooks"), json!({})).await;
    let key = app.tenant.live_key.clone();
    let request = out_for_signature_at(
        &app.client,
        &app.url(""),
        &key,
        json!({"name": "MSA", "signers": [{"name": "Ada Lovelace", "email": "ada@example.com"}]}),
    )
    .await;
    let id = request["id"].as_str().unwrap();
    let lifecycle = events_of(&receiver, id, 2).await;
    for event in &lifecycle {
        assert_eq!(event["origin"], "lifecycle", "{event}");
        // What the lifecycle really sends satisfies the catalog's schema.
        let info = signhook_core::catalog::lookup(event["type"].as_str().unwrap()).unwrap();
        if let Err(v) = info.schema().check(&event["data"]) {
            panic!("{} breaks its schema: {v}", event["type"]);
        }
    }
    let published = app.publish("signer.done", lifecycle_data("signer.done", json!({}))).await;
    let hook_id = hook["id"].as_str().unwrap();
    let (status, _) = app.post(&format!("/v1/webhooks/{hook_id}/test"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let all = eventually("the published and the test event", || async {
        let received: Vec<Value> = receiver.received().iter().map(Received::json).collect();
        let done = received.iter().any(|e| e["id"] == published["id"]) && received.iter().any(|e| e["type"] == "webhook.test");
        done_when(done, received)
    })
    .await;
    let origin_of = |pred: &dyn Fn(&Value) -> bool| all.iter().find(|e| pred(e)).unwrap()["origin"].clone();
    assert_eq!(origin_of(&|e| e["id"] == published["id"]), "api");
    assert_eq!(origin_of(&|e| e["type"] == "webhook.test"), "system");
    // The feed shows the same.
    let (_, event) = app.get(&format!("/v1/events/{}", lifecycle[0]["id"].as_str().unwrap())).await;
    assert_eq!(event["origin"], "lifecycle");
}
}

on_both_backends! {
async fn a_tenant_that_signs_through_signhook_can_refuse_built_in_publishes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = app.tenant.live_key.clone();
    let (status, tenant) = app.get("/v1/tenant").await;
    assert_eq!(status, StatusCode::OK, "{tenant}");
    assert_eq!(tenant["allow_lifecycle_publishes"], true);
    let (status, tenant) = app.patch("/v1/tenant", json!({"allow_lifecycle_publishes": false})).await;
    assert_eq!(status, StatusCode::OK, "{tenant}");
    assert_eq!(tenant["allow_lifecycle_publishes"], false);
    let (status, body) = publish_raw(&app, &key, "signer.done", lifecycle_data("signer.done", json!({}))).await;
    assert_refused(status, &body, "type", "runs its documents through Signhook");
    // The sandbox key is the same tenant.
    let test_key = app.tenant.test_key.clone();
    let (status, body) = publish_raw(&app, &test_key, "signer.done", lifecycle_data("signer.done", json!({}))).await;
    assert_refused(status, &body, "type", "allow_lifecycle_publishes");
    // Its own types still publish.
    register(&app, &key, "invoice.paid").await;
    app.publish("invoice.paid", invoice()).await;
    let (status, body) = app.patch("/v1/tenant", json!({"allow_lifecycle_publishes": "no"})).await;
    assert!(status.is_client_error(), "{body}");
    let (status, _) = app.patch("/v1/tenant", json!({"allow_lifecycle_publishes": true})).await;
    assert_eq!(status, StatusCode::OK);
    app.publish("signer.done", lifecycle_data("signer.done", json!({}))).await;
}
}
