//! The warn-then-disable sweep: every node runs it on a timer; each warning
//! and each disabling happens exactly once across nodes, because the row
//! update that records it only succeeds for the first transaction to try.

use crate::db::{DbRow, Sql};
use crate::subscriptions::{subscription_from_row, webhook_data, Subscription, SUBSCRIPTION_COLUMNS};
use crate::{Result, Store};
use chrono::{DateTime, Utc};
use signhook_core::policy::{Assessment, DisablePolicy, DisabledReason, FailureStreak};
use signhook_core::time::{from_millis, to_millis};

/// A subscription warned by this sweep, with where to e-mail its owner.
#[derive(Debug, Clone)]
pub struct Warned {
    /// The subscription.
    pub subscription: Subscription,
    /// When its failures began.
    pub failing_since: DateTime<Utc>,
    /// The tenant's admin address, if it has one.
    pub admin_email: Option<String>,
}

/// What one sweep did.
#[derive(Debug, Default)]
pub struct SweepOutcome {
    /// Warned now (`webhook.disabling_soon` emitted).
    pub warned: Vec<Warned>,
    /// Disabled now (`webhook.disabled` emitted).
    pub disabled: Vec<Subscription>,
}

impl Store {
    /// Applies `policy` at `now` to every failing, enabled subscription.
    pub async fn sweep_failing_subscriptions(
        &self,
        policy: &DisablePolicy,
        now: DateTime<Utc>,
    ) -> Result<SweepOutcome> {
        let mut tx = self.begin().await?;
        let failing = format!(
            "SELECT {SUBSCRIPTION_COLUMNS}, h.warned_at, \
             (SELECT admin_email FROM tenants t WHERE t.id = s.tenant_id) AS admin_email \
             FROM subscriptions s JOIN subscription_health h ON h.subscription_id = s.id \
             WHERE s.enabled = TRUE AND s.deleted_at IS NULL AND h.failing_since IS NOT NULL"
        );
        let rows = tx.fetch_all(Sql::new(failing)).await?;
        let mut outcome = SweepOutcome::default();
        for row in &rows {
            let sub = subscription_from_row(row, &self.keys)?;
            let streak = FailureStreak {
                failing_since: row.opt_int("failing_since")?.map(from_millis),
                failures: u32::try_from(row.int("failure_count")?).unwrap_or(u32::MAX),
                warned_at: row.opt_int("warned_at")?.map(from_millis),
            };
            match policy.assess(&streak, now) {
                Assessment::Nothing => {}
                Assessment::Warn => {
                    // Only the first node to get here records the warning.
                    let first = tx
                        .execute(
                            Sql::new(
                                "UPDATE subscription_health SET warned_at = $1 \
                                 WHERE subscription_id = $2 AND warned_at IS NULL AND failing_since IS NOT NULL",
                            )
                            .bind(to_millis(now))
                            .bind(&sub.id),
                        )
                        .await?
                        == 1;
                    if first {
                        let data = webhook_data(&sub, true, None);
                        let owner = (&sub.tenant_id, sub.filter.sandbox);
                        self.outbox()
                            .emit_operational(&mut tx, owner, "webhook.disabling_soon", data, now)
                            .await?;
                        tracing::warn!(webhook = %sub.id, "subscription failing: owner warned");
                        outcome.warned.push(Warned {
                            failing_since: streak.failing_since.unwrap_or(now),
                            admin_email: row.opt_text("admin_email")?,
                            subscription: sub,
                        });
                    }
                }
                Assessment::Disable => {
                    let reason = DisabledReason::Failing;
                    if self.outbox().disable_subscription(&mut tx, &sub, reason, now).await? {
                        outcome.disabled.push(sub);
                    }
                }
            }
        }
        // `webhook.disabling_soon` and `webhook.disabled` leave once this
        // commits, in the order they were raised.
        tx.commit().await?;
        Ok(outcome)
    }
}
