//! Liveness and readiness.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process is up", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = String),
        (status = 503, description = "The database cannot be reached", body = crate::error::ErrorBody)
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.store.ping().await.map_err(|_| ApiError::Unavailable)?;
    Ok("ready")
}
