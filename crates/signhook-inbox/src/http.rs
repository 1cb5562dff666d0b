//! The inbox's two listeners.
//!
//! The senders' listener: `POST {source path}` per source. Verified, then
//! stored (group commit), then `200 {"event_id", "duplicate"}`; a request
//! that fails verification is `401` with `{"error": {"code", "message",
//! "field"}}` naming the header at fault — counted, never stored. Any
//! other path is a 404; a store failure a 503 (the sender retries).
//!
//! The admin listener: `/healthz` (the process runs), `/readyz` (the
//! database answers), `/metrics`, and the routes of `signhook inbox
//! list|show|replay`: `GET /admin/requests[?status=&limit=]`,
//! `GET /admin/requests/{event_id}`, `POST /admin/requests/{event_id}/replay`,
//! `POST /admin/dead-letters/replay[?since=RFC 3339]`. With an admin
//! token, every route but `/healthz` and `/readyz` wants
//! `Authorization: Bearer {token}`.

use crate::intake::{Intake, IntakeError, Receipt};
use crate::metrics::InboxMetrics;
use crate::settings::Source;
use crate::verify::{ordering_key, Verifier};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use signhook_core::time::Clock;
use signhook_store::inbox::{InboxStore, NewRequest, RequestStatus};
use std::sync::Arc;
use std::time::Instant;
use subtle::ConstantTimeEq;

/// The DESIGN §7 error body.
fn error(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message, "field": field}})),
    )
        .into_response()
}

struct SourceState {
    source: Arc<Source>,
    verifier: Verifier,
    intake: Intake,
    metrics: InboxMetrics,
    clock: Arc<dyn Clock>,
}

/// The senders' routes, one per source.
pub fn ingest_router(sources: &[Arc<Source>], intake: Intake, metrics: InboxMetrics, clock: Arc<dyn Clock>) -> Router {
    let mut router = Router::new();
    for source in sources {
        let state = Arc::new(SourceState {
            verifier: Verifier::new(source),
            source: source.clone(),
            intake: intake.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
        });
        router = router.route(&source.path, post(receive).with_state(state));
    }
    router.fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no source has this path", None) })
}

async fn receive(State(state): State<Arc<SourceState>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let now = state.clock.now();
    let name = state.source.name.as_str();
    let event_id = match state.verifier.verify(&headers, &body, now.timestamp()) {
        Ok(id) => id,
        Err(rejection) => {
            state.metrics.rejected(name, rejection.reason);
            tracing::info!(source = name, reason = rejection.reason, "request refused");
            return error(
                StatusCode::UNAUTHORIZED,
                rejection.reason,
                &rejection.message,
                Some(&rejection.field),
            );
        }
    };
    let request = NewRequest {
        source: name.to_owned(),
        event_id: event_id.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        ordering_key: state
            .source
            .ordering_key
            .as_deref()
            .and_then(|p| ordering_key(&body, p)),
        body: body.to_vec(),
        received_at: now,
    };
    match state.intake.receive(request).await {
        Ok(receipt) => {
            let duplicate = receipt == Receipt::Duplicate;
            if duplicate {
                state.metrics.duplicate(name, started.elapsed());
            } else {
                state.metrics.received(name, started.elapsed());
            }
            (
                StatusCode::OK,
                Json(json!({"event_id": event_id, "duplicate": duplicate})),
            )
                .into_response()
        }
        Err(IntakeError::Stopped) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the inbox is shutting down; send it again",
            None,
        ),
        Err(IntakeError::Failed(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the request could not be stored; send it again",
            None,
        ),
    }
}

#[derive(Clone)]
struct AdminState {
    store: InboxStore,
    metrics: InboxMetrics,
    token: Option<Arc<str>>,
    clock: Arc<dyn Clock>,
}

/// The admin routes.
pub fn admin_router(store: InboxStore, metrics: InboxMetrics, token: Option<String>, clock: Arc<dyn Clock>) -> Router {
    let state = AdminState {
        store,
        metrics,
        token: token.map(Arc::from),
        clock,
    };
    let guarded = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/admin/requests", get(list))
        .route("/admin/requests/{event_id}", get(show))
        .route("/admin/requests/{event_id}/replay", post(replay))
        .route("/admin/dead-letters/replay", post(replay_dead))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .merge(guarded)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such admin route", None) })
        .with_state(state)
}

async fn require_token(
    State(state): State<AdminState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the admin routes want `Authorization: Bearer` and the inbox's admin token",
                Some("authorization"),
            );
        }
    }
    next.run(request).await
}

fn unavailable(e: signhook_store::StoreError) -> Response {
    tracing::error!(error = %signhook_core::error_chain(&e), "inbox database");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the inbox's database did not answer",
        None,
    )
}

async fn ready(State(state): State<AdminState>) -> Response {
    match state.store.pending_count().await {
        Ok(pending) => Json(json!({"status": "ready", "pending": pending})).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    match state.store.pending_count().await {
        Ok(depth) => (
            [(
                http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            state.metrics.encode(depth),
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
}

async fn list(State(state): State<AdminState>, Query(query): Query<ListQuery>) -> Response {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some("pending") => Some(RequestStatus::Pending),
        Some("forwarded") => Some(RequestStatus::Forwarded),
        Some("dead") => Some(RequestStatus::Dead),
        Some(other) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_status",
                &format!("`{other}` is not a status; expected pending, forwarded or dead"),
                Some("status"),
            )
        }
    };
    let limit = match query.limit.as_deref().map(str::parse::<u32>) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_limit",
                "limit is a whole number from 1 to 1000",
                Some("limit"),
            )
        }
    };
    match state.store.list(status, limit).await {
        Ok(requests) => Json(json!({"data": requests})).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn show(State(state): State<AdminState>, Path(event_id): Path<String>) -> Response {
    match state.store.show(&event_id).await {
        Ok(Some(detail)) => {
            let mut shown = serde_json::to_value(&detail).unwrap_or_default();
            // The body as text when it is UTF-8 (JSON, mostly), else base64.
            match std::str::from_utf8(&detail.body) {
                Ok(text) => shown["body"] = json!(text),
                Err(_) => shown["body_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&detail.body)),
            }
            Json(shown).into_response()
        }
        Ok(None) => not_received(&event_id),
        Err(e) => unavailable(e),
    }
}

fn not_received(event_id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no request with event id `{event_id}` (purged after its retention, or never received)"),
        Some("event_id"),
    )
}

async fn replay(State(state): State<AdminState>, Path(event_id): Path<String>) -> Response {
    match state.store.replay(&event_id, state.clock.now()).await {
        Ok(Some(before)) => Json(json!({"event_id": event_id, "was": before, "status": "pending"})).into_response(),
        Ok(None) => not_received(&event_id),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct SinceQuery {
    since: Option<String>,
}

async fn replay_dead(State(state): State<AdminState>, Query(query): Query<SinceQuery>) -> Response {
    let since = match query.since.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => match DateTime::parse_from_rfc3339(text) {
            Ok(at) => Some(at.with_timezone(&Utc)),
            Err(_) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_since",
                    "since is an RFC 3339 time such as 2026-12-07T10:00:00Z",
                    Some("since"),
                )
            }
        },
    };
    match state.store.replay_dead(since, state.clock.now()).await {
        Ok(replayed) => Json(json!({"replayed": replayed})).into_response(),
        Err(e) => unavailable(e),
    }
}
