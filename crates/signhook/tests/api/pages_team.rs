//! The API keys page and the Team page, as an admin uses them in a real
//! headless Chromium: a key made, read once, used (its last use appears),
//! revoked and refused at once; a viewer invited by e-mail (and, with no
//! SMTP, by a link handed over), promoted, removed and logged out at once.
//! The security rules — viewers' forged posts, other tenants' users and
//! keys, the last admin, markup in names — are checked with plain HTTP on
//! both backends.

use crate::helpers::*;
use reqwest::header::{COOKIE, LOCATION};
use serde_json::Value;
use signhook_testkit::browser::Browser;

/// A client that keeps no cookies and follows no redirects.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A signed-in user, seen over plain HTTP.
struct Person {
    id: String,
    cookie: String,
    csrf: String,
}

/// The value of the field `id` in a page.
fn field_value(html: &str, id: &str) -> String {
    html.split(&format!("id=\"{id}\" value=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no #{id} in {html}"))
        .to_owned()
}

/// A user of `role` made with the CLI who set their password and is logged in.
async fn person(app: &TestApp, email: &str, role: &str) -> Person {
    let user = create_user(app, email, role).await;
    let session = http_session_of(&app.url(""), &user).await;
    Person {
        id: user["user_id"].as_str().unwrap().to_owned(),
        cookie: session.cookie,
        csrf: session.csrf,
    }
}

impl Person {
    async fn get(&self, app: &TestApp, path: &str) -> (u16, String) {
        let response = raw_client()
            .get(app.url(path))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let location = response.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned());
        (status, location.unwrap_or(response.text().await.unwrap()))
    }

    /// Posts the form `fields` (and this session's CSRF token) to `path`.
    async fn post(&self, app: &TestApp, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let mut form = vec![("csrf", self.csrf.as_str())];
        form.extend_from_slice(fields);
        let response = raw_client()
            .post(app.url(path))
            .header(COOKIE, &self.cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let location = response.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned());
        (status, location.unwrap_or(response.text().await.unwrap()))
    }
}

/// The keys of the tenant's live environment, as the API lists them.
async fn live_keys(app: &TestApp) -> Vec<Value> {
    let (_, list) = app.get("/v1/api_keys").await;
    list["data"].as_array().unwrap().clone()
}

/// The role of every user of the database, by address.
async fn roles(app: &TestApp) -> Vec<String> {
    app.db
        .query_texts("SELECT email || ' ' || role FROM users ORDER BY email")
        .await
}

/// The id of the user with this address.
async fn user_id(app: &TestApp, email: &str) -> String {
    app.db
        .query_texts(&format!("SELECT id FROM users WHERE email = '{email}'"))
        .await
        .pop()
        .unwrap_or_else(|| panic!("no user {email}"))
}

#[tokio::test]
async fn an_admin_makes_a_key_uses_it_and_revokes_it_from_the_page() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let browser = signed_in_browser(&app, "ada@example.com", "admin").await;
    browser.submit("#nav-api_keys").await;
    assert_eq!(browser.text("h1").await, "API keys");
    let table = browser.text("#api-keys").await;
    let live_hint = &app.tenant.live_key[app.tenant.live_key.len() - 4..];
    assert!(table.contains("default") && table.contains(live_hint), "{table}");

    // A name the API refuses: its message beside the field, nothing made.
    browser.fill("#name", " ").await;
    browser.submit("#create-key").await;
    assert_eq!(
        browser.text("#name-error").await,
        "name must be 1 to 100 printable characters"
    );
    assert_eq!(live_keys(&app).await.len(), 1);

    // "CRM": shown once, with the note to copy it.
    browser.fill("#name", "CRM").await;
    browser.submit("#create-key").await;
    assert!(browser.text("#copy-now").await.contains("Copy it now"));
    let key = browser.value("#new-key").await;
    assert!(key.starts_with("sk_live_"), "{key}");
    browser.screenshot("dashboard-api-keys").await;
    let made = live_keys(&app).await;
    let crm = made.iter().find(|k| k["name"] == "CRM").expect("the key is made");
    let id = crm["id"].as_str().unwrap().to_owned();
    assert!(crm["last_used_at"].is_null(), "{crm}");
    let row = format!("#key-{id}");
    assert_eq!(browser.text(&format!("{row} .last-used")).await, "never");

    // It works against the API, and its last use shows on the page.
    let (status, _) = app.request(reqwest::Method::GET, "/v1/webhooks", &key, None).await;
    assert_eq!(status, 200);
    browser.open(&app.url("/api_keys")).await;
    let last_used = browser.text(&format!("{row} .last-used")).await;
    assert_ne!(last_used, "never");
    assert!(last_used.contains("UTC"), "{last_used}");
    let crm = live_keys(&app)
        .await
        .into_iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert!(crm["last_used_at"].is_string(), "the API says so too: {crm}");
    // Once shown, never again.
    assert!(!browser.client().source().await.unwrap().contains(&key));

    // Revoke, after a confirmation; the API refuses the key at once.
    browser.submit(&format!("#revoke-{id}")).await;
    assert_eq!(browser.text("#revoke-name").await, "CRM");
    browser.screenshot("dashboard-api-key-revoke").await;
    browser.submit("#confirm-revoke").await;
    assert!(browser.text("#notice").await.contains("Key revoked"));
    let (status, _) = app.request(reqwest::Method::GET, "/v1/webhooks", &key, None).await;
    assert_eq!(status, 401);
    assert!(browser.text(&row).await.contains("Revoked"));
    browser.open(&app.url("/api_keys")).await;
    let source = browser.client().source().await.unwrap();
    assert!(
        !source.contains(&key) && !source.contains(&key[8..]),
        "no key text anywhere"
    );
    assert!(!browser.has(&format!("#revoke-{id}")).await);

    // The last working key of the environment stays: the page says why.
    let default_id = live_keys(&app).await[0]["id"].as_str().unwrap().to_owned();
    browser.submit(&format!("#revoke-{default_id}")).await;
    browser.submit("#confirm-revoke").await;
    assert!(browser.text("#refused").await.contains("last working key"));
    assert_eq!(app.get("/v1/webhooks").await.0, 200);

    // The sandbox shows the sandbox's keys only.
    browser.open(&app.url("/api_keys")).await;
    browser.submit("#switch-environment").await;
    assert_eq!(browser.client().current_url().await.unwrap().path(), "/api_keys");
    let table = browser.text("#api-keys").await;
    assert!(
        !table.contains("CRM") && table.contains(&app.tenant.test_key[app.tenant.test_key.len() - 4..]),
        "{table}"
    );
    browser.close().await;
}

#[tokio::test]
async fn an_invited_viewer_is_promoted_then_removed_and_logged_out_at_once() {
    let smtp = SmtpSink::start().await;
    let app = TestApp::spawn_with(Options {
        smtp: Some((smtp.url(), "signhook@example.com".into())),
        ..Options::on(Backend::Sqlite)
    })
    .await;
    let admin = signed_in_browser(&app, "ada@example.com", "admin").await;
    admin.submit("#nav-team").await;
    assert_eq!(admin.text("h1").await, "Team");
    assert!(admin.text("#team").await.contains("ada@example.com (you)"));

    // Invite Vera as a viewer: the link goes by e-mail, not on the page.
    admin.fill("#invite-email", "Vera@Example.com").await;
    admin.select("#invite-role", "viewer").await;
    admin.submit("#invite").await;
    let outcome = admin.text("#invite-outcome").await;
    assert!(outcome.contains("E-mailed to vera@example.com"), "{outcome}");
    assert!(!admin.has("#invite-link").await);
    let vera_id = user_id(&app, "vera@example.com").await;
    let vera_row = format!("#user-{vera_id}");
    assert!(admin.text(&vera_row).await.contains("Not yet: invited"));
    let mail = smtp.mail_to("vera@example.com", "invited to").await;
    assert!(mail.header("subject").unwrap().contains("Acme"), "{mail:?}");
    let link = mail.link();
    assert!(link.starts_with(&app.url("/password/")), "{link}");

    // Vera sets her password: a viewer sees neither section and is refused them.
    let vera = Browser::start().await;
    set_password_in(&vera, &link, "vera's own password").await;
    assert!(vera.text("#who").await.contains("vera@example.com · viewer"));
    assert!(vera.has("#nav-webhooks").await);
    assert!(!vera.has("#nav-api_keys").await && !vera.has("#nav-team").await);
    for path in ["/api_keys", "/team"] {
        vera.open(&app.url(path)).await;
        assert_eq!(vera.text("h1").await, "This is not yours to do", "{path}");
    }
    admin.open(&app.url("/team")).await;
    assert!(admin.text(&format!("{vera_row} .password")).await.contains("Set"));

    // The only admin cannot step down: the page says why.
    let ada_id = user_id(&app, "ada@example.com").await;
    admin.select(&format!("#role-{ada_id}"), "viewer").await;
    admin.submit(&format!("#set-role-{ada_id}")).await;
    assert!(admin.text("#refused").await.contains("only admin"));
    assert!(!admin.has(&format!("#remove-{ada_id}")).await, "no removing oneself");

    // Promoted: Vera has access from her next request.
    admin.select(&format!("#role-{vera_id}"), "admin").await;
    admin.submit(&format!("#set-role-{vera_id}")).await;
    assert!(admin.text("#notice").await.contains("Role changed"));
    admin.screenshot("dashboard-team").await;
    vera.open(&app.url("/api_keys")).await;
    assert_eq!(vera.text("h1").await, "API keys");
    assert!(vera.has("#nav-team").await);

    // Removed: her open session ends at once, and she cannot log in again.
    admin.submit(&format!("#remove-{vera_id}")).await;
    admin.screenshot("dashboard-team-remove").await;
    admin.submit("#confirm-remove").await;
    assert!(admin.text("#notice").await.contains("User removed"));
    assert!(!admin.text("#team").await.contains("vera@example.com"));
    vera.open(&app.url("/webhooks")).await;
    assert_eq!(vera.client().current_url().await.unwrap().path(), "/login");
    vera.fill("#email", "vera@example.com").await;
    vera.fill("#password", "vera's own password").await;
    vera.submit("#login").await;
    assert_eq!(vera.text("#error").await, "Wrong e-mail address or password.");
    vera.close().await;

    // Log out everywhere, from the admin's own row.
    admin.submit("#logout-everywhere").await;
    assert_eq!(admin.client().current_url().await.unwrap().path(), "/login");
    admin.open(&app.url("/team")).await;
    assert_eq!(admin.client().current_url().await.unwrap().path(), "/login");
    admin.close().await;
}

#[tokio::test]
async fn without_smtp_the_admin_hands_over_the_link_and_a_fresh_one_replaces_it() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = signed_in_browser(&app, "ada@example.com", "admin").await;
    admin.open(&app.url("/team")).await;

    // Not an address, or one with an account: said beside the field, nothing made.
    admin.fill("#invite-email", "not an address").await;
    admin.submit("#invite").await;
    assert_eq!(
        admin.text("#email-error").await,
        "email must be an e-mail address like ada@example.com"
    );
    admin.fill("#invite-email", "ADA@example.com").await;
    admin.submit("#invite").await;
    assert!(admin
        .text("#email-error")
        .await
        .contains("already has a Signhook dashboard account"));
    assert_eq!(roles(&app).await, ["ada@example.com admin"]);

    // An address with markup in it: accepted, shown as text.
    let odd = "<script>alert(1)</script>@example.com";
    admin.fill("#invite-email", odd).await;
    admin.submit("#invite").await;
    let outcome = admin.text("#invite-outcome").await;
    assert!(outcome.contains("no SMTP") && outcome.contains(odd), "{outcome}");
    let first = admin.value("#invite-link").await;
    assert!(first.starts_with(&app.url("/password/")), "{first}");
    admin.screenshot("dashboard-team-invited").await;
    let id = user_id(&app, odd).await;
    assert_eq!(admin.text(&format!("#user-{id} .email")).await, odd);

    // Re-sent: a fresh link; the first stops working.
    admin.submit(&format!("#resend-{id}")).await;
    let second = admin.value("#invite-link").await;
    assert_ne!(first, second);
    let invitee = Browser::start().await;
    invitee.open(&first).await;
    assert!(invitee.page_text().await.contains("used already or has expired"));
    set_password_in(&invitee, &second, "a password of mine").await;
    assert_eq!(invitee.client().current_url().await.unwrap().path(), "/webhooks");
    assert!(invitee.text("#who").await.contains("viewer"));
    invitee.close().await;
    admin.open(&app.url("/team")).await;
    assert!(
        !admin.has(&format!("#resend-{id}")).await,
        "nothing to re-send once the password is set"
    );
    admin.close().await;
}

on_both_backends! {
    async fn viewers_and_other_tenants_cannot_touch_keys_or_the_team(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let ada = person(&app, "ada@example.com", "admin").await;
        let vic = person(&app, "vic@example.com", "viewer").await;
        let key_id = live_keys(&app).await[0]["id"].as_str().unwrap().to_owned();

        // A viewer opens neither page and changes nothing, even with a
        // valid session and token.
        for path in ["/api_keys", "/team", &format!("/api_keys/{key_id}/revoke"), &format!("/team/{}/remove", ada.id)] {
            let (status, body) = vic.get(&app, path).await;
            assert_eq!(status, 403, "GET {path}: {body}");
        }
        let forged: [(String, &[(&str, &str)]); 6] = [
            ("/api_keys".into(), &[("name", "viewer's key")]),
            (format!("/api_keys/{key_id}/revoke"), &[]),
            ("/team/invite".into(), &[("email", "eve@example.com"), ("role", "admin")]),
            (format!("/team/{}/role", vic.id), &[("role", "admin")]),
            (format!("/team/{}/remove", ada.id), &[]),
            (format!("/team/{}/resend", vic.id), &[]),
        ];
        for (path, fields) in &forged {
            let (status, body) = vic.post(&app, path, fields).await;
            assert_eq!(status, 403, "POST {path}: {body}");
        }
        let keys = live_keys(&app).await;
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert!(keys[0]["revoked_at"].is_null());
        assert_eq!(roles(&app).await, ["ada@example.com admin", "vic@example.com viewer"]);

        // Another tenant's user and key are 404s, and stay as they were.
        let other = app.other_tenant().await;
        let olga = create_user_for(&app, &other.id, "olga@example.com", "admin").await;
        let olga_id = olga["user_id"].as_str().unwrap();
        let (_, other_keys) = app.request(reqwest::Method::GET, "/v1/api_keys", &other.live_key, None).await;
        let other_key = other_keys["data"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(ada.get(&app, &format!("/team/{olga_id}/remove")).await.0, 404);
        assert_eq!(ada.get(&app, &format!("/api_keys/{other_key}/revoke")).await.0, 404);
        for (path, fields) in [
            (format!("/team/{olga_id}/role"), &[("role", "viewer")][..]),
            (format!("/team/{olga_id}/remove"), &[]),
            (format!("/team/{olga_id}/resend"), &[]),
            (format!("/api_keys/{other_key}/revoke"), &[]),
            ("/team/usr_nonsense/remove".to_owned(), &[]),
        ] {
            let (status, body) = ada.post(&app, &path, fields).await;
            assert_eq!(status, 404, "POST {path}: {body}");
        }
        assert!(roles(&app).await.contains(&"olga@example.com admin".to_owned()));
        let (_, other_keys) = app.request(reqwest::Method::GET, "/v1/api_keys", &other.live_key, None).await;
        assert!(other_keys["data"][0]["revoked_at"].is_null());
        let team = ada.get(&app, "/team").await.1;
        assert!(!team.contains("olga@example.com"), "the Team page lists this tenant only");

        // The last admin stays an admin, and no admin removes themself.
        let (status, body) = ada.post(&app, &format!("/team/{}/role", ada.id), &[("role", "viewer")]).await;
        assert_eq!(status, 409);
        assert!(body.contains("only admin"), "{body}");
        let (status, body) = ada.post(&app, &format!("/team/{}/remove", ada.id), &[]).await;
        assert_eq!(status, 409);
        assert!(body.contains("You cannot remove yourself"), "{body}");

        // A key's name with markup is text; its last use is recorded.
        let (status, page) = ada.post(&app, "/api_keys", &[("name", "<script>alert(1)</script>")]).await;
        assert_eq!(status, 200);
        let escaped = ["&lt;script&gt;alert(1)&lt;/script&gt;", "&#60;script&#62;alert(1)&#60;/script&#62;"];
        assert!(escaped.iter().any(|e| page.contains(e)) && !page.contains("<script>"), "{page}");
        let key = field_value(&page, "new-key");
        let (status, _) = app.request(reqwest::Method::GET, "/v1/webhooks", &key, None).await;
        assert_eq!(status, 200);
        let made = live_keys(&app).await.into_iter().find(|k| k["hint"] == key[key.len() - 4..]).unwrap();
        assert!(made["last_used_at"].is_string(), "{made}");
        // Revoked from the page: refused at once.
        let made_id = made["id"].as_str().unwrap();
        let (status, location) = ada.post(&app, &format!("/api_keys/{made_id}/revoke"), &[]).await;
        assert_eq!((status, location.as_str()), (303, "/api_keys?done=revoked"));
        assert_eq!(app.request(reqwest::Method::GET, "/v1/webhooks", &key, None).await.0, 401);

        // Promoted: the viewer's very next request has the new role.
        let (status, _) = ada.post(&app, &format!("/team/{}/role", vic.id), &[("role", "admin")]).await;
        assert_eq!(status, 303);
        assert_eq!(vic.get(&app, "/team").await.0, 200);
        // Removed: the next request is sent to log in; the login fails.
        let (status, location) = ada.post(&app, &format!("/team/{}/remove", vic.id), &[]).await;
        assert_eq!((status, location.as_str()), (303, "/team?done=removed"));
        assert_eq!(vic.get(&app, "/webhooks").await, (303, "/login".to_owned()));
        let login = raw_client()
            .post(app.url("/login"))
            .form(&[("email", "vic@example.com"), ("password", "a long enough secret")])
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 401);
        assert_eq!(roles(&app).await, ["ada@example.com admin", "olga@example.com admin"]);
    }
}
