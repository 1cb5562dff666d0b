//! One endpoint's dashboard page as an admin uses it, in a real headless
//! Chromium against a real receiver: a failing endpoint's retries in the
//! log, one delivery's attempts, resend, recovery with its progress; the
//! secret revealed and rotated; a test event of a chosen type; edit,
//! disable, enable, delete; the log's filters and pages. And the rules that
//! hold whatever the browser sends: viewers change nothing, other tenants'
//! endpoints are not found.

use crate::delivery::verify_standard;
use crate::helpers::*;
use reqwest::header::COOKIE;
use serde_json::json;

/// `now` minus `minutes`, as a person types it into the page (UTC).
fn minutes_ago(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes))
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

#[tokio::test]
async fn a_failing_endpoint_shows_its_retries_and_is_resent_and_recovered_from_the_page() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let receiver = Receiver::scripted(vec![], Reply::Status(500)).await;
    // Lifecycle events only: the dead letters' own `delivery.failed` go
    // elsewhere.
    let hook = app
        .create_webhook(
            &receiver.url("/hooks"),
            json!({"description": "Billing", "subscribed_events": ["signer.*", "signature_request.*"],
                   "headers": {"X-Api-Key": "k-123"}}),
        )
        .await;
    let id = hook["id"].as_str().unwrap();
    let first = app
        .publish(
            "signer.done",
            crate::helpers::lifecycle_data("signer.done", json!({"signer": {"name": "Ada"}})),
        )
        .await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    // Four attempts (the fast schedule's three retries), then a dead letter.
    app.wait_until(&format!("/v1/webhooks/{id}/deliveries?status=failed"), |page| {
        page["data"].as_array().is_some_and(|d| d.len() == 1)
    })
    .await;

    let browser = signed_in_browser(&app, "ada@example.com", "admin").await;
    browser.open(&app.url(&format!("/webhooks/{id}"))).await;
    assert!(
        browser.text("#state").await.starts_with("Failing since"),
        "{}",
        browser.text("#state").await
    );
    // The dead letters, by the status filter.
    browser.select("#status", "failed").await;
    browser.submit("#filter").await;
    let log = browser.text("#delivery-log").await;
    assert!(
        log.contains("signer.done") && log.contains("failed") && log.contains(&first_id),
        "{log}"
    );
    // One delivery: every attempt with the endpoint's answer.
    browser.click("#delivery-log a").await;
    assert_eq!(browser.text("#delivery-status").await, "failed");
    let attempts = browser.text("#attempts").await;
    for n in 1..=4 {
        assert!(attempts.contains(&format!("Attempt {n}: 500")), "{attempts}");
    }
    assert!(
        attempts.contains("answered 500"),
        "the start of the answer's body: {attempts}"
    );
    // Each attempt's request headers as sent, a custom one's value hidden.
    let headers = browser.text(".request-headers").await;
    assert!(headers.contains(&format!("webhook-id: {first_id}")), "{headers}");
    assert!(headers.contains("webhook-signature: v1,"), "{headers}");
    assert!(
        headers.contains("x-api-key: (custom header: value not shown)"),
        "{headers}"
    );
    assert!(!browser.page_text().await.contains("k-123"));
    let body = browser.text("#request-body").await;
    assert!(
        body.contains(&first_id) && body.contains("\"description\": \"Billing\""),
        "{body}"
    );
    browser.screenshot("dashboard-delivery").await;

    // The endpoint is fixed; resend from the page: a fifth attempt succeeds.
    receiver.set_reply(Reply::Status(200));
    browser.submit("#resend").await;
    assert!(browser.text("#notice").await.starts_with("Sent again"));
    let path = browser.client().current_url().await.unwrap().path().to_owned();
    eventually("the resend to succeed on the page", || async {
        browser.open(&app.url(&path)).await;
        let status = browser.text("#delivery-status").await;
        done_when(status == "succeeded", status)
    })
    .await;
    assert!(browser.text("#attempts").await.contains("Attempt 5: 200"));
    // The list draws its health: one of five attempts succeeded.
    browser.open(&app.url("/webhooks")).await;
    let health = browser.text("#webhooks").await;
    assert!(
        health.contains("24 h: 20.0 % ok") && health.contains("5 attempts"),
        "{health}"
    );
    assert!(browser.has("#webhooks svg rect.failed").await);

    // Two more fail while the endpoint is down; recover everything since
    // ten minutes ago from the endpoint's page.
    receiver.set_reply(Reply::Status(503));
    let later: Vec<String> = [
        app.publish(
            "signer.done",
            crate::helpers::lifecycle_data("signer.done", json!({"n": 1})),
        )
        .await,
        app.publish(
            "signature_request.done",
            crate::helpers::lifecycle_data("signature_request.done", json!({"n": 2})),
        )
        .await,
    ]
    .iter()
    .map(|e| e["id"].as_str().unwrap().to_owned())
    .collect();
    app.wait_until(&format!("/v1/webhooks/{id}/deliveries?status=failed"), |page| {
        page["data"].as_array().is_some_and(|d| d.len() == 2)
    })
    .await;
    receiver.set_reply(Reply::Status(200));
    browser.open(&app.url(&format!("/webhooks/{id}"))).await;
    // A time that is not one is refused beside the form, nothing started.
    browser.fill("#recover_since", "last tuesday").await;
    browser.submit("#start-recovery").await;
    assert!(
        browser.text("#recover-error").await.contains("since"),
        "{}",
        browser.text("#recover-error").await
    );
    assert!(!browser.has("#recoveries").await);
    browser.fill("#recover_since", &minutes_ago(10)).await;
    browser.submit("#start-recovery").await;
    assert!(browser.text("#notice").await.starts_with("Recovery started"));
    eventually("the recovery to finish on the page", || async {
        browser.open(&app.url(&format!("/webhooks/{id}"))).await;
        let jobs = browser.text("#recoveries").await;
        done_when(jobs.contains("2 of 2 resent") && jobs.contains("done"), jobs)
    })
    .await;
    receiver.wait_for_ids(&later.iter().cloned().collect()).await;
    browser.screenshot("dashboard-endpoint-recovered").await;
    browser.close().await;
}

#[tokio::test]
async fn an_admin_rotates_the_secret_sends_typed_test_events_edits_disables_and_deletes() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let receiver = Receiver::start().await;
    // The tenant's own namespace is offered beside the built-in ones, so an
    // edit keeps a subscription to it.
    let invoice_paid = json!({"name": "invoice.paid", "description": "An invoice was paid",
        "schema": {"type": "object"}, "example": {}});
    assert_eq!(app.post("/v1/event_types", invoice_paid).await.0, 201);
    let hook = app
        .create_webhook(
            &receiver.url("/hooks"),
            json!({"description": "CRM", "subscribed_events": ["signer.*", "invoice.*"]}),
        )
        .await;
    let id = hook["id"].as_str().unwrap();
    let browser = signed_in_browser(&app, "ada@example.com", "admin").await;
    browser.open(&app.url(&format!("/webhooks/{id}"))).await;

    // Reveal, rotate, reveal again: a new secret, the old one still signing.
    browser.submit("#reveal").await;
    let old = browser.value("#secret").await;
    assert_eq!(old, hook["secret"].as_str().unwrap());
    browser.submit("#rotate").await;
    assert!(browser.text("#notice").await.starts_with("Secret rotated"));
    assert!(!browser.has("#secret").await, "the secret is shown only when asked for");
    browser.submit("#reveal").await;
    let new = browser.value("#secret").await;
    assert!(new.starts_with("whsec_") && new != old, "{new}");
    assert!(browser.text("#previous-secret").await.contains("also signs until"));

    // A test event of a chosen type, its example payload shown first.
    browser.select("#test_type", "signature_request.done").await;
    browser.submit("#show-example").await;
    assert_eq!(browser.text("#example-type").await, "signature_request.done");
    assert!(browser.text("#example").await.contains("signature_request"));
    browser.submit("#send-test").await;
    assert!(browser.text("#notice").await.starts_with("Test event queued"));
    let received = receiver.wait_for(1).await;
    assert_eq!(received[0].json()["type"], "signature_request.done");
    // Signed by both secrets during the overlap: either verifies.
    verify_standard(&new, &received[0]);
    verify_standard(&old, &received[0]);

    // Edit: a refused URL is said beside the field and nothing changes;
    // then the description and the events change.
    browser.click("#edit").await;
    assert_eq!(browser.text("h1").await, "Edit the endpoint");
    assert_eq!(browser.value("#url").await, receiver.url("/hooks"));
    browser.fill("#url", "not a url").await;
    browser.submit("#save-endpoint").await;
    assert!(browser.text("#url-error").await.starts_with("url "));
    let (_, unchanged) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(unchanged["url"], receiver.url("/hooks"));
    browser.fill("#url", &receiver.url("/hooks/v2")).await;
    browser.fill("#description", "CRM <b>v2</b>").await;
    browser.click("[id='event-signature_request.done']").await;
    browser.submit("#save-endpoint").await;
    assert_eq!(browser.text("#notice").await, "Changes saved.");
    assert_eq!(browser.text("#description").await, "CRM <b>v2</b>");
    let (_, edited) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(edited["url"], receiver.url("/hooks/v2"));
    let mut events: Vec<String> = serde_json::from_value(edited["subscribed_events"].clone()).unwrap();
    events.sort();
    assert_eq!(events, ["invoice.*", "signature_request.done", "signer.*"]);

    // Disable, enable.
    browser.submit("#disable").await;
    assert_eq!(browser.text("#state").await, "Disabled by its owner");
    assert_eq!(app.get(&format!("/v1/webhooks/{id}")).await.1["enabled"], false);
    browser.submit("#enable").await;
    assert_eq!(browser.text("#state").await, "Enabled");

    // Delete, behind its confirmation.
    browser.click("details summary").await;
    browser.submit("#delete").await;
    assert!(browser.text("#notice").await.starts_with("Endpoint deleted"));
    assert!(browser.has("#empty").await);
    assert_eq!(app.get(&format!("/v1/webhooks/{id}")).await.0, 404);
    browser.close().await;
}

#[tokio::test]
async fn the_log_filters_by_type_event_and_time_and_pages_back() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let receiver = Receiver::start().await;
    let hook = app.create_webhook(&receiver.url("/hooks"), json!({})).await;
    let id = hook["id"].as_str().unwrap();
    let mut published = Vec::new();
    for n in 0..28 {
        let event_type = if n % 4 == 0 {
            "signature_request.done"
        } else {
            "signer.done"
        };
        published.push(
            app.publish(event_type, crate::helpers::lifecycle_data(event_type, json!({"n": n})))
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    receiver.wait_for_ids(&published.iter().cloned().collect()).await;
    app.wait_until_none_pending(id).await;

    let browser = signed_in_browser(&app, "ada@example.com", "viewer").await;
    browser.open(&app.url(&format!("/webhooks/{id}"))).await;
    let rows = |text: &str| text.matches("succeeded").count();
    // 25 a page, newest first, then the rest.
    let first_page = browser.text("#delivery-log").await;
    assert_eq!(rows(&first_page), 25);
    assert!(first_page.contains(&published[27]) && !first_page.contains(&published[0]));
    browser.click("#older").await;
    let second_page = browser.text("#delivery-log").await;
    assert_eq!(rows(&second_page), 3, "{second_page}");
    assert!(second_page.contains(&published[0]));

    // By type: the seven signature_request.done.
    browser.open(&app.url(&format!("/webhooks/{id}"))).await;
    browser.select("#event_type", "signature_request.done").await;
    browser.submit("#filter").await;
    let by_type = browser.text("#delivery-log").await;
    assert_eq!(rows(&by_type), 7, "{by_type}");
    assert!(!by_type.contains("signer.done"));
    // By event id: one.
    browser.click("#clear-filters").await;
    browser.fill("#event_id", &published[5]).await;
    browser.submit("#filter").await;
    assert_eq!(rows(&browser.text("#delivery-log").await), 1);
    // By time: nothing before an hour ago; a time that is not one is named.
    browser.click("#clear-filters").await;
    browser.fill("#until", &minutes_ago(60)).await;
    browser.submit("#filter").await;
    assert!(browser.text("#no-deliveries").await.contains("No delivery matches"));
    browser.fill("#since", &minutes_ago(10)).await;
    browser.fill("#until", "soon").await;
    browser.submit("#filter").await;
    assert!(
        browser.text("#filter-error").await.starts_with("until"),
        "{}",
        browser.text("#filter-error").await
    );
    browser.screenshot("dashboard-delivery-log").await;
    // A viewer sees the log but no buttons, and no delivery's resend.
    assert!(!browser.has("#edit").await && !browser.has("#rotate").await && !browser.has("#start-recovery").await);
    browser.open(&app.url(&format!("/webhooks/{id}"))).await;
    browser.click("#delivery-log a").await;
    assert!(browser.has("#attempts").await && !browser.has("#resend").await);
    browser.close().await;
}

on_both_backends! {
    async fn viewers_change_nothing_and_other_tenants_endpoints_are_not_found(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let hook = app.create_webhook("http://127.0.0.1:9/hooks", json!({})).await;
        let id = hook["id"].as_str().unwrap();
        app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({}))).await;
        let delivery = eventually("the delivery to exist", || async {
            let list = app.deliveries(id, None).await;
            done_when(!list.is_empty(), list)
        })
        .await;
        let delivery_id = delivery[0]["id"].as_str().unwrap().to_owned();
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let HttpSession { cookie: viewer, csrf } = http_session(&app, "victor@example.com", "viewer").await;
        let post = |path: String, form: Vec<(&'static str, String)>| {
            let client = client.clone();
            let viewer = viewer.clone();
            let url = app.url(&path);
            async move { client.post(url).header(COOKIE, viewer).form(&form).send().await.unwrap() }
        };
        let with_csrf = || vec![("csrf", csrf.clone())];
        for path in ["rotate", "disable", "delete", "secret", "test"] {
            let refused = post(format!("/webhooks/{id}/{path}"), with_csrf()).await;
            assert_eq!(refused.status(), 403, "{path}");
        }
        let mut recover = with_csrf();
        recover.push(("since", "2020-01-01 00:00".into()));
        assert_eq!(post(format!("/webhooks/{id}/recover"), recover).await.status(), 403);
        let mut edit = with_csrf();
        edit.extend([("url", "http://127.0.0.1:9/evil".to_owned()), ("subscribed_events", "*".into())]);
        assert_eq!(post(format!("/webhooks/{id}/edit"), edit).await.status(), 403);
        assert_eq!(post(format!("/deliveries/{delivery_id}/resend"), with_csrf()).await.status(), 403);
        let (_, after) = app.get(&format!("/v1/webhooks/{id}")).await;
        assert_eq!((after["enabled"].clone(), after["url"].clone()), (json!(true), hook["url"].clone()));
        assert_eq!(app.get(&format!("/v1/webhooks/{id}/secret")).await.1["secret"], hook["secret"]);

        // Another tenant's admin: the endpoint, its delivery and its
        // buttons are not found, as through the API.
        let other = app.other_tenant().await;
        let other_tenant = signhook_core::ids::TenantId::parse(&other.id).unwrap();
        let now = chrono::Utc::now();
        let mallory = app
            .store
            .create_user(&other_tenant, "mallory@example.com", signhook_core::auth::Role::Admin, now, now + chrono::Duration::days(1))
            .await
            .unwrap()
            .unwrap();
        let mallory = json!({"set_password_url": app.url(&format!("/password/{}", mallory.link_token))});
        let set = client
            .post(set_password_link(&mallory))
            .form(&[("password", "a long enough secret"), ("confirm", "a long enough secret")])
            .send()
            .await
            .unwrap();
        let cookie = set.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        for path in [format!("/webhooks/{id}"), format!("/webhooks/{id}/edit"), format!("/deliveries/{delivery_id}")] {
            let page = client.get(app.url(&path)).header(COOKIE, &cookie).send().await.unwrap();
            assert_eq!(page.status(), 404, "{path}");
        }
        // The live endpoint is not in the sandbox either.
        let HttpSession { cookie: admin, csrf: admin_csrf } = http_session(&app, "ada@example.com", "admin").await;
        let switched = client
            .post(app.url("/environment"))
            .header(COOKIE, &admin)
            .form(&[("csrf", admin_csrf.as_str()), ("environment", "sandbox"), ("section", "webhooks")])
            .send()
            .await
            .unwrap();
        assert_eq!(switched.status(), 303);
        let environment = switched.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let both = format!("{admin}; {environment}");
        let sandbox = client.get(app.url(&format!("/webhooks/{id}"))).header(COOKIE, &both).send().await.unwrap();
        assert_eq!(sandbox.status(), 404);
        let list = client.get(app.url("/webhooks")).header(COOKIE, &both).send().await.unwrap();
        let html = list.text().await.unwrap();
        assert!(html.contains("Sandbox") && !html.contains(id), "the sandbox list has no live endpoint");
    }
}
