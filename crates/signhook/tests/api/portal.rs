//! The embeddable portal as a platform uses it: its server asks for a
//! one-time link with its API key, its own app (another site) shows the
//! link in an iframe, and its customer sees the webhook pages of that
//! tenant and environment, in the tenant's look, with the link's
//! capabilities — in a real headless Chromium. And what holds whatever a
//! client sends: a link opens once and expires, a portal session reaches
//! the webhook pages only, `read` changes nothing, framing is the
//! operator's choice.

use crate::helpers::*;
use serde_json::{json, Value};
use signhook_testkit::browser::Browser;

/// A page of "the platform's app" on another site (`localhost`, where the
/// server is `127.0.0.1`) that shows `src` in an iframe, served on
/// `listener`; its address.
fn host_page(listener: tokio::net::TcpListener, src: String) -> String {
    let port = listener.local_addr().unwrap().port();
    let html = format!(
        "<!DOCTYPE html><title>Platform</title><h1>Platform settings</h1>\
         <iframe id=\"portal\" src=\"{src}\" width=\"1000\" height=\"800\"></iframe>"
    );
    let app = axum::Router::new().fallback(move || {
        let html = html.clone();
        async move { axum::response::Html(html) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://localhost:{port}")
}

async fn portal_link(app: &TestApp, key: &str, body: Value) -> Value {
    let (status, link) = app
        .request(reqwest::Method::POST, "/v1/portal_sessions", key, Some(body))
        .await;
    assert_eq!(status, 201, "{link}");
    link
}

/// The app, with its portal framable by the origin the test's host page
/// will have (its port is reserved first).
async fn framable_app() -> (TestApp, tokio::net::TcpListener) {
    let host = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://localhost:{}", host.local_addr().unwrap().port());
    let mut options = Options::on(Backend::Sqlite);
    options.portal_frame_ancestors = Some(origin);
    (TestApp::spawn_with(options).await, host)
}

#[tokio::test]
async fn a_portal_link_opens_the_tenants_webhook_pages_inside_another_sites_iframe_once() {
    let (app, host_listener) = framable_app().await;
    let receiver = Receiver::start().await;
    let live = app
        .create_webhook(
            &receiver.url("/crm"),
            json!({"description": "Customer CRM <i>live</i>"}),
        )
        .await;
    let (_, sandbox) = app
        .request(
            reqwest::Method::POST,
            "/v1/webhooks",
            &app.tenant.test_key,
            Some(json!({"url": receiver.url("/sandbox")})),
        )
        .await;
    let (status, theme) = app
        .request(
            reqwest::Method::PUT,
            "/v1/portal_theme",
            &app.tenant.live_key,
            Some(json!({"product_name": "Acme Cloud", "accent_color": "#AA3300"})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), theme["accent_color"].clone()),
        (200, json!("#aa3300"))
    );

    // Read only: the platform's app shows the link in its own page.
    let link = portal_link(
        &app,
        &app.tenant.live_key,
        json!({"capabilities": ["read"], "ttl": 300}),
    )
    .await;
    assert_eq!(
        (link["environment"].clone(), link["capabilities"].clone()),
        (json!("live"), json!(["read"]))
    );
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&app.url("/portal/")), "{url}");
    let host = host_page(host_listener, url.clone());

    let browser = Browser::start().await;
    browser.open(&host).await;
    browser.client().enter_frame(0).await.expect("the portal's iframe");
    eventually("the portal to load in the iframe", || async {
        let has = browser.has("#webhooks").await;
        done_when(has, browser.page_text().await)
    })
    .await;
    assert_eq!(browser.text("#product").await, "Acme Cloud");
    assert_eq!(browser.text("#environment").await, "Live");
    let list = browser.text("#webhooks").await;
    assert!(
        list.contains(&receiver.url("/crm")) && list.contains("Customer CRM <i>live</i>"),
        "{list}"
    );
    assert!(
        !list.contains(&receiver.url("/sandbox")),
        "only the link's environment: {list}"
    );
    // Only the webhook pages, and nothing to change with `read`.
    assert!(!browser.has("#nav-portal").await && !browser.has("#logout").await && !browser.has("#add-endpoint").await);
    assert!(
        browser.has("link[href$='/assets/theme.css']").await,
        "the tenant's colour"
    );
    browser.click("#webhooks a").await;
    eventually("the endpoint's page in the iframe", || async {
        done_when(browser.has("#endpoint-url").await, ())
    })
    .await;
    assert_eq!(browser.text("#endpoint-url").await, receiver.url("/crm"));
    assert!(!browser.has("#reveal").await && !browser.has("#send-test").await);
    // The frame's own address: still in the portal.
    let inside = browser
        .client()
        .execute("return location.pathname", vec![])
        .await
        .unwrap();
    let inside = inside.as_str().unwrap();
    assert!(
        inside.starts_with("/portal/") && inside.ends_with(live["id"].as_str().unwrap()),
        "{inside}"
    );
    browser.client().enter_parent_frame().await.unwrap();
    browser.screenshot("portal-in-an-iframe").await;

    // The same link a second time: refused.
    browser.open(&host).await;
    browser.client().enter_frame(0).await.unwrap();
    eventually("the used link's answer", || async {
        let text = browser.page_text().await;
        done_when(text.contains("This link no longer works"), text)
    })
    .await;
    browser.client().enter_parent_frame().await.unwrap();

    // Read and write: the customer reveals the secret and adds an endpoint.
    let link = portal_link(&app, &app.tenant.live_key, json!({"capabilities": ["read", "write"]})).await;
    browser.open(link["url"].as_str().unwrap()).await;
    browser.click("#add-endpoint").await;
    browser.fill("#url", &receiver.url("/billing")).await;
    browser.submit("#save-endpoint").await;
    browser.submit("#reveal").await;
    assert!(browser.value("#secret").await.starts_with("whsec_"));
    let (_, listed) = app.get("/v1/webhooks").await;
    let urls: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["url"].as_str().unwrap())
        .collect();
    assert!(urls.contains(&receiver.url("/billing").as_str()), "{urls:?}");
    assert!(sandbox["id"].is_string());
    browser.close().await;
}

/// The portal session's path, by opening a fresh link over plain HTTP.
async fn opened_portal(app: &TestApp, capabilities: Value) -> String {
    let link = portal_link(app, &app.tenant.live_key, json!({"capabilities": capabilities})).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let opened = client.get(link["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(opened.status(), 303);
    let location = opened.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/portal/") && location.ends_with("/webhooks"),
        "{location}"
    );
    location.trim_end_matches("/webhooks").to_owned()
}

on_both_backends! {
    async fn a_portal_session_reaches_the_webhook_pages_only_and_read_changes_nothing(backend: Backend) {
        let mut options = Options::on(backend);
        options.portal_frame_ancestors = Some("https://app.example.com".into());
        let app = TestApp::spawn_with(options).await;
        let hook = app.create_webhook("http://127.0.0.1:9/hooks", json!({})).await;
        let id = hook["id"].as_str().unwrap();
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let base = opened_portal(&app, json!(["read"])).await;

        // Its pages, framable by the operator's origin only; the dashboard's never.
        let page = client.get(app.url(&format!("{base}/webhooks/{id}"))).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(policy.contains("frame-ancestors https://app.example.com"), "{policy}");
        assert!(!page.headers().contains_key("x-frame-options"));
        let html = page.text().await.unwrap();
        assert!(html.contains(&format!("href=\"{base}/webhooks\"")), "its links stay in the portal");
        assert!(!html.contains("href=\"/webhooks\""));
        let login = client.get(app.url("/login")).send().await.unwrap();
        assert!(login.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
        assert_eq!(login.headers()["x-frame-options"], "DENY");

        // Not the team, keys, settings, the API or the switch; not with a made-up session.
        for path in ["team", "api_keys", "portal_settings", "environment", "login", "v1/webhooks", "%74eam"] {
            let refused = client.get(app.url(&format!("{base}/{path}"))).send().await.unwrap();
            assert_eq!(refused.status(), 404, "{path}");
        }
        let forged = client.get(app.url("/portal/not-a-session/webhooks")).send().await.unwrap();
        assert_eq!(forged.status(), 401);

        // `read`: every button refused, nothing changed.
        let html = client.get(app.url(&format!("{base}/webhooks"))).send().await.unwrap().text().await.unwrap();
        let csrf = html.split("name=\"csrf\" value=\"").nth(1).map(|r| r.split('"').next().unwrap().to_owned());
        let csrf = csrf.unwrap_or_default();
        for action in ["rotate", "disable", "delete", "secret"] {
            let refused = client
                .post(app.url(&format!("{base}/webhooks/{id}/{action}")))
                .form(&[("csrf", csrf.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(refused.status(), 403, "{action}");
        }
        let (_, after) = app.get(&format!("/v1/webhooks/{id}")).await;
        assert_eq!(after["enabled"], true);

        // A link opens once, and not after it expired.
        let link = portal_link(&app, &app.tenant.live_key, json!({})).await;
        let url = link["url"].as_str().unwrap();
        assert_eq!(client.get(url).send().await.unwrap().status(), 303);
        assert_eq!(client.get(url).send().await.unwrap().status(), 410);
        let late = portal_link(&app, &app.tenant.live_key, json!({"ttl": 60})).await;
        app.clock.advance(std::time::Duration::from_secs(61));
        assert_eq!(client.get(late["url"].as_str().unwrap()).send().await.unwrap().status(), 410);

        // Bad requests name their field.
        for (body, field) in [
            (json!({"capabilities": ["admin"]}), "capabilities[0]"),
            (json!({"capabilities": ["write"]}), "capabilities"),
            (json!({"ttl": 5}), "ttl"),
        ] {
            let (status, error) = app
                .request(reqwest::Method::POST, "/v1/portal_sessions", &app.tenant.live_key, Some(body))
                .await;
            assert_eq!((status.as_u16(), error["error"]["field"].clone()), (422, json!(field)));
        }
        for (body, field) in [
            (json!({"accent_color": "red; } body { display: none"}), "accent_color"),
            (json!({"logo_url": "javascript:alert(1)"}), "logo_url"),
            (json!({"product_name": "x".repeat(61)}), "product_name"),
        ] {
            let (status, error) = app
                .request(reqwest::Method::PUT, "/v1/portal_theme", &app.tenant.live_key, Some(body))
                .await;
            assert_eq!((status.as_u16(), error["error"]["field"].clone()), (422, json!(field)));
        }
        assert_eq!(app.get("/v1/portal_theme").await.1, json!({"product_name": null, "logo_url": null, "accent_color": null}));
    }
}
