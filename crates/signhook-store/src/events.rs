//! Events, and publishing: the event and one delivery per matching
//! subscription are written in one transaction (the transactional outbox), so
//! a publish that was acknowledged always produces its webhooks and one that
//! failed produces none.

use crate::subscriptions::{live_subscriptions, Subscription};
use crate::{is_unique_violation, Page, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::filter::{EventFacts, Scope};
use signhook_core::ids::{DeliveryId, EventId, SubscriptionId, TenantId, WorkspaceId};
use signhook_core::time::{from_millis, to_millis};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

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
}

/// The result of a publish.
#[derive(Debug, Clone)]
pub struct Published {
    /// The event.
    pub event: Event,
    /// How many deliveries were created and are pending.
    pub deliveries: usize,
    /// `true` when an earlier publish with the same idempotency key is
    /// returned instead of a new event.
    pub replayed: bool,
}

const COLUMNS: &str = "id, tenant_id, sandbox, type, scope, workspace_id, created_at, data";

pub(crate) fn event_from_row(row: &SqliteRow) -> Result<Event> {
    let text = |column: &str| -> Result<String> { Ok(row.try_get::<String, _>(column)?) };
    let scope = text("scope")?;
    Ok(Event {
        id: EventId::parse(&text("id")?).map_err(StoreError::corrupt)?,
        tenant_id: TenantId::parse(&text("tenant_id")?).map_err(StoreError::corrupt)?,
        sandbox: row.try_get("sandbox")?,
        event_type: text("type")?,
        scope: Scope::parse(&scope).ok_or_else(|| StoreError::corrupt(format_args!("scope {scope}")))?,
        workspace_id: WorkspaceId::parse(&text("workspace_id")?).map_err(StoreError::corrupt)?,
        created_at: from_millis(row.try_get("created_at")?),
        data: text("data")?,
    })
}

/// Inserts an event row.
async fn insert_event(conn: &mut SqliteConnection, event: &Event, idempotency: Option<&Idempotency>) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (id, tenant_id, sandbox, type, scope, workspace_id, created_at, data, idempotency_key, request_hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(event.id.as_str())
    .bind(event.tenant_id.as_str())
    .bind(event.sandbox)
    .bind(&event.event_type)
    .bind(event.scope.as_str())
    .bind(event.workspace_id.as_str())
    .bind(to_millis(event.created_at))
    .bind(&event.data)
    .bind(idempotency.map(|i| i.key.as_str()))
    .bind(idempotency.map(|i| i.request_hash.as_slice()))
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts a delivery of `event` to `subscription`: pending and due now when
/// the subscription is enabled, canceled (kept for later recovery) when not.
pub(crate) async fn insert_delivery(
    conn: &mut SqliteConnection,
    event: &Event,
    subscription: &SubscriptionId,
    enabled: bool,
    now: i64,
) -> Result<DeliveryId> {
    let id = DeliveryId::generate();
    let (status, next_attempt_at) = if enabled {
        ("pending", Some(now))
    } else {
        ("canceled", None)
    };
    sqlx::query(
        "INSERT INTO deliveries (id, tenant_id, event_id, subscription_id, status, next_attempt_at, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id.as_str())
    .bind(event.tenant_id.as_str())
    .bind(event.id.as_str())
    .bind(subscription.as_str())
    .bind(status)
    .bind(next_attempt_at)
    .bind(now)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(id)
}

impl Store {
    /// Publishes an event: writes it and a delivery for every matching
    /// subscription, in one transaction.
    pub async fn publish_event(&self, new: NewEvent, now: DateTime<Utc>) -> Result<Published> {
        let mut tx = self.writer.begin().await?;
        if let Some(idempotency) = &new.idempotency {
            let sql = format!(
                "SELECT {COLUMNS}, request_hash FROM events WHERE tenant_id = ? AND sandbox = ? AND idempotency_key = ?"
            );
            let existing = sqlx::query(&sql)
                .bind(new.tenant_id.as_str())
                .bind(new.sandbox)
                .bind(&idempotency.key)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = existing {
                let hash: Vec<u8> = row.try_get("request_hash")?;
                if hash != idempotency.request_hash {
                    return Err(StoreError::IdempotencyMismatch);
                }
                let event = event_from_row(&row)?;
                let deliveries: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE event_id = ? AND status <> 'canceled'")
                        .bind(event.id.as_str())
                        .fetch_one(&mut *tx)
                        .await?;
                return Ok(Published {
                    event,
                    deliveries: deliveries as usize,
                    replayed: true,
                });
            }
        }
        let event = Event {
            id: EventId::generate(),
            tenant_id: new.tenant_id,
            sandbox: new.sandbox,
            event_type: new.event_type,
            scope: new.scope,
            workspace_id: new.workspace_id,
            created_at: now,
            data: new.data,
        };
        insert_event(&mut tx, &event, new.idempotency.as_ref())
            .await
            .map_err(|e| match e {
                StoreError::Database(db) if is_unique_violation(&db) => StoreError::Conflict {
                    field: "Idempotency-Key",
                },
                other => other,
            })?;
        let facts = EventFacts {
            event_type: &event.event_type,
            sandbox: event.sandbox,
            scope: event.scope,
            workspace: &event.workspace_id,
        };
        let mut deliveries = 0;
        let now_ms = to_millis(now);
        for sub in live_subscriptions(&mut tx, &event.tenant_id, event.sandbox).await? {
            if sub.filter.matches(&facts) {
                insert_delivery(&mut tx, &event, &sub.id, sub.enabled, now_ms).await?;
                deliveries += usize::from(sub.enabled);
            }
        }
        tx.commit().await?;
        Ok(Published {
            event,
            deliveries,
            replayed: false,
        })
    }

    /// Writes an event meant for one subscription only (a `webhook.test`),
    /// with its delivery, in one transaction. Returns the delivery's id.
    pub async fn publish_to_subscription(
        &self,
        subscription: &Subscription,
        event_type: &str,
        data: String,
        workspace_id: WorkspaceId,
        now: DateTime<Utc>,
    ) -> Result<(Event, DeliveryId)> {
        let event = Event {
            id: EventId::generate(),
            tenant_id: subscription.tenant_id.clone(),
            sandbox: subscription.filter.sandbox,
            event_type: event_type.to_owned(),
            scope: Scope::PublicApi,
            workspace_id,
            created_at: now,
            data,
        };
        let mut tx = self.writer.begin().await?;
        insert_event(&mut tx, &event, None).await?;
        let delivery = insert_delivery(&mut tx, &event, &subscription.id, true, to_millis(now)).await?;
        tx.commit().await?;
        Ok((event, delivery))
    }

    /// One event of the tenant's environment.
    pub async fn get_event(&self, tenant: &TenantId, sandbox: bool, id: &EventId) -> Result<Option<Event>> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE id = ? AND tenant_id = ? AND sandbox = ?");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(tenant.as_str())
            .bind(sandbox)
            .fetch_optional(&self.reader)
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
            "SELECT {COLUMNS} FROM events WHERE tenant_id = ? AND sandbox = ? AND id > ? \
             AND (? IS NULL OR type = ?) ORDER BY id LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(sandbox)
            .bind(after.map_or("", EventId::as_str))
            .bind(event_type)
            .bind(event_type)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.reader)
            .await?;
        let items = rows.iter().map(event_from_row).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit))
    }
}
