//! Recovery jobs: "resend everything that failed (or was canceled while the
//! subscription was disabled) between `since` and `until`". A job is a row;
//! any node claims a running job under a lease and advances it batch by
//! batch, each batch one transaction that moves the job's cursor, so a
//! restart or a crash resumes where the last committed batch ended.

use crate::{announce_work, json_strings, with_pool, DbRow, Result, Store, StoreError};
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
    /// `running` or `done`.
    pub status: String,
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
        status: row.text("status")?,
        total: row.int("total")?.max(0) as u64,
        resent: row.int("resent")?.max(0) as u64,
        created_at: from_millis(row.int("created_at")?),
        finished_at: row.opt_int("finished_at")?.map(from_millis),
        cursor: row.text("cursor")?,
        lease_until: row.opt_int("leased_until")?,
    })
}

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
        let (since_ms, until_ms, now_ms) = (to_millis(since), until.map(to_millis), to_millis(now));
        with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            let owned = sqlx::query(
                "SELECT id FROM subscriptions WHERE id = $1 AND tenant_id = $2 AND sandbox = $3 AND deleted_at IS NULL",
            )
            .bind(subscription.as_str())
            .bind(tenant.as_str())
            .bind(sandbox)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
            if !owned {
                return Ok(None);
            }
            let total = sqlx::query(&format!("SELECT COUNT(*) AS n FROM deliveries WHERE {WINDOW}"))
                .bind(subscription.as_str())
                .bind(since_ms)
                .bind(until_ms)
                .bind("")
                .fetch_one(&mut *tx)
                .await?
                .int("n")?;
            sqlx::query(
                "INSERT INTO recoveries (id, tenant_id, subscription_id, since_at, until_at, status, total, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $7)",
            )
            .bind(id.as_str())
            .bind(tenant.as_str())
            .bind(subscription.as_str())
            .bind(since_ms)
            .bind(until_ms)
            .bind(total)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        self.get_recovery(tenant, sandbox, &id).await
    }

    /// One recovery job of the tenant's environment.
    pub async fn get_recovery(&self, tenant: &TenantId, sandbox: bool, id: &RecoveryId) -> Result<Option<Recovery>> {
        let sql = format!(
            "SELECT r.{} FROM recoveries r JOIN subscriptions s ON s.id = r.subscription_id \
             WHERE r.id = $1 AND r.tenant_id = $2 AND s.sandbox = $3",
            COLUMNS.replace(", ", ", r.")
        );
        with_pool!(self, reader, |pool, dialect| {
            let row = sqlx::query(&sql)
                .bind(id.as_str())
                .bind(tenant.as_str())
                .bind(sandbox)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(recovery_from_row).transpose()
        })
    }

    /// Claims one running job whose lease is free or has ended.
    pub async fn claim_recovery(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Recovery>> {
        with_pool!(self, writer, |pool, dialect| {
            let sql = format!(
                "UPDATE recoveries SET leased_by = $1, leased_until = $2 WHERE id IN \
                 (SELECT id FROM recoveries WHERE status = 'running' AND (leased_until IS NULL OR leased_until <= $3) \
                  ORDER BY created_at LIMIT 1{}) RETURNING {COLUMNS}",
                dialect.skip_locked
            );
            let mut tx = pool.begin().await?;
            let row = sqlx::query(&sql)
                .bind(node)
                .bind(to_millis(lease_until))
                .bind(to_millis(now))
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            row.as_ref().map(recovery_from_row).transpose()
        })
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
        with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            let still_ours = sqlx::query(&format!(
                "SELECT id FROM recoveries WHERE id = $1 AND leased_by = $2 AND leased_until = $3 AND status = 'running'{}",
                dialect.for_update
            ))
            .bind(job.id.as_str())
            .bind(node)
            .bind(job.lease_until)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
            if !still_ours {
                return Ok(None);
            }
            let enabled = sqlx::query("SELECT enabled FROM subscriptions WHERE id = $1 AND deleted_at IS NULL")
                .bind(job.subscription_id.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.flag("enabled"))
                .transpose()?
                .unwrap_or(false);
            let ids: Vec<String> = if enabled {
                sqlx::query(&format!(
                    "SELECT id FROM deliveries WHERE {WINDOW} ORDER BY id LIMIT $5"
                ))
                .bind(job.subscription_id.as_str())
                .bind(to_millis(job.since))
                .bind(job.until.map(to_millis))
                .bind(&job.cursor)
                .bind(i64::from(batch))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.text("id"))
                .collect::<Result<_>>()?
            } else {
                Vec::new()
            };
            if !ids.is_empty() {
                let sql = format!(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, due_at = $1, \
                     schedule_offset = attempt_count, leased_by = NULL, leased_until = NULL, updated_at = $1 WHERE id IN ({})",
                    dialect.list_param(2)
                );
                sqlx::query(&sql)
                    .bind(now_ms)
                    .bind(json_strings(ids.iter().map(String::as_str)))
                    .execute(&mut *tx)
                    .await?;
                announce_work!(tx, dialect);
            }
            let done = (ids.len() as u32) < batch;
            let cursor = ids.last().cloned().unwrap_or_else(|| job.cursor.clone());
            sqlx::query(
                "UPDATE recoveries SET cursor = $1, resent = resent + $2, updated_at = $3, \
                 status = CASE WHEN $4 THEN 'done' ELSE status END, \
                 finished_at = CASE WHEN $4 THEN $3 ELSE finished_at END WHERE id = $5",
            )
            .bind(&cursor)
            .bind(ids.len() as i64)
            .bind(now_ms)
            .bind(done)
            .bind(job.id.as_str())
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query(&format!("SELECT {COLUMNS} FROM recoveries WHERE id = $1"))
                .bind(job.id.as_str())
                .fetch_one(&mut *tx)
                .await?;
            let updated = recovery_from_row(&row)?;
            tx.commit().await?;
            if !ids.is_empty() {
                self.work.due_at(now);
            }
            Ok(Some(updated))
        })
    }
}
