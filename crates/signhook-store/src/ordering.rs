//! Ordered delivery per key (DESIGN §10): the lease on a key, the keys
//! waiting behind a failure, and skipping a dead letter.
//!
//! A delivery of an ordered subscription carries its key (`ordering_key`,
//! copied from its event when written). Of one subscription's key, at most
//! one delivery is *at the head*: pending with a `next_attempt_at`, so the
//! claim sees it like any other — due, leased while in flight, due again
//! when its lease ends or its retry falls due. Every later one waits
//! *parked*: pending with no `next_attempt_at`, invisible to the claim, the
//! due index and the dispatcher's agenda, so an ordered backlog costs the
//! claim nothing and unordered deliveries pay nothing at all. The head's
//! lease is the key's lease: whichever node claims the head (after a crash,
//! once its lease ends) holds the key, across nodes.
//!
//! Every write that may let a key go — a success, a dead letter, a cancel,
//! a skip, a resend (which parks the resent delivery), a publish (which
//! parks the new ones) — ends with [`release_next`] over the keys it
//! touched: the earliest parked delivery of a key becomes its head when the
//! key has none and no earlier dead letter blocks it
//! ([`signhook_core::ordering::holds_key`], here in SQL). Where the write
//! is a node's own — recording an attempt, a publish through the API —
//! the new heads are claimed for that node in the same statement
//! ([`release_next_claimed`]) and sent at once, as unordered deliveries
//! published there are: no claim in between. On PostgreSQL two
//! transactions could each miss the other's write (a publish parking
//! behind a head that another transaction is just finishing), so each
//! takes a transaction-level advisory lock per key first, in key order;
//! SQLite's one writer already serializes them.

use crate::db::{DbRow, Dialects, Sql, Tx};
use crate::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::delivery::DeliveryStatus;
use signhook_core::ids::{DeliveryId, SubscriptionId, TenantId};
use signhook_core::time::{from_millis, to_millis};

/// The keys of the deliveries a write touched: those listed (JSON array of
/// ids in `$2`). A join rather than `IN` and no `DISTINCT`: SQLite builds a
/// temporary b-tree for either, on every release; a key listed twice is
/// released once all the same (the release updates a row once).
const LISTED: Dialects = Dialects {
    sqlite: "SELECT d.subscription_id, d.ordering_key FROM json_each($2) AS j \
             JOIN deliveries d ON d.id = j.value WHERE d.ordering_key IS NOT NULL",
    postgres: "SELECT d.subscription_id, d.ordering_key FROM json_array_elements_text(CAST($2 AS json)) AS j(value) \
               JOIN deliveries d ON d.id = j.value WHERE d.ordering_key IS NOT NULL",
};

/// Every key of the subscription `$2` with deliveries waiting.
const WAITING_OF: &str = "SELECT DISTINCT subscription_id, ordering_key FROM deliveries \
    WHERE subscription_id = $2 AND ordering_key IS NOT NULL AND status = 'pending' AND next_attempt_at IS NULL";

/// Which keys a [`release_next`] looks at.
pub(crate) enum Keys<'a> {
    /// The keys of these deliveries.
    Of(&'a [&'a str]),
    /// Every key of this subscription that has deliveries waiting.
    WaitingOf(&'a SubscriptionId),
}

/// Makes the earliest waiting delivery of each key in `keys` its head (due
/// at `now`) where the key has no head and no earlier dead letter blocks it
/// (under `ordering_on_failure = 'block'`). Says when the new heads fall
/// due. Gathered: on SQLite it costs no round trip of its own.
pub(crate) async fn release_next(tx: &mut Tx<'_>, keys: Keys<'_>, now: DateTime<Utc>) -> Result<()> {
    let Some(release) = release_statement(tx, keys, now, None).await? else {
        return Ok(());
    };
    tx.gather(release).await?;
    tx.work_due_at(now).await
}

/// As [`release_next`], the new heads claimed for `node` until `lease`
/// (milliseconds) at once, as a claim would: what recording a key's head
/// lets go is sent next by the node that recorded it, with no claim in
/// between. The statement returns the rows claimed; the caller runs it
/// last, with its commit ([`Store::commit_claiming`]). `None` when there
/// are no keys.
pub(crate) async fn release_next_claimed(
    tx: &mut Tx<'_>,
    keys: Keys<'_>,
    now: DateTime<Utc>,
    node: &str,
    lease: i64,
) -> Result<Option<Sql>> {
    release_statement(tx, keys, now, Some((node, lease))).await
}

/// The statement of a release of `keys` (claimed for a node and lease
/// when given), after the keys' advisory locks on PostgreSQL; `None` when
/// there are no keys.
async fn release_statement(
    tx: &mut Tx<'_>,
    keys: Keys<'_>,
    now: DateTime<Utc>,
    claim_for: Option<(&str, i64)>,
) -> Result<Option<Sql>> {
    // `$2` of the subquery: the ids listed, or the subscription.
    let (subquery, keys) = match keys {
        Keys::Of([]) => return Ok(None),
        Keys::Of(ids) => (tx.pick(LISTED), crate::db::json_strings(ids.iter().copied())),
        Keys::WaitingOf(sub) => (WAITING_OF, sub.to_string()),
    };
    if tx.kind() == crate::db::Kind::Postgres {
        // `$1` is unused here; bound so both statements number alike.
        let lock = Sql::new(format!(
            "SELECT pg_advisory_xact_lock(hashtextextended(k.subscription_id || '/' || k.ordering_key, 17)) \
             FROM ({subquery} ORDER BY subscription_id, ordering_key) AS k WHERE CAST($1 AS BIGINT) IS NOT NULL"
        ))
        .bind(to_millis(now))
        .bind(keys.as_str());
        tx.gather(lock).await?;
    }
    // Claimed: leased like a claim leases (`next_attempt_at` is the
    // lease's end), and the claimed rows returned. (A relay is never
    // ordered: `PATCH /v1/webhooks` refuses `ordering` on one.)
    let (set, returning) = match claim_for {
        None => ("next_attempt_at = $1", String::new()),
        Some(_) => (
            "leased_by = $3, leased_until = $4, next_attempt_at = $4",
            format!(" RETURNING {}", crate::claims::CLAIMED_COLUMNS),
        ),
    };
    // A head is pending with a next attempt; a waiting one is pending
    // without. The earliest waiting one (event order, the delivery's id
    // breaking ties: the index's order) takes the key only if nothing holds
    // it: no head, and under `block` no dead letter of an earlier event.
    // `UPDATE … FROM` rather than `id IN (…)`, which SQLite would gather in
    // a temporary b-tree first.
    let release = Sql::new(format!(
        "UPDATE deliveries SET {set}, due_at = $1, updated_at = $1 FROM ( \
             SELECT (SELECT p.id FROM deliveries p \
                     WHERE p.subscription_id = k.subscription_id AND p.ordering_key = k.ordering_key \
                     AND p.status = 'pending' AND p.next_attempt_at IS NULL \
                     ORDER BY p.event_id, p.id LIMIT 1) AS head \
             FROM ({subquery}) AS k \
             WHERE NOT EXISTS (SELECT 1 FROM deliveries a \
                 WHERE a.subscription_id = k.subscription_id AND a.ordering_key = k.ordering_key \
                 AND a.status = 'pending' AND a.next_attempt_at IS NOT NULL)) AS n \
         WHERE deliveries.id = n.head \
         AND NOT EXISTS (SELECT 1 FROM deliveries f JOIN subscriptions s ON s.id = f.subscription_id \
             WHERE f.subscription_id = deliveries.subscription_id AND f.ordering_key = deliveries.ordering_key \
             AND f.status = 'failed' AND s.ordering_on_failure = 'block' AND f.event_id < deliveries.event_id)\
         {returning}"
    ))
    .bind(to_millis(now))
    .bind(keys);
    Ok(Some(match claim_for {
        None => release,
        Some((node, lease)) => release.bind(node).bind(lease),
    }))
}

/// A key whose deliveries wait behind one that failed: dead-lettered under
/// `block`, or pending a retry.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockedKey {
    /// The key.
    pub key: String,
    /// The delivery holding it.
    pub blocking_delivery_id: DeliveryId,
    /// That delivery's status: `failed` (until resent or skipped) or
    /// `pending` (waiting for its retry).
    pub blocking_status: DeliveryStatus,
    /// Its attempts so far.
    pub blocking_attempts: u32,
    /// When its next attempt is due (pending only).
    pub blocking_next_attempt_at: Option<DateTime<Utc>>,
    /// Deliveries of the key waiting behind it.
    pub waiting: u64,
    /// When the oldest of those was created: how long the key has been held.
    pub since: DateTime<Utc>,
}

/// Why a skip was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipRefusal {
    /// Only a dead letter can be skipped; this one is another status.
    NotFailed(DeliveryStatus),
}

impl Store {
    /// The keys of a subscription whose deliveries wait behind a failed one,
    /// held longest first, at most `limit` (and whether there are more).
    pub async fn blocked_keys(&self, subscription: &SubscriptionId, limit: u32) -> Result<crate::Page<BlockedKey>> {
        // The waiting deliveries by key (through `deliveries_by_ordering_key`),
        // each key with what holds it: its head, or else its earliest dead
        // letter. A head on its first attempt is not a failure; the rest wait
        // their turn as usual.
        let sql = Sql::new(
            "SELECT w.ordering_key, w.waiting, w.since, b.id, b.status, b.attempt_count, b.due_at FROM ( \
                 SELECT ordering_key, COUNT(*) AS waiting, MIN(created_at) AS since FROM deliveries \
                 WHERE subscription_id = $1 AND ordering_key IS NOT NULL AND status = 'pending' \
                 AND next_attempt_at IS NULL GROUP BY ordering_key) AS w \
             JOIN deliveries b ON b.id = (SELECT x.id FROM deliveries x \
                 WHERE x.subscription_id = $1 AND x.ordering_key = w.ordering_key \
                 AND ((x.status = 'pending' AND x.next_attempt_at IS NOT NULL) OR x.status = 'failed') \
                 ORDER BY CASE WHEN x.status = 'pending' THEN 0 ELSE 1 END, x.event_id LIMIT 1) \
             WHERE b.status = 'failed' OR b.attempt_count > 0 \
             ORDER BY w.since, w.ordering_key LIMIT $2",
        )
        .bind(subscription)
        .bind(i64::from(limit) + 1);
        let items = self
            .reader()
            .fetch_parsed(sql, |row| {
                let status = row.text("status")?;
                Ok(BlockedKey {
                    key: row.text("ordering_key")?,
                    blocking_delivery_id: DeliveryId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
                    blocking_status: DeliveryStatus::parse(&status)
                        .ok_or_else(|| StoreError::corrupt(format_args!("status {status}")))?,
                    blocking_attempts: row.int("attempt_count")?.max(0) as u32,
                    blocking_next_attempt_at: row.opt_int("due_at")?.map(from_millis),
                    waiting: row.int("waiting")?.max(0) as u64,
                    since: from_millis(row.int("since")?),
                })
            })
            .await?;
        Ok(crate::Page::from_rows(items, limit))
    }

    /// Skips a dead letter of the tenant's environment on purpose: it
    /// becomes `canceled` (resendable later like any canceled delivery),
    /// and the next delivery of its key, if it was waiting behind it,
    /// leaves. `None` when it is not the tenant's.
    pub async fn skip_delivery(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<Option<std::result::Result<(), SkipRefusal>>> {
        let mut tx = self.begin().await?;
        let found = Sql::new(tx.pick(Dialects {
            sqlite: "SELECT d.status FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id \
                     WHERE d.id = $1 AND d.tenant_id = $2 AND s.sandbox = $3",
            postgres: "SELECT d.status FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id \
                       WHERE d.id = $1 AND d.tenant_id = $2 AND s.sandbox = $3 FOR UPDATE OF d",
        }))
        .bind(id)
        .bind(tenant)
        .bind(sandbox);
        let Some(row) = tx.fetch_optional(found).await? else {
            return Ok(None);
        };
        let status = row.text("status")?;
        let status =
            DeliveryStatus::parse(&status).ok_or_else(|| StoreError::corrupt(format_args!("status {status}")))?;
        if status != DeliveryStatus::Failed {
            return Ok(Some(Err(SkipRefusal::NotFailed(status))));
        }
        tx.gather(
            Sql::new("UPDATE deliveries SET status = 'canceled', updated_at = $1 WHERE id = $2 AND status = 'failed'")
                .bind(to_millis(now))
                .bind(id),
        )
        .await?;
        release_next(&mut tx, Keys::Of(&[id.as_str()]), now).await?;
        tx.commit().await?;
        Ok(Some(Ok(())))
    }
}

/// What a change of `sub`'s ordering (from `was`) does to its deliveries,
/// in the transaction that writes the change. No ordering any more: every
/// delivery forgets its key and those waiting are due now. Otherwise keys
/// a dead letter no longer blocks (`block` → `skip`) move on; deliveries
/// already written keep the key they were written with.
pub(crate) async fn ordering_changed(
    tx: &mut Tx<'_>,
    sub: &crate::subscriptions::Subscription,
    was: signhook_core::ordering::Ordering,
    now: DateTime<Utc>,
) -> Result<()> {
    use signhook_core::ordering::Ordering;
    if sub.ordering == Ordering::None {
        if was != Ordering::None {
            tx.gather(
                Sql::new(
                    "UPDATE deliveries SET ordering_key = NULL, \
                     next_attempt_at = CASE WHEN status = 'pending' THEN COALESCE(next_attempt_at, $1) ELSE next_attempt_at END, \
                     due_at = CASE WHEN status = 'pending' THEN COALESCE(due_at, $1) ELSE due_at END \
                     WHERE subscription_id = $2 AND ordering_key IS NOT NULL",
                )
                .bind(to_millis(now))
                .bind(&sub.id),
            )
            .await?;
            tx.work_due_at(now).await?;
        }
        return Ok(());
    }
    release_next(tx, Keys::WaitingOf(&sub.id), now).await
}
