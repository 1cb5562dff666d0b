//! The signer's and the approver's pages, as people use them: each opens
//! the link from their e-mail in a real headless Chromium (through
//! chromedriver), reads, ticks consent, types their name and signs — or
//! declines, or approves — while a real receiver gets the webhooks and a
//! real SMTP sink the e-mails. Screenshots land in `target/screenshots/`.

use crate::esign::{events_of, signing_url};
use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::{json, Value};
use signhook_testkit::browser::Browser;

/// A server that e-mails through a sink, with a receiver subscribed to `*`.
async fn mailing_app() -> (TestApp, SmtpSink, Receiver) {
    let smtp = SmtpSink::start().await;
    let app = TestApp::spawn_with(Options {
        smtp: Some((smtp.url(), "signhook@example.com".into())),
        ..Options::on(Backend::Sqlite)
    })
    .await;
    let receiver = Receiver::start().await;
    app.create_webhook(&receiver.url("/hooks"), json!({})).await;
    (app, smtp, receiver)
}

fn people(names: &[(&str, &str)]) -> Value {
    names
        .iter()
        .map(|(name, email)| json!({"name": name, "email": email}))
        .collect()
}

/// Signs on the page now open: consent, name, Sign.
async fn sign_on_page(browser: &Browser, typed_name: &str) {
    browser.click("#consent").await;
    browser.fill("#typed_name", typed_name).await;
    browser.submit("#sign").await;
}

#[tokio::test]
async fn two_signers_sign_from_their_e_mails_and_the_done_links_work() {
    let (app, smtp, receiver) = mailing_app().await;
    let body = json!({
        "name": "Umowa — Łódź 合同",
        "signers": people(&[("Łukasz Żółć", "lukasz@example.com"), ("王小明", "wang@example.com")]),
    });
    let request = app.out_for_signature(&app.tenant.live_key, body).await;
    let id = request["id"].as_str().unwrap();
    let browser = Browser::start().await;

    // Łukasz opens the link from his invitation.
    let invitation = smtp.mail_to("lukasz@example.com", "asks you to sign").await;
    let link = invitation.link();
    assert_eq!(link, signing_url(&request, 0), "the e-mailed link is the signer's");
    browser.open(&link).await;
    assert_eq!(browser.text("h1").await, "Umowa — Łódź 合同");
    assert_eq!(browser.text(".sender").await, "Acme asks you to sign");
    // The document is shown inline, with a download link.
    assert!(browser.has("iframe[title='contract.pdf']").await);
    assert!(browser.page_text().await.contains("Download contract.pdf"));
    browser.screenshot("signer-page").await;

    // Signing without consent is refused beside the checkbox; nothing is signed.
    browser.fill("#typed_name", "Łukasz Żółć").await;
    browser.submit("#sign").await;
    assert!(
        browser
            .text("#consent-error")
            .await
            .contains("agrees to sign electronically"),
        "{}",
        browser.page_text().await
    );
    let (_, unchanged) = app.get(&format!("/v1/signature_requests/{id}")).await;
    assert_eq!(unchanged["signers"][0]["status"], "link_opened");
    // What was typed is kept.
    let typed = browser
        .client()
        .find(fantoccini::Locator::Css("#typed_name"))
        .await
        .unwrap();
    assert_eq!(typed.prop("value").await.unwrap().as_deref(), Some("Łukasz Żółć"));

    sign_on_page(&browser, "Łukasz Żółć").await;
    let text = browser.page_text().await;
    assert!(
        text.contains("You signed on") && text.contains("Waiting for 王小明"),
        "{text}"
    );
    assert!(!browser.has("#sign").await, "no second signing");

    // 王小明 signs from her e-mail in the same browser.
    let link = smtp.mail_to("wang@example.com", "asks you to sign").await.link();
    browser.open(&link).await;
    sign_on_page(&browser, "王小明").await;
    let text = browser.page_text().await;
    assert!(text.contains("Everyone has signed"), "{text}");
    browser.screenshot("signer-page-done").await;

    // The receiver got `done`, with the typed names in the signers' events
    // and links that download the signed PDF.
    let events = events_of(&receiver, id, 8).await;
    let done = events.last().unwrap();
    assert_eq!(done["type"], "signature_request.done");
    let signed: Vec<&Value> = events.iter().filter(|e| e["type"] == "signer.done").collect();
    assert_eq!(signed[0]["data"]["signer"]["typed_name"], "Łukasz Żółć");
    assert_eq!(signed[1]["data"]["signer"]["typed_name"], "王小明");
    let pdf = app
        .client
        .get(done["data"]["links"]["signed_pdf"]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.status(), 200);
    let pdf = pdf.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF-"));

    // The page's own download gives the same file.
    let from_page = app.client.get(format!("{link}/signed.pdf")).send().await.unwrap();
    assert_eq!(from_page.status(), 200);
    assert_eq!(from_page.bytes().await.unwrap(), pdf);
    assert!(browser.has("a[href$='/signed.pdf']").await);

    // Each signer gets a signed copy by e-mail, linking to it.
    for address in ["lukasz@example.com", "wang@example.com"] {
        let copy = smtp.mail_to(address, "Signed:").await;
        assert!(copy.link().ends_with("/signed.pdf"), "{copy:?}");
        let response = app.client.get(copy.link()).send().await.unwrap();
        assert_eq!(response.bytes().await.unwrap(), pdf);
    }
    browser.close().await;
}

#[tokio::test]
async fn a_reminder_is_a_letter_too_and_opens_the_page() {
    let (app, smtp, _receiver) = mailing_app().await;
    let body = json!({"name": "NDA", "signers": people(&[("Ada Lovelace", "ada@example.com")])});
    let request = app.out_for_signature(&app.tenant.live_key, body).await;
    let id = request["id"].as_str().unwrap();
    smtp.mail_to("ada@example.com", "asks you to sign").await;
    let (status, _) = app.act(id, "remind", None).await;
    assert_eq!(status, StatusCode::OK);
    let reminder = smtp.mail_to("ada@example.com", "Reminder: Acme asks you to sign").await;
    assert_eq!(reminder.link(), signing_url(&request, 0));
    let kinds: Vec<&str> = reminder.parts.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, ["text/plain; charset=utf-8", "text/html; charset=utf-8"]);
    assert!(reminder.parts[1].1.contains(&format!("href=\"{}\"", reminder.link())));
    let browser = Browser::start().await;
    browser.open(&reminder.link()).await;
    assert_eq!(browser.text("h1").await, "NDA");
    assert!(browser.has("#sign").await);
    browser.close().await;
    eventually("the reminder in the audit trail", || async {
        let trail = app
            .db
            .query_texts(&format!(
                "SELECT detail FROM audit_trail WHERE signature_request_id = '{id}' \
                 AND action = 'signer.reminder_emailed'"
            ))
            .await;
        done_when(trail.len() == 1, trail)
    })
    .await;
}

#[tokio::test]
async fn a_signer_declines_with_a_reason_on_the_page() {
    let (app, smtp, receiver) = mailing_app().await;
    let body = json!({
        "name": "NDA",
        "signers": people(&[("Ada Lovelace", "ada@example.com"), ("Grace Hopper", "grace@example.com")]),
    });
    let request = app.out_for_signature(&app.tenant.live_key, body).await;
    let id = request["id"].as_str().unwrap();
    let browser = Browser::start().await;
    browser
        .open(&smtp.mail_to("grace@example.com", "NDA").await.link())
        .await;
    browser.click("details summary").await;
    // A reason is required.
    browser.submit("#decline").await;
    assert!(browser.text("#reason-error").await.contains("reason"));
    browser.fill("#reason", "The liability cap is missing").await;
    browser.submit("#decline").await;
    let text = browser.page_text().await;
    assert!(
        text.contains("declined by Grace Hopper") && text.contains("The liability cap is missing"),
        "{text}"
    );
    assert!(!browser.has("#sign").await);
    let events = events_of(&receiver, id, 6).await;
    assert_eq!(events.last().unwrap()["type"], "signature_request.declined");
    assert_eq!(events.last().unwrap()["data"]["reason"], "The liability cap is missing");
    // Ada's page says so too, without a form.
    browser.open(&signing_url(&request, 0)).await;
    assert!(browser.page_text().await.contains("declined by Grace Hopper"));
    assert!(!browser.has("#sign").await);
    browser.close().await;
}

#[tokio::test]
async fn an_ordered_second_signer_waits_for_the_first() {
    let (app, _smtp, _receiver) = mailing_app().await;
    let body = json!({
        "name": "Lease",
        "ordered_signers": true,
        "signers": people(&[("Ada Lovelace", "ada@example.com"), ("Grace Hopper", "grace@example.com")]),
    });
    let request = app.out_for_signature(&app.tenant.live_key, body).await;
    let browser = Browser::start().await;
    browser.open(&signing_url(&request, 1)).await;
    let text = browser.page_text().await;
    assert!(
        text.contains("It is not your turn yet: waiting for Ada Lovelace to sign first"),
        "{text}"
    );
    assert!(!browser.has("#sign").await);
    browser.screenshot("signer-page-waiting").await;
    // Ada signs on her page; Grace's page then asks her to sign.
    browser.open(&signing_url(&request, 0)).await;
    assert!(browser.page_text().await.contains("It is your turn to sign"));
    sign_on_page(&browser, "Ada Lovelace").await;
    browser.open(&signing_url(&request, 1)).await;
    assert!(browser.has("#sign").await, "{}", browser.page_text().await);
    browser.close().await;
}

#[tokio::test]
async fn an_approver_approves_on_the_page() {
    let (app, smtp, receiver) = mailing_app().await;
    let body = json!({
        "name": "Budget",
        "signers": people(&[("Ada Lovelace", "ada@example.com")]),
        "approvers": people(&[("Linus Legal", "legal@example.com")]),
    });
    let request = app.out_for_signature(&app.tenant.live_key, body).await;
    let id = request["id"].as_str().unwrap();
    let browser = Browser::start().await;
    let invitation = smtp.mail_to("legal@example.com", "asks you to approve").await;
    browser.open(&invitation.link()).await;
    assert_eq!(browser.text(".sender").await, "Acme asks you to approve");
    browser.submit("#approve").await;
    assert!(browser
        .page_text()
        .await
        .contains("Approved: the request went out to its signers"));
    let events = events_of(&receiver, id, 4).await;
    assert!(events.iter().any(|e| e["type"] == "approver.approved"));
    // Ada is invited now.
    smtp.mail_to("ada@example.com", "asks you to sign").await;
    browser.close().await;
}

/// Without a browser: what the page is served with, and that API clients
/// keep their JSON and get field errors.
#[tokio::test]
async fn pages_are_protected_and_api_clients_keep_json() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let body = json!({"name": "NDA", "signers": people(&[("Ada Lovelace", "ada@example.com")])});
    let request = app.out_for_signature(&app.tenant.live_key, body).await;
    let link = signing_url(&request, 0);

    let page = app
        .client
        .get(&link)
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let header = |name: &str| page.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("content-type").as_deref(), Some("text/html; charset=utf-8"));
    assert_eq!(header("referrer-policy").as_deref(), Some("no-referrer"));
    assert_eq!(header("x-frame-options").as_deref(), Some("DENY"));
    let csp = header("content-security-policy").unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("I agree to sign electronically"), "{html}");

    // curl and API clients: JSON, as before.
    let (status, view) = app.visit(reqwest::Method::GET, &link, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["signer"]["status"], "link_opened");

    // Signing through the API needs the consent and the typed name.
    for (body, field) in [
        (json!({}), "consent"),
        (json!({"consent": false, "typed_name": "Ada"}), "consent"),
        (json!({"consent": true}), "typed_name"),
        (json!({"consent": true, "typed_name": "  "}), "typed_name"),
    ] {
        let (status, error) = app
            .visit(reqwest::Method::POST, &format!("{link}/sign"), Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    let (_, unchanged) = app
        .get(&format!("/v1/signature_requests/{}", request["id"].as_str().unwrap()))
        .await;
    assert_eq!(unchanged["signers"][0]["status"], "link_opened", "nothing signed");

    // An invalid link is a page for a browser too.
    let broken = app
        .client
        .get(format!("{link}x"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 404);
    assert!(broken.text().await.unwrap().contains("This link is not valid"));
    // Without SMTP nothing was e-mailed, and the trail says how the link
    // went out instead of claiming a notification.
    let trail = app
        .db
        .query_texts(&format!(
            "SELECT action || ': ' || detail FROM audit_trail WHERE signature_request_id = '{}' \
             AND action LIKE 'signer.invitation%'",
            request["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        trail,
        [
            "signer.invitation_handed_over: not e-mailed (no SMTP server is configured): \
          the link for Ada Lovelace <ada@example.com> was handed to the API caller"
        ]
    );
    // The stylesheet is served.
    let css = app.client.get(app.url("/assets/signhook.css")).send().await.unwrap();
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}
