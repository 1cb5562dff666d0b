//! Deliveries and their attempts: the dispatcher's claims and results, and
//! the delivery log the API shows.
//!
//! A claim is a lease: claiming sets `leased_by`/`leased_until` and moves
//! `next_attempt_at` to the lease's end. A result is written only while the
//! lease it was claimed under still holds (same node, same expiry), so a
//! late answer from a node whose lease already passed to another cannot
//! overwrite the newer state; its attempt is still recorded, because it
//! happened.

use crate::events::{event_from_row, Event, COLUMNS as EVENT_COLUMNS};
use crate::subscriptions::{subscription_from_row, Subscription, COLUMNS as SUBSCRIPTION_COLUMNS};
use crate::{json_strings, with_pool, DbRow, Page, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::delivery::{DeliveryStatus, ErrorKind};
use signhook_core::ids::{AttemptId, DeliveryId, EventId, SubscriptionId, TenantId};
use signhook_core::time::{from_millis, to_millis};
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

fn delivery_from_row(row: &impl DbRow) -> Result<Delivery> {
    let status = row.text("status")?;
    Ok(Delivery {
        id: DeliveryId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
        event_id: EventId::parse(&row.text("event_id")?).map_err(StoreError::corrupt)?,
        event_type: row.text("type")?,
        subscription_id: SubscriptionId::parse(&row.text("subscription_id")?).map_err(StoreError::corrupt)?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| StoreError::corrupt(format_args!("status {status}")))?,
        attempt_count: row.int("attempt_count")? as u32,
        next_attempt_at: row.opt_int("next_attempt_at")?.map(from_millis),
        last_attempt_at: row.opt_int("last_attempt_at")?.map(from_millis),
        created_at: from_millis(row.int("created_at")?),
        updated_at: from_millis(row.int("updated_at")?),
    })
}

fn attempt_from_row(row: &impl DbRow) -> Result<Attempt> {
    let kind = row.opt_text("error_kind")?;
    Ok(Attempt {
        id: AttemptId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
        attempt_number: row.int("attempt_number")? as u32,
        started_at: from_millis(row.int("started_at")?),
        duration_ms: row.int("duration_ms")?.max(0) as u64,
        status_code: row.opt_int("status_code")?.map(|c| c as u16),
        response_body: row.opt_text("response_body")?,
        error_kind: match kind {
            Some(k) => Some(ErrorKind::parse(&k).ok_or_else(|| StoreError::corrupt(format_args!("error_kind {k}")))?),
            None => None,
        },
        error_message: row.opt_text("error_message")?,
        node_id: row.text("node_id")?,
    })
}

/// A claimed row, before its event and subscription are attached.
struct Claim {
    id: DeliveryId,
    event_id: String,
    subscription_id: String,
    attempt_count: i64,
}

impl Store {
    /// Claims up to `limit` due deliveries for `node` until `lease_until`,
    /// oldest due first, and loads what sending them needs. On PostgreSQL,
    /// rows another node is claiming at the same moment are skipped, not
    /// waited for.
    pub async fn claim_due_deliveries(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>> {
        let lease = to_millis(lease_until);
        let (claims, events, subscriptions) = with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            let sql = format!(
                "UPDATE deliveries SET leased_by = $1, leased_until = $2, next_attempt_at = $2 \
                 WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $3 \
                              ORDER BY next_attempt_at LIMIT $4{}) \
                 RETURNING id, event_id, subscription_id, attempt_count",
                dialect.skip_locked
            );
            let claims = sqlx::query(&sql)
                .bind(node)
                .bind(lease)
                .bind(to_millis(now))
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| {
                    Ok(Claim {
                        id: DeliveryId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
                        event_id: row.text("event_id")?,
                        subscription_id: row.text("subscription_id")?,
                        attempt_count: row.int("attempt_count")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if claims.is_empty() {
                tx.commit().await?;
                return Ok(Vec::new());
            }
            // RETURNING has no order; hand them out oldest first.
            let mut claims = claims;
            claims.sort_by(|a, b| a.id.cmp(&b.id));
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE id IN ({})",
                dialect.list_param(1)
            );
            let events: HashMap<String, Event> = sqlx::query(&sql)
                .bind(json_strings(claims.iter().map(|c| c.event_id.as_str())))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| event_from_row(row).map(|e| (e.id.to_string(), e)))
                .collect::<Result<_>>()?;
            let sql = format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id IN ({})",
                dialect.list_param(1)
            );
            let subscriptions: HashMap<String, Subscription> = sqlx::query(&sql)
                .bind(json_strings(claims.iter().map(|c| c.subscription_id.as_str())))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| subscription_from_row(row).map(|s| (s.id.to_string(), s)))
                .collect::<Result<_>>()?;
            tx.commit().await?;
            (claims, events, subscriptions)
        });
        claims
            .into_iter()
            .map(|claim| {
                Ok(ClaimedDelivery {
                    attempt_number: claim.attempt_count as u32 + 1,
                    lease_until: lease,
                    event: events
                        .get(&claim.event_id)
                        .cloned()
                        .ok_or_else(|| StoreError::corrupt("delivery without event"))?,
                    subscription: subscriptions
                        .get(&claim.subscription_id)
                        .cloned()
                        .ok_or_else(|| StoreError::corrupt("delivery without subscription"))?,
                    delivery_id: claim.id,
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
        with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            for record in records {
                let a = &record.attempt;
                sqlx::query(
                    "INSERT INTO attempts (id, delivery_id, attempt_number, started_at, duration_ms, status_code, \
                     response_body, error_kind, error_message, node_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
                    "UPDATE deliveries SET status = $1, attempt_count = $2, next_attempt_at = $3, \
                     last_attempt_at = $4, leased_by = NULL, leased_until = NULL, updated_at = $5 \
                     WHERE id = $6 AND status = 'pending' AND leased_by = $7 AND leased_until = $8",
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
        });
        Ok(())
    }

    /// Gives claimed deliveries back without an attempt (on shutdown): they
    /// are due again at once, for this node or another.
    pub async fn release_deliveries(&self, node: &str, claims: &[(DeliveryId, i64)], now: DateTime<Utc>) -> Result<()> {
        with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            for (id, lease_until) in claims {
                sqlx::query(
                    "UPDATE deliveries SET next_attempt_at = $1, leased_by = NULL, leased_until = NULL \
                     WHERE id = $2 AND status = 'pending' AND leased_by = $3 AND leased_until = $4",
                )
                .bind(to_millis(now))
                .bind(id.as_str())
                .bind(node)
                .bind(lease_until)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// When the earliest pending delivery falls due (past or future).
    pub async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>> {
        let next = with_pool!(self, reader, |pool, dialect| {
            sqlx::query("SELECT MIN(next_attempt_at) AS next FROM deliveries WHERE status = 'pending'")
                .fetch_one(pool)
                .await?
                .opt_int("next")?
        });
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
             WHERE d.id = $1 AND d.tenant_id = $2 AND e.sandbox = $3"
        );
        with_pool!(self, reader, |pool, dialect| {
            let Some(row) = sqlx::query(&sql)
                .bind(id.as_str())
                .bind(tenant.as_str())
                .bind(sandbox)
                .fetch_optional(pool)
                .await?
            else {
                return Ok(None);
            };
            let delivery = delivery_from_row(&row)?;
            let attempts = sqlx::query(
                "SELECT id, attempt_number, started_at, duration_ms, status_code, response_body, error_kind, \
                 error_message, node_id FROM attempts WHERE delivery_id = $1 ORDER BY attempt_number, started_at",
            )
            .bind(id.as_str())
            .fetch_all(pool)
            .await?
            .iter()
            .map(attempt_from_row)
            .collect::<Result<Vec<_>>>()?;
            Ok(Some((delivery, attempts)))
        })
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
             WHERE d.subscription_id = $1 AND (CAST($2 AS TEXT) IS NULL OR d.status = $2) \
             AND (CAST($3 AS TEXT) IS NULL OR d.id < $3) ORDER BY d.id DESC LIMIT $4"
        );
        let status = status.map(DeliveryStatus::as_str);
        let before = before.map(DeliveryId::as_str);
        let items = with_pool!(self, reader, |pool, dialect| {
            sqlx::query(&sql)
                .bind(subscription.as_str())
                .bind(status)
                .bind(before)
                .bind(i64::from(limit) + 1)
                .fetch_all(pool)
                .await?
                .iter()
                .map(delivery_from_row)
                .collect::<Result<Vec<_>>>()?
        });
        Ok(Page::from_rows(items, limit))
    }
}
