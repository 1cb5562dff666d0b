//! Deliveries and their attempts: the dispatcher's claims and results, and
//! the delivery log the API shows.
//!
//! A claim is a lease: claiming sets `leased_by`/`leased_until` and moves
//! `next_attempt_at` to the lease's end. A result is written only while the
//! lease it was claimed under still holds (same node, same expiry), so a
//! late answer from a node whose lease already passed to another cannot
//! overwrite the newer state; its attempt is still recorded, because it
//! happened.

use crate::events::emit_operational;
use crate::events::{event_from_row, Event, COLUMNS as EVENT_COLUMNS};
use crate::subscriptions::{
    disable_subscription, load_subscription, subscription_from_row, Subscription, COLUMNS as SUBSCRIPTION_COLUMNS,
    RESET_STREAK,
};
use crate::{announce_work, json_strings, with_pool, DbRow, Page, Result, Store, StoreError};
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
    /// The `location` of a 3xx answer (not followed).
    pub location: Option<String>,
    /// When the attempt was due (unknown for attempts recorded before
    /// Signhook kept it): `started_at` minus this is how late it left.
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// A delivery the dispatcher has claimed, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The number this attempt will have.
    pub attempt_number: u32,
    /// Its place in the current retry schedule (1 for the first try after
    /// creation or after a manual resend).
    pub schedule_attempt: u32,
    /// The lease's end, in milliseconds; proves ownership when recording.
    pub lease_until: i64,
    /// When this attempt was due: the publish, the retry's scheduled time,
    /// the resend. A claim that comes late does not move it.
    pub due_at: DateTime<Utc>,
    /// The event (shared by the deliveries of one fan-out).
    pub event: std::sync::Arc<Event>,
    /// The subscription (shared by its deliveries of one batch).
    pub subscription: std::sync::Arc<Subscription>,
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
    /// The subscription delivered to.
    pub subscription_id: SubscriptionId,
    /// The event's type (a dead-lettered operational event raises no
    /// further `delivery.failed`, so failures cannot feed on themselves).
    pub event_type: String,
    /// Disable the subscription with this reason (`410 Gone`).
    pub disable_subscription: Option<&'static str>,
}

/// How one batch changes a subscription's failure streak, in attempt order.
#[derive(Debug, Default)]
struct StreakChange {
    reset: bool,
    failures: i64,
    first_failure: Option<i64>,
}

/// A pending delivery's next attempt is shown as scheduled (`due_at`), not
/// as the lease end a claim puts in `next_attempt_at`.
const DELIVERY_COLUMNS: &str = "d.id, d.event_id, e.type, d.subscription_id, d.status, d.attempt_count, \
    d.due_at AS next_attempt_at, d.last_attempt_at, d.created_at, d.updated_at";

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
        location: row.opt_text("location")?,
        scheduled_at: row.opt_int("scheduled_at")?.map(from_millis),
    })
}

/// A claimed row, before its event and subscription are attached.
struct Claim {
    id: DeliveryId,
    event_id: String,
    subscription_id: String,
    attempt_count: i64,
    schedule_offset: i64,
    due_at: Option<i64>,
}

/// Rows per multi-row statement: well under both backends' limits on
/// bound parameters (12 per attempt row, 6 per success). Rows are given as
/// `VALUES` lists (`UPDATE … FROM (VALUES …)` for updates): SQLite compiles
/// those in time linear in the rows, where a `CASE` per column grows with
/// their square.
const ROWS_PER_STATEMENT: usize = 500;

impl Store {
    /// Claims up to `limit` due deliveries for `node` until `lease_until`,
    /// oldest due first and at most `per_subscription` of any one
    /// subscription, leaving out those of the subscriptions in `skip` (lanes
    /// that are full on this node), and loads what sending them needs. On
    /// PostgreSQL, rows another node is claiming at the same moment are
    /// skipped, not waited for.
    pub async fn claim_due_deliveries(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_subscription: u32,
        skip: &[SubscriptionId],
    ) -> Result<Vec<ClaimedDelivery>> {
        let skip = json_strings(skip.iter().map(SubscriptionId::as_str));
        let lease = to_millis(lease_until);
        let (claims, events, subscriptions) = with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            // From the oldest due rows (a bounded window, so a large backlog
            // costs no more than a small one), take at most `per_subscription`
            // of each subscription, then the oldest `limit` of those. The row
            // locks are taken at the outer level (PostgreSQL allows no
            // FOR UPDATE beside a window function), and that level repeats the
            // "pending and due" test: it is the one PostgreSQL re-checks
            // against a row another node has just claimed and committed.
            let sql = format!(
                "UPDATE deliveries SET leased_by = $1, leased_until = $2, next_attempt_at = $2 \
                 WHERE id IN (SELECT id FROM deliveries WHERE id IN ( \
                     SELECT id FROM ( \
                         SELECT id, ROW_NUMBER() OVER (PARTITION BY subscription_id ORDER BY next_attempt_at, id) AS place \
                         FROM (SELECT id, subscription_id, next_attempt_at FROM deliveries \
                               WHERE status = 'pending' AND next_attempt_at <= $3 AND subscription_id NOT IN ({}) \
                               ORDER BY next_attempt_at LIMIT $6) AS due \
                     ) AS ranked WHERE place <= $7) \
                   AND status = 'pending' AND next_attempt_at <= $3 \
                   ORDER BY next_attempt_at LIMIT $4{}) \
                 RETURNING id, event_id, subscription_id, attempt_count, schedule_offset, due_at",
                dialect.list_param(5),
                dialect.skip_locked
            );
            let claims = sqlx::query(&sql)
                .bind(node)
                .bind(lease)
                .bind(to_millis(now))
                .bind(i64::from(limit))
                .bind(&skip)
                .bind(i64::from(limit) * 4)
                .bind(i64::from(per_subscription.max(1)))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| {
                    Ok(Claim {
                        id: DeliveryId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
                        event_id: row.text("event_id")?,
                        subscription_id: row.text("subscription_id")?,
                        attempt_count: row.int("attempt_count")?,
                        schedule_offset: row.int("schedule_offset")?,
                        due_at: row.opt_int("due_at")?,
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
            let events: HashMap<String, std::sync::Arc<Event>> = sqlx::query(&sql)
                .bind(json_strings(claims.iter().map(|c| c.event_id.as_str())))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| event_from_row(row).map(|e| (e.id.to_string(), std::sync::Arc::new(e))))
                .collect::<Result<_>>()?;
            let sql = format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id IN ({})",
                dialect.list_param(1)
            );
            let subscriptions: HashMap<String, std::sync::Arc<Subscription>> = sqlx::query(&sql)
                .bind(json_strings(claims.iter().map(|c| c.subscription_id.as_str())))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| subscription_from_row(row, &self.keys).map(|s| (s.id.to_string(), std::sync::Arc::new(s))))
                .collect::<Result<_>>()?;
            tx.commit().await?;
            (claims, events, subscriptions)
        });
        claims
            .into_iter()
            .map(|claim| {
                Ok(ClaimedDelivery {
                    attempt_number: claim.attempt_count as u32 + 1,
                    schedule_attempt: (claim.attempt_count - claim.schedule_offset).max(0) as u32 + 1,
                    lease_until: lease,
                    // Every pending row has one; this default never applies.
                    due_at: claim.due_at.map_or(now, from_millis),
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

    /// Records a batch of attempt outcomes in one transaction (one commit,
    /// however many results), with what follows from them: the
    /// subscriptions' failure streaks, `delivery.failed` for dead letters,
    /// and disabling on `410 Gone` (with `webhook.disabled`). Once
    /// committed, announces the earliest retry and any operational event
    /// to this node's dispatcher.
    pub async fn record_attempts(&self, node: &str, records: &[AttemptRecord], now: DateTime<Utc>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let first_retry = records
            .iter()
            .filter(|r| r.status == DeliveryStatus::Pending)
            .filter_map(|r| r.next_attempt_at)
            .min();
        let now_at = now;
        let now = to_millis(now);
        let mut emitted = false;
        with_pool!(self, writer, |pool, dialect| {
            // Outcomes need no fsync of their own (see `with_pool!`): at most
            // a power cut resends what they recorded.
            let mut writes = pool.relaxed_writes().await?;
            let mut streaks: HashMap<&SubscriptionId, StreakChange> = HashMap::new();
            // Every attempt in multi-row INSERTs, every success and retry
            // in one UPDATE, and on SQLite the whole transaction sent at
            // once: few round trips for many rows, since the writer is
            // shared by every publish and result.
            for chunk in records.chunks(ROWS_PER_STATEMENT) {
                let batch = writes.statement().await?;
                batch.push(
                    "INSERT INTO attempts (id, delivery_id, attempt_number, started_at, duration_ms, status_code, \
                     response_body, error_kind, error_message, node_id, location, scheduled_at) ",
                );
                batch.push_values(chunk, |mut row, record| {
                    let a = &record.attempt;
                    row.push_bind(a.id.as_str())
                        .push_bind(record.delivery_id.as_str())
                        .push_bind(i64::from(a.attempt_number))
                        .push_bind(to_millis(a.started_at))
                        .push_bind(i64::try_from(a.duration_ms).unwrap_or(i64::MAX))
                        .push_bind(a.status_code.map(i64::from))
                        .push_bind(a.response_body.as_deref())
                        .push_bind(a.error_kind.map(ErrorKind::as_str))
                        .push_bind(a.error_message.as_deref())
                        .push_bind(a.node_id.as_str())
                        .push_bind(a.location.as_deref())
                        .push_bind(a.scheduled_at.map(to_millis));
                });
            }
            // Successes and retries need nothing but their row updated; a
            // dead letter (below, one by one) also raises events.
            let settled: Vec<&AttemptRecord> = records.iter().filter(|r| r.status != DeliveryStatus::Failed).collect();
            for chunk in settled.chunks(ROWS_PER_STATEMENT) {
                // Per row: its status, next attempt, attempt count, attempt
                // time and lease (the lease proves the claim is still ours).
                let batch = writes.statement().await?;
                batch
                    .push(
                        "UPDATE deliveries SET status = v.column2, next_attempt_at = v.column3, \
                         due_at = v.column3, attempt_count = v.column4, last_attempt_at = v.column5, leased_by = NULL, \
                         leased_until = NULL, updated_at = ",
                    )
                    .push_bind(now)
                    .push(" FROM (");
                batch.push_values(chunk, |mut row, r| {
                    row.push_bind(r.delivery_id.as_str())
                        .push_bind(r.status.as_str())
                        .push_bind(r.next_attempt_at.map(to_millis))
                        .push_bind(i64::from(r.attempt.attempt_number))
                        .push_bind(to_millis(r.attempt.started_at))
                        .push_bind(r.lease_until);
                });
                batch
                    .push(
                        ") AS v WHERE deliveries.id = v.column1 AND deliveries.status = 'pending' \
                         AND deliveries.leased_until = v.column6 AND deliveries.leased_by = ",
                    )
                    .push_bind(node);
            }
            for record in records {
                let a = &record.attempt;
                if record.status == DeliveryStatus::Succeeded {
                    // One success resets the streak, whatever came before in
                    // this batch.
                    streaks.insert(
                        &record.subscription_id,
                        StreakChange {
                            reset: true,
                            ..StreakChange::default()
                        },
                    );
                    continue;
                }
                if record.status != DeliveryStatus::Failed {
                    // A retry: written above; it counts in the streak.
                    let streak = streaks.entry(&record.subscription_id).or_default();
                    streak.failures += 1;
                    streak.first_failure.get_or_insert(to_millis(a.started_at));
                    continue;
                }
                // A dead letter: what follows depends on this UPDATE.
                writes.apply().await?;
                let applied = sqlx::query(
                    "UPDATE deliveries SET status = $1, attempt_count = $2, next_attempt_at = $3, due_at = $3, \
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
                .execute(&mut *writes)
                .await?
                .rows_affected()
                    == 1;
                // The attempt happened whatever became of the lease, so the
                // streak counts it; the rest is the lease holder's to decide.
                let streak = streaks.entry(&record.subscription_id).or_default();
                streak.failures += 1;
                streak.first_failure.get_or_insert(to_millis(a.started_at));
                if !applied {
                    continue;
                }
                let operational = signhook_core::catalog::lookup(&record.event_type)
                    .is_some_and(|info| info.origin == signhook_core::catalog::EventOrigin::Operational);
                if record.status == DeliveryStatus::Failed && (!operational || record.disable_subscription.is_some()) {
                    let sub = load_subscription!(writes, &record.subscription_id, &self.keys);
                    if record.status == DeliveryStatus::Failed && !operational {
                        let data = serde_json::json!({"delivery": {
                            "id": record.delivery_id.as_str(),
                            "event_type": record.event_type,
                            "webhook_id": sub.id.as_str(),
                            "attempts": a.attempt_number,
                            "last_status_code": a.status_code,
                            "last_error": a.error_kind.map(ErrorKind::as_str),
                        }});
                        emitted |= emit_operational!(
                            writes,
                            dialect,
                            &sub.tenant_id,
                            sub.filter.sandbox,
                            "delivery.failed",
                            data.to_string(),
                            now,
                            &self.keys
                        ) > 0;
                    }
                    if let Some(reason) = record.disable_subscription {
                        emitted |= disable_subscription!(writes, dialect, &sub, reason, now, &self.keys);
                    }
                }
            }
            for (subscription, change) in streaks {
                if change.reset {
                    writes
                        .statement()
                        .await?
                        .push(RESET_STREAK)
                        .push_bind(subscription.as_str());
                }
                if change.failures > 0 {
                    writes
                        .statement()
                        .await?
                        .push("UPDATE subscriptions SET failing_since = COALESCE(failing_since, ")
                        .push_bind(change.first_failure)
                        .push("), failure_count = failure_count + ")
                        .push_bind(change.failures)
                        .push(" WHERE id = ")
                        .push_bind(subscription.as_str());
                }
            }
            writes.commit().await?;
        });
        if emitted {
            self.work.due_at(now_at);
        }
        if let Some(retry) = first_retry {
            self.work.due_at(retry);
        }
        Ok(())
    }

    /// Gives claimed deliveries back without an attempt (at shutdown, or
    /// when this node has no room for them): they are due again at once, for
    /// this node or another (woken through `NOTIFY`). They keep the time
    /// they were due. One statement per 500.
    pub async fn release_deliveries(&self, node: &str, claims: &[(DeliveryId, i64)], now: DateTime<Utc>) -> Result<()> {
        if claims.is_empty() {
            return Ok(());
        }
        with_pool!(self, writer, |pool, dialect| {
            let mut writes = pool.writes().await?;
            for chunk in claims.chunks(ROWS_PER_STATEMENT) {
                // Each row only if its lease is still the one we hold.
                let release = writes.statement().await?;
                release
                    .push("UPDATE deliveries SET next_attempt_at = ")
                    .push_bind(to_millis(now))
                    // Due as they were: a release does not reschedule.
                    .push(", due_at = COALESCE(due_at, ")
                    .push_bind(to_millis(now))
                    .push("), leased_by = NULL, leased_until = NULL FROM (");
                release.push_values(chunk, |mut row, (id, lease_until)| {
                    row.push_bind(id.as_str()).push_bind(*lease_until);
                });
                release
                    .push(
                        ") AS v WHERE deliveries.id = v.column1 AND deliveries.status = 'pending' \
                         AND deliveries.leased_until = v.column2 AND deliveries.leased_by = ",
                    )
                    .push_bind(node);
            }
            if !dialect.notify.is_empty() {
                writes.statement().await?.push(dialect.notify);
            }
            writes.commit().await?;
        });
        self.work.due_at(now);
        Ok(())
    }

    /// When a claim could next bring something: the earliest time a pending
    /// delivery falls due (past or future, a lease's end included), leaving
    /// out the subscriptions in `skip` as the claim does.
    pub async fn next_due_at(&self, skip: &[SubscriptionId]) -> Result<Option<DateTime<Utc>>> {
        let skip = json_strings(skip.iter().map(SubscriptionId::as_str));
        let next = with_pool!(self, reader, |pool, dialect| {
            let sql = format!(
                "SELECT MIN(next_attempt_at) AS next FROM deliveries \
                 WHERE status = 'pending' AND subscription_id NOT IN ({})",
                dialect.list_param(1)
            );
            sqlx::query(&sql).bind(&skip).fetch_one(pool).await?.opt_int("next")?
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
                 error_message, node_id, location, scheduled_at FROM attempts WHERE delivery_id = $1 ORDER BY attempt_number, started_at",
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

    /// Sends a delivery again now, on a fresh retry schedule. Refused while
    /// it is still pending or its subscription is disabled or deleted.
    pub async fn resend_delivery(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<Option<Result<(), ResendRefusal>>> {
        let now_ms = to_millis(now);
        with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            let row = sqlx::query(&format!(
                "SELECT d.status, s.enabled, s.deleted_at FROM deliveries d \
                 JOIN subscriptions s ON s.id = d.subscription_id \
                 WHERE d.id = $1 AND d.tenant_id = $2 AND s.sandbox = $3{}",
                dialect.for_update
            ))
            .bind(id.as_str())
            .bind(tenant.as_str())
            .bind(sandbox)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { return Ok(None) };
            if row.text("status")? == DeliveryStatus::Pending.as_str() {
                return Ok(Some(Err(ResendRefusal::StillPending)));
            }
            if row.opt_int("deleted_at")?.is_some() || !row.flag("enabled")? {
                return Ok(Some(Err(ResendRefusal::SubscriptionDisabled)));
            }
            sqlx::query(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, due_at = $1, \
                 schedule_offset = attempt_count, leased_by = NULL, leased_until = NULL, updated_at = $1 WHERE id = $2",
            )
            .bind(now_ms)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
            announce_work!(tx, dialect);
            tx.commit().await?;
            self.work.due_at(now);
            Ok(Some(Ok(())))
        })
    }

    /// Sends an event (again) to one subscription, whatever it subscribes to:
    /// a new delivery, due now. `None` when either is not the tenant's.
    pub async fn redeliver_event(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        event: &EventId,
        subscription: &SubscriptionId,
        now: DateTime<Utc>,
    ) -> Result<Option<Result<DeliveryId, ResendRefusal>>> {
        let now_ms = to_millis(now);
        let id = DeliveryId::generate();
        with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            let event = sqlx::query(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 AND tenant_id = $2 AND sandbox = $3"
            ))
            .bind(event.as_str())
            .bind(tenant.as_str())
            .bind(sandbox)
            .fetch_optional(&mut *tx)
            .await?;
            let sub = sqlx::query(
                "SELECT enabled FROM subscriptions WHERE id = $1 AND tenant_id = $2 AND sandbox = $3 \
                 AND deleted_at IS NULL",
            )
            .bind(subscription.as_str())
            .bind(tenant.as_str())
            .bind(sandbox)
            .fetch_optional(&mut *tx)
            .await?;
            let (Some(event), Some(sub)) = (event, sub) else {
                return Ok(None);
            };
            if !sub.flag("enabled")? {
                return Ok(Some(Err(ResendRefusal::SubscriptionDisabled)));
            }
            let event = event_from_row(&event)?;
            crate::events::bind_delivery!(id, event, subscription, true, now_ms)
                .execute(&mut *tx)
                .await?;
            announce_work!(tx, dialect);
            tx.commit().await?;
            self.work.due_at(now);
            Ok(Some(Ok(id.clone())))
        })
    }

    /// The delivery backlog at `now`: how many pending deliveries are due
    /// and not claimed, and since when the oldest of them has been due.
    pub async fn delivery_backlog(&self, now: DateTime<Utc>) -> Result<(u64, Option<DateTime<Utc>>)> {
        with_pool!(self, reader, |pool, dialect| {
            let row = sqlx::query(
                "SELECT COUNT(*) AS n, MIN(next_attempt_at) AS oldest FROM deliveries \
                 WHERE status = 'pending' AND next_attempt_at <= $1 AND leased_by IS NULL",
            )
            .bind(to_millis(now))
            .fetch_one(pool)
            .await?;
            Ok((row.int("n")?.max(0) as u64, row.opt_int("oldest")?.map(from_millis)))
        })
    }

    /// How many subscriptions are disabled (not deleted).
    pub async fn disabled_subscription_count(&self) -> Result<u64> {
        with_pool!(self, reader, |pool, dialect| {
            let row =
                sqlx::query("SELECT COUNT(*) AS n FROM subscriptions WHERE enabled = FALSE AND deleted_at IS NULL")
                    .fetch_one(pool)
                    .await?;
            Ok(row.int("n")?.max(0) as u64)
        })
    }
}

/// Why a resend was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendRefusal {
    /// The delivery is still pending: it will be tried anyway.
    StillPending,
    /// The subscription is disabled (or deleted): enable it first.
    SubscriptionDisabled,
}
