//! `POST/GET /v1/api_keys`, `DELETE /v1/api_keys/{id}`: a tenant makes,
//! names and revokes its own keys. A key manages the keys of its own
//! environment only (a sandbox key never sees a live one). The key is shown
//! once, at creation; only its SHA-256 and last four characters are kept.
//! A revoked key opens nothing from the next request on, on every node:
//! this node forgets the keys it trusts from memory at once, and the others
//! when PostgreSQL tells them (see [`forget_revoked_keys`]).

use crate::error::ApiError;
use crate::extract::{ApiJson, Auth};
use crate::routes::{list_type, path_id};
use crate::state::{AppState, Caches};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use signhook_core::ids::ApiKeyId;
use signhook_core::time::rfc3339;
use signhook_store::tenants::{ApiKeyRecord, Revocation};
use signhook_store::Store;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

/// The longest key name.
pub const MAX_NAME_LEN: usize = 100;

/// Making a key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// What the key is for, 1 to 100 characters (`CRM sync`, `CI`).
    pub name: String,
}

/// An API key, without the key.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// `key_…`
    pub id: String,
    /// Its name.
    pub name: String,
    /// `live` or `test`.
    pub environment: String,
    /// The key's last four characters, to recognize it.
    pub hint: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it was revoked; null while it works.
    pub revoked_at: Option<String>,
    /// When it last opened a request (RFC 3339), to within about a minute;
    /// null if never.
    pub last_used_at: Option<String>,
}

impl From<ApiKeyRecord> for ApiKeyView {
    fn from(k: ApiKeyRecord) -> Self {
        Self {
            id: k.id.to_string(),
            name: k.name,
            environment: k.environment.as_str().to_owned(),
            hint: k.hint,
            created_at: rfc3339(k.created_at),
            revoked_at: k.revoked_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
        }
    }
}

/// A key just made: the only answer that carries the key itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    /// The key (`sk_live_…` or `sk_test_…`): store it now, it is not shown
    /// again.
    pub key: String,
    /// The key's record.
    #[serde(flatten)]
    pub record: ApiKeyView,
}

list_type!(ApiKeyList, ApiKeyView, "A tenant's keys in one environment.");

/// Makes a key in the calling key's environment.
#[utoipa::path(
    post, path = "/v1/api_keys", tag = "api_keys", security(("api_key" = [])),
    request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 422, body = crate::error::ErrorBody))
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body, _): ApiJson<CreateApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    let (record, key) = create_api_key(&state, &auth, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            key,
            record: record.into(),
        }),
    ))
}

/// Makes a key named `name` in `auth`'s environment, as `POST
/// /v1/api_keys` does (the dashboard's API keys page calls this too): the
/// record and the key, in clear text this once.
pub(crate) async fn create_api_key(
    state: &AppState,
    auth: &Auth,
    name: &str,
) -> Result<(ApiKeyRecord, String), ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "name",
            format!("name must be 1 to {MAX_NAME_LEN} printable characters"),
        ));
    }
    let (record, key) = state
        .store
        .create_api_key(auth.tenant(), auth.0.environment, name, state.clock.now())
        .await?;
    tracing::info!(api_key = %record.id, "API key created");
    Ok((record, key))
}

/// Lists the keys of the calling key's environment, revoked ones too.
#[utoipa::path(
    get, path = "/v1/api_keys", tag = "api_keys", security(("api_key" = [])),
    responses((status = 200, body = ApiKeyList))
)]
pub async fn list(State(state): State<AppState>, auth: Auth) -> Result<Json<ApiKeyList>, ApiError> {
    let data = state
        .store
        .list_api_keys(auth.tenant(), auth.0.environment)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(ApiKeyList {
        data,
        has_more: false,
        next_cursor: None,
    }))
}

/// Revokes a key: from the next request on, on every node, it opens
/// nothing. The environment's last working key cannot be revoked (make
/// another first).
#[utoipa::path(
    delete, path = "/v1/api_keys/{id}", tag = "api_keys", security(("api_key" = [])),
    params(("id" = String, Path, description = "`key_…`")),
    responses(
        (status = 200, body = ApiKeyView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "The environment's last working key", body = crate::error::ErrorBody)
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<ApiKeyView>, ApiError> {
    Ok(Json(revoke_api_key(&state, &auth, &id).await?.into()))
}

/// Revokes key `id` of `auth`'s tenant and environment, as `DELETE
/// /v1/api_keys/{id}` does (the dashboard's API keys page calls this too):
/// this node forgets the keys it trusts from memory at once, the others
/// when told (see [`forget_revoked_keys`]).
pub(crate) async fn revoke_api_key(state: &AppState, auth: &Auth, id: &str) -> Result<ApiKeyRecord, ApiError> {
    let key_id = path_id(id, "API key", ApiKeyId::parse)?;
    match state
        .store
        .revoke_api_key(auth.tenant(), auth.0.environment, &key_id, state.clock.now())
        .await?
    {
        Revocation::Revoked(record) => {
            state.caches.forget_keys();
            tracing::info!(api_key = %record.id, "API key revoked");
            Ok(record)
        }
        Revocation::NotFound => Err(ApiError::not_found("API key", id)),
        Revocation::LastKey => Err(ApiError::Conflict {
            code: "last_api_key",
            message: "this is the environment's last working key; make another before revoking it".into(),
            field: None,
        }),
    }
}

/// Until `shutdown`: forgets the keys this node trusts from memory whenever
/// another node revokes one (PostgreSQL `LISTEN`), and whenever the
/// listening connection was lost (a revocation may have been missed). On
/// SQLite there is nothing to listen to: revocations happen in this process.
/// Each time, `resets` counts one (`signhook_api_key_cache_resets_total`).
pub async fn forget_revoked_keys(
    store: Store,
    caches: Arc<Caches>,
    resets: prometheus_client::metrics::counter::Counter,
    shutdown: CancellationToken,
) {
    let mut listener = loop {
        match store.key_revocations().await {
            Ok(Some(listener)) => break listener,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %crate::error::error_chain(&e), "cannot listen for key revocations yet; retrying");
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    };
    loop {
        tokio::select! {
            received = listener.recv() => {
                caches.forget_keys();
                resets.inc();
                if let Err(e) = received {
                    tracing::warn!(error = %crate::error::error_chain(&e), "listening for key revocations was interrupted");
                    // The listener reconnects on the next call; not in a
                    // tight loop while the database is away.
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
            () = shutdown.cancelled() => return,
        }
    }
}
