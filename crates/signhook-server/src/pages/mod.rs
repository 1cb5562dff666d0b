//! Pages for people, rendered on the server (DESIGN §9).
//!
//! Templates live in `crates/signhook-server/templates/` and are compiled
//! into the binary by askama, HTML-escaped by default; the one stylesheet is
//! embedded too and served at `/assets/signhook.css`. No script: every
//! action is a plain form `POST` answered by a redirect (or by the same page
//! with the refused field marked), so a page works on any browser, on a
//! phone, and with assistive technology.
//!
//! # Layout
//!
//! - this module: content negotiation ([`Face`]), the headers every page
//!   carries ([`page`]), the page for a link that cannot be served
//!   ([`problem`]), and the stylesheet;
//! - [`person`]: the page behind a signer's or an approver's link;
//! - the dashboard (at `/`): [`session`] (who is signed in, CSRF, the
//!   environment shown), [`frame`] (the navigation and the live/sandbox
//!   switch around every page, the form reader), [`account`] (log in, set a
//!   password from a one-time link, log out), [`webhooks`] (the tenant's
//!   endpoints, the form that adds or edits one), [`endpoint`] (one
//!   endpoint's page and buttons, its delivery log), [`deliveries`] (one
//!   delivery with its attempts), [`health`] (an endpoint's success rate
//!   and latency, drawn), [`portal`] (the same webhook pages for a
//!   platform's customers, in an iframe of the platform's app),
//!   [`api_keys`] (the keys: make one, shown once; revoke one), [`team`]
//!   (the tenant's users: invite, change a role, remove),
//!   [`events`] (the event catalog, the events feed, one event with its
//!   deliveries), [`signature_requests`] (the requests, one request with
//!   its people, documents, timeline and files).
//!
//! The routes stay in [`routes`](crate::routes): a route that people open in
//! a browser asks for its [`Face`] and answers a page or JSON from the same
//! state.

pub mod account;
pub mod api_keys;
pub mod deliveries;
pub mod endpoint;
pub mod events;
pub mod frame;
pub mod health;
pub mod person;
pub mod portal;
pub mod session;
pub mod signature_requests;
pub mod team;
pub mod webhooks;

use crate::error::ApiError;
use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The stylesheet, embedded.
const STYLESHEET: &str = include_str!("../../assets/signhook.css");

/// What a page may load and who may frame it: only our own stylesheet and
/// documents, forms posted only to us, never framed by another site, no
/// script at all.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; frame-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `GET /assets/signhook.css`.
pub async fn stylesheet() -> Response {
    let mut response = STYLESHEET.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}

/// How a client wants its answers: a browser gets a page, an API client
/// JSON. Decided by `Accept`: a page only when `text/html` is asked for and
/// preferred to `application/json` (so `*/*`, curl's default, and no
/// `Accept` at all keep JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// An HTML page.
    Page,
    /// The JSON of the API.
    Json,
}

impl Face {
    /// The face `headers` ask for.
    pub fn of(headers: &HeaderMap) -> Self {
        let accept = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        let (mut html, mut json) = (0.0_f32, 0.0_f32);
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "text/html" | "application/xhtml+xml" => html = html.max(q),
                "application/json" => json = json.max(q),
                "*/*" | "application/*" => json = json.max(q),
                _ => {}
            }
        }
        if html > 0.0 && html > json {
            Face::Page
        } else {
            Face::Json
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Face {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Face::of(&parts.headers))
    }
}

/// A rendered page with `status` and the headers every page carries: the
/// content security policy, no framing, no referrer (a page's address is a
/// credential), not cached.
pub fn page(status: StatusCode, template: &impl Template) -> Response {
    let body = match template.render() {
        Ok(body) => body,
        // A template that compiled renders; this only fails if a value's
        // Display fails, which ours do not.
        Err(e) => return ApiError::Internal(Box::new(e)).into_response(),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    protect(headers);
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// A dashboard page: as [`page`], but its address is no secret, so the
/// browser may tell this server where a form came from (`Referrer-Policy:
/// same-origin`), which the dashboard's forms check (`Origin`).
pub fn dashboard_page(status: StatusCode, template: &impl Template) -> Response {
    let mut response = page(status, template);
    response
        .headers_mut()
        .insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// The headers of anything served through a personal link: no referrer
/// (the address is the credential), not cached, types not sniffed.
pub fn protect(headers: &mut HeaderMap) {
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// A 303 to `location` (relative to the request's own address), the answer
/// to a form that did what it asked.
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    protect(response.headers_mut());
    response
}

/// The page for a link that cannot be served.
#[derive(Template)]
#[template(path = "problem.html")]
struct Problem<'a> {
    heading: &'a str,
    message: String,
}

/// A problem page with its own `heading` and `message`.
pub fn problem_with(status: StatusCode, heading: &str, message: String) -> Response {
    page(status, &Problem { heading, message })
}

/// `error` as a page, with its status.
pub fn problem(error: ApiError) -> Response {
    let status = error.status();
    let heading = match status {
        StatusCode::NOT_FOUND => "This link is not valid",
        StatusCode::GONE => "This link no longer works",
        s if s.is_server_error() => "Something went wrong",
        _ => "This cannot be done",
    };
    if let ApiError::Internal(cause) = &error {
        tracing::error!(error = %crate::error::error_chain(cause.as_ref()), "page failed");
    }
    let message = if status.is_server_error() {
        "Signhook could not answer just now. Try again in a minute.".to_owned()
    } else {
        error.to_string()
    };
    page(status, &Problem { heading, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(accept: Option<&str>) -> Face {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        }
        Face::of(&headers)
    }

    #[test]
    fn browsers_get_pages_and_api_clients_json() {
        // Chromium's and Firefox's Accept for a page.
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
        assert_eq!(face(Some(browser)), Face::Page);
        assert_eq!(face(Some("text/html")), Face::Page);
        for api in [
            None,
            Some("*/*"),
            Some("application/json"),
            Some("application/json, text/html;q=0.5"),
        ] {
            assert_eq!(face(api), Face::Json, "{api:?}");
        }
        assert_eq!(face(Some("text/html;q=0, */*")), Face::Json);
    }
}
