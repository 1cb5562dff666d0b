//! The time-driven work of a node, beside the API and the dispatcher: the
//! warn-then-disable sweep, recovery jobs, purging events past the
//! retention period, and the e-signature lifecycle's deadlines, scheduled
//! reminders and purges of deleted requests. Every node runs them; the
//! store makes each warning, disabling, recovery batch, purge, expiry and
//! reminder happen once (a lifecycle step is written only if the request's
//! sequence has not moved since it was read).

use crate::error::error_chain;
use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::mail::Mailer;
use signhook_core::lifecycle::Action;
use signhook_core::policy::DisablePolicy;
use signhook_core::time::Clock;
use signhook_store::signature_requests::Act;
use signhook_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How many deliveries a recovery job resends per transaction.
pub const RECOVERY_BATCH: u32 = 200;
/// How many old events are purged per transaction.
pub const PURGE_BATCH: u32 = 500;
/// How many signature requests each lifecycle job takes per round.
pub const LIFECYCLE_BATCH: u32 = 100;

/// The schedulers of one node.
pub struct Schedulers {
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) node_id: String,
    pub(crate) policy: DisablePolicy,
    pub(crate) interval: Duration,
    pub(crate) lease: Duration,
    pub(crate) mailer: Option<Mailer>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) retention: Duration,
}

impl Schedulers {
    /// Runs until `shutdown`: a round of every job every `interval`, on a
    /// cadence kept from the start (a round never waits for a quiet moment),
    /// and the recovery jobs at once when woken (a job was created), which
    /// does not move the next round. What a round writes is announced to
    /// the dispatcher by the store as it commits, so a warning leaves when
    /// it is raised.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut rounds = tokio::time::interval(self.interval);
        // A round that overran its interval is followed by the next one a
        // full interval later, not by a burst of catch-up rounds.
        rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Statistics are kept by the hour: purged once an hour is enough.
        let mut stats_purged_in = None;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = rounds.tick() => {
                    self.sweep().await;
                    self.recover(&shutdown).await;
                    self.purge(&shutdown).await;
                    let hour = signhook_store::deliveries::hour_of(self.clock.now());
                    if stats_purged_in != Some(hour) {
                        self.purge_stats().await;
                        stats_purged_in = Some(hour);
                    }
                    self.signature_requests(&shutdown).await;
                }
                _ = self.wake.notified() => self.recover(&shutdown).await,
            }
        }
    }

    async fn sweep(&self) {
        let outcome = match self
            .store
            .sweep_failing_subscriptions(&self.policy, self.clock.now())
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "the disable-policy sweep failed; next round retries");
                return;
            }
        };
        let Some(mailer) = &self.mailer else { return };
        for warned in &outcome.warned {
            let Some(to) = &warned.admin_email else { continue };
            // The warning itself is durable (an operational event); the
            // e-mail is a courtesy on top, logged when it cannot be sent.
            match mailer.send_warning(to, warned, self.policy.grace).await {
                Ok(()) => tracing::info!(webhook = %warned.subscription.id, to, "failure warning e-mailed"),
                Err(e) => {
                    tracing::warn!(webhook = %warned.subscription.id, to, error = %e, "failure warning not e-mailed")
                }
            }
        }
    }

    async fn purge(&self, shutdown: &CancellationToken) {
        let Ok(retention) = chrono::Duration::from_std(self.retention) else {
            return;
        };
        let cutoff = self.clock.now() - retention;
        let mut purged = 0;
        while !shutdown.is_cancelled() {
            match self.store.purge_events_before(cutoff, PURGE_BATCH).await {
                Ok(n) => {
                    purged += n;
                    if n < u64::from(PURGE_BATCH) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), "purging old events failed; next round retries");
                    break;
                }
            }
        }
        if purged > 0 {
            tracing::info!(purged, "events past the retention period purged");
        }
    }

    /// Forgets endpoint statistics older than the dashboard draws (7 days,
    /// and a day more so the oldest bar is never half empty).
    async fn purge_stats(&self) {
        let cutoff = self.clock.now() - chrono::Duration::days(8);
        if let Err(e) = self.store.purge_stats_before(cutoff).await {
            tracing::error!(error = %error_chain(&e), "purging old endpoint statistics failed; the next hour retries");
        }
    }

    /// Expires overdue requests, sends due reminders and purges requests
    /// deleted longer ago than the retention period.
    async fn signature_requests(&self, shutdown: &CancellationToken) {
        let now = self.clock.now();
        let deleted_before = now - chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::MAX);
        let jobs = [
            ("expire", self.store.due_expirations(now, LIFECYCLE_BATCH).await),
            ("remind", self.store.due_reminders(now, LIFECYCLE_BATCH).await),
            ("purge", self.store.due_purges(deleted_before, LIFECYCLE_BATCH).await),
        ];
        for (job, due) in jobs {
            let ids = match due {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::error!(job, error = %error_chain(&e), "finding due signature requests failed; next round retries");
                    continue;
                }
            };
            for id in ids {
                if shutdown.is_cancelled() {
                    return;
                }
                let action = match job {
                    "expire" => Action::Expire,
                    "remind" => Action::Remind,
                    _ => Action::PurgePermanently,
                };
                match self.lifecycle.apply(&id, action, &Act::scheduler()).await {
                    Ok(_) => {}
                    // Another node (or an API call) got there first: the
                    // request is no longer due. Nothing to do.
                    Err(LifecycleError::Refused(_) | LifecycleError::NotFound) => {}
                    Err(e) => {
                        tracing::error!(job, signature_request = %id, error = %error_chain(&e), "lifecycle job failed; next round retries")
                    }
                }
            }
        }
    }

    async fn recover(&self, shutdown: &CancellationToken) {
        while !shutdown.is_cancelled() {
            let now = self.clock.now();
            let job = match self.store.claim_recovery(&self.node_id, now, now + self.lease).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), "claiming a recovery job failed");
                    return;
                }
            };
            let mut job = job;
            while !shutdown.is_cancelled() {
                match self
                    .store
                    .advance_recovery(&self.node_id, &job, RECOVERY_BATCH, self.clock.now())
                    .await
                {
                    Ok(Some(next)) if next.status == signhook_store::recoveries::RecoveryStatus::Done => {
                        tracing::info!(recovery = %next.id, resent = next.resent, "recovery finished");
                        break;
                    }
                    Ok(Some(next)) => job = next,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(recovery = %job.id, error = %error_chain(&e), "recovery batch failed; the job resumes later");
                        return;
                    }
                }
            }
        }
    }
}
