//! Liveness and readiness.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process is up", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers, and takes this node's writes (after a
/// refused write, not before a probe write succeeds; see
/// [`StorageWatch`](crate::state::StorageWatch)).
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = String),
        (status = 503, description = "The database cannot be reached (`unavailable`), or refuses writes (`storage_unavailable`)", body = crate::error::ErrorBody)
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.store.ping().await.map_err(|_| ApiError::Unavailable)?;
    state.storage.ready(&state.store, state.clock.now()).await?;
    Ok("ready")
}

/// Prometheus metrics: attempts by result, attempt durations, the backlog of
/// due deliveries and its oldest age, disabled subscriptions.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl axum::response::IntoResponse, ApiError> {
    let now = state.clock.now();
    let (due, oldest) = state.store.delivery_backlog(now).await?;
    let metrics = &state.metrics;
    metrics.due.set(i64::try_from(due).unwrap_or(i64::MAX));
    metrics
        .oldest_due_seconds
        .set(oldest.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0));
    metrics
        .disabled
        .set(i64::try_from(state.store.disabled_subscription_count().await?).unwrap_or(i64::MAX));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry)
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}
