//! What follows an attempt: from the [`Decision`] the retry rules made to
//! everything the store writes because of it — the delivery's new status
//! and next attempt, the subscription's failure streak, whether
//! `delivery.failed` is raised, whether the subscription is disabled. One
//! pure function, [`consequences`], so the store only applies it.

use crate::catalog::{self, EventOrigin};
use crate::delivery::DeliveryStatus;
use crate::policy::DisabledReason;
use crate::retry::Decision;
use chrono::{DateTime, Utc};

/// How an attempt moves its subscription's failure streak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreakStep {
    /// A success: the streak is over.
    Reset,
    /// One more failed attempt.
    Failure,
}

/// Everything an attempt's decision changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consequences {
    /// The delivery's status afterwards.
    pub status: DeliveryStatus,
    /// When it is tried again (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// What the attempt does to the subscription's failure streak.
    pub streak: StreakStep,
    /// Whether the dead letter raises `delivery.failed`. An operational
    /// event's dead letter never does, so failures cannot feed on
    /// themselves.
    pub raises_delivery_failed: bool,
    /// Disable the subscription, for this reason.
    pub disable: Option<DisabledReason>,
}

/// What follows `decision`, made at `decided_at` about a delivery of an
/// event of type `event_type`. Only a pending delivery is attempted, so this
/// is the whole transition table.
pub fn consequences(decision: Decision, decided_at: DateTime<Utc>, event_type: &str) -> Consequences {
    let operational = catalog::lookup(event_type).is_some_and(|info| info.origin == EventOrigin::Operational);
    let failed = |disable| Consequences {
        status: DeliveryStatus::Failed,
        next_attempt_at: None,
        streak: StreakStep::Failure,
        raises_delivery_failed: !operational,
        disable,
    };
    match decision {
        Decision::Succeeded => Consequences {
            status: DeliveryStatus::Succeeded,
            next_attempt_at: None,
            streak: StreakStep::Reset,
            raises_delivery_failed: false,
            disable: None,
        },
        Decision::RetryAfter { delay, .. } => Consequences {
            status: DeliveryStatus::Pending,
            next_attempt_at: Some(decided_at + delay),
            streak: StreakStep::Failure,
            raises_delivery_failed: false,
            disable: None,
        },
        Decision::DeadLetter { .. } => failed(None),
        Decision::DisableSubscription { reason } => failed(Some(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_decision_has_its_consequences() {
        let at = crate::time::from_millis(1_000_000);
        let retry = Decision::RetryAfter {
            delay: Duration::from_secs(30),
            reason: "non-2xx status",
        };
        let dead = Decision::DeadLetter {
            reason: "retry schedule exhausted",
        };
        let gone = Decision::DisableSubscription {
            reason: DisabledReason::Gone,
        };
        use DeliveryStatus::*;
        use StreakStep::*;
        let gone_reason = Some(DisabledReason::Gone);
        // (decision, event type, status, next attempt, streak, delivery.failed, disable)
        let table = [
            (Decision::Succeeded, "signer.done", Succeeded, None, Reset, false, None),
            (
                retry,
                "signer.done",
                Pending,
                Some(at + Duration::from_secs(30)),
                Failure,
                false,
                None,
            ),
            (dead, "signer.done", Failed, None, Failure, true, None),
            (gone, "signer.done", Failed, None, Failure, true, gone_reason),
            // Operational events never raise delivery.failed…
            (dead, "delivery.failed", Failed, None, Failure, false, None),
            (dead, "webhook.disabled", Failed, None, Failure, false, None),
            // …but a 410 still disables the subscription.
            (gone, "delivery.failed", Failed, None, Failure, false, gone_reason),
            // A tenant's own type is not operational.
            (dead, "invoice.paid", Failed, None, Failure, true, None),
        ];
        for (decision, event_type, status, next, streak, raises, disable) in table {
            assert_eq!(
                consequences(decision, at, event_type),
                Consequences {
                    status,
                    next_attempt_at: next,
                    streak,
                    raises_delivery_failed: raises,
                    disable,
                },
                "{decision:?} of {event_type}"
            );
        }
    }
}
