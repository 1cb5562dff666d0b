//! The dashboard's API keys page, for admins only (a viewer sees no key's
//! record, let alone a key): the keys of the environment shown with their
//! hint, when they were made and last used, and whether revoked; making a
//! named key, shown once on the page that answers the form and never
//! again; revoking one after a confirmation, refused from the next request
//! on. Each calls what the `/v1/api_keys` route calls, so the page checks,
//! writes and forgets exactly what the API would.

use crate::error::ApiError;
use crate::extract::Auth;
use crate::pages::frame::Nav;
use crate::pages::session::{CsrfForm, PageRefusal, SignedIn};
use crate::pages::{dashboard_page, see_other};
use crate::routes::api_keys::{create_api_key, revoke_api_key};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use signhook_core::time::readable;
use signhook_store::tenants::ApiKeyRecord;

#[derive(Template)]
#[template(path = "api_keys.html")]
struct KeysPage {
    nav: Nav,
    rows: Vec<KeyRow>,
    /// The key just made, shown this once.
    created: Option<CreatedKey>,
    /// The name field as typed (after a refusal).
    name: String,
    name_error: Option<String>,
    notice: Option<&'static str>,
}

/// A key in the list: never the key itself.
struct KeyRow {
    id: String,
    name: String,
    hint: String,
    created: String,
    last_used: String,
    revoked: Option<String>,
}

fn row(key: &ApiKeyRecord) -> KeyRow {
    KeyRow {
        id: key.id.to_string(),
        name: key.name.clone(),
        hint: key.hint.clone(),
        created: readable(key.created_at),
        last_used: key.last_used_at.map_or_else(|| "never".to_owned(), readable),
        revoked: key.revoked_at.map(readable),
    }
}

/// A key just made.
struct CreatedKey {
    name: String,
    key: String,
}

/// What the list's address may carry: what a button just did.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    done: Option<String>,
}

/// The page with the keys of the environment shown.
async fn keys_page(
    state: &AppState,
    signed_in: &SignedIn,
    status: StatusCode,
    page: impl FnOnce(Vec<KeyRow>, Nav) -> KeysPage,
) -> Result<Response, PageRefusal> {
    let keys = state
        .store
        .list_api_keys(&signed_in.tenant_id, signed_in.environment)
        .await?;
    let nav = Nav::new(signed_in, "api_keys", "API keys");
    Ok(dashboard_page(status, &page(keys.iter().map(row).collect(), nav)))
}

/// `GET /api_keys`.
pub async fn list(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageRefusal> {
    signed_in.require_admin()?;
    let notice = match query.done.as_deref() {
        Some("revoked") => Some("Key revoked: every request with it is refused from now on."),
        _ => None,
    };
    keys_page(&state, &signed_in, StatusCode::OK, |rows, nav| KeysPage {
        nav,
        rows,
        created: None,
        name: String::new(),
        name_error: None,
        notice,
    })
    .await
}

/// The form that makes a key.
#[derive(Debug, Deserialize)]
pub struct CreateForm {
    csrf: String,
    name: String,
}

/// `POST /api_keys`: makes a key as `POST /v1/api_keys` would and shows it
/// this once (the answer is not cached); or the form again with the API's
/// message beside the name, nothing made.
pub async fn create(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Form(form): Form<CreateForm>,
) -> Result<Response, PageRefusal> {
    signed_in.check_admin_form(&form.csrf)?;
    match create_api_key(&state, &Auth(signed_in.principal()), &form.name).await {
        Ok((record, key)) => {
            let created = Some(CreatedKey { name: record.name, key });
            keys_page(&state, &signed_in, StatusCode::OK, |rows, nav| KeysPage {
                nav,
                rows,
                created,
                name: String::new(),
                name_error: None,
                notice: None,
            })
            .await
        }
        Err(ApiError::Validation { message, .. }) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            keys_page(&state, &signed_in, status, |rows, nav| KeysPage {
                nav,
                rows,
                created: None,
                name: form.name,
                name_error: Some(message),
                notice: None,
            })
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "api_key_revoke.html")]
struct RevokePage {
    nav: Nav,
    id: String,
    name: String,
    hint: String,
    last_used: String,
    /// Why it cannot be revoked (the environment's last working key).
    refused: Option<String>,
}

/// The tenant's key `id` in the environment shown; a 404 page for another
/// tenant's or environment's, as through the API.
async fn key(state: &AppState, signed_in: &SignedIn, id: &str) -> Result<ApiKeyRecord, PageRefusal> {
    state
        .store
        .list_api_keys(&signed_in.tenant_id, signed_in.environment)
        .await?
        .into_iter()
        .find(|k| k.id.as_str() == id)
        .ok_or_else(|| PageRefusal::Error(ApiError::not_found("API key", id)))
}

fn revoke_page(signed_in: &SignedIn, key: &ApiKeyRecord, refused: Option<String>) -> RevokePage {
    RevokePage {
        nav: Nav::new(signed_in, "api_keys", format!("Revoke the key “{}”", key.name)),
        id: key.id.to_string(),
        name: key.name.clone(),
        hint: key.hint.clone(),
        last_used: key.last_used_at.map_or_else(|| "never".to_owned(), readable),
        refused,
    }
}

/// `GET /api_keys/{id}/revoke`: asks to confirm.
pub async fn confirm_revoke(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, PageRefusal> {
    signed_in.require_admin()?;
    let key = key(&state, &signed_in, &id).await?;
    if key.revoked_at.is_some() {
        return Ok(see_other("/api_keys"));
    }
    Ok(dashboard_page(StatusCode::OK, &revoke_page(&signed_in, &key, None)))
}

/// `POST /api_keys/{id}/revoke`: revokes as `DELETE /v1/api_keys/{id}`
/// would — refused from the next request on, on every node.
pub async fn revoke(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageRefusal> {
    signed_in.check_admin_form(&form.csrf)?;
    let key = key(&state, &signed_in, &id).await?;
    match revoke_api_key(&state, &Auth(signed_in.principal()), &id).await {
        Ok(_) => Ok(see_other("/api_keys?done=revoked")),
        Err(refusal @ ApiError::Conflict { .. }) => Ok(dashboard_page(
            StatusCode::CONFLICT,
            &revoke_page(&signed_in, &key, Some(refusal.to_string())),
        )),
        Err(e) => Err(e.into()),
    }
}
