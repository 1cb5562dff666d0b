//! Retention: events are kept for the retention period (30 days by default,
//! DESIGN §3), then purged with their deliveries and attempts. An event that
//! still has a pending delivery (a late resend, say) is kept until it
//! settles. Every node may purge at the same time: deleting is idempotent,
//! so each old event goes exactly once whoever gets there first.

use crate::{json_strings, with_pool, DbRow, Result, Store};
use chrono::{DateTime, Utc};
use signhook_core::time::to_millis;

impl Store {
    /// Purges up to `batch` events created before `cutoff` (and their
    /// deliveries and attempts) in one transaction. Returns how many went;
    /// call again while it returns `batch`.
    pub async fn purge_events_before(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64> {
        with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            let ids: Vec<String> = sqlx::query(
                "SELECT id FROM events e WHERE created_at < $1 AND NOT EXISTS \
                 (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status = 'pending') \
                 ORDER BY id LIMIT $2",
            )
            .bind(to_millis(cutoff))
            .bind(i64::from(batch))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.text("id"))
            .collect::<Result<_>>()?;
            if ids.is_empty() {
                tx.commit().await?;
                return Ok(0);
            }
            let list = json_strings(ids.iter().map(String::as_str));
            let in_list = dialect.list_param(1);
            for sql in [
                format!("DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id IN ({in_list}))"),
                format!("DELETE FROM deliveries WHERE event_id IN ({in_list})"),
                format!("DELETE FROM events WHERE id IN ({in_list})"),
            ] {
                sqlx::query(&sql).bind(&list).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(ids.len() as u64)
        })
    }
}
