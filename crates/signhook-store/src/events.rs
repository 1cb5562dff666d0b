//! Events as stored, and the tenant's event feed. Writing them is the
//! outbox's (see [`crate::outbox`]); publishing through the API is in
//! [`crate::publish`].

use crate::db::{DbRow, Sql};
use crate::{Page, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::event_types::Provenance;
use signhook_core::filter::Scope;
use signhook_core::ids::{EventId, TenantId, WorkspaceId};
use signhook_core::time::from_millis;

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_…`
    pub id: EventId,
    /// Its owner.
    pub tenant_id: TenantId,
    /// Whether it happened in the sandbox.
    pub sandbox: bool,
    /// Its type's name.
    pub event_type: String,
    /// Where its resource began.
    pub scope: Scope,
    /// Its workspace.
    pub workspace_id: WorkspaceId,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// Its `data`, as JSON text (kept as written, never re-serialized).
    pub data: String,
    /// Where it came from (the envelope's `origin`).
    pub origin: Provenance,
    /// The `ordering_key` it was published with, if any (ordered
    /// delivery, [`signhook_core::ordering`]).
    pub ordering_key: Option<String>,
}

/// A client's idempotency key and the fingerprint of its request.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The `Idempotency-Key` header.
    pub key: String,
    /// A hash of the request, to refuse a different request under the same key.
    pub request_hash: [u8; 32],
}

/// An event to publish; every value already validated.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Its owner.
    pub tenant_id: TenantId,
    /// Sandbox or live.
    pub sandbox: bool,
    /// Its type's name.
    pub event_type: String,
    /// Where its resource began.
    pub scope: Scope,
    /// Its workspace.
    pub workspace_id: WorkspaceId,
    /// Its `data` as JSON text.
    pub data: String,
    /// Makes retried publishes safe.
    pub idempotency: Option<Idempotency>,
    /// The key its deliveries are ordered by, for subscriptions ordered
    /// by `key`.
    pub ordering_key: Option<String>,
}

/// Every column of an event, for `SELECT … FROM events`.
pub(crate) const EVENT_COLUMNS: &str =
    "id, tenant_id, sandbox, type, scope, workspace_id, created_at, data, origin, ordering_key";

pub(crate) fn event_from_row(row: &impl DbRow) -> Result<Event> {
    let scope = row.text("scope")?;
    let origin = row.text("origin")?;
    Ok(Event {
        id: EventId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
        tenant_id: TenantId::parse(&row.text("tenant_id")?).map_err(StoreError::corrupt)?,
        sandbox: row.flag("sandbox")?,
        event_type: row.text("type")?,
        scope: Scope::parse(&scope).ok_or_else(|| StoreError::corrupt(format_args!("scope {scope}")))?,
        workspace_id: WorkspaceId::parse(&row.text("workspace_id")?).map_err(StoreError::corrupt)?,
        created_at: from_millis(row.int("created_at")?),
        data: row.text("data")?,
        origin: Provenance::parse(&origin).ok_or_else(|| StoreError::corrupt(format_args!("origin {origin}")))?,
        ordering_key: row.opt_text("ordering_key")?,
    })
}

impl Store {
    /// One event of the tenant's environment.
    pub async fn get_event(&self, tenant: &TenantId, sandbox: bool, id: &EventId) -> Result<Option<Event>> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 AND tenant_id = $2 AND sandbox = $3");
        let row = self
            .reader()
            .fetch_optional(Sql::new(sql).bind(id).bind(tenant).bind(sandbox))
            .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    /// A page of the tenant's events in id (= time) order after `after`,
    /// optionally of one type: the reconciliation feed.
    pub async fn list_events(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        after: Option<&EventId>,
        event_type: Option<&str>,
        limit: u32,
    ) -> Result<Page<Event>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND sandbox = $2 AND id > $3 \
             AND (CAST($4 AS TEXT) IS NULL OR type = $4) ORDER BY id LIMIT $5"
        );
        let sql = Sql::new(sql)
            .bind(tenant)
            .bind(sandbox)
            .bind(after.map_or("", EventId::as_str))
            .bind(event_type)
            .bind(i64::from(limit) + 1);
        let items = self.reader().fetch_parsed(sql, event_from_row).await?;
        Ok(Page::from_rows(items, limit))
    }

    /// A page of the tenant's events, newest first, before `before` (the
    /// last id of the previous page), optionally of one type: the
    /// dashboard's feed.
    pub async fn recent_events(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        before: Option<&EventId>,
        event_type: Option<&str>,
        limit: u32,
    ) -> Result<Page<Event>> {
        // `events_by_tenant` read backwards; the type and the cursor bound
        // the scan only when they are in the SQL itself, not behind an `OR`
        // on a parameter.
        let type_is = crate::db::optional_filter(event_type.is_some(), "type = $3", "$3", "TEXT");
        let cursor = crate::db::optional_filter(before.is_some(), "id < $4", "$4", "TEXT");
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND sandbox = $2 \
             AND {type_is} AND {cursor} ORDER BY id DESC LIMIT $5"
        );
        let sql = Sql::new(sql)
            .bind(tenant)
            .bind(sandbox)
            .bind(event_type)
            .bind(before.map(EventId::as_str))
            .bind(i64::from(limit) + 1);
        let items = self.reader().fetch_parsed(sql, event_from_row).await?;
        Ok(Page::from_rows(items, limit))
    }
}
