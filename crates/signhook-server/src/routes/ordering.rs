//! Ordered delivery (DESIGN §10): `GET /v1/webhooks/{id}/blocked_keys`,
//! the keys waiting behind a failed delivery, and
//! `POST /v1/deliveries/{id}/skip`, which lets a key move on past a dead
//! letter on purpose.

use crate::error::ApiError;
use crate::extract::{ApiQuery, Auth};
use crate::routes::deliveries::DeliveryView;
use crate::routes::path_id;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use signhook_core::ids::{DeliveryId, SubscriptionId};
use signhook_core::time::rfc3339;
use signhook_store::ordering::{BlockedKey, SkipRefusal};
use utoipa::{IntoParams, ToSchema};

/// A key whose deliveries wait behind a failed one.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlockedKeyView {
    /// The key: a signature request id (`"ordering": "signature_request"`)
    /// or a published `ordering_key`.
    pub key: String,
    /// The delivery holding the key (`dlv_…`): resend it (or, when it is
    /// `failed`, skip it) to let the key move on.
    pub blocking_delivery_id: String,
    /// `failed` (dead-lettered under `"ordering_on_failure": "block"`) or
    /// `pending` (failed, waiting for its retry).
    pub blocking_status: String,
    /// Its attempts so far.
    pub blocking_attempts: u32,
    /// When it is next attempted (pending only).
    pub blocking_next_attempt_at: Option<String>,
    /// Deliveries of the key waiting behind it.
    pub waiting: u64,
    /// When the oldest of them was created.
    pub since: String,
}

impl From<&BlockedKey> for BlockedKeyView {
    fn from(b: &BlockedKey) -> Self {
        Self {
            key: b.key.clone(),
            blocking_delivery_id: b.blocking_delivery_id.to_string(),
            blocking_status: b.blocking_status.as_str().to_owned(),
            blocking_attempts: b.blocking_attempts,
            blocking_next_attempt_at: b.blocking_next_attempt_at.map(rfc3339),
            waiting: b.waiting,
            since: rfc3339(b.since),
        }
    }
}

/// The blocked keys of a subscription, held longest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlockedKeyList {
    /// Up to `limit` keys.
    pub data: Vec<BlockedKeyView>,
    /// Whether more keys are blocked than listed.
    pub has_more: bool,
}

/// Listing parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BlockedParams {
    /// How many keys at most, 1 to 100 (default 20).
    pub limit: Option<u32>,
}

/// The keys of this subscription whose deliveries wait behind a failed
/// delivery — a dead letter under `"ordering_on_failure": "block"`, or one
/// waiting for its retry — with the delivery that holds each. Keys waiting
/// only for a first attempt in flight are not blocked and not listed.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}/blocked_keys", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "`wh_…`"), BlockedParams),
    responses(
        (status = 200, body = BlockedKeyList),
        (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)
    )
)]
pub async fn blocked_keys(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<BlockedParams>,
) -> Result<Json<BlockedKeyList>, ApiError> {
    let limit = crate::extract::page_limit(params.limit)?;
    let sub_id = path_id(&id, "webhook", SubscriptionId::parse)?;
    let sub = state
        .store
        .get_subscription(auth.tenant(), auth.sandbox(), &sub_id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", &id))?;
    let page = state.store.blocked_keys(&sub.id, limit).await?;
    Ok(Json(BlockedKeyList {
        data: page.items.iter().map(Into::into).collect(),
        has_more: page.has_more,
    }))
}

/// Skips a dead letter on purpose: it becomes `canceled` (it can still be
/// resent later), and an ordered key blocked behind it moves on to its
/// next delivery. Only a `failed` delivery can be skipped.
#[utoipa::path(
    post, path = "/v1/deliveries/{id}/skip", tag = "deliveries", security(("api_key" = [])),
    params(("id" = String, Path, description = "`dlv_…`")),
    responses(
        (status = 200, description = "Skipped: now `canceled`", body = DeliveryView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "Not a dead letter", body = crate::error::ErrorBody)
    )
)]
pub async fn skip(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<DeliveryView>, ApiError> {
    let delivery_id = path_id(&id, "delivery", DeliveryId::parse)?;
    skip_delivery(&state, &auth, &delivery_id).await?;
    let (delivery, attempts) = state
        .store
        .get_delivery(auth.tenant(), auth.sandbox(), &delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery", &id))?;
    Ok(Json(DeliveryView::new(delivery, Some(attempts))))
}

/// Skips delivery `id` of `auth`'s tenant and environment: what the API's
/// and the dashboard's skip both do.
pub(crate) async fn skip_delivery(state: &AppState, auth: &Auth, id: &DeliveryId) -> Result<(), ApiError> {
    state
        .store
        .skip_delivery(auth.tenant(), auth.sandbox(), id, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found("delivery", id.as_str()))?
        .map_err(|SkipRefusal::NotFailed(status)| ApiError::Conflict {
            code: "delivery_not_failed",
            message: format!(
                "only a dead letter (status `failed`) can be skipped; this delivery is `{}`",
                status.as_str()
            ),
            field: None,
        })
}
