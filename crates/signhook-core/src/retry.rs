//! Retry decisions, kept pure (STYLE habit 6). *What* an attempt's outcome
//! means ([`classify`]) is apart from *how long* to wait ([`RetryPolicy`]);
//! [`decide`] puts them together and returns the action with its reason, and
//! the dispatcher only applies it.

use crate::delivery::ErrorKind;
use crate::policy::DisabledReason;
use rand::Rng;
use std::time::Duration;

/// The default schedule: the wait after the 1st, 2nd, … failed attempt.
pub const DEFAULT_SCHEDULE: [Duration; 10] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(3 * 60 * 60),
    Duration::from_secs(6 * 60 * 60),
    Duration::from_secs(12 * 60 * 60),
    Duration::from_secs(24 * 60 * 60),
];

/// The default jitter: each wait is drawn uniformly within ±20 % of its step.
pub const DEFAULT_JITTER: f64 = 0.2;

/// How long to wait between attempts, and how many there are.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    schedule: Vec<Duration>,
    jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(DEFAULT_SCHEDULE.to_vec(), DEFAULT_JITTER)
    }
}

impl RetryPolicy {
    /// A policy with `schedule` (one wait per retry) and a relative jitter
    /// (clamped to 0..=1).
    pub fn new(schedule: Vec<Duration>, jitter: f64) -> Self {
        Self {
            schedule,
            jitter: jitter.clamp(0.0, 1.0),
        }
    }

    /// The steps of the schedule.
    pub fn schedule(&self) -> &[Duration] {
        &self.schedule
    }

    /// Attempts in all: the first one plus one per step.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.schedule.len()).unwrap_or(u32::MAX - 1) + 1
    }

    /// The wait after the `failed_attempts`-th failure (1-based), jittered;
    /// `None` once the schedule is used up.
    pub fn next_delay(&self, failed_attempts: u32, rng: &mut impl Rng) -> Option<Duration> {
        let index = usize::try_from(failed_attempts.checked_sub(1)?).ok()?;
        let step = *self.schedule.get(index)?;
        if self.jitter == 0.0 || step.is_zero() {
            return Some(step);
        }
        let factor = rng.gen_range((1.0 - self.jitter)..=(1.0 + self.jitter));
        Some(step.mul_f64(factor))
    }
}

/// What happened on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The endpoint answered.
    Response {
        /// The status code.
        status: u16,
        /// Its `Retry-After`, already parsed ([`parse_retry_after`]).
        retry_after: Option<Duration>,
    },
    /// No usable answer.
    Error(ErrorKind),
}

impl AttemptOutcome {
    /// An answer without `Retry-After`.
    pub fn status(status: u16) -> Self {
        AttemptOutcome::Response {
            status,
            retry_after: None,
        }
    }
}

/// Parses a `Retry-After` value (RFC 9110 §10.2.3): either a number of
/// seconds or an HTTP date, which is turned into the wait from `now`. A date
/// in the past means "now"; anything unreadable is ignored.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (when.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

impl AttemptOutcome {
    /// The error kind the delivery log records: none for a 2xx, `http` for
    /// any other status, the failure's own kind otherwise.
    pub fn error_kind(self) -> Option<ErrorKind> {
        match self {
            AttemptOutcome::Response { status, .. } if (200..300).contains(&status) => None,
            AttemptOutcome::Response { .. } => Some(ErrorKind::Http),
            AttemptOutcome::Error(kind) => Some(kind),
        }
    }
}

/// What an outcome means, before the schedule is consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The endpoint took the delivery.
    Accepted,
    /// The endpoint did not take it; trying again may help.
    Retryable(&'static str),
    /// Trying again cannot help.
    Permanent(&'static str),
    /// `410 Gone`: the endpoint says it no longer exists; its subscription
    /// is disabled at once.
    Gone,
}

/// Classifies an outcome: 2xx is success (DESIGN §4); every other status,
/// and every network failure, may succeed later; a send that was blocked by
/// policy never will.
pub fn classify(outcome: AttemptOutcome) -> Verdict {
    match outcome {
        AttemptOutcome::Response { status, .. } if (200..300).contains(&status) => Verdict::Accepted,
        AttemptOutcome::Response { status: 410, .. } => Verdict::Gone,
        AttemptOutcome::Response { status, .. } if (300..400).contains(&status) => {
            Verdict::Retryable("redirect (redirects are not followed)")
        }
        AttemptOutcome::Response { .. } => Verdict::Retryable("non-2xx status"),
        AttemptOutcome::Error(ErrorKind::Blocked) => Verdict::Permanent("endpoint address is not allowed"),
        AttemptOutcome::Error(ErrorKind::Timeout) => Verdict::Retryable("timed out"),
        AttemptOutcome::Error(ErrorKind::Connect) => Verdict::Retryable("connection failed"),
        AttemptOutcome::Error(ErrorKind::Dns) => Verdict::Retryable("DNS lookup failed"),
        AttemptOutcome::Error(ErrorKind::Tls) => Verdict::Retryable("TLS handshake failed"),
        AttemptOutcome::Error(ErrorKind::Http) => Verdict::Retryable("HTTP protocol error"),
        AttemptOutcome::Error(ErrorKind::Relay) => Verdict::Retryable("no signhook listen connected"),
    }
}

/// What the dispatcher does after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Mark the delivery succeeded.
    Succeeded,
    /// Try again after `delay`.
    RetryAfter {
        /// The jittered wait.
        delay: Duration,
        /// Why the attempt failed.
        reason: &'static str,
    },
    /// Dead-letter the delivery (`failed`).
    DeadLetter {
        /// Why no further attempt is made.
        reason: &'static str,
    },
    /// Dead-letter the delivery and disable its subscription (`410 Gone`).
    DisableSubscription {
        /// The subscription's `disabled_reason`.
        reason: DisabledReason,
    },
}

/// Decides the fate of a delivery after the `attempt`-th attempt of its
/// current schedule (1-based). A `429` or `503` with `Retry-After` waits at
/// least that long, but never longer than the schedule's longest step.
pub fn decide(
    outcome: AttemptOutcome,
    attempt: u32,
    auto_retry: bool,
    policy: &RetryPolicy,
    rng: &mut impl Rng,
) -> Decision {
    match classify(outcome) {
        Verdict::Accepted => Decision::Succeeded,
        Verdict::Gone => Decision::DisableSubscription {
            reason: DisabledReason::Gone,
        },
        Verdict::Permanent(reason) => Decision::DeadLetter { reason },
        Verdict::Retryable(_) if !auto_retry => Decision::DeadLetter {
            reason: "auto_retry is off",
        },
        Verdict::Retryable(reason) => match policy.next_delay(attempt, rng) {
            Some(delay) => {
                let asked = match outcome {
                    AttemptOutcome::Response {
                        status: 429 | 503,
                        retry_after: Some(asked),
                    } => asked,
                    _ => Duration::ZERO,
                };
                let cap = policy.schedule.iter().copied().max().unwrap_or(Duration::ZERO);
                if asked > delay {
                    Decision::RetryAfter {
                        delay: asked.min(cap).max(delay),
                        reason: "the endpoint asked to wait (Retry-After)",
                    }
                } else {
                    Decision::RetryAfter { delay, reason }
                }
            }
            None => Decision::DeadLetter {
                reason: "retry schedule exhausted",
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn retry_after_is_honored_within_the_cap() {
        let policy = RetryPolicy::new(vec![Duration::from_secs(5), Duration::from_secs(60)], 0.0);
        let mut rng = StdRng::seed_from_u64(0);
        let asked = |status, secs| AttemptOutcome::Response {
            status,
            retry_after: Some(Duration::from_secs(secs)),
        };
        let delay = |outcome| match decide(outcome, 1, true, &policy, &mut StdRng::seed_from_u64(0)) {
            Decision::RetryAfter { delay, .. } => delay,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            delay(asked(429, 30)),
            Duration::from_secs(30),
            "longer than the step: wait as asked"
        );
        assert_eq!(
            delay(asked(503, 1)),
            Duration::from_secs(5),
            "shorter than the step: the step wins"
        );
        assert_eq!(
            delay(asked(429, 3600)),
            Duration::from_secs(60),
            "capped at the longest step"
        );
        assert_eq!(
            delay(asked(500, 30)),
            Duration::from_secs(5),
            "only 429 and 503 are honored"
        );
        let _ = &mut rng;
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = chrono::Utc.with_ymd_and_hms(2015, 10, 21, 7, 27, 0).unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn default_schedule_has_eleven_attempts_within_twenty_percent() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts(), 11);
        let mut rng = StdRng::seed_from_u64(7);
        for (i, step) in DEFAULT_SCHEDULE.iter().enumerate() {
            for _ in 0..200 {
                let d = policy.next_delay(i as u32 + 1, &mut rng).unwrap();
                assert!(d >= step.mul_f64(0.8) && d <= step.mul_f64(1.2), "step {i}: {d:?}");
            }
        }
        assert_eq!(policy.next_delay(11, &mut rng), None);
        assert_eq!(policy.next_delay(0, &mut rng), None);
    }

    #[test]
    fn jitter_actually_spreads_the_waits() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(1);
        let waits: std::collections::HashSet<_> = (0..20).map(|_| policy.next_delay(1, &mut rng).unwrap()).collect();
        assert!(waits.len() > 10);
    }

    #[test]
    fn decisions_table() {
        let policy = RetryPolicy::new(vec![Duration::from_millis(10); 2], 0.0);
        let mut rng = StdRng::seed_from_u64(0);
        let cases = [
            (AttemptOutcome::status(200), 1, true, Decision::Succeeded),
            (AttemptOutcome::status(204), 3, true, Decision::Succeeded),
            (
                AttemptOutcome::status(410),
                1,
                true,
                Decision::DisableSubscription {
                    reason: DisabledReason::Gone,
                },
            ),
            (
                AttemptOutcome::status(410),
                1,
                false,
                Decision::DisableSubscription {
                    reason: DisabledReason::Gone,
                },
            ),
            (
                AttemptOutcome::status(500),
                1,
                true,
                Decision::RetryAfter {
                    delay: Duration::from_millis(10),
                    reason: "non-2xx status",
                },
            ),
            (
                AttemptOutcome::status(302),
                2,
                true,
                Decision::RetryAfter {
                    delay: Duration::from_millis(10),
                    reason: "redirect (redirects are not followed)",
                },
            ),
            (
                AttemptOutcome::status(500),
                3,
                true,
                Decision::DeadLetter {
                    reason: "retry schedule exhausted",
                },
            ),
            (
                AttemptOutcome::Error(ErrorKind::Timeout),
                1,
                false,
                Decision::DeadLetter {
                    reason: "auto_retry is off",
                },
            ),
            (
                AttemptOutcome::Error(ErrorKind::Blocked),
                1,
                true,
                Decision::DeadLetter {
                    reason: "endpoint address is not allowed",
                },
            ),
        ];
        for (outcome, attempt, auto_retry, expected) in cases {
            assert_eq!(
                decide(outcome, attempt, auto_retry, &policy, &mut rng),
                expected,
                "{outcome:?} #{attempt}"
            );
        }
    }
}
