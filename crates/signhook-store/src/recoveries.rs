//! Recovery jobs: "resend everything that failed (or was canceled while the
//! subscription was disabled) between `since` and `until`". A job is a row;
//! any node claims a running job under a lease and advances it batch by
//! batch, each batch one transaction that moves the job's cursor, so a
//! restart or a crash resumes where the last committed batch ended.

use crate::db::{json_strings, DbRow, Dialects, Sql};
use crate::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::ids::{RecoveryId, SubscriptionId, TenantId};
use signhook_core::time::{from_millis, to_millis};

/// A recovery job.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// `rcv_…`
    pub id: RecoveryId,
    /// The subscription whose deliveries are resent.
    pub subscription_id: SubscriptionId,
    /// Deliveries created at or after this instant…
    pub since: DateTime<Utc>,
    /// …and before this one, if given.
    pub until: Option<DateTime<Utc>>,
    /// Whether it is still resending.
    pub status: RecoveryStatus,
    /// How many deliveries matched when the job was created.
    pub total: u64,
    /// How many have been resent so far.
    pub resent: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    cursor: String,
    lease_until: Option<i64>,
}

/// Where a recovery job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryStatus {
    /// Still resending, batch by batch.
    Running,
    /// Every matching delivery was resent (or its subscription went away).
    Done,
}

impl RecoveryStatus {
    /// The status as the API and the database write it.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryStatus::Running => "running",
            RecoveryStatus::Done => "done",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(RecoveryStatus::Running),
            "done" => Some(RecoveryStatus::Done),
            _ => None,
        }
    }
}

const COLUMNS: &str =
    "id, subscription_id, since_at, until_at, status, total, resent, cursor, leased_until, created_at, finished_at";

/// Which deliveries a job resends: those of `$1` (subscription) that failed
/// or were canceled, created in `[$2, $3)`, after cursor `$4`.
const WINDOW: &str = "subscription_id = $1 AND status IN ('failed', 'canceled') AND created_at >= $2 \
    AND (CAST($3 AS BIGINT) IS NULL OR created_at < $3) AND id > $4";

fn recovery_from_row(row: &impl DbRow) -> Result<Recovery> {
    Ok(Recovery {
        id: RecoveryId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
        subscription_id: SubscriptionId::parse(&row.text("subscription_id")?).map_err(StoreError::corrupt)?,
        since: from_millis(row.int("since_at")?),
        until: row.opt_int("until_at")?.map(from_millis),
        status: {
            let status = row.text("status")?;
            RecoveryStatus::parse(&status)
                .ok_or_else(|| StoreError::corrupt(format_args!("recovery status {status}")))?
        },
        total: row.int("total")?.max(0) as u64,
        resent: row.int("resent")?.max(0) as u64,
        created_at: from_millis(row.int("created_at")?),
        finished_at: row.opt_int("finished_at")?.map(from_millis),
        cursor: row.text("cursor")?,
        lease_until: row.opt_int("leased_until")?,
    })
}

/// Claims the oldest running job whose lease is free or has ended.
const CLAIM: Dialects = Dialects {
    sqlite: "UPDATE recoveries SET leased_by = $1, leased_until = $2 WHERE id IN \
             (SELECT id FROM recoveries WHERE status = 'running' AND (leased_until IS NULL OR leased_until <= $3) \
              ORDER BY created_at LIMIT 1) \
             RETURNING id, subscription_id, since_at, until_at, status, total, resent, cursor, leased_until, \
             created_at, finished_at",
    postgres: "UPDATE recoveries SET leased_by = $1, leased_until = $2 WHERE id IN \
               (SELECT id FROM recoveries WHERE status = 'running' AND (leased_until IS NULL OR leased_until <= $3) \
                ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
               RETURNING id, subscription_id, since_at, until_at, status, total, resent, cursor, leased_until, \
               created_at, finished_at",
};

/// Whether this node still holds the job (locked on PostgreSQL).
const STILL_OURS: Dialects = Dialects {
    sqlite: "SELECT id FROM recoveries WHERE id = $1 AND leased_by = $2 AND leased_until = $3 AND status = 'running'",
    postgres:
        "SELECT id FROM recoveries WHERE id = $1 AND leased_by = $2 AND leased_until = $3 AND status = 'running' \
               FOR UPDATE",
};

/// Resends the deliveries listed in `$2`: pending, due at `$1`, on a fresh
/// retry schedule — an ordered one waiting for its key's turn
/// ([`crate::ordering`]).
const RESEND: Dialects = Dialects {
    sqlite: "UPDATE deliveries SET status = 'pending', next_attempt_at = CASE WHEN ordering_key IS NULL THEN $1 END, \
             due_at = CASE WHEN ordering_key IS NULL THEN $1 END, \
             schedule_offset = attempt_count, leased_by = NULL, leased_until = NULL, updated_at = $1 \
             WHERE id IN (SELECT value FROM json_each($2))",
    postgres:
        "UPDATE deliveries SET status = 'pending', next_attempt_at = CASE WHEN ordering_key IS NULL THEN $1 END, \
               due_at = CASE WHEN ordering_key IS NULL THEN $1 END, \
               schedule_offset = attempt_count, leased_by = NULL, leased_until = NULL, updated_at = $1 \
               WHERE id IN (SELECT json_array_elements_text(CAST($2 AS json)))",
};

impl Store {
    /// Starts a recovery job for a subscription of the tenant's environment.
    /// `None` when the subscription is not the tenant's.
    pub async fn create_recovery(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        subscription: &SubscriptionId,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<Recovery>> {
        let id = RecoveryId::generate();
        let (since_ms, until_ms) = (to_millis(since), until.map(to_millis));
        let mut tx = self.begin().await?;
        let owned = Sql::new(
            "SELECT id FROM subscriptions WHERE id = $1 AND tenant_id = $2 AND sandbox = $3 AND deleted_at IS NULL",
        )
        .bind(subscription)
        .bind(tenant)
        .bind(sandbox);
        if tx.fetch_optional(owned).await?.is_none() {
            return Ok(None);
        }
        let total = Sql::new(format!("SELECT COUNT(*) AS n FROM deliveries WHERE {WINDOW}"))
            .bind(subscription)
            .bind(since_ms)
            .bind(until_ms)
            .bind("");
        let total = tx.fetch_one(total).await?.int("n")?;
        tx.gather(
            Sql::new(
                "INSERT INTO recoveries (id, tenant_id, subscription_id, since_at, until_at, status, total, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $7)",
            )
            .bind(&id)
            .bind(tenant)
            .bind(subscription)
            .bind(since_ms)
            .bind(until_ms)
            .bind(total)
            .bind(to_millis(now)),
        )
        .await?;
        tx.commit().await?;
        self.get_recovery(tenant, sandbox, &id).await
    }

    /// One recovery job of the tenant's environment.
    pub async fn get_recovery(&self, tenant: &TenantId, sandbox: bool, id: &RecoveryId) -> Result<Option<Recovery>> {
        let sql = Sql::new(
            "SELECT r.id, r.subscription_id, r.since_at, r.until_at, r.status, r.total, r.resent, r.cursor, \
             r.leased_until, r.created_at, r.finished_at \
             FROM recoveries r JOIN subscriptions s ON s.id = r.subscription_id \
             WHERE r.id = $1 AND r.tenant_id = $2 AND s.sandbox = $3",
        )
        .bind(id)
        .bind(tenant)
        .bind(sandbox);
        let row = self.reader().fetch_optional(sql).await?;
        row.as_ref().map(recovery_from_row).transpose()
    }

    /// The newest recovery jobs of one subscription (its dashboard page
    /// shows their progress). The subscription is the caller's: found by
    /// the tenant's own lookup first.
    pub async fn list_recoveries(&self, subscription: &SubscriptionId, limit: u32) -> Result<Vec<Recovery>> {
        let sql = Sql::new(
            "SELECT id, subscription_id, since_at, until_at, status, total, resent, cursor, leased_until, \
             created_at, finished_at FROM recoveries WHERE subscription_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(subscription)
        .bind(i64::from(limit));
        self.reader().fetch_parsed(sql, recovery_from_row).await
    }

    /// Claims one running job whose lease is free or has ended.
    pub async fn claim_recovery(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Recovery>> {
        let mut tx = self.begin().await?;
        let claim = Sql::new(tx.pick(CLAIM))
            .bind(node)
            .bind(to_millis(lease_until))
            .bind(to_millis(now));
        let row = tx.fetch_optional(claim).await?;
        tx.commit().await?;
        row.as_ref().map(recovery_from_row).transpose()
    }

    /// Resends the next `batch` deliveries of a claimed job (fresh retry
    /// schedule, due now) and moves its cursor, in one transaction. Returns
    /// the job as it now stands; `None` if this node no longer holds it. A
    /// job whose subscription is disabled or gone finishes with what it did.
    pub async fn advance_recovery(
        &self,
        node: &str,
        job: &Recovery,
        batch: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<Recovery>> {
        let now_ms = to_millis(now);
        let mut tx = self.begin().await?;
        let still_ours = Sql::new(tx.pick(STILL_OURS))
            .bind(&job.id)
            .bind(node)
            .bind(job.lease_until);
        if tx.fetch_optional(still_ours).await?.is_none() {
            return Ok(None);
        }
        let enabled = Sql::new("SELECT enabled FROM subscriptions WHERE id = $1 AND deleted_at IS NULL")
            .bind(&job.subscription_id);
        let enabled = tx
            .fetch_optional(enabled)
            .await?
            .map(|row| row.flag("enabled"))
            .transpose()?
            .unwrap_or(false);
        let ids: Vec<String> = if enabled {
            let next = Sql::new(format!("SELECT id FROM deliveries WHERE {WINDOW} ORDER BY id LIMIT $5"))
                .bind(&job.subscription_id)
                .bind(to_millis(job.since))
                .bind(job.until.map(to_millis))
                .bind(&job.cursor)
                .bind(i64::from(batch));
            tx.fetch_all(next)
                .await?
                .iter()
                .map(|row| row.text("id"))
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        if !ids.is_empty() {
            let resend = Sql::new(tx.pick(RESEND))
                .bind(now_ms)
                .bind(json_strings(ids.iter().map(String::as_str)));
            tx.gather(resend).await?;
            tx.work_due_at(now).await?;
            let resent: Vec<&str> = ids.iter().map(String::as_str).collect();
            crate::ordering::release_next(&mut tx, crate::ordering::Keys::Of(&resent), now).await?;
        }
        let done = (ids.len() as u32) < batch;
        let cursor = ids.last().cloned().unwrap_or_else(|| job.cursor.clone());
        tx.gather(
            Sql::new(
                "UPDATE recoveries SET cursor = $1, resent = resent + $2, updated_at = $3, \
                 status = CASE WHEN $4 THEN 'done' ELSE status END, \
                 finished_at = CASE WHEN $4 THEN $3 ELSE finished_at END WHERE id = $5",
            )
            .bind(cursor)
            .bind(ids.len() as i64)
            .bind(now_ms)
            .bind(done)
            .bind(&job.id),
        )
        .await?;
        let row = tx
            .fetch_one(Sql::new(format!("SELECT {COLUMNS} FROM recoveries WHERE id = $1")).bind(&job.id))
            .await?;
        let updated = recovery_from_row(&row)?;
        tx.commit().await?;
        Ok(Some(updated))
    }
}
