//! The tenant's own event types (DESIGN §10): registered, listed, changed,
//! deprecated and archived — never deleted, so the events of an archived
//! type stay readable — and what a publish must know about its type in one
//! read ([`PublishRules`]).
//!
//! Schemas and examples are kept as the JSON text the server checked; this
//! module does not judge them.

use crate::db::{DbRow, Sql};
use crate::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::event_types::TenantTypeName;
use signhook_core::ids::TenantId;
use signhook_core::time::{from_millis, to_millis};

/// A type a tenant registered.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantEventType {
    /// Its name (`invoice.paid`).
    pub name: TenantTypeName,
    /// What it means.
    pub description: String,
    /// Its JSON Schema (draft 2020-12), as JSON text.
    pub schema: String,
    /// An example `data` that satisfies the schema, as JSON text.
    pub example: String,
    /// Still publishable, but shown as deprecated.
    pub deprecated: bool,
    /// Takes no new publishes; its events stay.
    pub archived: bool,
    /// Grows with every change (a compiled copy of the schema knows it is
    /// stale).
    pub revision: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A type to register; every value already checked.
#[derive(Debug, Clone)]
pub struct NewEventType {
    /// Its name.
    pub name: TenantTypeName,
    /// What it means.
    pub description: String,
    /// Its JSON Schema, as JSON text.
    pub schema: String,
    /// An example that satisfies it, as JSON text.
    pub example: String,
}

/// What a change sets; `None` keeps the stored value. Every value already
/// checked, together (a new schema against the example it will have).
#[derive(Debug, Clone, Default)]
pub struct EventTypeChanges {
    /// A new description.
    pub description: Option<String>,
    /// A new schema (JSON text).
    pub schema: Option<String>,
    /// A new example (JSON text).
    pub example: Option<String>,
    /// Deprecated or not.
    pub deprecated: Option<bool>,
    /// Archived or not.
    pub archived: Option<bool>,
}

/// What publishing an event of a type needs to know, read at once.
#[derive(Debug, Clone)]
pub struct PublishRules {
    /// The tenant's setting: whether it may publish the built-in lifecycle
    /// types itself (`false` when its documents go through Signhook).
    pub allow_lifecycle_publishes: bool,
    /// The tenant's type of that name, if it registered one.
    pub tenant_type: Option<TenantEventType>,
}

const COLUMNS: &str = "name, description, schema, example, deprecated, archived, revision, created_at, updated_at";

fn event_type_from_row(row: &impl DbRow) -> Result<TenantEventType> {
    Ok(TenantEventType {
        name: TenantTypeName::parse(&row.text("name")?).map_err(StoreError::corrupt)?,
        description: row.text("description")?,
        schema: row.text("schema")?,
        example: row.text("example")?,
        deprecated: row.flag("deprecated")?,
        archived: row.flag("archived")?,
        revision: row.int("revision")?,
        created_at: from_millis(row.int("created_at")?),
        updated_at: from_millis(row.int("updated_at")?),
    })
}

impl Store {
    /// Registers a type. [`StoreError::Conflict`] on `name` when the tenant
    /// already has one of that name.
    pub async fn create_event_type(
        &self,
        tenant: &TenantId,
        new: NewEventType,
        now: DateTime<Utc>,
    ) -> Result<TenantEventType> {
        let at = to_millis(now);
        let insert = Sql::new(
            "INSERT INTO event_types (tenant_id, name, description, schema, example, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(tenant)
        .bind(new.name.as_str())
        .bind(&new.description)
        .bind(&new.schema)
        .bind(&new.example)
        .bind(at);
        let mut tx = self.begin().await?;
        tx.execute(insert).await.map_err(StoreError::conflict_on("name"))?;
        tx.commit().await.map_err(StoreError::conflict_on("name"))?;
        Ok(TenantEventType {
            name: new.name,
            description: new.description,
            schema: new.schema,
            example: new.example,
            deprecated: false,
            archived: false,
            revision: 1,
            created_at: from_millis(at),
            updated_at: from_millis(at),
        })
    }

    /// The tenant's type of that name.
    pub async fn get_event_type(&self, tenant: &TenantId, name: &str) -> Result<Option<TenantEventType>> {
        let sql = Sql::new(format!(
            "SELECT {COLUMNS} FROM event_types WHERE tenant_id = $1 AND name = $2"
        ))
        .bind(tenant)
        .bind(name);
        let row = self.reader().fetch_optional(sql).await?;
        row.as_ref().map(event_type_from_row).transpose()
    }

    /// Every type the tenant registered, archived ones too, by name.
    pub async fn list_event_types(&self, tenant: &TenantId) -> Result<Vec<TenantEventType>> {
        let sql = Sql::new(format!(
            "SELECT {COLUMNS} FROM event_types WHERE tenant_id = $1 ORDER BY name"
        ))
        .bind(tenant);
        self.reader().fetch_parsed(sql, event_type_from_row).await
    }

    /// The names of every type the tenant registered (archived ones too:
    /// subscriptions may keep naming them), by name.
    pub async fn event_type_names(&self, tenant: &TenantId) -> Result<Vec<String>> {
        let sql = Sql::new("SELECT name FROM event_types WHERE tenant_id = $1 ORDER BY name").bind(tenant);
        self.reader().fetch_parsed(sql, |row| row.text("name")).await
    }

    /// Applies `changes` to the type, if it is still at `revision` (the one
    /// the changes were checked against): [`StoreError::Stale`] when it
    /// changed meanwhile, `None` when there is no such type.
    pub async fn update_event_type(
        &self,
        tenant: &TenantId,
        name: &str,
        revision: i64,
        changes: EventTypeChanges,
        now: DateTime<Utc>,
    ) -> Result<Option<TenantEventType>> {
        let update = Sql::new(
            "UPDATE event_types SET description = COALESCE($1, description), schema = COALESCE($2, schema), \
             example = COALESCE($3, example), deprecated = COALESCE($4, deprecated), \
             archived = COALESCE($5, archived), revision = revision + 1, updated_at = $6 \
             WHERE tenant_id = $7 AND name = $8 AND revision = $9",
        )
        .bind(changes.description)
        .bind(changes.schema)
        .bind(changes.example)
        .bind(changes.deprecated)
        .bind(changes.archived)
        .bind(to_millis(now))
        .bind(tenant)
        .bind(name)
        .bind(revision);
        let mut tx = self.begin().await?;
        if tx.execute(update).await? == 0 {
            drop(tx);
            return match self.get_event_type(tenant, name).await? {
                Some(_) => Err(StoreError::Stale),
                None => Ok(None),
            };
        }
        let sql = Sql::new(format!(
            "SELECT {COLUMNS} FROM event_types WHERE tenant_id = $1 AND name = $2"
        ))
        .bind(tenant)
        .bind(name);
        let updated = event_type_from_row(&tx.fetch_one(sql).await?)?;
        tx.commit().await?;
        Ok(Some(updated))
    }

    /// What a publish of `event_type` by the tenant must respect: its
    /// setting, and its own type of that name if any. One read.
    pub async fn publish_rules(&self, tenant: &TenantId, event_type: &str) -> Result<PublishRules> {
        let sql = Sql::new(
            "SELECT t.allow_lifecycle_publishes, e.name, e.description, e.schema, e.example, e.deprecated, \
             e.archived, e.revision, e.created_at, e.updated_at \
             FROM tenants t LEFT JOIN event_types e ON e.tenant_id = t.id AND e.name = $2 WHERE t.id = $1",
        )
        .bind(tenant)
        .bind(event_type);
        let row = self.reader().fetch_one(sql).await?;
        let tenant_type = match row.opt_text("name")? {
            Some(_) => Some(event_type_from_row(&row)?),
            None => None,
        };
        Ok(PublishRules {
            allow_lifecycle_publishes: row.flag("allow_lifecycle_publishes")?,
            tenant_type,
        })
    }

    /// The tenant's setting: whether it may publish the built-in lifecycle
    /// types through the API.
    pub async fn allow_lifecycle_publishes(&self, tenant: &TenantId) -> Result<bool> {
        let sql = Sql::new("SELECT allow_lifecycle_publishes FROM tenants WHERE id = $1").bind(tenant);
        self.reader().fetch_one(sql).await?.flag("allow_lifecycle_publishes")
    }

    /// Changes that setting.
    pub async fn set_allow_lifecycle_publishes(&self, tenant: &TenantId, allow: bool) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.execute(
            Sql::new("UPDATE tenants SET allow_lifecycle_publishes = $1 WHERE id = $2")
                .bind(allow)
                .bind(tenant),
        )
        .await?;
        tx.commit().await
    }
}
