//! Retention: events are kept for the retention period (30 days by default,
//! DESIGN §3), then purged with their deliveries and attempts. An event that
//! still has a pending delivery (a late resend, say) is kept until it
//! settles. Every node may purge at the same time: deleting is idempotent,
//! so each old event goes exactly once whoever gets there first.

use crate::db::{json_strings, DbRow, Dialects, Sql};
use crate::{Result, Store};
use chrono::{DateTime, Utc};
use signhook_core::time::to_millis;

/// Deletes the attempts, deliveries and events of the event ids listed in
/// `$1`, in that order.
const PURGE: [Dialects; 3] = [
    Dialects {
        sqlite: "DELETE FROM attempts WHERE delivery_id IN \
                 (SELECT id FROM deliveries WHERE event_id IN (SELECT value FROM json_each($1)))",
        postgres: "DELETE FROM attempts WHERE delivery_id IN \
                   (SELECT id FROM deliveries WHERE event_id IN (SELECT json_array_elements_text(CAST($1 AS json))))",
    },
    Dialects {
        sqlite: "DELETE FROM deliveries WHERE event_id IN (SELECT value FROM json_each($1))",
        postgres: "DELETE FROM deliveries WHERE event_id IN (SELECT json_array_elements_text(CAST($1 AS json)))",
    },
    Dialects {
        sqlite: "DELETE FROM events WHERE id IN (SELECT value FROM json_each($1))",
        postgres: "DELETE FROM events WHERE id IN (SELECT json_array_elements_text(CAST($1 AS json)))",
    },
];

impl Store {
    /// Purges up to `batch` events created before `cutoff` (and their
    /// deliveries and attempts) in one transaction. Returns how many went;
    /// call again while it returns `batch`.
    pub async fn purge_events_before(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64> {
        let mut tx = self.begin().await?;
        let expired = Sql::new(
            "SELECT id FROM events e WHERE created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status = 'pending') \
             ORDER BY id LIMIT $2",
        )
        .bind(to_millis(cutoff))
        .bind(i64::from(batch));
        let ids: Vec<String> = tx
            .fetch_all(expired)
            .await?
            .iter()
            .map(|row| row.text("id"))
            .collect::<Result<_>>()?;
        if !ids.is_empty() {
            let list = json_strings(ids.iter().map(String::as_str));
            for statement in PURGE {
                tx.gather(Sql::new(tx.pick(statement)).bind(&list)).await?;
            }
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }
}
