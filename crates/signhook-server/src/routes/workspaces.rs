//! `POST/GET /v1/workspaces`.

use crate::error::ApiError;
use crate::extract::{ApiJson, Auth};
use crate::routes::list_type;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use signhook_store::workspaces::Workspace;
use utoipa::ToSchema;

/// The longest workspace name.
pub const MAX_NAME_LEN: usize = 200;

/// Creating a workspace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    /// Unique within the tenant; 1 to 200 characters.
    pub name: String,
}

/// A workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceView {
    /// `ws_…`
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether events without a workspace land here.
    pub is_default: bool,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

impl From<Workspace> for WorkspaceView {
    fn from(w: Workspace) -> Self {
        Self {
            id: w.id.to_string(),
            name: w.name,
            is_default: w.is_default,
            created_at: signhook_core::time::rfc3339(w.created_at),
        }
    }
}

list_type!(WorkspaceList, WorkspaceView, "A tenant's workspaces.");

/// Creates a workspace.
#[utoipa::path(
    post, path = "/v1/workspaces", tag = "workspaces", security(("api_key" = [])),
    request_body = CreateWorkspace,
    responses(
        (status = 201, body = WorkspaceView),
        (status = 409, description = "The name is taken", body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body, _): ApiJson<CreateWorkspace>,
) -> Result<(StatusCode, Json<WorkspaceView>), ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::validation(
            "name",
            format!("name must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    let workspace = state
        .store
        .create_workspace(auth.tenant(), name, state.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(workspace.into())))
}

/// Lists the tenant's workspaces.
#[utoipa::path(
    get, path = "/v1/workspaces", tag = "workspaces", security(("api_key" = [])),
    responses((status = 200, body = WorkspaceList))
)]
pub async fn list(State(state): State<AppState>, auth: Auth) -> Result<Json<WorkspaceList>, ApiError> {
    let data = state
        .store
        .list_workspaces(auth.tenant())
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(WorkspaceList {
        data,
        has_more: false,
        next_cursor: None,
    }))
}
