//! The delivery log: `GET /v1/deliveries/{id}` with its attempts, and
//! `GET /v1/webhooks/{id}/deliveries?status=&event_type=&event_id=&since=&until=`.

use crate::error::ApiError;
use crate::extract::{instant, page_limit, ApiQuery, Auth};
use crate::routes::{list_type, path_id};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use signhook_core::delivery::DeliveryStatus;
use signhook_core::ids::{DeliveryId, EventId, SubscriptionId};
use signhook_core::time::rfc3339;
use signhook_store::deliveries::{Attempt, Delivery, DeliveryQuery, ResendRefusal};
use utoipa::{IntoParams, ToSchema};

/// A delivery: one event to one subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// `dlv_…`
    pub id: String,
    /// The event (`evt_…`), also the `webhook-id` header of every attempt.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The subscription (`wh_…`).
    pub webhook_id: String,
    /// `pending`, `succeeded`, `failed` (dead-lettered) or `canceled`.
    pub status: String,
    /// Attempts made so far.
    pub attempt_count: u32,
    /// When the next attempt is due, as scheduled, while pending (also
    /// while it is being sent).
    pub next_attempt_at: Option<String>,
    /// When the last attempt started.
    pub last_attempt_at: Option<String>,
    /// When it was created.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// Every attempt, oldest first (in the single-delivery view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptView>>,
}

/// One attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// `att_…`
    pub id: String,
    /// 1 for the first try.
    pub attempt_number: u32,
    /// When it was due: the publish, the retry's scheduled time, the resend.
    /// `started_at` minus this is how late it left. Null for attempts made
    /// before Signhook kept it.
    pub scheduled_at: Option<String>,
    /// When the request started.
    pub started_at: String,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The answer's status code, if one came.
    pub status_code: Option<u16>,
    /// The first 4 KiB of the answer's body.
    pub response_body: Option<String>,
    /// `timeout`, `connect`, `tls`, `dns`, `blocked` or `http`; null on success.
    pub error_kind: Option<String>,
    /// What went wrong, in words.
    pub error_message: Option<String>,
    /// The node that sent it.
    pub node_id: String,
    /// Where a 3xx answer pointed (redirects are not followed).
    pub location: Option<String>,
}

impl DeliveryView {
    /// The view of a delivery, with its attempts when given.
    pub fn new(d: Delivery, attempts: Option<Vec<Attempt>>) -> Self {
        Self {
            id: d.id.to_string(),
            event_id: d.event_id.to_string(),
            event_type: d.event_type,
            webhook_id: d.subscription_id.to_string(),
            status: d.status.as_str().to_owned(),
            attempt_count: d.attempt_count,
            next_attempt_at: d
                .next_attempt_at
                .filter(|_| d.status == DeliveryStatus::Pending)
                .map(rfc3339),
            last_attempt_at: d.last_attempt_at.map(rfc3339),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
            attempts: attempts.map(|list| list.into_iter().map(AttemptView::from).collect()),
        }
    }
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        Self {
            id: a.id.to_string(),
            attempt_number: a.attempt_number,
            scheduled_at: a.scheduled_at.map(rfc3339),
            started_at: rfc3339(a.started_at),
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            response_body: a.response_body,
            error_kind: a.error_kind.map(|k| k.as_str().to_owned()),
            error_message: a.error_message,
            node_id: a.node_id,
            location: a.location,
        }
    }
}

list_type!(DeliveryList, DeliveryView, "A page of deliveries, newest first.");

/// Delivery listing parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    /// `pending`, `succeeded`, `failed` (the dead letters) or `canceled`.
    pub status: Option<String>,
    /// Only deliveries of events of this type (`signer.done`).
    pub event_type: Option<String>,
    /// Only the delivery of this event (`evt_…`).
    pub event_id: Option<String>,
    /// Only deliveries created at or after this instant (RFC 3339).
    pub since: Option<String>,
    /// Only deliveries created before this instant (RFC 3339).
    pub until: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<u32>,
}

impl DeliveryParams {
    /// The store's query these parameters ask for, or the first refused
    /// parameter; what the API's log and the dashboard's both read.
    pub(crate) fn query(&self) -> Result<DeliveryQuery, ApiError> {
        let status = self
            .status
            .as_deref()
            .map(|s| {
                DeliveryStatus::parse(s).ok_or_else(|| {
                    ApiError::validation("status", "status must be one of pending, succeeded, failed, canceled")
                })
            })
            .transpose()?;
        let event_id = self
            .event_id
            .as_deref()
            .map(|id| EventId::parse(id).map_err(|e| ApiError::validation("event_id", format!("event_id: {e}"))))
            .transpose()?;
        let since = self.since.as_deref().map(|t| instant("since", t)).transpose()?;
        let until = self.until.as_deref().map(|t| instant("until", t)).transpose()?;
        if let (Some(since), Some(until)) = (since, until) {
            if until <= since {
                return Err(ApiError::validation("until", "until must be after since"));
            }
        }
        let before = self
            .cursor
            .as_deref()
            .map(|c| DeliveryId::parse(c).map_err(|e| ApiError::validation("cursor", e.to_string())))
            .transpose()?;
        Ok(DeliveryQuery {
            status,
            event_type: self.event_type.clone(),
            event_id,
            since,
            until,
            before,
        })
    }
}

/// One delivery with every attempt.
#[utoipa::path(
    get, path = "/v1/deliveries/{id}", tag = "deliveries", security(("api_key" = [])),
    params(("id" = String, Path, description = "`dlv_…`")),
    responses((status = 200, body = DeliveryView), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<DeliveryView>, ApiError> {
    let delivery_id = path_id(&id, "delivery", DeliveryId::parse)?;
    let (delivery, attempts) = state
        .store
        .get_delivery(auth.tenant(), auth.sandbox(), &delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery", &id))?;
    Ok(Json(DeliveryView::new(delivery, Some(attempts))))
}

/// A subscription's deliveries, newest first; `status=failed` lists its
/// dead letters.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}/deliveries", tag = "deliveries", security(("api_key" = [])),
    params(("id" = String, Path, description = "`wh_…`"), DeliveryParams),
    responses((status = 200, body = DeliveryList), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody))
)]
pub async fn list_for_webhook(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<DeliveryParams>,
) -> Result<Json<DeliveryList>, ApiError> {
    let sub_id = path_id(&id, "webhook", SubscriptionId::parse)?;
    // Deleted subscriptions are gone from this route, like from GET.
    state
        .store
        .get_subscription(auth.tenant(), auth.sandbox(), &sub_id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", &id))?;
    let query = params.query()?;
    let limit = page_limit(params.limit)?;
    let page = state.store.list_deliveries(&sub_id, &query, limit).await?;
    let next_cursor = page
        .has_more
        .then(|| page.items.last().map(|d| d.id.to_string()))
        .flatten();
    Ok(Json(DeliveryList {
        data: page.items.into_iter().map(|d| DeliveryView::new(d, None)).collect(),
        has_more: page.has_more,
        next_cursor,
    }))
}

/// Loads a delivery of the caller's for a response.
pub(crate) async fn view(state: &AppState, auth: &Auth, id: &DeliveryId) -> Result<DeliveryView, ApiError> {
    let (delivery, attempts) = state
        .store
        .get_delivery(auth.tenant(), auth.sandbox(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery", id.as_str()))?;
    Ok(DeliveryView::new(delivery, Some(attempts)))
}

/// Turns a refused resend into its 409.
pub(crate) fn refusal(refusal: ResendRefusal) -> ApiError {
    let (code, message) = match refusal {
        ResendRefusal::StillPending => (
            "delivery_pending",
            "the delivery is still pending: it will be attempted anyway; resend it once it has failed",
        ),
        ResendRefusal::SubscriptionDisabled => (
            "webhook_disabled",
            "the webhook is disabled; enable it first (PATCH /v1/webhooks/{id} {\"enabled\": true})",
        ),
    };
    ApiError::Conflict {
        code,
        message: message.to_owned(),
        field: None,
    }
}

/// Sends a delivery again now — a dead letter, a canceled one, or a
/// succeeded one to replay it — on a fresh retry schedule, with the same
/// `webhook-id`.
#[utoipa::path(
    post, path = "/v1/deliveries/{id}/resend", tag = "deliveries", security(("api_key" = [])),
    params(("id" = String, Path, description = "`dlv_…`")),
    responses(
        (status = 202, description = "Queued; it is attempted at once", body = DeliveryView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "Still pending, or its webhook is disabled", body = crate::error::ErrorBody)
    )
)]
pub async fn resend(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    let delivery_id = path_id(&id, "delivery", DeliveryId::parse)?;
    state
        .store
        .resend_delivery(auth.tenant(), auth.sandbox(), &delivery_id, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found("delivery", &id))?
        .map_err(refusal)?;
    Ok((StatusCode::ACCEPTED, Json(view(&state, &auth, &delivery_id).await?)))
}
