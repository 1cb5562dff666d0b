//! Recovery: `POST /v1/webhooks/{id}/recover` resends every failed (or
//! canceled-while-disabled) delivery of a window as a durable job;
//! `GET /v1/recoveries/{id}` shows its progress.

use crate::error::ApiError;
use crate::extract::{instant, ApiJson, Auth};
use crate::routes::path_id;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use signhook_core::ids::{RecoveryId, SubscriptionId};
use signhook_core::time::rfc3339;
use signhook_store::recoveries::Recovery;
use utoipa::ToSchema;

/// What to recover.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRecovery {
    /// Resend deliveries of events from this instant on (RFC 3339).
    pub since: String,
    /// …up to, not including, this one (RFC 3339); now when absent.
    pub until: Option<String>,
}

/// A recovery job.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryView {
    /// `rcv_…`
    pub id: String,
    /// The subscription (`wh_…`).
    pub webhook_id: String,
    /// The window's start.
    pub since: String,
    /// The window's end, if one was given.
    pub until: Option<String>,
    /// `running` or `done`.
    pub status: String,
    /// Failed or canceled deliveries in the window when the job started
    /// (deliveries that fail later, inside the window, are resent too).
    pub total: u64,
    /// Deliveries queued again so far.
    pub resent: u64,
    /// When it started.
    pub created_at: String,
    /// When it finished.
    pub finished_at: Option<String>,
}

impl From<Recovery> for RecoveryView {
    fn from(r: Recovery) -> Self {
        Self {
            id: r.id.to_string(),
            webhook_id: r.subscription_id.to_string(),
            since: rfc3339(r.since),
            until: r.until.map(rfc3339),
            status: r.status.as_str().to_owned(),
            total: r.total,
            resent: r.resent,
            created_at: rfc3339(r.created_at),
            finished_at: r.finished_at.map(rfc3339),
        }
    }
}

/// Starts resending every failed delivery of this subscription in the window
/// (and every one canceled while it was disabled), each on a fresh retry
/// schedule. The job survives restarts; follow it at `/v1/recoveries/{id}`.
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/recover", tag = "deliveries", security(("api_key" = [])),
    params(("id" = String, Path, description = "`wh_…`")),
    request_body = StartRecovery,
    responses(
        (status = 202, body = RecoveryView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "The webhook is disabled", body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)
    )
)]
pub async fn start(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(body, _): ApiJson<StartRecovery>,
) -> Result<(StatusCode, Json<RecoveryView>), ApiError> {
    let job = start_recovery(&state, &auth, &id, &body).await?;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

/// Checks `body` and starts the recovery of webhook `id`: what the API's
/// `…/recover` and the dashboard's form both do.
pub(crate) async fn start_recovery(
    state: &AppState,
    auth: &Auth,
    id: &str,
    body: &StartRecovery,
) -> Result<Recovery, ApiError> {
    let sub_id = path_id(id, "webhook", SubscriptionId::parse)?;
    let since = instant("since", &body.since)?;
    let until = body.until.as_deref().map(|u| instant("until", u)).transpose()?;
    if until.is_some_and(|until| until <= since) {
        return Err(ApiError::validation("until", "until must be after since"));
    }
    let sub = state
        .store
        .get_subscription(auth.tenant(), auth.sandbox(), &sub_id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", id))?;
    if !sub.enabled {
        return Err(crate::routes::deliveries::refusal(
            signhook_store::deliveries::ResendRefusal::SubscriptionDisabled,
        ));
    }
    let job = state
        .store
        .create_recovery(auth.tenant(), auth.sandbox(), &sub_id, since, until, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", id))?;
    state.jobs.notify_one();
    Ok(job)
}

/// A recovery job's progress.
#[utoipa::path(
    get, path = "/v1/recoveries/{id}", tag = "deliveries", security(("api_key" = [])),
    params(("id" = String, Path, description = "`rcv_…`")),
    responses((status = 200, body = RecoveryView), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<RecoveryView>, ApiError> {
    let job_id = path_id(&id, "recovery", RecoveryId::parse)?;
    let job = state
        .store
        .get_recovery(auth.tenant(), auth.sandbox(), &job_id)
        .await?
        .ok_or_else(|| ApiError::not_found("recovery", &id))?;
    Ok(Json(job.into()))
}
