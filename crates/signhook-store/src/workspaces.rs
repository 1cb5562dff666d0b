//! Workspaces: partitions of a tenant's documents. Every tenant has a
//! default one; events without a workspace belong to it.

use crate::{is_unique_violation, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::ids::{TenantId, WorkspaceId};
use signhook_core::time::{from_millis, to_millis};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

/// A workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// `ws_…`
    pub id: WorkspaceId,
    /// Its name, unique within the tenant.
    pub name: String,
    /// Whether it is the tenant's default workspace.
    pub is_default: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

fn workspace_from_row(row: &SqliteRow) -> Result<Workspace> {
    let id: String = row.try_get("id")?;
    Ok(Workspace {
        id: WorkspaceId::parse(&id).map_err(StoreError::corrupt)?,
        name: row.try_get("name")?,
        is_default: row.try_get("is_default")?,
        created_at: from_millis(row.try_get("created_at")?),
    })
}

impl Store {
    /// Creates a workspace; a taken name is a conflict on `name`.
    pub async fn create_workspace(&self, tenant: &TenantId, name: &str, now: DateTime<Utc>) -> Result<Workspace> {
        let workspace = Workspace {
            id: WorkspaceId::generate(),
            name: name.to_owned(),
            is_default: false,
            created_at: now,
        };
        sqlx::query("INSERT INTO workspaces (id, tenant_id, name, is_default, created_at) VALUES (?, ?, ?, 0, ?)")
            .bind(workspace.id.as_str())
            .bind(tenant.as_str())
            .bind(name)
            .bind(to_millis(now))
            .execute(&self.writer)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict { field: "name" }
                } else {
                    e.into()
                }
            })?;
        Ok(workspace)
    }

    /// Every workspace of a tenant, oldest first.
    pub async fn list_workspaces(&self, tenant: &TenantId) -> Result<Vec<Workspace>> {
        let rows =
            sqlx::query("SELECT id, name, is_default, created_at FROM workspaces WHERE tenant_id = ? ORDER BY id")
                .bind(tenant.as_str())
                .fetch_all(&self.reader)
                .await?;
        rows.iter().map(workspace_from_row).collect()
    }

    /// The tenant's default workspace.
    pub async fn default_workspace(&self, tenant: &TenantId) -> Result<WorkspaceId> {
        let id: String = sqlx::query_scalar("SELECT id FROM workspaces WHERE tenant_id = ? AND is_default = 1")
            .bind(tenant.as_str())
            .fetch_one(&self.reader)
            .await?;
        WorkspaceId::parse(&id).map_err(StoreError::corrupt)
    }

    /// Of `ids`, those that are not workspaces of `tenant`.
    pub async fn unknown_workspaces(&self, tenant: &TenantId, ids: &[WorkspaceId]) -> Result<Vec<WorkspaceId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = serde_json::to_string(&ids.iter().map(WorkspaceId::as_str).collect::<Vec<_>>())
            .map_err(StoreError::corrupt)?;
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM workspaces WHERE tenant_id = ? AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(tenant.as_str())
        .bind(wanted)
        .fetch_all(&self.reader)
        .await?;
        Ok(ids
            .iter()
            .filter(|id| !found.iter().any(|f| f == id.as_str()))
            .cloned()
            .collect())
    }
}
