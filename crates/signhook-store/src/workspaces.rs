//! Workspaces: partitions of a tenant's documents. Every tenant has a
//! default one; events without a workspace belong to it.

use crate::db::{json_strings, DbRow, Dialects, Sql};
use crate::{Result, Store, StoreError};
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
        let mut tx = self.begin().await?;
        let insert = Sql::new(
            "INSERT INTO workspaces (id, tenant_id, name, is_default, created_at) VALUES ($1, $2, $3, FALSE, $4)",
        )
        .bind(&workspace.id)
        .bind(tenant)
        .bind(name)
        .bind(to_millis(now));
        tx.execute(insert).await.map_err(StoreError::conflict_on("name"))?;
        tx.commit().await?;
        Ok(workspace)
    }

    /// Every workspace of a tenant, oldest first.
    pub async fn list_workspaces(&self, tenant: &TenantId) -> Result<Vec<Workspace>> {
        let sql = Sql::new("SELECT id, name, is_default, created_at FROM workspaces WHERE tenant_id = $1 ORDER BY id")
            .bind(tenant);
        self.reader().fetch_parsed(sql, workspace_from_row).await
    }

    /// The tenant's default workspace.
    pub async fn default_workspace(&self, tenant: &TenantId) -> Result<WorkspaceId> {
        let sql = Sql::new("SELECT id FROM workspaces WHERE tenant_id = $1 AND is_default = TRUE").bind(tenant);
        let id = self.reader().fetch_one(sql).await?.text("id")?;
        WorkspaceId::parse(&id).map_err(StoreError::corrupt)
    }

    /// Of `ids`, those that are not workspaces of `tenant`.
    pub async fn unknown_workspaces(&self, tenant: &TenantId, ids: &[WorkspaceId]) -> Result<Vec<WorkspaceId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let reader = self.reader();
        let sql = Sql::new(reader.pick(Dialects {
            sqlite: "SELECT id FROM workspaces WHERE tenant_id = $1 AND id IN (SELECT value FROM json_each($2))",
            postgres: "SELECT id FROM workspaces WHERE tenant_id = $1 \
                       AND id IN (SELECT json_array_elements_text(CAST($2 AS json)))",
        }))
        .bind(tenant)
        .bind(json_strings(ids.iter().map(WorkspaceId::as_str)));
        let found: Vec<String> = reader
            .fetch_all(sql)
            .await?
            .iter()
            .map(|row| row.text("id"))
            .collect::<Result<_>>()?;
        Ok(ids
            .iter()
            .filter(|id| !found.iter().any(|f| f == id.as_str()))
            .cloned()
            .collect())
    }
}
