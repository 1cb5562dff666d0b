//! The dashboard's front door, as people use it: an operator creates a user
//! on the command line, the user opens the printed link in a real headless
//! Chromium, sets a password, lands on the Webhooks page, logs out and in
//! again. Sessions, CSRF and the login rate limit are checked on both
//! backends with plain HTTP.

use crate::helpers::*;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;
use signhook_testkit::browser::Browser;
use std::sync::Arc;

/// A client that keeps no cookies and follows no redirects: each answer
/// is read as it came.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_user_from_the_command_line_sets_a_password_and_logs_in() {
    // The operator's command, run before the server starts (the printed
    // link is then opened on it); beside a running server, see
    // `create_user_from_the_command_line_beside_a_busy_server_on_sqlite`.
    let db = Database::new(Backend::Sqlite).await;
    let tenant = db.create_tenant("Acme").await;
    let mut args = vec![
        "admin",
        "create-user",
        "--tenant",
        tenant.id.as_str(),
        "--email",
        "Ada@Example.com",
    ];
    args.extend(["--role", "admin", "--public-url", "http://127.0.0.1:9/"]);
    let db_args = db.cli_args();
    args.extend(db_args.iter().map(String::as_str));
    let output = run_cli(&args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let user: serde_json::Value = serde_json::from_slice(&output.stdout).expect("create-user prints JSON");
    let app = TestApp::spawn_on(db, tenant, Options::on(Backend::Sqlite)).await;
    app.create_webhook(
        "http://127.0.0.1:9/crm",
        json!({"description": "CRM <script>alert(1)</script>"}),
    )
    .await;
    assert_eq!(user["email"], "ada@example.com");
    let printed = user["set_password_url"].as_str().unwrap();
    assert!(printed.starts_with("http://127.0.0.1:9/password/"), "{printed}");
    // The server's address is known only now: the same link on it.
    let link = &app.url(printed.trim_start_matches("http://127.0.0.1:9"));

    let browser = Browser::start().await;
    browser.open(link).await;
    assert_eq!(browser.text("#account").await, "ada@example.com");
    // Too short: said beside the field, nothing set.
    browser.fill("#password", "short").await;
    browser.fill("#confirm", "short").await;
    browser.submit("#save").await;
    assert!(browser.text("#password-error").await.contains("10 to 1000 characters"));
    browser.fill("#password", "correct horse battery").await;
    browser.fill("#confirm", "correct horse battery").await;
    browser.submit("#save").await;
    // Logged in, on the Webhooks page, the endpoint listed — its
    // description as text, not markup.
    let url = browser.client().current_url().await.unwrap();
    assert_eq!(url.path(), "/webhooks");
    assert_eq!(browser.text("h1").await, "Webhooks");
    assert!(browser.text("#who").await.contains("ada@example.com · admin"));
    let table = browser.text("#webhooks").await;
    assert!(
        table.contains("http://127.0.0.1:9/crm") && table.contains("Enabled"),
        "{table}"
    );
    assert!(table.contains("CRM <script>alert(1)</script>"), "{table}");
    browser.screenshot("dashboard-webhooks").await;

    // Log out: the dashboard sends back to the login page.
    browser.submit("#logout").await;
    assert_eq!(browser.client().current_url().await.unwrap().path(), "/login");
    browser.open(&app.url("/webhooks")).await;
    assert_eq!(browser.client().current_url().await.unwrap().path(), "/login");

    // A wrong password is refused; the right one lets in.
    browser.fill("#email", "ada@example.com").await;
    browser.fill("#password", "wrong horse battery").await;
    browser.submit("#login").await;
    assert_eq!(browser.text("#error").await, "Wrong e-mail address or password.");
    browser.fill("#password", "correct horse battery").await;
    browser.submit("#login").await;
    assert_eq!(browser.client().current_url().await.unwrap().path(), "/webhooks");

    // The one-time link worked once.
    browser.open(link).await;
    assert!(browser.page_text().await.contains("used already or has expired"));
    browser.close().await;
}

#[tokio::test]
async fn an_admin_adds_an_endpoint_by_ticking_events_and_sends_a_test_event() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let receiver = Receiver::start().await;
    let browser = signed_in_browser(&app, "ada@example.com", "admin").await;
    assert!(browser.text("#empty").await.contains("No endpoints yet"));
    browser.click("#add-endpoint").await;
    assert_eq!(browser.text("h1").await, "Add an endpoint");
    // Every event is ticked at first; tick two types instead.
    browser.click("#event-all").await;
    browser.click("[id='event-signer.done']").await;
    browser.click("[id='event-signature_request.done']").await;
    // A URL the API refuses: its message beside the field, nothing created.
    browser.fill("#url", "ftp://example.com/hooks").await;
    browser.fill("#description", "CRM").await;
    browser.submit("#save-endpoint").await;
    let refused = browser.text("#url-error").await;
    assert!(refused.starts_with("url "), "the API's own message: {refused}");
    let (_, listed) = app.get("/v1/webhooks").await;
    assert!(
        listed["data"].as_array().unwrap().is_empty(),
        "nothing written: {listed}"
    );
    // What was ticked and typed is kept; fix the URL.
    assert!(browser
        .client()
        .find(fantoccini::Locator::Css("[id='event-signer.done']"))
        .await
        .unwrap()
        .is_selected()
        .await
        .unwrap());
    browser.fill("#url", &receiver.url("/hooks")).await;
    browser.submit("#save-endpoint").await;
    browser.screenshot("dashboard-endpoint").await;
    let path = browser.client().current_url().await.unwrap().path().to_owned();
    assert!(path.starts_with("/webhooks/wh_"), "{path}");
    let events = browser.text("#events").await;
    assert!(
        events.contains("signer.done") && events.contains("signature_request.done") && !events.contains('*'),
        "{events}"
    );
    let (_, listed) = app.get("/v1/webhooks").await;
    assert_eq!(listed["data"][0]["description"], "CRM");

    // Reveal the secret; send a test event; it arrives signed with that secret.
    browser.submit("#reveal").await;
    let secret = browser.value("#secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    browser.submit("#send-test").await;
    let received = receiver.wait_for(1).await;
    assert_eq!(received[0].json()["type"], "webhook.test");
    crate::delivery::verify_standard(&secret, &received[0]);
    // The log shows it delivered, with its attempt.
    eventually("the test delivery to show as succeeded", || async {
        browser.open(&app.url(&path)).await;
        let log = browser.text("#delivery-log").await;
        done_when(log.contains("webhook.test") && log.contains("succeeded"), log)
    })
    .await;
    browser.scroll_to("#deliveries").await;
    browser.screenshot("dashboard-log").await;
    // Its attempt: answered 200, with the request as sent.
    browser.click("#delivery-log a").await;
    assert!(browser.text("#attempts").await.contains("Attempt 1: 200"));
    assert!(browser
        .text(".request-headers")
        .await
        .contains("webhook-signature: v1,"));
    browser.scroll_to("#attempts").await;
    browser.screenshot("dashboard-attempt").await;

    // A viewer sees the endpoint but no secret and no buttons, and a post is refused.
    browser.submit("#logout").await;
    let viewer = create_user(&app, "victor@example.com", "viewer").await;
    set_password_in(&browser, set_password_link(&viewer), "only looking here").await;
    assert!(!browser.has("#add-endpoint").await);
    browser.open(&app.url(&path)).await;
    assert!(browser.text("#events").await.contains("signer.done"));
    assert!(!browser.has("#reveal").await && !browser.has("#send-test").await);
    browser.open(&app.url("/webhooks/new")).await;
    assert_eq!(browser.text("h1").await, "This is not yours to do");
    browser.close().await;
}

on_both_backends! {
    async fn sessions_are_cookies_checked_against_the_database(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = create_user(&app, "grace@example.com", "viewer").await;
        let client = raw_client();
        let link = user["set_password_url"].as_str().unwrap();
        let set = client
            .post(link)
            .form(&[("password", "a long enough secret"), ("confirm", "a long enough secret")])
            .send()
            .await
            .unwrap();
        assert_eq!(set.status(), 303);
        assert_eq!(set.headers()[LOCATION], "/webhooks");
        let cookie = set.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"), "{cookie}");
        assert!(!cookie.contains("Secure"), "http:// public URL: {cookie}");
        let session = cookie.split(';').next().unwrap().to_owned();

        let page = client.get(app.url("/webhooks")).header(COOKIE, &session).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("grace@example.com · viewer"));
        let csrf = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();

        // A logout without the form's token, or from another site, is refused.
        let forged = client
            .post(app.url("/logout"))
            .header(COOKIE, &session)
            .form(&[("csrf", "not-the-token")])
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 403);
        let cross_site = client
            .post(app.url("/logout"))
            .header(COOKIE, &session)
            .header("origin", "https://evil.example")
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(cross_site.status(), 403);
        let still = client.get(app.url("/webhooks")).header(COOKIE, &session).send().await.unwrap();
        assert_eq!(still.status(), 200, "the refused posts changed nothing");

        // Logging out ends the session in the database: the cookie opens nothing.
        let out = client
            .post(app.url("/logout"))
            .header(COOKIE, &session)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), 303);
        assert!(out.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
        let after = client.get(app.url("/webhooks")).header(COOKIE, &session).send().await.unwrap();
        assert_eq!((after.status().as_u16(), after.headers()[LOCATION].to_str().unwrap()), (303, "/login"));

        // Idle sessions end: log in again, then let the clock pass the idle time.
        let login = client
            .post(app.url("/login"))
            .form(&[("email", "grace@example.com"), ("password", "a long enough secret")])
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 303);
        let session = login.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
        assert_eq!(client.get(app.url("/webhooks")).header(COOKIE, &session).send().await.unwrap().status(), 200);
        app.clock.advance(std::time::Duration::from_secs(13 * 3600));
        let idle = client.get(app.url("/webhooks")).header(COOKIE, &session).send().await.unwrap();
        assert_eq!(idle.status(), 303);
    }

    async fn failed_logins_are_limited_per_account(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = create_user(&app, "linus@example.com", "admin").await;
        let client = raw_client();
        let link = user["set_password_url"].as_str().unwrap();
        let set = client
            .post(link)
            .form(&[("password", "the real password"), ("confirm", "the real password")])
            .send()
            .await
            .unwrap();
        assert_eq!(set.status(), 303);
        let login = |password: &'static str| {
            client
                .post(app.url("/login"))
                .form(&[("email", "linus@example.com"), ("password", password)])
                .send()
        };
        for _ in 0..5 {
            assert_eq!(login("a wrong guess").await.unwrap().status(), 401);
        }
        // Now even the right password waits.
        let limited = login("the real password").await.unwrap();
        assert_eq!(limited.status(), 429);
        assert!(limited.headers().contains_key("retry-after"));
        assert!(limited.text().await.unwrap().contains("Too many failed logins"));
        // An address with no account gets the same answer as a wrong password.
        let unknown = client
            .post(app.url("/login"))
            .form(&[("email", "nobody@example.com"), ("password", "anything at all")])
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 401);
        // After the window the account can log in again.
        app.clock.advance(std::time::Duration::from_secs(16 * 60));
        assert_eq!(login("the real password").await.unwrap().status(), 303);
    }
}

#[tokio::test]
async fn create_user_refuses_bad_input_clearly() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    create_user(&app, "ada@example.com", "admin").await;
    // The command runs against the database alone (see create_user).
    let tenant_id = app.tenant.id.clone();
    let db = app.stop().await;
    let cases: [(&[&str], &str); 4] = [
        (
            &["--tenant", "nope", "--email", "x@example.com"],
            "--tenant must be a tenant id",
        ),
        (
            &["--tenant", tenant_id.as_str(), "--email", "not-an-address"],
            "--email must be an e-mail address",
        ),
        (
            &[
                "--tenant",
                tenant_id.as_str(),
                "--email",
                "x@example.com",
                "--role",
                "owner",
            ],
            "--role must be `admin` or `viewer`",
        ),
        (
            &["--tenant", tenant_id.as_str(), "--email", "ADA@example.com"],
            "already has a dashboard account",
        ),
    ];
    for (extra, expected) in cases {
        let mut args: Vec<String> = ["admin", "create-user"].iter().map(|s| s.to_string()).collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(db.cli_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = run_cli(&args);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
}

#[tokio::test]
async fn create_user_from_the_command_line_beside_a_busy_server_on_sqlite() {
    // The operator's command is a second process writing to the SQLite file
    // the server writes to all the time (schedulers every 50 ms, publishes
    // in a steady stream): it waits its turn for the write lock, and never
    // fails for it.
    let app = Arc::new(TestApp::spawn(Backend::Sqlite).await);
    let receiver = Receiver::start().await;
    app.create_webhook(&receiver.url("/crm"), json!({})).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let traffic = tokio::spawn({
        let (app, stop) = (app.clone(), stop.clone());
        async move {
            let mut published = 0;
            while !stop.is_cancelled() {
                app.publish("signer.done", lifecycle_data("signer.done", json!({"n": published})))
                    .await;
                published += 1;
            }
            published
        }
    });
    for n in 0..5 {
        let email = format!("operator{n}@example.com");
        let mut args: Vec<String> = [
            "admin",
            "create-user",
            "--tenant",
            app.tenant.id.as_str(),
            "--email",
            &email,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(app.db.cli_args());
        let output = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_cli(&args)
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(!stderr.contains("trying again"), "waited out a busy timeout: {stderr}");
        let user: serde_json::Value = serde_json::from_slice(&output.stdout).expect("create-user prints JSON");
        assert_eq!(user["email"], email.as_str());
    }
    stop.cancel();
    let published = traffic.await.unwrap();
    assert!(published > 0, "the server was busy meanwhile");
    receiver.wait_for(published).await;
}
