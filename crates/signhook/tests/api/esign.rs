//! The e-signature lifecycle end to end, as a user drives it: create a
//! request, upload PDFs, activate, act through the signing and approval
//! links with plain HTTP, and watch a real receiver subscribed to `*` get
//! exactly the events of each story, in `sequence` order, with the payload
//! fields of DESIGN §3.3.

use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::{json, Value};
use signhook_testkit::poppler::pdf_text;
use std::time::Duration;

pub const CONTRACT: &[u8] = include_bytes!("../fixtures/contract.pdf");
pub const ANNEX: &[u8] = include_bytes!("../fixtures/annex.pdf");

impl TestApp {
    /// Creates a draft; panics unless 201.
    pub async fn create_signature_request(&self, key: &str, body: Value) -> Value {
        let (status, request) = self
            .request(reqwest::Method::POST, "/v1/signature_requests", key, Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{request}");
        request
    }

    /// Uploads a PDF as a raw body.
    pub async fn upload(&self, key: &str, id: &str, pdf: &[u8], filename: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url(&format!("/v1/signature_requests/{id}/documents?filename={filename}")))
            .bearer_auth(key)
            .header("content-type", "application/pdf")
            .body(pdf.to_vec())
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// A draft with the contract uploaded, activated; returns the request.
    pub async fn out_for_signature(&self, key: &str, body: Value) -> Value {
        out_for_signature_at(&self.client, &self.url(""), key, body).await
    }

    /// An action on a request through the API with the live key.
    pub async fn act(&self, id: &str, action: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.request(
            reqwest::Method::POST,
            &format!("/v1/signature_requests/{id}/{action}"),
            &self.tenant.live_key,
            body,
        )
        .await
    }

    /// Signs `request` as its signer number `signer`, through the signing
    /// link, as a person does: open it, then sign.
    pub async fn sign(&self, request: &Value, signer: usize) -> (StatusCode, Value) {
        let (status, view) = self
            .visit(reqwest::Method::GET, &signing_url(request, signer), None)
            .await;
        assert!(status.is_success() || status == StatusCode::GONE, "{view}");
        self.visit(
            reqwest::Method::POST,
            &format!("{}/sign", signing_url(request, signer)),
            Some(signature(&request["signers"][signer]["name"])),
        )
        .await
    }

    /// A request to a link (no API key), as a signer's browser or curl sends it.
    pub async fn visit(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.client.request(method, url).header("user-agent", "curl/8.5.0");
        if let Some(body) = body {
            req = req.json(&body);
        }
        read(req.send().await.unwrap()).await
    }
}

/// Creates a request from `body` on the server at `base`, uploads the
/// contract and activates it; returns the active request. Panics on any
/// step that does not succeed.
pub async fn out_for_signature_at(client: &reqwest::Client, base: &str, key: &str, body: Value) -> Value {
    let send = |path: String, body: Option<Value>| {
        let mut req = client.post(format!("{base}{path}")).bearer_auth(key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req
    };
    let (status, request) = read(send("/v1/signature_requests".into(), Some(body)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{request}");
    let id = request["id"].as_str().unwrap();
    let upload = send(
        format!("/v1/signature_requests/{id}/documents?filename=contract.pdf"),
        None,
    )
    .header("content-type", "application/pdf")
    .body(CONTRACT.to_vec());
    let (status, document) = read(upload.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{document}");
    let (status, active) = read(
        send(format!("/v1/signature_requests/{id}/activate"), None)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{active}");
    active
}

/// The body that signs: consent, and the signer's name typed as their
/// signature.
pub fn signature(name: &Value) -> Value {
    json!({"consent": true, "typed_name": name.as_str().unwrap_or("A Signer")})
}

/// A signer's signing URL from an API answer.
pub fn signing_url(request: &Value, signer: usize) -> String {
    request["signers"][signer]["signing_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no signing_url: {request}"))
        .to_owned()
}

fn two_signers(ordered: bool) -> Value {
    json!({
        "name": "Master services agreement",
        "ordered_signers": ordered,
        "signers": [
            {"name": "Ada Lovelace", "email": "ada@example.com"},
            {"name": "Grace Hopper", "email": "grace@example.com"}
        ],
        "metadata": {"crm_deal_id": "D-1042"}
    })
}

/// Waits until the receiver has `n` distinct events of request `id`, and
/// returns them ordered by `sequence` (deliveries may arrive in any order,
/// and — at least once — more than once when a test jumps the clock past a
/// lease: receivers deduplicate by event id, and so does this).
pub async fn events_of(receiver: &Receiver, id: &str, n: usize) -> Vec<Value> {
    let mut events = eventually(format_args!("{n} events of {id}"), || async {
        let mut seen = std::collections::HashSet::new();
        let events: Vec<Value> = receiver
            .received()
            .iter()
            .map(Received::json)
            .filter(|e| e["data"]["signature_request"]["id"] == id)
            .filter(|e| seen.insert(e["id"].as_str().unwrap().to_owned()))
            .collect();
        done_when(events.len() >= n, events)
    })
    .await;
    events.sort_by_key(|e| e["data"]["signature_request"]["sequence"].as_i64().unwrap());
    events
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// The sequence numbers run 1, 2, 3… without a gap or a repeat.
fn assert_sequences(events: &[Value]) {
    let sequences: Vec<i64> = events
        .iter()
        .map(|e| e["data"]["signature_request"]["sequence"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = (1..=events.len() as i64).collect();
    assert_eq!(sequences, expected, "{events:?}");
}

async fn subscribe_all(app: &TestApp) -> Receiver {
    let receiver = Receiver::start().await;
    app.create_webhook(&receiver.url("/hooks"), json!({})).await;
    receiver
}

async fn fetch(app: &TestApp, url: &str) -> (StatusCode, Vec<u8>) {
    let response = app.client.get(url).send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.bytes().await.unwrap().to_vec())
}

on_both_backends! {
    async fn two_signers_in_parallel_then_done_with_working_links(backend: Backend) {
        let app = TestApp::spawn_with(Options { link_ttl: Duration::from_secs(600), ..Options::on(backend) }).await;
        let receiver = subscribe_all(&app).await;
        let request = app.out_for_signature(&app.tenant.live_key, two_signers(false)).await;
        let id = request["id"].as_str().unwrap();
        assert_eq!(request["status"], "ongoing");

        // Grace opens her link, then both sign.
        let grace = signing_url(&request, 1);
        let (status, view) = app.visit(reqwest::Method::GET, &grace, None).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(view["signer"]["status"], "link_opened");
        assert_eq!(view["documents"][0]["filename"], "contract.pdf");
        let (status, pdf) = fetch(&app, view["documents"][0]["url"].as_str().unwrap()).await;
        assert_eq!((status, pdf.as_slice()), (StatusCode::OK, crate::esign::CONTRACT));
        let (status, view) = app.visit(reqwest::Method::POST, &format!("{grace}/sign"), Some(signature(&json!("A Signer")))).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        let (status, view) = app.sign(&request, 0).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(view["signature_request"]["status"], "done");

        let events = events_of(&receiver, id, 8).await;
        assert_eq!(
            types(&events),
            [
                "signature_request.activated",
                "signer.notified",
                "signer.notified",
                "signer.link_opened",
                "signer.done",
                "signer.link_opened",
                "signer.done",
                "signature_request.done"
            ]
        );
        assert_sequences(&events);
        let grace_done = &events[4];
        assert_eq!(grace_done["data"]["signer"]["typed_name"], "A Signer");
        assert_eq!(grace_done["data"]["signer"]["email"], "grace@example.com");
        assert_eq!(grace_done["data"]["signer"]["name"], "Grace Hopper");
        assert_eq!(grace_done["data"]["signer"]["status"], "done");
        assert!(grace_done["data"]["signer"]["signed_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(grace_done["data"]["signature_request"]["metadata"]["crm_deal_id"], "D-1042");
        assert_eq!(grace_done["scope"], "public_api");
        assert_eq!(grace_done["sandbox"], false);
        // No payload ever carries a signing link or token.
        for event in &events {
            assert!(!event.to_string().contains("/signing/"), "{event}");
            assert!(event["data"].get("links").is_none() || event["type"] == "signature_request.done");
        }

        // The links of `done` work: real PDFs, the signed one with a signature page.
        let done = &events[7];
        assert_eq!(done["data"]["signature_request"]["status"], "done");
        let (status, signed) = fetch(&app, done["data"]["links"]["signed_pdf"]["url"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let info = signhook_documents::inspect(&signed).unwrap();
        assert_eq!(info.pages, 3, "the contract's 2 pages and the signature page");
        let text = pdf_text(&signed);
        assert!(text.contains("Master Services Agreement"), "{text}");
        assert!(text.contains("ada@example.com") && text.contains("grace@example.com"), "{text}");
        assert!(text.contains("127.0.0.1"), "the signers' IP: {text}");
        let signed_at = text
            .lines()
            .find_map(|line| line.strip_prefix("Signed at ")?.strip_suffix(" from IP 127.0.0.1"))
            .unwrap_or_else(|| panic!("no signing time: {text}"));
        assert!(
            chrono::NaiveDateTime::parse_from_str(signed_at, "%Y-%m-%d %H:%M:%S UTC").is_ok(),
            "a time with its zone: {signed_at:?}"
        );

        let (status, certificate) =
            fetch(&app, done["data"]["links"]["audit_certificate"]["url"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let text = pdf_text(&certificate);
        let contract_sha = request_document_sha(&app, id).await;
        assert!(text.contains(&contract_sha), "the original's SHA-256: {text}");
        assert!(text.contains(&sha256_hex(&signed)), "the signed PDF's SHA-256: {text}");
        assert!(text.contains("ada@example.com") && text.contains("grace@example.com"));
        assert!(text.contains("curl/8.5.0"), "the user agent: {text}");
        // The trail in sentences, times with their zone.
        assert!(
            text.contains("Grace Hopper <grace@example.com> opened the signing link"),
            "the trail: {text}"
        );
        assert!(text.contains("Ada Lovelace <ada@example.com> signed"), "the trail: {text}");
        assert!(!text.contains("signer.link_opened"), "no raw action names: {text}");
        // Each signature's consent and typed name, the last one's too (its
        // step is printed before it is stored).
        for typed in ["A Signer", "Ada Lovelace"] {
            let consent = format!("agreed to sign electronically and typed the name \u{201c}{typed}\u{201d}");
            assert!(text.contains(&consent), "{consent:?} missing from the trail: {text}");
        }
        let completed = text
            .lines()
            .find_map(|line| line.strip_prefix("Completed at: "))
            .unwrap_or_else(|| panic!("no completion time: {text}"));
        assert!(
            chrono::NaiveDateTime::parse_from_str(completed, "%Y-%m-%d %H:%M:%S UTC").is_ok(),
            "{completed:?}"
        );

        // Both files are sealed (pdfsig: valid, the whole file signed), and
        // the hashes in `done` are of the bytes served.
        crate::seal::assert_sealed(&signed);
        crate::seal::assert_sealed(&certificate);
        assert_eq!(done["data"]["links"]["signed_pdf"]["sha256"], sha256_hex(&signed));
        assert_eq!(
            done["data"]["links"]["audit_certificate"]["sha256"],
            sha256_hex(&certificate)
        );

        // Past the TTL the links are gone; the API hands out fresh ones.
        app.clock.advance(Duration::from_secs(601));
        let (status, _) = fetch(&app, done["data"]["links"]["signed_pdf"]["url"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::GONE);
        let (status, links) = app.get(&format!("/v1/signature_requests/{id}/links")).await;
        assert_eq!(status, StatusCode::OK, "{links}");
        let (status, again) = fetch(&app, links["signed_pdf"]["url"].as_str().unwrap()).await;
        assert_eq!((status, again.len()), (StatusCode::OK, signed.len()));
        // A tampered link is nothing.
        let forged = links["audit_certificate"]["url"].as_str().unwrap().replace("expires=", "expires=9");
        assert_eq!(fetch(&app, &forged).await.0, StatusCode::NOT_FOUND);

        // Signing twice is refused and changes nothing.
        let (status, body) = app.visit(reqwest::Method::POST, &format!("{grace}/sign"), Some(signature(&json!("A Signer")))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("done"), "{body}");
        let (_, after) = app.get(&format!("/v1/signature_requests/{id}")).await;
        assert_eq!(after["sequence"], 8);
    }

    async fn ordered_signers_are_invited_one_after_the_other(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let receiver = subscribe_all(&app).await;
        let request = app.out_for_signature(&app.tenant.live_key, two_signers(true)).await;
        let id = request["id"].as_str().unwrap();
        assert_eq!(request["signers"][1]["status"], "pending");
        // Grace cannot sign before Ada.
        let (status, body) = app.sign(&request, 1).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("pending"), "{body}");
        let (status, _) = app.sign(&request, 0).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = app.sign(&request, 1).await;
        assert_eq!(status, StatusCode::OK);
        let events = events_of(&receiver, id, 8).await;
        assert_eq!(
            types(&events),
            [
                "signature_request.activated",
                "signer.notified",
                "signer.link_opened",
                "signer.done",
                "signer.notified",
                "signer.link_opened",
                "signer.done",
                "signature_request.done"
            ]
        );
        assert_sequences(&events);
        assert_eq!(events[1]["data"]["signer"]["email"], "ada@example.com");
        assert_eq!(events[4]["data"]["signer"]["email"], "grace@example.com");
    }

    async fn a_decline_with_a_reason_declines_the_request(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let receiver = subscribe_all(&app).await;
        let request = app.out_for_signature(&app.tenant.live_key, two_signers(false)).await;
        let id = request["id"].as_str().unwrap();
        let url = signing_url(&request, 0);
        let (status, body) = app.visit(reqwest::Method::POST, &format!("{url}/decline"), Some(json!({}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a reason is required: {body}");
        assert_eq!(body["error"]["field"], "reason");
        let (status, _) = app
            .visit(reqwest::Method::POST, &format!("{url}/decline"), Some(json!({"reason": "Wrong payment terms"})))
            .await;
        assert_eq!(status, StatusCode::OK);
        let events = events_of(&receiver, id, 5).await;
        assert_eq!(
            types(&events),
            [
                "signature_request.activated",
                "signer.notified",
                "signer.notified",
                "signer.declined",
                "signature_request.declined"
            ]
        );
        assert_sequences(&events);
        for event in &events[3..] {
            assert_eq!(event["data"]["reason"], "Wrong payment terms");
            assert_eq!(event["data"]["signer"]["email"], "ada@example.com");
            assert_eq!(event["data"]["signature_request"]["status"], "declined");
        }
        // The other signer can no longer sign.
        let (status, _) = app.sign(&request, 1).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }

    async fn a_cancel_stops_the_request(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let receiver = subscribe_all(&app).await;
        let request = app.out_for_signature(&app.tenant.live_key, two_signers(false)).await;
        let id = request["id"].as_str().unwrap();
        let (status, canceled) = app.act(id, "cancel", Some(json!({"reason": "Deal lost"}))).await;
        assert_eq!(status, StatusCode::OK, "{canceled}");
        assert_eq!(canceled["status"], "canceled");
        let events = events_of(&receiver, id, 4).await;
        assert_eq!(types(&events)[3], "signature_request.canceled");
        assert_eq!(events[3]["data"]["reason"], "Deal lost");
        // Canceling again names the state it is in.
        let (status, body) = app.act(id, "cancel", None).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["message"], "cannot cancel a signature request that is canceled");
        let (status, _) = app.sign(&request, 0).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }

    async fn a_link_stops_serving_documents_once_the_request_is_decided(backend: Backend) {
        let app = TestApp::spawn_with(Options { link_ttl: Duration::from_secs(600), ..Options::on(backend) }).await;
        let receiver = subscribe_all(&app).await;
        // One request per way of ending, each with its signer's document
        // link taken while it was still being decided.
        let start = || async {
            let request = app.out_for_signature(&app.tenant.live_key, two_signers(false)).await;
            let link = signing_url(&request, 0);
            let (status, view) = app.visit(reqwest::Method::GET, &link, None).await;
            assert_eq!(status, StatusCode::OK, "{view}");
            let document = view["documents"][0]["url"].as_str().unwrap().to_owned();
            assert_eq!(fetch(&app, &document).await.0, StatusCode::OK);
            (request, link, document)
        };
        let ended = |link: String, document: String, outcome: &'static str| {
            let app = &app;
            async move {
                let (status, body) = fetch(app, &document).await;
                let body = String::from_utf8_lossy(&body);
                assert_eq!(status, StatusCode::GONE, "{outcome}: {body}");
                assert!(body.contains(&format!("is {outcome}")), "{body}");
                let (status, view) = app.visit(reqwest::Method::GET, &link, None).await;
                assert_eq!(status, StatusCode::OK, "{view}");
                assert_eq!(view["signature_request"]["status"], outcome);
                assert_eq!(view["documents"], json!([]), "{outcome}: {view}");
                view
            }
        };

        let (request, link, document) = start().await;
        app.sign(&request, 0).await;
        app.sign(&request, 1).await;
        let view = ended(link, document, "done").await;
        // Done: the signed PDF, through a fresh file link.
        let (status, pdf) = fetch(&app, view["signed_pdf"]["url"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(pdf.starts_with(b"%PDF"));

        let (declined, declined_link, declined_document) = start().await;
        let (status, _) = app
            .visit(reqwest::Method::POST, &format!("{declined_link}/decline"), Some(json!({"reason": "Wrong terms"})))
            .await;
        assert_eq!(status, StatusCode::OK);
        let view = ended(declined_link.clone(), declined_document.clone(), "declined").await;
        assert_eq!(view["signed_pdf"], json!(null));
        let id = declined["id"].as_str().unwrap();

        let (request, link, document) = start().await;
        let (status, _) = app
            .act(request["id"].as_str().unwrap(), "cancel", Some(json!({"reason": "Deal lost"})))
            .await;
        assert_eq!(status, StatusCode::OK);
        ended(link, document, "canceled").await;

        let (request, link, document) = start().await;
        app.clock.advance(Duration::from_secs(31 * 24 * 3600));
        // Activated, two invitations, the opening, then the expiry.
        let events = events_of(&receiver, request["id"].as_str().unwrap(), 5).await;
        assert_eq!(types(&events)[4], "signature_request.expired");
        ended(link, document, "expired").await;

        // Deleted (the declined one): the link itself answers 410, and so
        // do its documents.
        let (status, body) = app.delete(&format!("/v1/signature_requests/{id}")).await;
        assert!(status.is_success(), "{body}");
        let (status, body) = app.visit(reqwest::Method::GET, &declined_link, None).await;
        assert_eq!(status, StatusCode::GONE, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("withdrawn"), "{body}");
        assert_eq!(fetch(&app, &declined_document).await.0, StatusCode::GONE);
    }

    async fn a_renewed_signing_link_replaces_the_old_one(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let request = app.out_for_signature(&app.tenant.live_key, two_signers(false)).await;
        let id = request["id"].as_str().unwrap();
        let old = signing_url(&request, 0);
        let signer = request["signers"][0]["id"].as_str().unwrap();
        let (status, renewed) = app
            .post(&format!("/v1/signature_requests/{id}/signers/{signer}/renew_link"), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{renewed}");
        let new = signing_url(&renewed, 0);
        assert_ne!(new, old);
        // The other signer's link is untouched.
        assert_eq!(signing_url(&renewed, 1), signing_url(&request, 1));
        // The old link is genuine but replaced: 410, for every route.
        for (method, url) in [
            (reqwest::Method::GET, old.clone()),
            (reqwest::Method::POST, format!("{old}/sign")),
        ] {
            let body = (method == reqwest::Method::POST).then(|| signature(&json!("A Signer")));
            let (status, body) = app.visit(method, &url, body).await;
            assert_eq!(status, StatusCode::GONE, "{body}");
            assert!(body["error"]["message"].as_str().unwrap().contains("replaced"), "{body}");
        }
        // The new one works, and so does a second renewal's.
        let (status, view) = app.visit(reqwest::Method::GET, &new, None).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        let (_, again) = app
            .post(&format!("/v1/signature_requests/{id}/signers/{signer}/renew_link"), json!({}))
            .await;
        let newest = signing_url(&again, 0);
        assert_eq!(app.visit(reqwest::Method::GET, &new, None).await.0, StatusCode::GONE);
        let (status, signed) = app.visit(reqwest::Method::POST, &format!("{newest}/sign"), Some(signature(&json!("A Signer")))).await;
        assert_eq!(status, StatusCode::OK, "{signed}");
        // The renewal is in the audit trail; another tenant's request or
        // an unknown signer is a 404.
        let store = app.db.open_store().await;
        let trail = store
            .audit_trail(&signhook_core::ids::SignatureRequestId::parse(id).unwrap())
            .await
            .unwrap();
        assert_eq!(trail.iter().filter(|e| e.action == "signer.link_renewed").count(), 2);
        let other = app.other_tenant().await;
        let (status, _) = app
            .request(
                reqwest::Method::POST,
                &format!("/v1/signature_requests/{id}/signers/{signer}/renew_link"),
                &other.live_key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = app
            .post(&format!("/v1/signature_requests/{id}/signers/sg_00000000000000000000000000000000/renew_link"), json!({}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }

    async fn expiry_then_reactivation_then_completion(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let receiver = subscribe_all(&app).await;
        let mut body = two_signers(false);
        body["expires_at"] = json!(signhook_core::time::rfc3339(chrono::Utc::now() + chrono::Duration::days(2)));
        body["signers"].as_array_mut().unwrap().pop();
        let request = app.out_for_signature(&app.tenant.live_key, body).await;
        let id = request["id"].as_str().unwrap();
        // The deadline passes: the scheduler expires the request, once.
        app.clock.advance(Duration::from_secs(3 * 24 * 3600));
        let events = events_of(&receiver, id, 3).await;
        assert_eq!(types(&events)[2], "signature_request.expired");
        let (_, expired) = app.get(&format!("/v1/signature_requests/{id}")).await;
        assert_eq!(expired["status"], "expired");
        let url = signing_url(&request, 0);
        let (status, _) = app.visit(reqwest::Method::POST, &format!("{url}/sign"), Some(signature(&json!("A Signer")))).await;
        assert_eq!(status, StatusCode::CONFLICT, "an expired request cannot be signed");

        let new_deadline = signhook_core::time::rfc3339(app.clock_now() + chrono::Duration::days(7));
        let (status, body) = app.act(id, "reactivate", Some(json!({"expires_at": "2020-01-01T00:00:00Z"}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "expires_at");
        let (status, reopened) = app.act(id, "reactivate", Some(json!({"expires_at": new_deadline}))).await;
        assert_eq!(status, StatusCode::OK, "{reopened}");
        assert_eq!(reopened["status"], "ongoing");
        let (status, _) = app.visit(reqwest::Method::POST, &format!("{url}/sign"), Some(signature(&json!("A Signer")))).await;
        assert_eq!(status, StatusCode::OK);
        let events = events_of(&receiver, id, 7).await;
        assert_eq!(
            types(&events),
            [
                "signature_request.activated",
                "signer.notified",
                "signature_request.expired",
                "signature_request.reactivated",
                // Signed without opening the link first: opened on the way.
                "signer.link_opened",
                "signer.done",
                "signature_request.done"
            ]
        );
        assert_sequences(&events);
        assert_eq!(events[3]["data"]["signature_request"]["expires_at"], new_deadline);
    }

    async fn scheduled_reminders_go_out_once_per_interval(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let receiver = subscribe_all(&app).await;
        let mut body = two_signers(false);
        body["reminder_interval"] = json!("2d");
        let request = app.out_for_signature(&app.tenant.live_key, body).await;
        let id = request["id"].as_str().unwrap();
        let (status, _) = app.sign(&request, 0).await;
        assert_eq!(status, StatusCode::OK);
        app.clock.advance(Duration::from_secs(2 * 24 * 3600 + 60));
        let events = events_of(&receiver, id, 6).await;
        let reminder = &events[5];
        assert_eq!(reminder["type"], "signature_request.reminder_executed");
        // Only Grace, who has not signed, is reminded.
        let reminded: Vec<&str> = reminder["data"]["signers"].as_array().unwrap().iter().map(|s| s["email"].as_str().unwrap()).collect();
        assert_eq!(reminded, ["grace@example.com"]);
        // A manual reminder works too, and the schedule does not repeat the
        // scheduled one within its interval.
        let (status, _) = app.act(id, "remind", None).await;
        assert_eq!(status, StatusCode::OK);
        let events = events_of(&receiver, id, 7).await;
        assert_sequences(&events);
        assert_eq!(types(&events).iter().filter(|t| **t == "signature_request.reminder_executed").count(), 2);
        let (_, now) = app.get(&format!("/v1/signature_requests/{id}")).await;
        assert_eq!(now["sequence"], 7, "no third reminder: {now}");
    }

    async fn approvers_approve_then_the_request_goes_out(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let receiver = subscribe_all(&app).await;
        let mut body = two_signers(false);
        body["signers"].as_array_mut().unwrap().pop();
        body["approvers"] = json!([{"name": "Linus Legal", "email": "legal@example.com"}, {"name": "Fiona Finance", "email": "finance@example.com"}]);
        let request = app.out_for_signature(&app.tenant.live_key, body).await;
        let id = request["id"].as_str().unwrap();
        assert_eq!(request["status"], "approval");
        // The signer cannot sign yet.
        let (status, _) = app.sign(&request, 0).await;
        assert_eq!(status, StatusCode::CONFLICT);
        for approver in 0..2 {
            let url = request["approvers"][approver]["approval_url"].as_str().unwrap();
            let (status, view) = app.visit(reqwest::Method::GET, url, None).await;
            assert_eq!(status, StatusCode::OK, "{view}");
            assert!(view["actions"]["approve"].is_string());
            let (status, _) = app.visit(reqwest::Method::POST, &format!("{url}/approve"), None).await;
            assert_eq!(status, StatusCode::OK);
        }
        let (status, _) = app.sign(&request, 0).await;
        assert_eq!(status, StatusCode::OK);
        let events = events_of(&receiver, id, 10).await;
        assert_eq!(
            types(&events),
            [
                "approver.notified",
                "approver.notified",
                "approver.approved",
                "approver.approved",
                "signature_request.approved",
                "signature_request.activated",
                "signer.notified",
                "signer.link_opened",
                "signer.done",
                "signature_request.done"
            ]
        );
        assert_sequences(&events);
        assert_eq!(events[2]["data"]["approver"]["email"], "legal@example.com");
    }

    async fn an_approver_rejecting_declines_the_request(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let receiver = subscribe_all(&app).await;
        let mut body = two_signers(false);
        body["approvers"] = json!([{"name": "Linus Legal", "email": "legal@example.com"}]);
        let request = app.out_for_signature(&app.tenant.live_key, body).await;
        let id = request["id"].as_str().unwrap();
        let url = request["approvers"][0]["approval_url"].as_str().unwrap();
        let (status, _) = app
            .visit(reqwest::Method::POST, &format!("{url}/reject"), Some(json!({"reason": "Clause 7 is unacceptable"})))
            .await;
        assert_eq!(status, StatusCode::OK);
        let events = events_of(&receiver, id, 3).await;
        assert_eq!(types(&events), ["approver.notified", "approver.rejected", "signature_request.declined"]);
        assert_sequences(&events);
        assert_eq!(events[2]["data"]["reason"], "Clause 7 is unacceptable");
        assert_eq!(events[2]["data"]["signature_request"]["status"], "declined");
        // Nobody was ever invited to sign.
        assert!(receiver.of_type("signer.notified").is_empty());
    }

    async fn sandbox_events_reach_only_sandbox_subscriptions(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let live = subscribe_all(&app).await;
        let sandbox = Receiver::start().await;
        let (status, _) = app
            .request(reqwest::Method::POST, "/v1/webhooks", &app.tenant.test_key, Some(json!({"url": sandbox.url("/hooks")})))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let request = app.out_for_signature(&app.tenant.test_key, two_signers(false)).await;
        let id = request["id"].as_str().unwrap();
        assert_eq!(request["sandbox"], true);
        let events = events_of(&sandbox, id, 3).await;
        assert!(events.iter().all(|e| e["sandbox"] == true));
        // The live key does not see the sandbox request, and the live
        // subscription got none of its events.
        let (status, _) = app.get(&format!("/v1/signature_requests/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let marker = app.publish("signer.done", crate::helpers::lifecycle_data("signer.done", json!({"marker": true}))).await;
        live.wait_for(1).await;
        let got: Vec<Value> = live.received().iter().map(Received::json).collect();
        assert_eq!(got.len(), 1, "only the live marker: {got:?}");
        assert_eq!(got[0]["id"], marker["id"]);
    }

    async fn workspace_and_scope_filters_apply_to_lifecycle_events(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let (status, workspace) = app.post("/v1/workspaces", json!({"name": "Legal"})).await;
        assert_eq!(status, StatusCode::CREATED);
        let legal_only = Receiver::start().await;
        app.create_webhook(&legal_only.url("/hooks"), json!({"workspaces": [workspace["id"]], "scopes": ["public_api"], "subscribed_events": ["signer.*"]})).await;
        let app_scope_only = Receiver::start().await;
        app.create_webhook(&app_scope_only.url("/hooks"), json!({"scopes": ["app"]})).await;
        let everything = subscribe_all(&app).await;

        let mut body = two_signers(false);
        body["workspace_id"] = workspace["id"].clone();
        let in_legal = app.out_for_signature(&app.tenant.live_key, body).await;
        let in_default = app.out_for_signature(&app.tenant.live_key, two_signers(false)).await;
        assert_eq!(in_legal["workspace_id"], workspace["id"]);
        let legal_id = in_legal["id"].as_str().unwrap();
        events_of(&everything, in_default["id"].as_str().unwrap(), 3).await;
        let legal_events = events_of(&legal_only, legal_id, 2).await;
        assert_eq!(types(&legal_events), ["signer.notified", "signer.notified"]);
        assert!(legal_events.iter().all(|e| e["workspace_id"] == workspace["id"]));
        // Everything has arrived at `everything` (6 events); the filtered
        // receivers got exactly their share.
        events_of(&everything, legal_id, 3).await;
        assert_eq!(legal_only.received().len(), 2);
        assert!(app_scope_only.received().is_empty(), "API-made requests are public_api");
    }
}

impl TestApp {
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use signhook_core::time::Clock;
        self.clock.now()
    }
}

async fn request_document_sha(app: &TestApp, id: &str) -> String {
    let (_, request) = app.get(&format!("/v1/signature_requests/{id}")).await;
    request["documents"][0]["sha256"].as_str().unwrap().to_owned()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

on_both_backends! {
    async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let key = app.tenant.live_key.clone();
        let post = |body: Value| {
            let app = &app;
            let key = key.clone();
            async move { app.request(reqwest::Method::POST, "/v1/signature_requests", &key, Some(body)).await }
        };
        // A signer without an e-mail, a bad e-mail, an unknown workspace, no signers.
        let (status, body) = post(json!({"name": "MSA", "signers": [{"name": "Ada"}]})).await;
        assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("signers[0].email")), "{body}");
        let (status, body) = post(json!({"name": "MSA", "signers": [{"name": "Ada", "email": "ada-at-example"}]})).await;
        assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("signers[0].email")), "{body}");
        let unknown = signhook_core::ids::WorkspaceId::generate().to_string();
        let (status, body) = post(json!({"name": "MSA", "workspace_id": unknown, "signers": [{"name": "Ada", "email": "ada@example.com"}]})).await;
        assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("workspace_id")), "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(&unknown));
        let (status, body) = post(json!({"name": "MSA", "signers": []})).await;
        assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("signers")), "{body}");
        let (status, body) = post(json!({"name": "MSA", "expires_at": "2020-01-01T00:00:00Z", "signers": [{"name": "Ada", "email": "ada@example.com"}]})).await;
        assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("expires_at")), "{body}");
        let (status, body) = post(json!({"name": "MSA", "reminder_interval": "1s", "signers": [{"name": "Ada", "email": "ada@example.com"}]})).await;
        assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("reminder_interval")), "{body}");
        let (status, list) = app.get("/v1/signature_requests").await;
        assert_eq!((status, list["data"].as_array().unwrap().len()), (StatusCode::OK, 0), "nothing was created: {list}");

        let request = app.create_signature_request(&key, two_signers(false)).await;
        let id = request["id"].as_str().unwrap();
        // Activating without a document.
        let (status, body) = app.act(id, "activate", None).await;
        assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("documents")), "{body}");
        // Not a PDF, a truncated PDF, the wrong content type.
        let (status, body) = app.upload(&key, id, b"hello, I am a text file", "notes.pdf").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "file");
        assert!(body["error"]["message"].as_str().unwrap().contains("not a PDF"), "{body}");
        let (status, body) = app.upload(&key, id, &CONTRACT[..CONTRACT.len() / 2], "half.pdf").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let response = app
            .client
            .post(app.url(&format!("/v1/signature_requests/{id}/documents")))
            .bearer_auth(&key)
            .header("content-type", "text/plain")
            .body("x")
            .send()
            .await
            .unwrap();
        // The README's 415, naming what the route reads.
        let (status, body) = read(response).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
        assert_eq!(body["error"]["code"], "unsupported_media_type");
        assert!(body["error"]["message"].as_str().unwrap().contains("application/pdf"), "{body}");
        // Over 25 MiB.
        let mut huge = CONTRACT.to_vec();
        huge.resize(25 * 1024 * 1024 + 1, b' ');
        let (status, body) = app.upload(&key, id, &huge, "huge.pdf").await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        let (_, unchanged) = app.get(&format!("/v1/signature_requests/{id}")).await;
        assert_eq!(unchanged["documents"].as_array().unwrap().len(), 0, "{unchanged}");
        assert_eq!((unchanged["status"].as_str(), unchanged["sequence"].as_i64()), (Some("draft"), Some(0)));

        // Multipart works, then a second document; reactivating a draft is refused naming its state.
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(ANNEX.to_vec()).file_name("annex.pdf"));
        let response = app
            .client
            .post(app.url(&format!("/v1/signature_requests/{id}/documents")))
            .bearer_auth(&key)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let (status, document) = read(response).await;
        assert_eq!(status, StatusCode::CREATED, "{document}");
        assert_eq!((document["filename"].as_str(), document["pages"].as_i64()), (Some("annex.pdf"), Some(1)));
        assert_eq!(document["sha256"], sha256_hex(ANNEX));
        let (status, body) = app.act(id, "reactivate", Some(json!({"expires_at": "2099-01-01T00:00:00Z"}))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["message"], "cannot reactivate a signature request that is draft");

        // A token of another request's signer, or a forged one, is nothing.
        let (status, active) = app.act(id, "activate", None).await;
        assert_eq!(status, StatusCode::OK, "{active}");
        let (status, _) = app.upload(&key, id, CONTRACT, "late.pdf").await;
        assert_eq!(status, StatusCode::CONFLICT, "documents only go on drafts");
        let other = app.out_for_signature(&key, two_signers(false)).await;
        let mine = signing_url(&active, 0);
        let theirs = signing_url(&other, 0);
        let (_, their_mac) = theirs.rsplit_once('.').unwrap();
        let (my_id, _) = mine.rsplit_once('.').unwrap();
        let (status, body) = app.visit(reqwest::Method::POST, &format!("{my_id}.{their_mac}/sign"), Some(signature(&json!("A Signer")))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, _) = app.visit(reqwest::Method::GET, &format!("{}/signing/sg_nope", app.url("")), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // A signer token is not an approval token.
        let approval = mine.replace("/signing/", "/approvals/");
        let (status, _) = app.visit(reqwest::Method::POST, &format!("{approval}/approve"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, still) = app.get(&format!("/v1/signature_requests/{id}")).await;
        assert_eq!(still["signers"][0]["status"], "notified");

        // Another tenant sees nothing.
        let stranger = app.other_tenant().await;
        let (status, _) = app
            .request(reqwest::Method::GET, &format!("/v1/signature_requests/{id}"), &stranger.live_key, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = app
            .request(reqwest::Method::POST, &format!("/v1/signature_requests/{id}/cancel"), &stranger.live_key, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    async fn two_documents_make_one_signed_pdf(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let key = app.tenant.live_key.clone();
        let mut body = two_signers(false);
        body["signers"].as_array_mut().unwrap().pop();
        let request = app.create_signature_request(&key, body).await;
        let id = request["id"].as_str().unwrap();
        assert_eq!(app.upload(&key, id, CONTRACT, "contract.pdf").await.0, StatusCode::CREATED);
        assert_eq!(app.upload(&key, id, ANNEX, "annex.pdf").await.0, StatusCode::CREATED);
        let (_, active) = app.act(id, "activate", None).await;
        let (status, _) = app.sign(&active, 0).await;
        assert_eq!(status, StatusCode::OK);
        let (_, links) = app.get(&format!("/v1/signature_requests/{id}/links")).await;
        let (status, signed) = fetch(&app, links["signed_pdf"]["url"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(signhook_documents::inspect(&signed).unwrap().pages, 2 + 1 + 1);
        let text = pdf_text(&signed);
        assert!(text.contains("Annex A") && text.contains("page 2"), "{text}");
        let (_, certificate) = fetch(&app, links["audit_certificate"]["url"].as_str().unwrap()).await;
        let text = pdf_text(&certificate);
        assert!(text.contains(&sha256_hex(CONTRACT)) && text.contains(&sha256_hex(ANNEX)), "{text}");
    }

    async fn creating_with_an_idempotency_key_is_retry_safe(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let send = |body: Value| {
            app.client
                .post(app.url("/v1/signature_requests"))
                .bearer_auth(&app.tenant.live_key)
                .header("idempotency-key", "create-msa-1")
                .json(&body)
                .send()
        };
        let (first_status, first) = read(send(two_signers(false)).await.unwrap()).await;
        let (again_status, again) = read(send(two_signers(false)).await.unwrap()).await;
        assert_eq!((first_status, again_status), (StatusCode::CREATED, StatusCode::OK));
        assert_eq!(first["id"], again["id"]);
        let (status, body) = read(send(two_signers(true)).await.unwrap()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["field"], "Idempotency-Key");
        let (_, list) = app.get("/v1/signature_requests").await;
        assert_eq!(list["data"].as_array().unwrap().len(), 1);
    }

    async fn deleting_then_purging_removes_documents_and_files(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let receiver = subscribe_all(&app).await;
        let mut body = two_signers(false);
        body["signers"].as_array_mut().unwrap().pop();
        let request = app.out_for_signature(&app.tenant.live_key, body).await;
        let id = request["id"].as_str().unwrap();
        let url = signing_url(&request, 0);
        app.visit(reqwest::Method::POST, &format!("{url}/sign"), Some(signature(&json!("A Signer")))).await;
        let (_, links) = app.get(&format!("/v1/signature_requests/{id}/links")).await;
        let (status, deleted) = app.delete(&format!("/v1/signature_requests/{id}")).await;
        assert_eq!((status, deleted["status"].as_str()), (StatusCode::OK, Some("deleted")), "{deleted}");
        // A deleted request's files are not served, even through a live link.
        assert_eq!(fetch(&app, links["signed_pdf"]["url"].as_str().unwrap()).await.0, StatusCode::NOT_FOUND);
        let (status, body) = app.delete(&format!("/v1/signature_requests/{id}")).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        // After the retention period the scheduler purges it for good.
        app.clock.advance(Duration::from_secs(31 * 24 * 3600));
        let events = events_of(&receiver, id, 7).await;
        assert_eq!(&types(&events)[5..], ["signature_request.deleted", "signature_request.permanently_deleted"]);
        assert_sequences(&events);
        let (_, purged) = app.get(&format!("/v1/signature_requests/{id}")).await;
        assert_eq!(purged["status"], "permanently_deleted");
        assert!(purged["signers"].as_array().unwrap().is_empty() && purged["documents"].as_array().unwrap().is_empty());
        // The files go right after the purge commits.
        let blobs = app.db.dir.path().join("blobs").join(id);
        eventually(format_args!("no files left in {blobs:?}"), || async {
            let gone = std::fs::read_dir(&blobs).map_or(true, |mut dir| dir.next().is_none());
            done_when(gone, "files remain")
        })
        .await;
        let (status, _) = app.visit(reqwest::Method::GET, &url, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "the signer's link is gone");

        // `?permanently=true` purges at once.
        let other = app.create_signature_request(&app.tenant.live_key, two_signers(false)).await;
        let other_id = other["id"].as_str().unwrap();
        let (status, gone) = app.delete(&format!("/v1/signature_requests/{other_id}?permanently=true")).await;
        assert_eq!((status, gone["status"].as_str()), (StatusCode::OK, Some("permanently_deleted")), "{gone}");
        let events = events_of(&receiver, other_id, 2).await;
        assert_eq!(types(&events), ["signature_request.deleted", "signature_request.permanently_deleted"]);
    }

    async fn an_undeliverable_invitation_fires_invite_undelivered(backend: Backend) {
        let smtp = SmtpSink::start().await;
        let app = TestApp::spawn_with(Options {
            smtp: Some((smtp.url(), "signhook@example.com".into())),
            ..Options::on(backend)
        })
        .await;
        let receiver = subscribe_all(&app).await;
        let request = app
            .out_for_signature(
                &app.tenant.live_key,
                json!({"name": "NDA", "signers": [
                    {"name": "Ada Lovelace", "email": "ada@example.com"},
                    {"name": "Nobody", "email": "bounce@example.com"}
                ]}),
            )
            .await;
        let id = request["id"].as_str().unwrap();
        let events = events_of(&receiver, id, 4).await;
        assert_eq!(types(&events)[3], "signer.invite_undelivered");
        assert_eq!(events[3]["data"]["signer"]["email"], "bounce@example.com");
        // Ada's invitation went out by e-mail, with her signing link.
        let messages = smtp.wait_for_message().await;
        let ada = signing_url(&request, 0);
        let mail = messages
            .iter()
            .map(|raw| Mail::parse(raw))
            .find(|mail| mail.header("to").is_some_and(|to| to.contains("ada@example.com")))
            .expect("an invitation to Ada");
        // A message every client renders: MIME, identified, dated, in plain
        // text and HTML, each part carrying the exact link.
        assert_eq!(mail.header("mime-version").as_deref(), Some("1.0"), "{mail:?}");
        assert!(mail.header("content-type").unwrap().starts_with("multipart/alternative"), "{mail:?}");
        assert!(mail.header("message-id").is_some_and(|id| id.starts_with('<') && id.ends_with('>')));
        assert!(mail.header("date").is_some());
        // Who asks, for what, by when.
        let tenant = app.db.query_texts(&format!("SELECT name FROM tenants WHERE id = '{}'", app.tenant.id)).await;
        let sender = &tenant[0];
        assert_eq!(
            mail.header("subject").unwrap(),
            format!("{sender} asks you to sign \u{201c}NDA\u{201d}")
        );
        assert!(mail.header("from").unwrap().starts_with(&format!("\"{sender} via ")), "{mail:?}");
        let kinds: Vec<&str> = mail.parts.iter().map(|(kind, _)| kind.as_str()).collect();
        assert_eq!(kinds, ["text/plain; charset=utf-8", "text/html; charset=utf-8"]);
        let (_, text) = &mail.parts[0];
        let (_, html) = &mail.parts[1];
        assert!(text.lines().any(|line| line == ada), "the link whole on a line of its own: {text}");
        assert!(html.contains(&format!("href=\"{}\"", ada.replace('&', "&amp;"))), "{html}");
        let deadline = signhook_core::time::readable(
            chrono::DateTime::parse_from_rfc3339(request["expires_at"].as_str().unwrap())
                .unwrap()
                .with_timezone(&chrono::Utc),
        );
        assert!(text.contains(&deadline) && html.contains(&deadline), "{deadline}: {text}");
        // The audit trail says how each invitation went: Ada's accepted by
        // the SMTP server, with its answer; the bounce refused for good.
        let trail = app
            .db
            .query_texts(&format!(
                "SELECT action || ': ' || detail FROM audit_trail WHERE signature_request_id = '{id}' \
                 AND action LIKE 'signer.invitation_%' ORDER BY action"
            ))
            .await;
        assert_eq!(trail.len(), 2, "{trail:?}");
        assert!(trail[0].starts_with("signer.invitation_emailed: e-mailed to Ada Lovelace <ada@example.com>; the SMTP server accepted it: 250"), "{trail:?}");
        assert!(trail[1].starts_with("signer.invitation_undeliverable: refused for good when e-mailed to Nobody <bounce@example.com>"), "{trail:?}");
        // And the link opens.
        let (status, signer_view) = app.visit(reqwest::Method::GET, &ada, None).await;
        assert_eq!(status, StatusCode::OK, "{signer_view}");
    }

    async fn a_transition_whose_transaction_fails_emits_nothing(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let receiver = subscribe_all(&app).await;
        let request = app.out_for_signature(&app.tenant.live_key, two_signers(false)).await;
        let id = request["id"].as_str().unwrap();
        events_of(&receiver, id, 3).await;
        // Inject a failure: the database refuses to write a signer.done event.
        let trigger = match backend {
            Backend::Sqlite => "CREATE TRIGGER refuse_signer_done BEFORE INSERT ON events WHEN NEW.type = 'signer.done' \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                .to_owned(),
            Backend::Postgres => "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN \
                 IF NEW.type = 'signer.done' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER refuse_signer_done BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse()"
                .to_owned(),
        };
        app.db.execute(&trigger).await.unwrap();
        let url = signing_url(&request, 0);
        let (status, body) = app.visit(reqwest::Method::POST, &format!("{url}/sign"), Some(signature(&json!("A Signer")))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert!(!body.to_string().contains("injected"), "no database text to clients: {body}");
        let (_, unchanged) = app.get(&format!("/v1/signature_requests/{id}")).await;
        assert_eq!(unchanged["signers"][0]["status"], "notified");
        assert_eq!(unchanged["sequence"], 3);
        // Once the database accepts again, the same act works and emits its event once.
        let drop = match backend {
            Backend::Sqlite => "DROP TRIGGER refuse_signer_done",
            Backend::Postgres => "DROP TRIGGER refuse_signer_done ON events",
        };
        app.db.execute(drop).await.unwrap();
        let (status, _) = app.visit(reqwest::Method::POST, &format!("{url}/sign"), Some(signature(&json!("A Signer")))).await;
        assert_eq!(status, StatusCode::OK);
        // The link was opened by the signing, in the same transaction: the
        // refused attempt left no `signer.link_opened` behind either.
        let events = events_of(&receiver, id, 5).await;
        assert_eq!(
            types(&events),
            ["signature_request.activated", "signer.notified", "signer.notified", "signer.link_opened", "signer.done"]
        );
        assert_sequences(&events);
        let (_, events_feed) = app.get("/v1/events?type=signer.done").await;
        assert_eq!(events_feed["data"].as_array().unwrap().len(), 1, "nothing half-written: {events_feed}");
    }
}
