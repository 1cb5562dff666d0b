//! When the work that this process writes falls due: the in-process
//! counterpart of PostgreSQL's `NOTIFY`, for this node's dispatcher.
//!
//! Every store call that commits a delivery due for sending — a publish
//! that no node claimed at once, an operational event, a retry, a resend,
//! a recovery batch, a release, a lifecycle step — announces the instant it
//! falls due, *after* its commit, so a claim that follows sees the row. A
//! retry is announced for the future instant it was scheduled for; the
//! rest are due at once. The dispatcher waits on [`WorkSignal::next`] and
//! keeps the earliest instant it was told, so it claims when work is due —
//! not when the node happens to be idle.
//!
//! Announcements from one process only: other nodes learn of work through
//! PostgreSQL's `LISTEN` (see [`crate::Store::work_listener`]).

use chrono::{DateTime, Utc};
use signhook_core::time::{from_millis, to_millis};
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::Notify;

/// No announcement waiting.
const NOTHING: i64 = i64::MAX;

/// The earliest due instant announced and not yet taken.
#[derive(Debug)]
pub struct WorkSignal {
    /// Milliseconds since the epoch, or [`NOTHING`].
    earliest: AtomicI64,
    changed: Notify,
}

impl Default for WorkSignal {
    fn default() -> Self {
        Self {
            earliest: AtomicI64::new(NOTHING),
            changed: Notify::new(),
        }
    }
}

impl WorkSignal {
    /// Announces work that falls due at `at` (now or later). Call it after
    /// the commit that wrote the work.
    pub(crate) fn due_at(&self, at: DateTime<Utc>) {
        self.earliest.fetch_min(to_millis(at), Ordering::SeqCst);
        // Stores a permit when nobody waits, so an announcement made while
        // the dispatcher is busy is found by its next wait.
        self.changed.notify_one();
    }

    /// Takes the earliest instant announced since the last take.
    pub fn take(&self) -> Option<DateTime<Utc>> {
        match self.earliest.swap(NOTHING, Ordering::SeqCst) {
            NOTHING => None,
            ms => Some(from_millis(ms)),
        }
    }

    /// Waits for an announcement and takes the earliest instant announced.
    /// Cancel-safe: dropped while waiting, it takes nothing.
    pub async fn next(&self) -> DateTime<Utc> {
        loop {
            if let Some(at) = self.take() {
                return at;
            }
            self.changed.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_earliest_announcement_is_taken_once() {
        let signal = WorkSignal::default();
        assert_eq!(signal.take(), None);
        signal.due_at(from_millis(2_000));
        signal.due_at(from_millis(1_000));
        signal.due_at(from_millis(3_000));
        assert_eq!(signal.next().await, from_millis(1_000));
        assert_eq!(signal.take(), None, "taken once");
        signal.due_at(from_millis(5_000));
        assert_eq!(signal.next().await, from_millis(5_000), "announced after a take");
    }

    #[tokio::test]
    async fn a_waiting_dispatcher_is_woken() {
        let signal = std::sync::Arc::new(WorkSignal::default());
        let waiting = tokio::spawn({
            let signal = signal.clone();
            async move { signal.next().await }
        });
        tokio::task::yield_now().await;
        signal.due_at(from_millis(7));
        assert_eq!(waiting.await.unwrap(), from_millis(7));
    }
}
