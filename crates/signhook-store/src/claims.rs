//! Claims: a node takes due deliveries under a lease, sends them, and
//! records their outcomes (see [`crate::deliveries`]) or gives them back.
//!
//! Claiming sets `leased_by`/`leased_until` and moves `next_attempt_at` to
//! the lease's end, so a claim held by a node that died simply falls due
//! again when its lease ends. An outcome or a release is written only while
//! the lease it was claimed under still holds (same node, same end), so a
//! late answer from a node whose lease already passed to another cannot
//! overwrite the newer state.

use crate::db::{json_strings, DbRow, Dialects, Row, Sql, Tx};
use crate::events::{event_from_row, Event};
use crate::subscriptions::{subscription_from_row, Subscription, SUBSCRIPTION_COLUMNS};
use crate::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::ids::{DeliveryId, SubscriptionId};
use signhook_core::time::{from_millis, to_millis};
use std::collections::HashMap;
use std::sync::Arc;

/// A node's claim on deliveries: it alone sends them until `until`, after
/// which any node may claim them again.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The node that sends them.
    pub node_id: String,
    /// When the claim ends if no outcome was recorded by then.
    pub until: DateTime<Utc>,
}

/// What [`Store::release_leases_of_previous_run`] gave back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Pending deliveries, now due.
    pub deliveries: u64,
    /// Running recovery jobs, now free for any node's scheduler.
    pub recoveries: u64,
}

/// One delivery a node holds under its lease: what proves the claim when
/// the node records an outcome or gives the delivery back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The lease's end, in milliseconds, as the claim wrote it.
    pub lease_until: i64,
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
    pub event: Arc<Event>,
    /// The subscription (shared by its deliveries of one batch).
    pub subscription: Arc<Subscription>,
    /// The key it is ordered by, if it is: it is then its key's head, and
    /// recording its outcome may let the next one of the key go.
    pub ordering_key: Option<String>,
}

impl ClaimedDelivery {
    /// The claim, as proof when giving the delivery back.
    pub fn held(&self) -> Held {
        Held {
            delivery_id: self.delivery_id.clone(),
            lease_until: self.lease_until,
        }
    }
}

/// A claimed row, before its event and subscription are attached.
pub(crate) struct ClaimedRow {
    id: DeliveryId,
    event_id: String,
    subscription_id: String,
    attempt_count: i64,
    schedule_offset: i64,
    due_at: Option<i64>,
    ordering_key: Option<String>,
}

/// The rows an `UPDATE … RETURNING` of [`CLAIMED_COLUMNS`] claimed.
fn claimed_rows(rows: &[Row]) -> Result<Vec<ClaimedRow>> {
    rows.iter()
        .map(|row| {
            Ok(ClaimedRow {
                id: DeliveryId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
                event_id: row.text("event_id")?,
                subscription_id: row.text("subscription_id")?,
                attempt_count: row.int("attempt_count")?,
                schedule_offset: row.int("schedule_offset")?,
                due_at: row.opt_int("due_at")?,
                ordering_key: row.opt_text("ordering_key")?,
            })
        })
        .collect()
}

/// What a claim returns of each row it took.
pub(crate) const CLAIMED_COLUMNS: &str =
    "id, event_id, subscription_id, attempt_count, schedule_offset, due_at, ordering_key";

impl ClaimedRow {
    /// The delivery claimed.
    pub(crate) fn id(&self) -> &DeliveryId {
        &self.id
    }

    /// The delivery claimed, the rest dropped.
    pub(crate) fn into_id(self) -> DeliveryId {
        self.id
    }

    /// The claim with its event and subscription, ready to send.
    fn attach(
        self,
        events: &HashMap<String, Arc<Event>>,
        subscriptions: &HashMap<String, Arc<Subscription>>,
        lease: i64,
        now: DateTime<Utc>,
    ) -> Result<ClaimedDelivery> {
        Ok(ClaimedDelivery {
            attempt_number: self.attempt_count as u32 + 1,
            schedule_attempt: (self.attempt_count - self.schedule_offset).max(0) as u32 + 1,
            lease_until: lease,
            // Every pending row has one; this default never applies.
            due_at: self.due_at.map_or(now, from_millis),
            event: events
                .get(&self.event_id)
                .cloned()
                .ok_or_else(|| StoreError::corrupt("delivery without event"))?,
            subscription: subscriptions
                .get(&self.subscription_id)
                .cloned()
                .ok_or_else(|| StoreError::corrupt("delivery without subscription"))?,
            delivery_id: self.id,
            ordering_key: self.ordering_key,
        })
    }
}

/// From the oldest due rows (a bounded window, so a large backlog costs no
/// more than a small one), at most `$7` of each subscription, then the
/// oldest `$4` of those, leaving out the subscriptions listed in `$5`. The
/// row locks are taken at the outer level (PostgreSQL allows no `FOR
/// UPDATE` beside a window function), and that level repeats the "pending
/// and due" test: it is the one PostgreSQL re-checks against a row another
/// node has just claimed and committed — and skips, rather than waits for,
/// rows another node is claiming. The deliveries of a relay subscription
/// (`signhook listen`, see [`crate::relays`]) are claimed only by the node
/// holding its socket, while its hold lasts; with no holder they wait.
const CLAIM: Dialects = Dialects {
    sqlite: "UPDATE deliveries SET leased_by = $1, leased_until = $2, next_attempt_at = $2 \
             WHERE id IN (SELECT id FROM deliveries WHERE id IN ( \
                 SELECT id FROM ( \
                     SELECT id, ROW_NUMBER() OVER (PARTITION BY subscription_id ORDER BY next_attempt_at, id) AS place \
                     FROM (SELECT id, subscription_id, next_attempt_at FROM deliveries \
                           WHERE status = 'pending' AND next_attempt_at <= $3 \
                           AND subscription_id NOT IN (SELECT value FROM json_each($5)) \
                           AND subscription_id NOT IN (SELECT id FROM subscriptions WHERE kind = 'relay' \
                               AND (relay_node IS NULL OR relay_node <> $1 OR relay_until <= $3)) \
                           ORDER BY next_attempt_at LIMIT $6) AS due \
                 ) AS ranked WHERE place <= $7) \
               AND status = 'pending' AND next_attempt_at <= $3 \
               ORDER BY next_attempt_at LIMIT $4) \
             RETURNING id, event_id, subscription_id, attempt_count, schedule_offset, due_at, ordering_key",
    postgres: "UPDATE deliveries SET leased_by = $1, leased_until = $2, next_attempt_at = $2 \
               WHERE id IN (SELECT id FROM deliveries WHERE id IN ( \
                   SELECT id FROM ( \
                       SELECT id, ROW_NUMBER() OVER (PARTITION BY subscription_id ORDER BY next_attempt_at, id) AS place \
                       FROM (SELECT id, subscription_id, next_attempt_at FROM deliveries \
                             WHERE status = 'pending' AND next_attempt_at <= $3 \
                             AND subscription_id NOT IN (SELECT json_array_elements_text(CAST($5 AS json))) \
                             AND subscription_id NOT IN (SELECT id FROM subscriptions WHERE kind = 'relay' \
                                 AND (relay_node IS NULL OR relay_node <> $1 OR relay_until <= $3)) \
                             ORDER BY next_attempt_at LIMIT $6) AS due \
                   ) AS ranked WHERE place <= $7) \
                 AND status = 'pending' AND next_attempt_at <= $3 \
                 ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
               RETURNING id, event_id, subscription_id, attempt_count, schedule_offset, due_at, ordering_key",
};

/// The events of the ids listed in `$1`.
const EVENTS_IN: Dialects = Dialects {
    sqlite:
        "SELECT id, tenant_id, sandbox, type, scope, workspace_id, created_at, data, origin, ordering_key FROM events \
             WHERE id IN (SELECT value FROM json_each($1))",
    postgres:
        "SELECT id, tenant_id, sandbox, type, scope, workspace_id, created_at, data, origin, ordering_key FROM events \
               WHERE id IN (SELECT json_array_elements_text(CAST($1 AS json)))",
};

/// The strings of the JSON array bound as `$1`, as a subquery.
const LISTED: Dialects = Dialects {
    sqlite: "SELECT value FROM json_each($1)",
    postgres: "SELECT json_array_elements_text(CAST($1 AS json))",
};

/// When a claim by node `$2` could next bring something, leaving out the
/// subscriptions listed in `$1`, and the relays whose CLI is not connected
/// to this node: their deliveries wait for no one here, and must not keep
/// this dispatcher claiming in vain (a relay another node holds, or one
/// whose holder died with its hold).
const NEXT_DUE: Dialects = Dialects {
    sqlite: "SELECT MIN(next_attempt_at) AS next FROM deliveries \
             WHERE status = 'pending' AND subscription_id NOT IN (SELECT value FROM json_each($1)) \
             AND subscription_id NOT IN (SELECT id FROM subscriptions WHERE kind = 'relay' \
                 AND (relay_node IS NULL OR relay_node <> $2))",
    postgres: "SELECT MIN(next_attempt_at) AS next FROM deliveries \
               WHERE status = 'pending' AND subscription_id NOT IN (SELECT json_array_elements_text(CAST($1 AS json))) \
               AND subscription_id NOT IN (SELECT id FROM subscriptions WHERE kind = 'relay' \
                   AND (relay_node IS NULL OR relay_node <> $2))",
};

/// Rows per multi-row statement: well under both backends' limits on
/// bound parameters.
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
        let lease = to_millis(lease_until);
        let tx = self.begin().await?;
        let claim = Sql::new(tx.pick(CLAIM))
            .bind(node)
            .bind(lease)
            .bind(to_millis(now))
            .bind(i64::from(limit))
            .bind(json_strings(skip.iter().map(SubscriptionId::as_str)))
            .bind(i64::from(limit) * 4)
            .bind(i64::from(per_subscription.max(1)));
        let claims = self.commit_claiming(tx, Some(claim)).await?;
        Ok(self.attach_claims(claims, lease, now).await)
    }

    /// Commits `tx` with `claim`, an `UPDATE … RETURNING` of
    /// [`CLAIMED_COLUMNS`] (or nothing more), as its last statement — on
    /// SQLite sent with `COMMIT` alone, after what the transaction
    /// gathered, so it stays prepared — and returns the rows claimed. `Err`
    /// only when nothing was committed.
    pub(crate) async fn commit_claiming(&self, tx: Tx<'_>, claim: Option<Sql>) -> Result<Vec<ClaimedRow>> {
        let Some(claim) = claim else {
            tx.commit().await?;
            return Ok(Vec::new());
        };
        let rows = tx.commit_fetching(claim).await?;
        Ok(claimed_rows(&rows).unwrap_or_else(|e| {
            tracing::error!(error = %e, "a claimed row does not read back; it is due again when its lease ends");
            Vec::new()
        }))
    }

    /// Loads what sending the committed `claims` needs (their events and
    /// subscriptions), beside the writer rather than in its transaction,
    /// and hands them out oldest first. Should the read fail, they are left
    /// to their lease, as a node that died holding them would leave them:
    /// due again when it ends.
    pub(crate) async fn attach_claims(
        &self,
        claims: Vec<ClaimedRow>,
        lease: i64,
        now: DateTime<Utc>,
    ) -> Vec<ClaimedDelivery> {
        let count = claims.len();
        self.read_what_claims_need(claims, lease, now)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, count, "loading claimed deliveries failed; they are due again when their lease ends");
                Vec::new()
            })
    }

    async fn read_what_claims_need(
        &self,
        mut claims: Vec<ClaimedRow>,
        lease: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedDelivery>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        // RETURNING has no order; hand them out oldest first.
        claims.sort_by(|a, b| a.id.cmp(&b.id));
        let db = self.reader();
        let events = Sql::new(db.pick(EVENTS_IN)).bind(json_strings(claims.iter().map(|c| c.event_id.as_str())));
        let subscriptions = Sql::new(format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s JOIN subscription_health h ON h.subscription_id = s.id \
             WHERE s.id IN ({})",
            db.pick(LISTED)
        ))
        .bind(json_strings(claims.iter().map(|c| c.subscription_id.as_str())));
        // Two connections of the pool at once.
        let (events, subscriptions) = futures_util::try_join!(db.fetch_all(events), db.fetch_all(subscriptions))?;
        let events: HashMap<String, Arc<Event>> = events
            .iter()
            .map(|row| event_from_row(row).map(|e| (e.id.to_string(), Arc::new(e))))
            .collect::<Result<_>>()?;
        let subscriptions: HashMap<String, Arc<Subscription>> = subscriptions
            .iter()
            .map(|row| subscription_from_row(row, &self.keys).map(|s| (s.id.to_string(), Arc::new(s))))
            .collect::<Result<_>>()?;
        claims
            .into_iter()
            .map(|claim| claim.attach(&events, &subscriptions, lease, now))
            .collect()
    }

    /// Gives claimed deliveries back without an attempt (at shutdown, or
    /// when this node has no room for them): they are due again at once, for
    /// this node or another (woken through `NOTIFY`). They keep the time
    /// they were due. One statement per 500.
    pub async fn release_deliveries(&self, node: &str, claims: &[Held], now: DateTime<Utc>) -> Result<()> {
        if claims.is_empty() {
            return Ok(());
        }
        let now_ms = to_millis(now);
        let mut tx = self.begin().await?;
        for chunk in claims.chunks(ROWS_PER_STATEMENT) {
            // Each row only if its lease is still the one we hold. Due as
            // they were: a release does not reschedule.
            let release = Sql::new(
                "UPDATE deliveries SET next_attempt_at = $1, due_at = COALESCE(due_at, $1), \
                 leased_by = NULL, leased_until = NULL FROM (",
            )
            .bind(now_ms)
            .bind(node)
            .push_values(chunk, |row, held| {
                row.bind(&held.delivery_id).bind(held.lease_until);
            })
            .push(
                ") AS v WHERE deliveries.id = v.column1 AND deliveries.status = 'pending' \
                 AND deliveries.leased_until = v.column2 AND deliveries.leased_by = $2",
            );
            tx.gather(release).await?;
        }
        tx.work_due_at(now).await?;
        tx.commit().await
    }

    /// Gives back every claim held under `node`, which a restarted node
    /// does before its dispatcher starts: a node killed (`kill -9`, a crash,
    /// a power cut) could not release its claims, and started again under
    /// the same id it knows that nothing of its previous run is still
    /// sending. Its pending deliveries are due again at `now` (they keep the
    /// time they were due, so lateness stays measured from it) and its
    /// running recovery jobs are free to claim — within moments of the
    /// restart, not a lease later. Sound only while no other live process
    /// uses the same node id: the reason an id is kept per data directory
    /// and two nodes must never share one.
    pub async fn release_leases_of_previous_run(&self, node: &str, now: DateTime<Utc>) -> Result<Released> {
        let mut tx = self.begin().await?;
        let deliveries = Sql::new(
            "UPDATE deliveries SET next_attempt_at = $1, due_at = COALESCE(due_at, $1), \
             leased_by = NULL, leased_until = NULL \
             WHERE status = 'pending' AND leased_by = $2",
        )
        .bind(to_millis(now))
        .bind(node);
        let deliveries = tx.execute(deliveries).await?;
        let recoveries = Sql::new(
            "UPDATE recoveries SET leased_by = NULL, leased_until = NULL \
             WHERE status = 'running' AND leased_by = $1",
        )
        .bind(node);
        let recoveries = tx.execute(recoveries).await?;
        // The sockets it held died with it: their relays wait for their
        // CLIs to reconnect, here or on another node.
        tx.gather(
            Sql::new("UPDATE subscriptions SET relay_node = NULL, relay_until = NULL WHERE relay_node = $1").bind(node),
        )
        .await?;
        if deliveries > 0 {
            tx.work_due_at(now).await?;
        }
        tx.commit().await?;
        Ok(Released { deliveries, recoveries })
    }

    /// When a claim by `node` could next bring something: the earliest time
    /// a pending delivery falls due (past or future, a lease's end
    /// included), leaving out the subscriptions in `skip` and the relays
    /// `node` does not hold, as the claim does.
    pub async fn next_due_at(&self, node: &str, skip: &[SubscriptionId]) -> Result<Option<DateTime<Utc>>> {
        let reader = self.reader();
        let sql = Sql::new(reader.pick(NEXT_DUE))
            .bind(json_strings(skip.iter().map(SubscriptionId::as_str)))
            .bind(node);
        Ok(reader.fetch_one(sql).await?.opt_int("next")?.map(from_millis))
    }

    /// The delivery backlog at `now`: how many pending deliveries are due
    /// and not claimed, and since when the oldest of them has been due.
    pub async fn delivery_backlog(&self, now: DateTime<Utc>) -> Result<(u64, Option<DateTime<Utc>>)> {
        let row = self
            .reader()
            .fetch_one(
                Sql::new(
                    "SELECT COUNT(*) AS n, MIN(next_attempt_at) AS oldest FROM deliveries \
                     WHERE status = 'pending' AND next_attempt_at <= $1 AND leased_by IS NULL \
                     AND subscription_id NOT IN (SELECT id FROM subscriptions WHERE kind = 'relay' AND relay_node IS NULL)",
                )
                .bind(to_millis(now)),
            )
            .await?;
        Ok((row.int("n")?.max(0) as u64, row.opt_int("oldest")?.map(from_millis)))
    }
}
