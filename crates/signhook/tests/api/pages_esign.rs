//! The dashboard's Events, Event types and Signature requests pages, as
//! people use them in a real headless Chromium: requests made and signed
//! through the API, then followed, filtered, read and canceled from the
//! pages; events published through the API, then found in the feed by type
//! and by id, with their delivery to a real receiver, and sent again. The
//! security rules (a viewer's posts refused, other tenants' objects 404,
//! user text escaped) are checked on both backends with plain HTTP.

use crate::helpers::*;
use chrono::Timelike;
use reqwest::header::COOKIE;
use serde_json::{json, Value};
use signhook_testkit::browser::Browser;

/// A request named `name` with two signers, out for signature.
fn two_signers(name: &str) -> Value {
    json!({
        "name": name,
        "signers": [
            {"name": "Ada Lovelace", "email": "ada@example.com"},
            {"name": "Grace Hopper", "email": "grace@example.com"}
        ]
    })
}

/// The types of request `id`'s events as the API lists them, by `sequence`.
async fn api_timeline(app: &TestApp, id: &str) -> Vec<(i64, String)> {
    let (status, page) = app.get("/v1/events?limit=100").await;
    assert_eq!(status, 200, "{page}");
    let mut events: Vec<(i64, String)> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["signature_request"]["id"] == id)
        .map(|e| {
            (
                e["data"]["signature_request"]["sequence"].as_i64().unwrap(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    events.sort();
    events
}

/// The timeline the request page shows: each step's sequence and type.
async fn page_timeline(browser: &Browser) -> Vec<(i64, String)> {
    let sequences = browser.texts("#timeline .sequence").await;
    let types = browser.texts("#timeline .event-type").await;
    assert_eq!(sequences.len(), types.len());
    sequences
        .iter()
        .map(|s| {
            s.trim_start_matches('#')
                .parse::<i64>()
                .unwrap_or_else(|_| panic!("a sequence: {s}"))
        })
        .zip(types)
        .collect()
}

fn path_of(url: &url::Url) -> String {
    url.path().to_owned()
}

#[tokio::test]
async fn an_admin_follows_a_request_from_the_list_to_its_timeline_and_cancels_it() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let name = "Master services agreement <script>alert(1)</script>";
    let request = app.out_for_signature(&app.tenant.live_key, two_signers(name)).await;
    let id = request["id"].as_str().unwrap().to_owned();
    let (status, signed) = app.sign(&request, 0).await;
    assert_eq!(status, 200, "{signed}");

    let browser = signed_in_browser(&app, "ada@example.com", "admin").await;
    browser.click("#nav-signature_requests").await;
    eventually("the list to load", || async {
        let url = browser.client().current_url().await.unwrap();
        done_when(url.path() == "/signature_requests", url.to_string())
    })
    .await;
    assert_eq!(browser.text("h1").await, "Signature requests");
    let table = browser.text("#requests").await;
    assert!(table.contains(name), "the name as text, not markup: {table}");
    assert!(table.contains("ongoing") && table.contains("1 of 2 signed"), "{table}");
    browser.screenshot("dashboard-signature-requests").await;

    // A `done` filter hides it; `ongoing` shows it again.
    browser.select("#status", "done").await;
    browser.submit("#filter").await;
    assert!(browser.text("#no-requests").await.contains("No request in this status"));
    assert!(!browser.has("#requests").await);
    browser.select("#status", "ongoing").await;
    browser.submit("#filter").await;
    assert!(browser.text("#requests").await.contains(name));

    // Its page: the name as text, the signers, no signing link anywhere.
    browser.click(&format!("a[href='/signature_requests/{id}']")).await;
    eventually("the request's page", || async {
        let url = browser.client().current_url().await.unwrap();
        done_when(path_of(&url) == format!("/signature_requests/{id}"), url.to_string())
    })
    .await;
    assert_eq!(browser.text("h1").await, name);
    assert_eq!(browser.text("#request-status").await, "ongoing");
    let signers = browser.texts("#signers tbody tr").await;
    assert_eq!(signers.len(), 2, "{signers:?}");
    assert!(
        signers[0].contains("Ada Lovelace") && signers[0].contains("ada@example.com") && signers[0].contains("done"),
        "{signers:?}"
    );
    assert!(!signers[0].contains('—'), "Ada's signing time is shown: {signers:?}");
    assert!(
        signers[1].contains("Grace Hopper") && !signers[1].contains("done") && signers[1].contains('—'),
        "{signers:?}"
    );
    assert!(browser.text("#documents").await.contains("contract.pdf"));
    let source = browser.source().await;
    for signer in 0..2 {
        let link = crate::esign::signing_url(&request, signer);
        let token = link.rsplit('/').next().unwrap();
        assert!(!source.contains(token), "signer {signer}'s link is on the page");
    }
    assert!(!source.contains("/signing/"), "no signing link on the page");
    assert!(!browser.has("#signed-pdf").await, "no files before it is done");

    // The timeline: every event of the request, by sequence, as the API has them.
    let expected = api_timeline(&app, &id).await;
    assert_eq!(
        expected.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
        [
            "signature_request.activated",
            "signer.notified",
            "signer.notified",
            "signer.link_opened",
            "signer.done"
        ]
    );
    assert_eq!(page_timeline(&browser).await, expected);
    let sentences = browser.texts("#timeline .sentence").await;
    assert_eq!(sentences[4], "Ada Lovelace <ada@example.com> signed", "{sentences:?}");
    browser.screenshot("dashboard-signature-request").await;

    // Cancel from the page, with a reason: the page and the API agree.
    browser.click("#manage summary").await;
    browser.fill("#cancel_reason", "The client changed the terms").await;
    browser.submit("#cancel").await;
    assert_eq!(browser.text("#request-status").await, "canceled");
    assert!(browser.text("#notice").await.contains("Request canceled"));
    assert!(
        !browser.has("#manage").await,
        "nothing left to do to a canceled request"
    );
    let (_, after) = app.get(&format!("/v1/signature_requests/{id}")).await;
    assert_eq!(after["status"], "canceled");
    assert_eq!(after["reason"], "The client changed the terms");
    let timeline = page_timeline(&browser).await;
    assert_eq!(timeline, api_timeline(&app, &id).await);
    assert_eq!(timeline.last().unwrap(), &(6, "signature_request.canceled".to_owned()));
    let sentences = browser.texts("#timeline .sentence").await;
    assert_eq!(
        sentences.last().unwrap(),
        "The request was canceled by ada@example.com in the dashboard: The client changed the terms"
    );

    // A button on a page that went stale: the API's refusal, said on the page.
    let other = app.out_for_signature(&app.tenant.live_key, two_signers("Annex")).await;
    let other_id = other["id"].as_str().unwrap();
    browser.open(&app.url(&format!("/signature_requests/{other_id}"))).await;
    let (status, _) = app.act(other_id, "cancel", None).await;
    assert_eq!(status, 200);
    browser.submit("#remind").await;
    let (status, api_refusal) = app.act(other_id, "remind", None).await;
    assert_eq!(status, 409);
    assert_eq!(
        browser.text("#refusal").await,
        api_refusal["error"]["message"].as_str().unwrap()
    );
    assert_eq!(browser.text("#request-status").await, "canceled");
    browser.close().await;
}

#[tokio::test]
async fn an_expired_request_is_reopened_from_its_page_and_once_done_offers_its_files() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut body = two_signers("Lease");
    body["signers"].as_array_mut().unwrap().pop();
    body["expires_at"] = json!(signhook_core::time::rfc3339(
        chrono::Utc::now() + chrono::Duration::days(2)
    ));
    let request = app.out_for_signature(&app.tenant.live_key, body).await;
    let id = request["id"].as_str().unwrap().to_owned();
    app.clock.advance(std::time::Duration::from_secs(3 * 24 * 3600));
    app.wait_until(&format!("/v1/signature_requests/{id}"), |r| r["status"] == "expired")
        .await;

    let browser = signed_in_browser(&app, "ada@example.com", "admin").await;
    browser.open(&app.url(&format!("/signature_requests/{id}"))).await;
    assert_eq!(browser.text("#request-status").await, "expired");
    assert!(!browser.has("#cancel").await && !browser.has("#remind").await);
    // A deadline in the past: the API's message beside the field, nothing changed.
    browser.fill("#expires_at", "2020-01-01 00:00").await;
    browser.submit("#reactivate").await;
    let (_, api_refusal) = app
        .act(&id, "reactivate", Some(json!({"expires_at": "2020-01-01T00:00:00Z"})))
        .await;
    assert_eq!(
        browser.text("#expires_at-error").await,
        api_refusal["error"]["message"].as_str().unwrap()
    );
    let (_, still) = app.get(&format!("/v1/signature_requests/{id}")).await;
    assert_eq!(still["status"], "expired");
    // A week from the server's now: reopened.
    let deadline = app.clock_now() + chrono::Duration::days(7);
    browser
        .fill("#expires_at", &deadline.format("%Y-%m-%d %H:%M").to_string())
        .await;
    browser.submit("#reactivate").await;
    assert!(browser.text("#notice").await.contains("reopened"));
    assert_eq!(browser.text("#request-status").await, "ongoing");
    let (_, reopened) = app.get(&format!("/v1/signature_requests/{id}")).await;
    assert_eq!(reopened["status"], "ongoing");
    assert_eq!(
        reopened["expires_at"],
        signhook_core::time::rfc3339(deadline.with_second(0).unwrap().with_nanosecond(0).unwrap())
    );
    // The reminder button sends a reminder, as the API's does.
    browser.submit("#remind").await;
    assert!(browser.text("#notice").await.contains("Reminder sent"));
    let types: Vec<String> = page_timeline(&browser).await.into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        types,
        [
            "signature_request.activated",
            "signer.notified",
            "signature_request.expired",
            "signature_request.reactivated",
            "signature_request.reminder_executed"
        ]
    );

    // Signed: the page links the signed PDF and the audit certificate.
    let (status, _) = app.sign(&request, 0).await;
    assert_eq!(status, 200);
    browser.open(&app.url(&format!("/signature_requests/{id}"))).await;
    assert_eq!(browser.text("#request-status").await, "done");
    for (link, magic) in [("#signed-pdf", "%PDF-"), ("#audit-certificate", "%PDF-")] {
        let href = browser
            .client()
            .find(fantoccini::Locator::Css(link))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap()
            .unwrap();
        let file = app.client.get(&href).send().await.unwrap();
        assert_eq!(file.status(), 200, "{link}: {href}");
        assert!(file.bytes().await.unwrap().starts_with(magic.as_bytes()), "{link}");
    }
    assert!(!browser.has("#manage").await);
    browser.close().await;
}

#[tokio::test]
async fn the_events_feed_filters_by_type_and_opens_an_event_with_its_delivery() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let receiver = Receiver::start().await;
    let webhook = app.create_webhook(&receiver.url("/hooks"), json!({})).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    let activated = app
        .publish(
            "signature_request.activated",
            crate::helpers::lifecycle_data(
                "signature_request.activated",
                json!({"signature_request": {"id": "sr_1", "name": "Deal <script>alert(1)</script>"}}),
            ),
        )
        .await;
    let done = app
        .publish(
            "signer.done",
            crate::helpers::lifecycle_data("signer.done", json!({"signer": {"name": "Ada"}})),
        )
        .await;
    receiver.wait_for(2).await;
    let activated_id = activated["id"].as_str().unwrap();
    let done_id = done["id"].as_str().unwrap();

    let browser = signed_in_browser(&app, "ada@example.com", "admin").await;
    browser.open(&app.url("/events")).await;
    assert_eq!(browser.text("h1").await, "Events");
    let rows = browser.texts("#events tbody tr").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0].contains("signer.done") && rows[0].contains(done_id),
        "newest first: {rows:?}"
    );
    assert!(rows[1].contains("signature_request.activated"), "{rows:?}");
    browser.screenshot("dashboard-events").await;

    // The type filter shows one.
    browser.select("#type", "signer.done").await;
    browser.submit("#filter").await;
    let rows = browser.texts("#events tbody tr").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].contains(done_id));
    browser.select("#type", "webhook.disabled").await;
    browser.submit("#filter").await;
    assert!(browser.text("#no-events").await.contains("No event of this type"));

    // An id that is no event: said beside the box.
    browser.fill("#id", "evt_00000000000000000000000000000000").await;
    browser.submit("#open-event").await;
    assert!(browser.text("#id-error").await.contains("no event"), "the API's words");
    // The search opens the event's page.
    browser.fill("#id", activated_id).await;
    browser.submit("#open-event").await;
    let url = browser.client().current_url().await.unwrap();
    assert_eq!(url.path(), format!("/events/{activated_id}"));
    assert_eq!(browser.text("#event-type").await, "signature_request.activated");
    let data: Value = serde_json::from_str(&browser.text("#data").await).unwrap();
    assert_eq!(
        data["signature_request"]["name"], "Deal <script>alert(1)</script>",
        "the data as text, not markup"
    );
    assert!(browser.text("#envelope").await.contains("public_api"));
    // Its delivery to the receiver, with a link to the endpoint's page.
    eventually("the delivery to show as succeeded", || async {
        browser.open(&app.url(&format!("/events/{activated_id}"))).await;
        let table = browser.text("#event-deliveries").await;
        done_when(
            table.contains(&receiver.url("/hooks")) && table.contains("succeeded"),
            table,
        )
    })
    .await;
    assert!(
        browser
            .has(&format!("#event-deliveries a[href='/webhooks/{webhook_id}']"))
            .await
    );
    browser.screenshot("dashboard-event").await;

    // Sent again to every endpoint: the receiver gets it again, same id.
    browser.submit("#resend-all").await;
    assert!(browser.text("#notice").await.contains("Sent again to 1 endpoint"));
    eventually("the event to arrive again", || async {
        let again = receiver
            .received()
            .iter()
            .filter(|r| r.json()["id"] == activated_id)
            .count();
        done_when(again == 2, again)
    })
    .await;
    assert_eq!(browser.texts("#event-deliveries tbody tr").await.len(), 2);
    // Through the endpoint's page the link leads.
    browser
        .click(&format!("#event-deliveries a[href='/webhooks/{webhook_id}']"))
        .await;
    eventually("the endpoint's page", || async {
        let url = browser.client().current_url().await.unwrap();
        done_when(url.path() == format!("/webhooks/{webhook_id}"), url.to_string())
    })
    .await;
    browser.close().await;
}

#[tokio::test]
async fn the_event_types_page_shows_the_catalog_of_the_api() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let invoice_paid = json!({"name": "invoice.paid", "description": "An invoice was paid",
        "schema": {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "integer"}}},
        "example": {"amount": 4200}});
    assert_eq!(app.post("/v1/event_types", invoice_paid).await.0, 201);
    let (_, catalog) = app.get("/v1/event_types").await;
    let browser = signed_in_browser(&app, "victor@example.com", "viewer").await;
    browser.click("#nav-event_types").await;
    eventually("the catalog page", || async {
        let url = browser.client().current_url().await.unwrap();
        done_when(url.path() == "/event_types", url.to_string())
    })
    .await;
    assert_eq!(browser.text("h1").await, "Event types");
    let types = catalog["data"].as_array().unwrap();
    assert_eq!(browser.texts(".event-type").await.len(), types.len());
    for t in types {
        let name = t["name"].as_str().unwrap();
        let card = format!("[id='type-{name}']");
        assert_eq!(browser.text(&format!("{card} h3")).await, name);
        assert_eq!(browser.text(&format!("{card} .description")).await, t["description"]);
        let example: Value = serde_json::from_str(&browser.text(&format!("{card} pre.example")).await).unwrap();
        assert_eq!(example, t["example"], "{name}");
        if t["source"] == "tenant" {
            let schema: Value = serde_json::from_str(&browser.text(&format!("{card} pre.schema")).await).unwrap();
            assert_eq!(schema, t["schema"], "{name}");
        }
    }
    assert_eq!(
        browser.texts(".own-type").await.len(),
        1,
        "the tenant's own type has its card"
    );
    browser.screenshot("dashboard-event-types").await;
    browser.close().await;
}

#[tokio::test]
async fn a_viewer_sees_no_buttons() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let _receiver_webhook = app.create_webhook("http://127.0.0.1:9/down", json!({})).await;
    let request = app.out_for_signature(&app.tenant.live_key, two_signers("NDA")).await;
    let id = request["id"].as_str().unwrap();
    let event = app
        .publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({})))
        .await;
    let browser = signed_in_browser(&app, "victor@example.com", "viewer").await;
    browser.open(&app.url(&format!("/signature_requests/{id}"))).await;
    assert!(browser.text("#signers").await.contains("Ada Lovelace"));
    assert!(!browser.has("#manage").await && !browser.has("#cancel").await && !browser.has("#remind").await);
    browser
        .open(&app.url(&format!("/events/{}", event["id"].as_str().unwrap())))
        .await;
    assert!(browser
        .text("#event-deliveries")
        .await
        .contains("http://127.0.0.1:9/down"));
    assert!(!browser.has("#resend-all").await);
    browser.close().await;
}

/// A client that keeps no cookies and follows no redirects.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

on_both_backends! {
    async fn the_pages_keep_to_the_tenant_and_refuse_viewers(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let receiver = Receiver::start().await;
        let webhook = app.create_webhook(&receiver.url("/hooks"), json!({})).await;
        let request = app.out_for_signature(&app.tenant.live_key, two_signers("Deal <script>x</script>")).await;
        let id = request["id"].as_str().unwrap();
        let event = app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({"note": "<script>alert(1)</script>"}))).await;
        let event_id = event["id"].as_str().unwrap();
        receiver.wait_for(1).await;
        let webhook_id = webhook["id"].as_str().unwrap();
        let delivered = app.deliveries(webhook_id, None).await.len();
        let client = raw_client();

        // Pages escape what users wrote.
        let HttpSession { cookie: admin, csrf: admin_csrf } = http_session(&app, "ada@example.com", "admin").await;
        let get = |path: String, session: String| {
            let client = client.clone();
            let url = app.url(&path);
            async move {
                let response = client.get(url).header(COOKIE, session).send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            }
        };
        let (status, html) = get(format!("/signature_requests/{id}"), admin.clone()).await;
        assert_eq!(status, 200);
        assert!(html.contains("Deal &#60;script&#62;x&#60;/script&#62;") && !html.contains("<script>"), "{html}");
        let (status, html) = get(format!("/events/{event_id}"), admin.clone()).await;
        assert_eq!(status, 200);
        assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;") && !html.contains("<script>"));
        let (status, html) = get("/signature_requests?status=ongoing".into(), admin.clone()).await;
        assert_eq!(status, 200);
        assert!(html.contains(id));
        let (status, html) = get("/signature_requests?status=done".into(), admin.clone()).await;
        assert_eq!(status, 200);
        assert!(!html.contains(id));
        let (status, html) = get("/events?type=signer.done".into(), admin.clone()).await;
        assert_eq!(status, 200);
        assert!(html.contains(event_id));
        let (status, html) = get("/events?type=webhook.test".into(), admin.clone()).await;
        assert_eq!(status, 200);
        assert!(!html.contains(event_id));
        // An unknown filter value: the API's message, no rows.
        let (status, html) = get("/signature_requests?status=finished".into(), admin.clone()).await;
        assert_eq!(status, 422);
        assert!(html.contains("status must be one of"), "{html}");

        // Another tenant's request and event are 404 pages, and a post to them does nothing.
        let other = app.other_tenant().await;
        let theirs = app.create_signature_request(&other.live_key, two_signers("Theirs")).await;
        let their_id = theirs["id"].as_str().unwrap();
        let (status, their_event) = app
            .request(reqwest::Method::POST, "/v1/events", &other.live_key, Some(json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({}))})))
            .await;
        assert_eq!(status, 201);
        let their_event_id = their_event["id"].as_str().unwrap();
        for path in [format!("/signature_requests/{their_id}"), format!("/events/{their_event_id}")] {
            let (status, html) = get(path.clone(), admin.clone()).await;
            assert_eq!(status, 404, "{path}");
            assert!(!html.contains("Theirs"), "{path}");
        }
        let post = |path: String, session: String, form: Vec<(&'static str, String)>| {
            let client = client.clone();
            let url = app.url(&path);
            async move { client.post(url).header(COOKIE, session).form(&form).send().await.unwrap().status().as_u16() }
        };
        let status = post(format!("/signature_requests/{their_id}/cancel"), admin.clone(), vec![("csrf", admin_csrf.clone())]).await;
        assert_eq!(status, 404);
        let (_, still) = app
            .request(reqwest::Method::GET, &format!("/v1/signature_requests/{their_id}"), &other.live_key, None)
            .await;
        assert_eq!(still["status"], "draft");
        let status = post(format!("/events/{their_event_id}/resend"), admin.clone(), vec![("csrf", admin_csrf.clone())]).await;
        assert_eq!(status, 404);
        // The sandbox shows none of the live ones.
        let sandbox = format!("{admin}; signhook_environment=sandbox");
        assert_eq!(get(format!("/signature_requests/{id}"), sandbox.clone()).await.0, 404);
        assert_eq!(get(format!("/events/{event_id}"), sandbox.clone()).await.0, 404);
        assert!(!get("/events".into(), sandbox).await.1.contains(event_id));

        // A viewer's posts are refused and change nothing.
        let HttpSession { cookie: viewer, csrf: viewer_csrf } = http_session(&app, "victor@example.com", "viewer").await;
        for action in ["cancel", "remind"] {
            let status = post(format!("/signature_requests/{id}/{action}"), viewer.clone(), vec![("csrf", viewer_csrf.clone())]).await;
            assert_eq!(status, 403, "{action}");
        }
        let status = post(
            format!("/signature_requests/{id}/reactivate"),
            viewer.clone(),
            vec![("csrf", viewer_csrf.clone()), ("expires_at", "2099-01-01T00:00".into())],
        )
        .await;
        assert_eq!(status, 403);
        let status = post(format!("/events/{event_id}/resend"), viewer.clone(), vec![("csrf", viewer_csrf.clone())]).await;
        assert_eq!(status, 403);
        // And an admin's form without its token is refused too.
        let status = post(format!("/signature_requests/{id}/cancel"), admin.clone(), vec![("csrf", "forged".into())]).await;
        assert_eq!(status, 403);
        let (_, after) = app.get(&format!("/v1/signature_requests/{id}")).await;
        assert_eq!(after["status"], "ongoing");
        assert_eq!(after["sequence"], request["sequence"], "no event was added");
        assert_eq!(app.deliveries(webhook_id, None).await.len(), delivered, "nothing resent");

        // The admin's resend makes one new delivery per endpoint.
        let status = post(format!("/events/{event_id}/resend"), admin.clone(), vec![("csrf", admin_csrf.clone())]).await;
        assert_eq!(status, 303);
        assert_eq!(app.deliveries(webhook_id, None).await.len(), delivered + 1);
        // A disabled endpoint is refused in the API's words.
        let (status, _) = app.patch(&format!("/v1/webhooks/{webhook_id}"), json!({"enabled": false})).await;
        assert_eq!(status, 200);
        let response = client
            .post(app.url(&format!("/events/{event_id}/resend")))
            .header(COOKIE, &admin)
            .form(&[("csrf", admin_csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 409);
        assert!(response.text().await.unwrap().contains("the webhook is disabled"));
    }
}
