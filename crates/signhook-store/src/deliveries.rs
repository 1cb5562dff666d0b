//! Deliveries and their attempts: the dispatcher's claims and results, and
//! the delivery log the API shows.
//!
//! A claim is a lease: claiming sets `leased_by`/`leased_until` and moves
//! `next_attempt_at` to the lease's end. A result is written only while the
//! lease it was claimed under still holds (same node, same expiry), so a
//! late answer from a node whose lease already passed to another cannot
//! overwrite the newer state; its attempt is still recorded, because it
//! happened.

use crate::events::Event;
use crate::subscriptions::{subscription_from_row, Subscription};
use crate::{Page, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::delivery::{DeliveryStatus, ErrorKind};
use signhook_core::ids::{AttemptId, DeliveryId, EventId, SubscriptionId, TenantId};
use signhook_core::time::{from_millis, to_millis};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use std::collections::HashMap;

/// The most response-body bytes kept per attempt.
pub const MAX_RESPONSE_BODY: usize = 4096;

/// A delivery as the log shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// `dlv_…`
    pub id: DeliveryId,
    /// The event delivered.
    pub event_id: EventId,
    /// The event's type.
    pub event_type: String,
    /// The subscription delivered to.
    pub subscription_id: SubscriptionId,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempt_count: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the last attempt started.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// One try of a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// `att_…`
    pub id: AttemptId,
    /// 1 for the first try.
    pub attempt_number: u32,
    /// When the request started.
    pub started_at: DateTime<Utc>,
    /// How long until the answer (or the failure), in milliseconds.
    pub duration_ms: u64,
    /// The answer's status code, if any came.
    pub status_code: Option<u16>,
    /// The first [`MAX_RESPONSE_BODY`] bytes of the answer's body.
    pub response_body: Option<String>,
    /// Why it failed, when it did.
    pub error_kind: Option<ErrorKind>,
    /// A human-readable detail of the failure.
    pub error_message: Option<String>,
    /// The node that made it.
    pub node_id: String,
}

/// A delivery the dispatcher has claimed, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The number this attempt will have.
    pub attempt_number: u32,
    /// The lease's end, in milliseconds; proves ownership when recording.
    pub lease_until: i64,
    /// The event.
    pub event: Event,
    /// The subscription.
    pub subscription: Subscription,
}

/// The outcome of one attempt, to be recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The lease it was claimed under.
    pub lease_until: i64,
    /// The attempt as it happened.
    pub attempt: Attempt,
    /// The delivery's status afterwards.
    pub status: DeliveryStatus,
    /// When to try again, if pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

const DELIVERY_COLUMNS: &str = "d.id, d.event_id, e.type, d.subscription_id, d.status, d.attempt_count, \
    d.next_attempt_at, d.last_attempt_at, d.created_at, d.updated_at";

fn delivery_from_row(row: &SqliteRow) -> Result<Delivery> {
    let status: String = row.try_get("status")?;
    Ok(Delivery {
        id: DeliveryId::parse(row.try_get("id")?).map_err(StoreError::corrupt)?,
        event_id: EventId::parse(row.try_get("event_id")?).map_err(StoreError::corrupt)?,
        event_type: row.try_get("type")?,
        subscription_id: SubscriptionId::parse(row.try_get("subscription_id")?).map_err(StoreError::corrupt)?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| StoreError::corrupt(format_args!("status {status}")))?,
        attempt_count: row.try_get::<i64, _>("attempt_count")? as u32,
        next_attempt_at: row.try_get::<Option<i64>, _>("next_attempt_at")?.map(from_millis),
        last_attempt_at: row.try_get::<Option<i64>, _>("last_attempt_at")?.map(from_millis),
        created_at: from_millis(row.try_get("created_at")?),
        updated_at: from_millis(row.try_get("updated_at")?),
    })
}

fn attempt_from_row(row: &SqliteRow) -> Result<Attempt> {
    let kind: Option<String> = row.try_get("error_kind")?;
    Ok(Attempt {
        id: AttemptId::parse(row.try_get("id")?).map_err(StoreError::corrupt)?,
        attempt_number: row.try_get::<i64, _>("attempt_number")? as u32,
        started_at: from_millis(row.try_get("started_at")?),
        duration_ms: row.try_get::<i64, _>("duration_ms")?.max(0) as u64,
        status_code: row.try_get::<Option<i64>, _>("status_code")?.map(|c| c as u16),
        response_body: row.try_get("response_body")?,
        error_kind: match kind {
            Some(k) => Some(ErrorKind::parse(&k).ok_or_else(|| StoreError::corrupt(format_args!("error_kind {k}")))?),
            None => None,
        },
        error_message: row.try_get("error_message")?,
        node_id: row.try_get("node_id")?,
    })
}

fn json_ids<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    serde_json::Value::from(ids.collect::<Vec<_>>()).to_string()
}

impl Store {
    /// Claims up to `limit` due deliveries for `node` until `lease_until`,
    /// oldest due first, and loads what sending them needs.
    pub async fn claim_due_deliveries(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>> {
        let lease = to_millis(lease_until);
        let mut tx = self.writer.begin().await?;
        let claimed = sqlx::query(
            "UPDATE deliveries SET leased_by = ?, leased_until = ?, next_attempt_at = ? \
             WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ? \
                          ORDER BY next_attempt_at LIMIT ?) \
             RETURNING id, event_id, subscription_id, attempt_count",
        )
        .bind(node)
        .bind(lease)
        .bind(lease)
        .bind(to_millis(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let event_ids = json_ids(claimed.iter().filter_map(|r| r.try_get::<&str, _>("event_id").ok()));
        let sub_ids = json_ids(
            claimed
                .iter()
                .filter_map(|r| r.try_get::<&str, _>("subscription_id").ok()),
        );
        let events: HashMap<String, Event> = sqlx::query(
            "SELECT id, tenant_id, sandbox, type, scope, workspace_id, created_at, data FROM events \
             WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(event_ids)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| crate::events::event_from_row(row).map(|e| (e.id.to_string(), e)))
        .collect::<Result<_>>()?;
        let subscriptions: HashMap<String, Subscription> = sqlx::query(&format!(
            "SELECT {} FROM subscriptions WHERE id IN (SELECT value FROM json_each(?))",
            crate::subscriptions::COLUMNS
        ))
        .bind(sub_ids)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| subscription_from_row(row).map(|s| (s.id.to_string(), s)))
        .collect::<Result<_>>()?;
        tx.commit().await?;

        claimed
            .iter()
            .map(|row| {
                let event_id: &str = row.try_get("event_id")?;
                let sub_id: &str = row.try_get("subscription_id")?;
                Ok(ClaimedDelivery {
                    delivery_id: DeliveryId::parse(row.try_get("id")?).map_err(StoreError::corrupt)?,
                    attempt_number: row.try_get::<i64, _>("attempt_count")? as u32 + 1,
                    lease_until: lease,
                    event: events
                        .get(event_id)
                        .cloned()
                        .ok_or_else(|| StoreError::corrupt("delivery without event"))?,
                    subscription: subscriptions
                        .get(sub_id)
                        .cloned()
                        .ok_or_else(|| StoreError::corrupt("delivery without subscription"))?,
                })
            })
            .collect()
    }

    /// Records a batch of attempt outcomes in one transaction (one commit, one
    /// fsync, however many results).
    pub async fn record_attempts(&self, node: &str, records: &[AttemptRecord], now: DateTime<Utc>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let now = to_millis(now);
        let mut tx = self.writer.begin().await?;
        for record in records {
            let a = &record.attempt;
            sqlx::query(
                "INSERT INTO attempts (id, delivery_id, attempt_number, started_at, duration_ms, status_code, \
                 response_body, error_kind, error_message, node_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(a.id.as_str())
            .bind(record.delivery_id.as_str())
            .bind(i64::from(a.attempt_number))
            .bind(to_millis(a.started_at))
            .bind(i64::try_from(a.duration_ms).unwrap_or(i64::MAX))
            .bind(a.status_code.map(i64::from))
            .bind(&a.response_body)
            .bind(a.error_kind.map(ErrorKind::as_str))
            .bind(&a.error_message)
            .bind(&a.node_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE deliveries SET status = ?, attempt_count = ?, next_attempt_at = ?, last_attempt_at = ?, \
                 leased_by = NULL, leased_until = NULL, updated_at = ? \
                 WHERE id = ? AND status = 'pending' AND leased_by = ? AND leased_until = ?",
            )
            .bind(record.status.as_str())
            .bind(i64::from(a.attempt_number))
            .bind(record.next_attempt_at.map(to_millis))
            .bind(to_millis(a.started_at))
            .bind(now)
            .bind(record.delivery_id.as_str())
            .bind(node)
            .bind(record.lease_until)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Gives claimed deliveries back without an attempt (on shutdown): they
    /// are due again at once, for this node or another.
    pub async fn release_deliveries(&self, node: &str, claims: &[(DeliveryId, i64)], now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        for (id, lease_until) in claims {
            sqlx::query(
                "UPDATE deliveries SET next_attempt_at = ?, leased_by = NULL, leased_until = NULL \
                 WHERE id = ? AND status = 'pending' AND leased_by = ? AND leased_until = ?",
            )
            .bind(to_millis(now))
            .bind(id.as_str())
            .bind(node)
            .bind(lease_until)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// When the earliest pending delivery falls due (past or future).
    pub async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<i64> =
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'")
                .fetch_one(&self.reader)
                .await?;
        Ok(next.map(from_millis))
    }

    /// One delivery of the tenant's environment, with its attempts in order.
    pub async fn get_delivery(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        id: &DeliveryId,
    ) -> Result<Option<(Delivery, Vec<Attempt>)>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.id = ? AND d.tenant_id = ? AND e.sandbox = ?"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(tenant.as_str())
            .bind(sandbox)
            .fetch_optional(&self.reader)
            .await?
        else {
            return Ok(None);
        };
        let delivery = delivery_from_row(&row)?;
        let attempts = sqlx::query(
            "SELECT id, attempt_number, started_at, duration_ms, status_code, response_body, error_kind, \
             error_message, node_id FROM attempts WHERE delivery_id = ? ORDER BY attempt_number, started_at",
        )
        .bind(id.as_str())
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(attempt_from_row)
        .collect::<Result<Vec<_>>>()?;
        Ok(Some((delivery, attempts)))
    }

    /// A page of a subscription's deliveries, newest first, older than
    /// `before`, optionally of one status (`failed` = the dead letters).
    pub async fn list_deliveries(
        &self,
        subscription: &SubscriptionId,
        status: Option<DeliveryStatus>,
        before: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Page<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.subscription_id = ? AND (? IS NULL OR d.status = ?) AND (? IS NULL OR d.id < ?) \
             ORDER BY d.id DESC LIMIT ?"
        );
        let status = status.map(DeliveryStatus::as_str);
        let before = before.map(DeliveryId::as_str);
        let rows = sqlx::query(&sql)
            .bind(subscription.as_str())
            .bind(status)
            .bind(status)
            .bind(before)
            .bind(before)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.reader)
            .await?;
        let items = rows.iter().map(delivery_from_row).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit))
    }
}
