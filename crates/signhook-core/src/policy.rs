//! Warn, then disable (DESIGN §4): a subscription whose deliveries have only
//! failed for a while is warned; if it is still failing a grace period after
//! the warning, it is disabled. One success resets everything. The state
//! lives in the database (`failing_since`, `failure_count`, `warned_at`);
//! this module decides what it means.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// Why a subscription is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisabledReason {
    /// Its owner disabled it.
    Manual,
    /// It kept failing past the warning's grace period (this policy).
    Failing,
    /// Its endpoint answered `410 Gone`.
    Gone,
}

impl DisabledReason {
    /// Every reason.
    pub const ALL: [DisabledReason; 3] = [DisabledReason::Manual, DisabledReason::Failing, DisabledReason::Gone];

    /// The reason as the API and the store write it (`disabled_reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            DisabledReason::Manual => "manual",
            DisabledReason::Failing => "failing",
            DisabledReason::Gone => "gone",
        }
    }

    /// Parses a reason's name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// The thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisablePolicy {
    /// Failing at least this long (and `min_failures` times) earns a warning.
    pub after: Duration,
    /// The fewest failed attempts that count as "failing".
    pub min_failures: u32,
    /// Still failing this long after the warning: disabled.
    pub grace: Duration,
}

impl Default for DisablePolicy {
    fn default() -> Self {
        Self {
            after: Duration::from_secs(24 * 60 * 60),
            min_failures: 10,
            grace: Duration::from_secs(7 * 24 * 60 * 60),
        }
    }
}

/// A subscription's run of failures since its last success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureStreak {
    /// When the first failure of the run happened (`None`: not failing).
    pub failing_since: Option<DateTime<Utc>>,
    /// Failed attempts in the run.
    pub failures: u32,
    /// When the owner was warned, if they were.
    pub warned_at: Option<DateTime<Utc>>,
}

/// What to do about a subscription now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assessment {
    /// Nothing: healthy, or not failing long or often enough yet, or
    /// warned and still within the grace period.
    Nothing,
    /// Send `webhook.disabling_soon`.
    Warn,
    /// Disable it and send `webhook.disabled`.
    Disable,
}

impl DisablePolicy {
    /// Judges a streak at `now`.
    pub fn assess(&self, streak: &FailureStreak, now: DateTime<Utc>) -> Assessment {
        let Some(since) = streak.failing_since else {
            return Assessment::Nothing;
        };
        match streak.warned_at {
            Some(warned) if elapsed(warned, now) >= self.grace => Assessment::Disable,
            Some(_) => Assessment::Nothing,
            None if streak.failures >= self.min_failures && elapsed(since, now) >= self.after => Assessment::Warn,
            None => Assessment::Nothing,
        }
    }
}

fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(hours: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(hours)
    }

    #[test]
    fn the_policy_table() {
        let policy = DisablePolicy::default();
        let failing = |since: i64, failures: u32, warned: Option<i64>| FailureStreak {
            failing_since: Some(at(since)),
            failures,
            warned_at: warned.map(at),
        };
        let healthy = FailureStreak {
            failing_since: None,
            failures: 0,
            warned_at: None,
        };
        let cases = [
            (healthy, 1000, Assessment::Nothing),
            (failing(0, 50, None), 23, Assessment::Nothing),
            (failing(0, 9, None), 48, Assessment::Nothing),
            (failing(0, 10, None), 24, Assessment::Warn),
            (failing(0, 10, Some(24)), 24 + 7 * 24 - 1, Assessment::Nothing),
            (failing(0, 10, Some(24)), 24 + 7 * 24, Assessment::Disable),
        ];
        for (streak, now, expected) in cases {
            assert_eq!(policy.assess(&streak, at(now)), expected, "{streak:?} at +{now}h");
        }
    }
}
