//! Extractors that turn a request into checked values or an [`ApiError`]:
//! the caller's identity ([`Auth`]), a JSON body ([`ApiJson`]) and query
//! parameters ([`ApiQuery`]). A bad input is rejected here, with the field
//! it concerns, before any handler runs.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use signhook_core::ids::TenantId;
use signhook_store::tenants::Principal;

/// The largest request body accepted by JSON routes.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// The authenticated caller: a tenant acting live or in the sandbox.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl Auth {
    /// The tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.0.tenant_id
    }

    /// Whether the key acts in the sandbox.
    pub fn sandbox(&self) -> bool {
        self.0.environment.is_sandbox()
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or(ApiError::Unauthorized(
            "send your API key as `Authorization: Bearer sk_live_…` or `sk_test_…`",
        ))?;
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized(
                "the Authorization header must be `Bearer ` followed by an API key",
            ))?;
        let Some(principal) = state.caches.authenticate(&state.store, key, state.clock.now()).await? else {
            return Err(ApiError::Unauthorized("the API key is not valid"));
        };
        if let Some(limit) = &state.rate_limit {
            limit.admit(&principal)?;
        }
        Ok(Auth(principal))
    }
}

/// What a JSON route's 415 asks for.
const JSON_BODY: &str = "JSON with `content-type: application/json`";

/// A JSON body of type `T`, parsed strictly: malformed JSON is a 400, a
/// value of the wrong type or an unknown field a 422 naming the field, a
/// body over [`MAX_JSON_BODY`] a 413.
#[derive(Debug)]
pub struct ApiJson<T>(pub T, pub Bytes);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType { expected: JSON_BODY });
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            ApiError::unreadable_body(rejection.status(), &rejection, rejection.body_text(), || {
                ApiError::PayloadTooLarge { limit: MAX_JSON_BODY }
            })
        })?;
        // serde would also take an array for a struct; a request body is
        // always an object.
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|b| *b != b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() {
            return Err(ApiError::validation("body", "the body must be a JSON object"));
        }
        let value = parse_json(&bytes)?;
        Ok(ApiJson(value, bytes))
    }
}

/// A JSON body that may be left out: an empty body is `T::default()`,
/// anything else must be a JSON object sent as `application/json`.
pub fn optional_json<T: DeserializeOwned + Default>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType { expected: JSON_BODY });
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::validation("body", "the body must be a JSON object"));
    }
    parse_json(body)
}

/// Whether the body is declared as `application/json` (parameters such as
/// `charset` allowed).
fn is_json(headers: &HeaderMap) -> bool {
    declared_as(headers, "application/json")
}

/// Whether the body is a form, as a page posts it
/// (`application/x-www-form-urlencoded`).
pub fn is_form(headers: &HeaderMap) -> bool {
    declared_as(headers, "application/x-www-form-urlencoded")
}

/// Whether `Content-Type` names `media` (parameters allowed).
fn declared_as(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(media))
}

/// An RFC 3339 instant given in `field`, or a 422 naming the field.
pub fn instant(field: &str, text: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| {
            ApiError::validation(
                field,
                format!("{field} must be an RFC 3339 time such as 2026-11-22T10:00:00Z"),
            )
        })
}

/// Parses a JSON body, telling syntax errors (400) from value errors (422).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => ApiError::BadRequest {
                code: "malformed_json",
                message: format!("the body is not valid JSON: {inner}"),
            },
            serde_json::error::Category::Data => {
                let message = strip_position(&inner.to_string());
                // A missing field is reported at its parent's path (`.` for
                // the top level); name the field itself.
                let field = match (path.as_str(), named_field(&message)) {
                    (".", Some(name)) => name.to_owned(),
                    (".", None) => "body".to_owned(),
                    _ => path,
                };
                ApiError::validation(field, message)
            }
        }
    })
}

/// The field serde names in "unknown field `x`" or "missing field `x`".
fn named_field(message: &str) -> Option<&str> {
    ["unknown field `", "missing field `"].iter().find_map(|marker| {
        let start = message.find(marker)? + marker.len();
        message[start..].split('`').next()
    })
}

/// Drops serde_json's " at line 1 column 23" suffix, which means nothing to
/// an API client.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Query parameters of type `T`; a bad one is a 422 naming it.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| {
                let text = rejection.body_text();
                let message = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text)
                    .to_owned();
                // serde_urlencoded says "name: what is wrong" for a bad value.
                let field = named_field(&message)
                    .or_else(|| {
                        message
                            .split_once(": ")
                            .map(|(name, _)| name)
                            .filter(|n| !n.contains(' '))
                    })
                    .unwrap_or("query")
                    .to_owned();
                ApiError::validation(field, message)
            })
    }
}

/// The `Idempotency-Key` header, if sent: 1 to 255 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || ApiError::BadRequest {
        code: "invalid_idempotency_key",
        message: "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
    };
    let key = value.to_str().map_err(|_| bad())?.trim();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}

/// The page size of listings: 1 to 100, 20 when not given.
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(20),
        Some(n @ 1..=100) => Ok(n),
        Some(_) => Err(ApiError::validation("limit", "limit must be between 1 and 100")),
    }
}

/// The longest `User-Agent` kept in the audit trail.
pub const MAX_USER_AGENT: usize = 512;

/// Who is on the other end of the connection: the peer's IP address and
/// `User-Agent`, for the audit trail of signature requests. The IP is the
/// TCP peer's; behind a reverse proxy that is the proxy.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The peer's IP address.
    pub ip: Option<std::net::IpAddr>,
    /// The `User-Agent` header, cut to [`MAX_USER_AGENT`] characters.
    pub user_agent: Option<String>,
}

impl Client {
    /// As the store records it.
    pub fn origin(&self) -> signhook_store::signature_requests::Origin {
        signhook_store::signature_requests::Origin {
            ip: self.ip.map(|ip| ip.to_string()),
            user_agent: self.user_agent.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
        Ok(Client { ip, user_agent })
    }
}

/// A body posted by a person's page as a form
/// (`application/x-www-form-urlencoded`), or by an API client as JSON
/// (read like [`ApiJson`]). The routes people reach in a browser answer a
/// form with a page and JSON with JSON.
#[derive(Debug)]
pub enum Submitted<T> {
    /// From a page's form.
    Form(T),
    /// From an API client.
    Json(T),
}

impl<T> Submitted<T> {
    /// How to answer it.
    pub fn face(&self) -> crate::pages::Face {
        match self {
            Submitted::Form(_) => crate::pages::Face::Page,
            Submitted::Json(_) => crate::pages::Face::Json,
        }
    }

    /// The body.
    pub fn into_inner(self) -> T {
        match self {
            Submitted::Form(body) | Submitted::Json(body) => body,
        }
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for Submitted<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if !is_form(req.headers()) {
            return ApiJson::from_request(req, state)
                .await
                .map(|ApiJson(body, _)| Submitted::Json(body));
        }
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|axum::Form(body)| Submitted::Form(body))
            .map_err(|rejection| {
                let text = rejection.body_text();
                let message = text
                    .strip_prefix("Failed to deserialize form body: ")
                    .unwrap_or(&text)
                    .to_owned();
                let field = named_field(&message).unwrap_or("body").to_owned();
                ApiError::validation(field, message)
            })
    }
}
