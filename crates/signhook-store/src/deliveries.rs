//! Deliveries and their attempts: recording the outcomes of attempts (with
//! what follows from them), resends, and the delivery log the API shows.
//! Claiming and releasing are [`crate::claims`].

use crate::claims::ClaimedDelivery;
use crate::db::{json_strings, DbRow, Dialects, Sql, Tx};
use crate::events::{event_from_row, EVENT_COLUMNS};
use crate::outbox::{self, NewDelivery};
use crate::subscriptions::{load_subscription, reset_streak};
use crate::{Page, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::delivery::{DeliveryStatus, ErrorKind};
use signhook_core::ids::{AttemptId, DeliveryId, EventId, SubscriptionId, TenantId};
use signhook_core::outcome::{consequences, Consequences, StreakStep};
use signhook_core::retry::Decision;
use signhook_core::time::{from_millis, to_millis};
use std::collections::HashMap;

/// The most response-body bytes kept per attempt.
pub const MAX_RESPONSE_BODY: usize = 4096;

/// The hourly counts of a list of subscriptions (a JSON array in `$1`)
/// from hour `$2` on.
const HEALTH: Dialects = Dialects {
    sqlite: "SELECT subscription_id, hour, attempts, successes, duration_ms FROM subscription_stats \
             WHERE subscription_id IN (SELECT value FROM json_each($1)) AND hour >= $2 \
             ORDER BY subscription_id, hour",
    postgres: "SELECT subscription_id, hour, attempts, successes, duration_ms FROM subscription_stats \
               WHERE subscription_id IN (SELECT json_array_elements_text(CAST($1 AS json))) AND hour >= $2 \
               ORDER BY subscription_id, hour",
};

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

/// Which of a subscription's deliveries a log page shows; every field
/// left `None` lets every delivery pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryQuery {
    /// Only this status (`failed` = the dead letters).
    pub status: Option<DeliveryStatus>,
    /// Only deliveries of events of this type.
    pub event_type: Option<String>,
    /// Only the delivery of this event.
    pub event_id: Option<EventId>,
    /// Only those created at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Only those created before this.
    pub until: Option<DateTime<Utc>>,
    /// Only those older than this one (the cursor of the next page).
    pub before: Option<DeliveryId>,
}

/// A delivery of one event, with where it went.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDelivery {
    /// The delivery.
    pub delivery: Delivery,
    /// The subscription's URL as it is now (a relay's: [`crate::relays::RELAY_DESTINATION`]).
    pub webhook_url: String,
    /// Whether the subscription was deleted since.
    pub webhook_deleted: bool,
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
    /// The request's headers as sent, in order (custom header values
    /// replaced by [`HIDDEN_HEADER_VALUE`]); empty for attempts recorded
    /// before Signhook kept them, or refused before any request was made.
    pub request_headers: Vec<(String, String)>,
}

/// What an attempt's record shows for the value of a custom header: those
/// may be credentials, which are kept only sealed, with the subscription.
pub const HIDDEN_HEADER_VALUE: &str = "(custom header: value not shown)";

/// The outcome of one attempt, to be recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The lease it was claimed under.
    pub lease_until: i64,
    /// The attempt as it happened.
    pub attempt: Attempt,
    /// What the retry rules decided after it.
    pub decision: Decision,
    /// When they decided it (a retry's wait counts from here).
    pub decided_at: DateTime<Utc>,
    /// The subscription delivered to.
    pub subscription_id: SubscriptionId,
    /// The event's type (a dead-lettered operational event raises no
    /// further `delivery.failed`, so failures cannot feed on themselves).
    pub event_type: String,
    /// Whether the delivery is ordered by a key
    /// ([`ClaimedDelivery::ordering_key`](crate::claims::ClaimedDelivery::ordering_key)):
    /// its success or dead letter may then let the next one of its key go.
    pub ordered: bool,
}

impl AttemptRecord {
    /// Everything the decision changes ([`signhook_core::outcome`]).
    pub fn consequences(&self) -> Consequences {
        consequences(self.decision, self.decided_at, &self.event_type)
    }
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
        request_headers: match row.opt_text("request_headers")? {
            Some(json) => serde_json::from_str(&json).map_err(StoreError::corrupt)?,
            None => Vec::new(),
        },
    })
}

/// Rows per multi-row statement: well under both backends' limits on
/// bound parameters (13 per attempt row, 6 per success). Rows are given as
/// `VALUES` lists (`UPDATE … FROM (VALUES …)` for updates): SQLite compiles
/// those in time linear in the rows, where a `CASE` per column grows with
/// their square.
const ROWS_PER_STATEMENT: usize = 500;

/// The attempts of a batch, as rows of `attempts`.
fn insert_attempts(records: &[AttemptRecord]) -> Sql {
    Sql::new(
        "INSERT INTO attempts (id, delivery_id, attempt_number, started_at, duration_ms, status_code, \
         response_body, error_kind, error_message, node_id, location, scheduled_at, request_headers) ",
    )
    .push_values(records, |row, record| {
        let a = &record.attempt;
        row.bind(&a.id)
            .bind(&record.delivery_id)
            .bind(i64::from(a.attempt_number))
            .bind(to_millis(a.started_at))
            .bind(i64::try_from(a.duration_ms).unwrap_or(i64::MAX))
            .bind(a.status_code.map(i64::from))
            .bind(a.response_body.as_ref())
            .bind(a.error_kind.map(ErrorKind::as_str))
            .bind(a.error_message.as_ref())
            .bind(&a.node_id)
            .bind(a.location.as_ref())
            .bind(a.scheduled_at.map(to_millis))
            .bind(
                (!a.request_headers.is_empty())
                    .then(|| serde_json::to_string(&a.request_headers).expect("pairs of strings serialize")),
            );
    })
}

/// The hour (unix milliseconds of its start) that `t` falls in.
pub fn hour_of(t: DateTime<Utc>) -> i64 {
    to_millis(t).div_euclid(3_600_000) * 3_600_000
}

/// Adds a batch's attempts to their subscriptions' hourly counts: one row
/// per subscription and hour.
fn count_attempts(outcomes: &[(&AttemptRecord, Consequences)]) -> Option<Sql> {
    let mut hours: std::collections::BTreeMap<(&SubscriptionId, i64), (i64, i64, i64)> = Default::default();
    for (record, then) in outcomes {
        let counts = hours
            .entry((&record.subscription_id, hour_of(record.attempt.started_at)))
            .or_default();
        counts.0 += 1;
        counts.1 += i64::from(then.streak == StreakStep::Reset);
        counts.2 += i64::try_from(record.attempt.duration_ms).unwrap_or(i64::MAX);
    }
    if hours.is_empty() {
        return None;
    }
    let rows: Vec<_> = hours.into_iter().collect();
    let sql = Sql::new("INSERT INTO subscription_stats (subscription_id, hour, attempts, successes, duration_ms) ")
        .push_values(&rows, |row, ((subscription, hour), (attempts, successes, duration))| {
            row.bind(*subscription)
                .bind(*hour)
                .bind(*attempts)
                .bind(*successes)
                .bind(*duration);
        })
        .push(
            " ON CONFLICT (subscription_id, hour) DO UPDATE SET \
             attempts = subscription_stats.attempts + excluded.attempts, \
             successes = subscription_stats.successes + excluded.successes, \
             duration_ms = subscription_stats.duration_ms + excluded.duration_ms",
        );
    Some(sql)
}

/// One subscription's attempts in one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourStats {
    /// The hour's start.
    pub hour: DateTime<Utc>,
    /// Attempts that started in it.
    pub attempts: u64,
    /// Those answered 2xx.
    pub successes: u64,
    /// Their summed duration, in milliseconds.
    pub duration_ms: u64,
}

/// Successes and retries of a batch, each row updated only while the lease
/// it was claimed under holds: its status, next attempt, attempt count and
/// attempt time.
fn settle(records: &[(&AttemptRecord, Consequences)], node: &str, now: i64) -> Sql {
    Sql::new(
        "UPDATE deliveries SET status = v.column2, next_attempt_at = v.column3, due_at = v.column3, \
         attempt_count = v.column4, last_attempt_at = v.column5, leased_by = NULL, leased_until = NULL, \
         updated_at = $1 FROM (",
    )
    .bind(now)
    .bind(node)
    .push_values(records, |row, (r, then)| {
        row.bind(&r.delivery_id)
            .bind(then.status.as_str())
            .bind(then.next_attempt_at.map(to_millis))
            .bind(i64::from(r.attempt.attempt_number))
            .bind(to_millis(r.attempt.started_at))
            .bind(r.lease_until);
    })
    .push(
        ") AS v WHERE deliveries.id = v.column1 AND deliveries.status = 'pending' \
         AND deliveries.leased_until = v.column6 AND deliveries.leased_by = $2",
    )
}

/// A dead letter, written only while the lease it was claimed under holds.
fn dead_letter(record: &AttemptRecord, node: &str, now: i64) -> Sql {
    Sql::new(
        "UPDATE deliveries SET status = 'failed', attempt_count = $1, next_attempt_at = NULL, due_at = NULL, \
         last_attempt_at = $2, leased_by = NULL, leased_until = NULL, updated_at = $3 \
         WHERE id = $4 AND status = 'pending' AND leased_by = $5 AND leased_until = $6",
    )
    .bind(i64::from(record.attempt.attempt_number))
    .bind(to_millis(record.attempt.started_at))
    .bind(now)
    .bind(&record.delivery_id)
    .bind(node)
    .bind(record.lease_until)
}

impl Store {
    /// Records a batch of attempt outcomes in one transaction (one commit,
    /// however many results), with what follows from them: the
    /// subscriptions' failure streaks, `delivery.failed` for dead letters,
    /// and disabling on `410 Gone` (with `webhook.disabled`). Once
    /// committed, announces the earliest retry and any operational event
    /// to this node's dispatcher.
    ///
    /// A success or dead letter of an ordered key's head lets the key's next
    /// delivery go: claimed at once for `node` until `next_lease` and
    /// returned, for the dispatcher to send without a claim in between.
    pub async fn record_attempts(
        &self,
        node: &str,
        records: &[AttemptRecord],
        now: DateTime<Utc>,
        next_lease: DateTime<Utc>,
    ) -> Result<Vec<ClaimedDelivery>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes: Vec<(&AttemptRecord, Consequences)> = records.iter().map(|r| (r, r.consequences())).collect();
        let first_retry = outcomes.iter().filter_map(|(_, then)| then.next_attempt_at).min();
        let now_ms = to_millis(now);
        // Outcomes need no fsync of their own: at most a power cut resends
        // what they recorded.
        let mut tx = self.begin_relaxed().await?;
        // Every attempt in multi-row INSERTs, every success and retry in one
        // UPDATE, and on SQLite the whole transaction sent at once: few round
        // trips for many rows, since the writer is shared by every publish
        // and result. A dead letter (below, one by one) also raises events.
        for chunk in records.chunks(ROWS_PER_STATEMENT) {
            tx.gather(insert_attempts(chunk)).await?;
        }
        let settled: Vec<(&AttemptRecord, Consequences)> = outcomes
            .iter()
            .filter(|(_, then)| then.status != DeliveryStatus::Failed)
            .copied()
            .collect();
        for chunk in settled.chunks(ROWS_PER_STATEMENT) {
            tx.gather(settle(chunk, node, now_ms)).await?;
        }
        for chunk in outcomes.chunks(ROWS_PER_STATEMENT) {
            if let Some(counts) = count_attempts(chunk) {
                tx.gather(counts).await?;
            }
        }
        let mut streaks: HashMap<&SubscriptionId, StreakChange> = HashMap::new();
        for (record, then) in &outcomes {
            // The attempt happened whatever became of the lease, so the
            // streak counts it.
            let streak = streaks.entry(&record.subscription_id).or_default();
            match then.streak {
                // One success resets the streak, whatever came before in
                // this batch.
                StreakStep::Reset => {
                    *streak = StreakChange {
                        reset: true,
                        ..StreakChange::default()
                    }
                }
                StreakStep::Failure => {
                    streak.failures += 1;
                    streak.first_failure.get_or_insert(to_millis(record.attempt.started_at));
                }
            }
            if then.status == DeliveryStatus::Failed {
                self.follow_dead_letter(&mut tx, node, record, then, now).await?;
            }
        }
        for (subscription, change) in streaks {
            if change.reset {
                tx.gather(reset_streak(subscription)).await?;
            }
            if change.failures > 0 {
                tx.gather(
                    Sql::new(
                        "UPDATE subscription_health SET failing_since = COALESCE(failing_since, $1), \
                         failure_count = failure_count + $2 WHERE subscription_id = $3",
                    )
                    .bind(change.first_failure)
                    .bind(change.failures)
                    .bind(subscription),
                )
                .await?;
            }
        }
        // A success or a dead letter of a key's head may let the next
        // delivery of the key go; a retry keeps the head where it is.
        let finished: Vec<&str> = outcomes
            .iter()
            .filter(|(record, then)| record.ordered && then.status != DeliveryStatus::Pending)
            .map(|(record, _)| record.delivery_id.as_str())
            .collect();
        let lease = to_millis(next_lease);
        let next =
            crate::ordering::release_next_claimed(&mut tx, crate::ordering::Keys::Of(&finished), now, node, lease)
                .await?;
        let next = self.commit_claiming(tx, next).await?;
        if let Some(retry) = first_retry {
            self.work.due_at(retry);
        }
        Ok(self.attach_claims(next, lease, now).await)
    }

    /// Writes a dead letter and, if this node's lease still held it, what
    /// follows: `delivery.failed`, disabling the subscription.
    async fn follow_dead_letter(
        &self,
        tx: &mut Tx<'_>,
        node: &str,
        record: &AttemptRecord,
        then: &Consequences,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if tx.execute(dead_letter(record, node, to_millis(now))).await? != 1 {
            // Another node holds it now: what follows is for it to decide.
            return Ok(());
        }
        if !then.raises_delivery_failed && then.disable.is_none() {
            return Ok(());
        }
        let sub = load_subscription(tx, &record.subscription_id, &self.keys).await?;
        if then.raises_delivery_failed {
            let a = &record.attempt;
            let data = serde_json::json!({"delivery": {
                "id": record.delivery_id.as_str(),
                "event_type": record.event_type,
                "webhook_id": sub.id.as_str(),
                "attempts": a.attempt_number,
                "last_status_code": a.status_code,
                "last_error": a.error_kind.map(ErrorKind::as_str),
            }});
            let owner = (&sub.tenant_id, sub.filter.sandbox);
            self.outbox()
                .emit_operational(tx, owner, "delivery.failed", data.to_string(), now)
                .await?;
        }
        if let Some(reason) = then.disable {
            self.outbox().disable_subscription(tx, &sub, reason, now).await?;
        }
        Ok(())
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
        let reader = self.reader();
        let Some(row) = reader
            .fetch_optional(Sql::new(sql).bind(id).bind(tenant).bind(sandbox))
            .await?
        else {
            return Ok(None);
        };
        let delivery = delivery_from_row(&row)?;
        let attempts = reader
            .fetch_parsed(
                Sql::new(
                    "SELECT id, attempt_number, started_at, duration_ms, status_code, response_body, error_kind, \
                     error_message, node_id, location, scheduled_at, request_headers FROM attempts \
                     WHERE delivery_id = $1 ORDER BY attempt_number, started_at",
                )
                .bind(id),
                attempt_from_row,
            )
            .await?;
        Ok(Some((delivery, attempts)))
    }

    /// A page of a subscription's deliveries, newest first, that `query`
    /// selects (`status: failed` = the dead letters).
    pub async fn list_deliveries(
        &self,
        subscription: &SubscriptionId,
        query: &DeliveryQuery,
        limit: u32,
    ) -> Result<Page<Delivery>> {
        // Every filter is optional: a NULL parameter lets every row pass.
        // The CASTs give PostgreSQL the parameters' types. Dead letters are
        // asked for by a literal status, which the partial index
        // `deliveries_dead_letters` serves.
        let status = if query.status == Some(DeliveryStatus::Failed) {
            "d.status = 'failed' AND CAST($2 AS TEXT) IS NOT NULL"
        } else {
            "(CAST($2 AS TEXT) IS NULL OR d.status = $2)"
        };
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.subscription_id = $1 AND {status} \
             AND (CAST($3 AS TEXT) IS NULL OR d.id < $3) AND (CAST($4 AS TEXT) IS NULL OR e.type = $4) \
             AND (CAST($5 AS TEXT) IS NULL OR d.event_id = $5) \
             AND (CAST($6 AS BIGINT) IS NULL OR d.created_at >= $6) \
             AND (CAST($7 AS BIGINT) IS NULL OR d.created_at < $7) ORDER BY d.id DESC LIMIT $8"
        );
        let sql = Sql::new(sql)
            .bind(subscription)
            .bind(query.status.map(DeliveryStatus::as_str))
            .bind(query.before.as_ref().map(DeliveryId::as_str))
            .bind(query.event_type.as_deref())
            .bind(query.event_id.as_ref().map(EventId::as_str))
            .bind(query.since.map(to_millis))
            .bind(query.until.map(to_millis))
            .bind(i64::from(limit) + 1);
        let items = self.reader().fetch_parsed(sql, delivery_from_row).await?;
        Ok(Page::from_rows(items, limit))
    }

    /// The hourly attempt counts of `subscriptions` from `since` on, by
    /// subscription, oldest hour first; hours without attempts are absent.
    pub async fn endpoint_health(
        &self,
        subscriptions: &[SubscriptionId],
        since: DateTime<Utc>,
    ) -> Result<HashMap<SubscriptionId, Vec<HourStats>>> {
        let mut health: HashMap<SubscriptionId, Vec<HourStats>> = HashMap::new();
        if subscriptions.is_empty() {
            return Ok(health);
        }
        let ids = json_strings(subscriptions.iter().map(SubscriptionId::as_str));
        let reader = self.reader();
        let sql = Sql::new(reader.pick(HEALTH)).bind(ids).bind(hour_of(since));
        for row in reader.fetch_all(sql).await? {
            let id = SubscriptionId::parse(&row.text("subscription_id")?).map_err(StoreError::corrupt)?;
            let count = |name| row.int(name).map(|n| n.max(0) as u64);
            health.entry(id).or_default().push(HourStats {
                hour: from_millis(row.int("hour")?),
                attempts: count("attempts")?,
                successes: count("successes")?,
                duration_ms: count("duration_ms")?,
            });
        }
        Ok(health)
    }

    /// Forgets the hourly attempt counts of hours before `cutoff` (the
    /// dashboard shows 7 days).
    pub async fn purge_stats_before(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.begin().await?;
        let purged = tx
            .execute(Sql::new("DELETE FROM subscription_stats WHERE hour < $1").bind(hour_of(cutoff)))
            .await?;
        tx.commit().await?;
        Ok(purged)
    }

    /// The deliveries of one event of the tenant's environment, oldest
    /// first (through `deliveries_by_event`), at most `limit` of them.
    pub async fn event_deliveries(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        event: &EventId,
        limit: u32,
    ) -> Result<Page<EventDelivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS}, s.url, s.kind, s.deleted_at FROM deliveries d JOIN events e ON e.id = d.event_id \
             JOIN subscriptions s ON s.id = d.subscription_id \
             WHERE d.event_id = $1 AND d.tenant_id = $2 AND e.sandbox = $3 ORDER BY d.id LIMIT $4"
        );
        let sql = Sql::new(sql)
            .bind(event)
            .bind(tenant)
            .bind(sandbox)
            .bind(i64::from(limit) + 1);
        let items = self
            .reader()
            .fetch_parsed(sql, |row| {
                Ok(EventDelivery {
                    delivery: delivery_from_row(row)?,
                    webhook_url: match row.text("kind")?.as_str() {
                        "relay" => crate::relays::RELAY_DESTINATION.to_owned(),
                        _ => row.text("url")?,
                    },
                    webhook_deleted: row.opt_int("deleted_at")?.is_some(),
                })
            })
            .await?;
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
        let mut tx = self.begin().await?;
        let found = Sql::new(tx.pick(Dialects {
            sqlite: "SELECT d.status, s.enabled, s.deleted_at FROM deliveries d \
                     JOIN subscriptions s ON s.id = d.subscription_id \
                     WHERE d.id = $1 AND d.tenant_id = $2 AND s.sandbox = $3",
            postgres: "SELECT d.status, s.enabled, s.deleted_at FROM deliveries d \
                       JOIN subscriptions s ON s.id = d.subscription_id \
                       WHERE d.id = $1 AND d.tenant_id = $2 AND s.sandbox = $3 FOR UPDATE",
        }))
        .bind(id)
        .bind(tenant)
        .bind(sandbox);
        let Some(row) = tx.fetch_optional(found).await? else {
            return Ok(None);
        };
        if row.text("status")? == DeliveryStatus::Pending.as_str() {
            return Ok(Some(Err(ResendRefusal::StillPending)));
        }
        if row.opt_int("deleted_at")?.is_some() || !row.flag("enabled")? {
            return Ok(Some(Err(ResendRefusal::SubscriptionDisabled)));
        }
        // An ordered delivery waits for its key like a new one (it is
        // the key's next, its event being the oldest waiting).
        tx.gather(
            Sql::new(
                "UPDATE deliveries SET status = 'pending', \
                 next_attempt_at = CASE WHEN ordering_key IS NULL THEN $1 END, \
                 due_at = CASE WHEN ordering_key IS NULL THEN $1 END, \
                 schedule_offset = attempt_count, leased_by = NULL, leased_until = NULL, updated_at = $1 WHERE id = $2",
            )
            .bind(to_millis(now))
            .bind(id),
        )
        .await?;
        tx.work_due_at(now).await?;
        crate::ordering::release_next(&mut tx, crate::ordering::Keys::Of(&[id.as_str()]), now).await?;
        tx.commit().await?;
        Ok(Some(Ok(())))
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
        let mut tx = self.begin().await?;
        let event = Sql::new(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 AND tenant_id = $2 AND sandbox = $3"
        ))
        .bind(event)
        .bind(tenant)
        .bind(sandbox);
        let event = tx.fetch_optional(event).await?;
        let sub = Sql::new(
            "SELECT enabled, ordering FROM subscriptions WHERE id = $1 AND tenant_id = $2 AND sandbox = $3 \
             AND deleted_at IS NULL",
        )
        .bind(subscription)
        .bind(tenant)
        .bind(sandbox);
        let sub = tx.fetch_optional(sub).await?;
        let (Some(event), Some(sub)) = (event, sub) else {
            return Ok(None);
        };
        if !sub.flag("enabled")? {
            return Ok(Some(Err(ResendRefusal::SubscriptionDisabled)));
        }
        let event = event_from_row(&event)?;
        let ordering = sub.text("ordering")?;
        let ordering = signhook_core::ordering::Ordering::parse(&ordering)
            .ok_or_else(|| StoreError::corrupt(format_args!("ordering {ordering}")))?;
        let id = DeliveryId::generate();
        // Sent again in its key's order: an old event's new delivery is the
        // next of its key to leave.
        let ordering_key = ordering.key_of(event.ordering_key.as_deref(), || {
            signhook_core::ordering::signature_request_id(&event.data)
        });
        let new = NewDelivery {
            id: id.clone(),
            event: &event,
            subscription_id: subscription,
            enabled: true,
            ordering_key,
        };
        outbox::write_deliveries(&mut tx, &[new], None, now).await?;
        tx.commit().await?;
        Ok(Some(Ok(id)))
    }

    /// How many subscriptions are disabled (not deleted).
    pub async fn disabled_subscription_count(&self) -> Result<u64> {
        let row = self
            .reader()
            .fetch_one(Sql::new(
                "SELECT COUNT(*) AS n FROM subscriptions WHERE enabled = FALSE AND deleted_at IS NULL",
            ))
            .await?;
        Ok(row.int("n")?.max(0) as u64)
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
