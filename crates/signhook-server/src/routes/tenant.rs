//! `GET /v1/tenant` and `PATCH /v1/tenant`: the tenant's own settings, the
//! same for its live and sandbox keys. Today one: whether it may publish
//! Signhook's built-in lifecycle types itself (DESIGN §10).

use crate::error::ApiError;
use crate::extract::{ApiJson, Auth};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The tenant's settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    /// `tnt_…`
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether `POST /v1/events` takes the built-in lifecycle types
    /// (`signer.done`, …). `true` (the default) for a platform that runs
    /// its own signing and uses Signhook as its webhook layer; set it to
    /// `false` when your documents go through Signhook, so that only
    /// Signhook's own signature requests emit those types and a receiver
    /// can trust them (your own types stay publishable).
    pub allow_lifecycle_publishes: bool,
}

/// Changing the settings; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// See [`TenantView::allow_lifecycle_publishes`].
    pub allow_lifecycle_publishes: Option<bool>,
}

async fn view(state: &AppState, auth: &Auth) -> Result<TenantView, ApiError> {
    let name = state
        .store
        .tenant_name(auth.tenant())
        .await?
        .ok_or_else(|| ApiError::Internal("the key's tenant vanished".into()))?;
    Ok(TenantView {
        id: auth.tenant().to_string(),
        name,
        allow_lifecycle_publishes: state.store.allow_lifecycle_publishes(auth.tenant()).await?,
    })
}

/// Your tenant's settings.
#[utoipa::path(
    get, path = "/v1/tenant", tag = "tenant", security(("api_key" = [])),
    responses((status = 200, body = TenantView), (status = 401, body = crate::error::ErrorBody))
)]
pub async fn get(State(state): State<AppState>, auth: Auth) -> Result<Json<TenantView>, ApiError> {
    Ok(Json(view(&state, &auth).await?))
}

/// Changes your tenant's settings.
#[utoipa::path(
    patch, path = "/v1/tenant", tag = "tenant", security(("api_key" = [])),
    request_body = UpdateTenant,
    responses(
        (status = 200, body = TenantView),
        (status = 400, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)
    )
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body, _): ApiJson<UpdateTenant>,
) -> Result<Json<TenantView>, ApiError> {
    if let Some(allow) = body.allow_lifecycle_publishes {
        state.store.set_allow_lifecycle_publishes(auth.tenant(), allow).await?;
        state.caches.forget_publish_rules(auth.tenant());
    }
    Ok(Json(view(&state, &auth).await?))
}
