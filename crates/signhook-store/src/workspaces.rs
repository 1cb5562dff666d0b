//! Workspaces: partitions of a tenant's documents. Every tenant has a
//! default one; events without a workspace belong to it.

use crate::{is_unique_violation, json_strings, with_pool, DbRow, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::ids::{TenantId, WorkspaceId};
use signhook_core::time::{from_millis, to_millis};

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

fn workspace_from_row(row: &impl DbRow) -> Result<Workspace> {
    Ok(Workspace {
        id: WorkspaceId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
        name: row.text("name")?,
        is_default: row.flag("is_default")?,
        created_at: from_millis(row.int("created_at")?),
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
        with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO workspaces (id, tenant_id, name, is_default, created_at) VALUES ($1, $2, $3, FALSE, $4)",
            )
            .bind(workspace.id.as_str())
            .bind(tenant.as_str())
            .bind(name)
            .bind(to_millis(now))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict { field: "name" }
                } else {
                    e.into()
                }
            })?;
            tx.commit().await?;
        });
        Ok(workspace)
    }

    /// Every workspace of a tenant, oldest first.
    pub async fn list_workspaces(&self, tenant: &TenantId) -> Result<Vec<Workspace>> {
        with_pool!(self, reader, |pool, dialect| {
            sqlx::query("SELECT id, name, is_default, created_at FROM workspaces WHERE tenant_id = $1 ORDER BY id")
                .bind(tenant.as_str())
                .fetch_all(pool)
                .await?
                .iter()
                .map(workspace_from_row)
                .collect()
        })
    }

    /// The tenant's default workspace.
    pub async fn default_workspace(&self, tenant: &TenantId) -> Result<WorkspaceId> {
        let id = with_pool!(self, reader, |pool, dialect| {
            sqlx::query("SELECT id FROM workspaces WHERE tenant_id = $1 AND is_default = TRUE")
                .bind(tenant.as_str())
                .fetch_one(pool)
                .await?
                .text("id")?
        });
        WorkspaceId::parse(&id).map_err(StoreError::corrupt)
    }

    /// Of `ids`, those that are not workspaces of `tenant`.
    pub async fn unknown_workspaces(&self, tenant: &TenantId, ids: &[WorkspaceId]) -> Result<Vec<WorkspaceId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = json_strings(ids.iter().map(WorkspaceId::as_str));
        let found: Vec<String> = with_pool!(self, reader, |pool, dialect| {
            let sql = format!(
                "SELECT id FROM workspaces WHERE tenant_id = $1 AND id IN ({})",
                dialect.list_param(2)
            );
            sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(&wanted)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| row.text("id"))
                .collect::<Result<_>>()?
        });
        Ok(ids
            .iter()
            .filter(|id| !found.iter().any(|f| f == id.as_str()))
            .cloned()
            .collect())
    }
}
