//! When the dispatcher claims: the earliest instant at which the database
//! may hold due work that this node has not claimed yet.
//!
//! The instant is absolute. Only a claim — which looks at the database
//! again — can move it later; everything else can only bring it earlier. A
//! delivery handed over at publish, a finished send or any other turn of
//! the dispatcher's loop leaves it where it is, so no amount of unrelated
//! traffic postpones a retry that falls due.
//!
//! What the agenda is told:
//! - after each claim, the earliest due time of what is left in the
//!   database (outside the lanes the claim left out), or "at once" when the
//!   claim took all it could carry;
//! - through the store's work signal, when the work this process writes
//!   falls due: a retry at its scheduled time, an operational event, a
//!   resend, a recovery batch, a release or a lifecycle step at once;
//! - from other nodes (PostgreSQL `LISTEN`): at once;
//! - when a lane the last claim left out has room again: at once.
//!
//! A look at the database at least every `idle_poll` after the last claim
//! is only a safety net: for work that nobody announced, such as a lease
//! left by a node that died without releasing it. It is a read; a claim (a
//! write) follows only if the look finds something due.

use std::time::Duration;
use tokio::time::Instant;

/// After a claim that took nothing although the database held due work for
/// it (rows being claimed by another node at that moment, `SKIP LOCKED`),
/// the next claim waits this long rather than spin.
pub(crate) const CONTENDED_GAP: Duration = Duration::from_millis(20);

/// After a claim that failed (the database is away), the next waits this
/// long.
pub(crate) const FAILED_GAP: Duration = Duration::from_millis(500);

/// The dispatcher's agenda; see the module docs.
#[derive(Debug)]
pub(crate) struct Agenda {
    /// The earliest instant work is known to fall due.
    due: Option<Instant>,
    /// When the last claim began.
    last_claim: Instant,
    idle_poll: Duration,
}

/// What a claim found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claimed {
    /// How many deliveries it took.
    pub taken: usize,
    /// Whether it took as many as it asked for: more may be due at once.
    pub full: bool,
    /// The earliest due time of what is left for this node to claim.
    pub next_due: Option<Instant>,
}

impl Agenda {
    /// A fresh dispatcher claims at once: work may have been left due by a
    /// previous run.
    pub(crate) fn new(now: Instant, idle_poll: Duration) -> Self {
        Self {
            due: Some(now),
            last_claim: now,
            idle_poll,
        }
    }

    /// Work falls due at `at` (now or later).
    pub(crate) fn due_at(&mut self, at: Instant) {
        self.due = Some(self.due.map_or(at, |due| due.min(at)));
    }

    /// When to claim next.
    pub(crate) fn next_claim(&self) -> Instant {
        let safety_net = self.last_claim + self.idle_poll;
        self.due.map_or(safety_net, |due| due.min(safety_net))
    }

    /// Whether a claim (or the safety net's look) is due at `now`.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        now >= self.next_claim()
    }

    /// Whether work is known to be due at `now`: then claim at once;
    /// otherwise only the safety net is due, and a look comes first.
    pub(crate) fn work_is_due(&self, now: Instant) -> bool {
        self.due.is_some_and(|due| due <= now)
    }

    /// A claim that began at `started` found `claimed`.
    pub(crate) fn claimed(&mut self, started: Instant, claimed: Claimed) {
        // Announcements of work due after the claim began are not covered by
        // it. They are in the database too, but keeping them costs nothing.
        let announced_later = self.due.filter(|due| *due > started);
        let from_database = if claimed.full {
            Some(started)
        } else {
            match claimed.next_due {
                Some(at) if at <= started && claimed.taken == 0 => Some(started + CONTENDED_GAP),
                next => next,
            }
        };
        self.last_claim = started;
        self.due = None;
        for at in [from_database, announced_later].into_iter().flatten() {
            self.due_at(at);
        }
    }

    /// A claim that began at `started` failed.
    pub(crate) fn failed(&mut self, started: Instant) {
        self.last_claim = started;
        self.due = Some(started + FAILED_GAP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const IDLE_POLL: Duration = Duration::from_secs(1);

    fn idle_after_a_claim(t0: Instant) -> Agenda {
        let mut agenda = Agenda::new(t0, IDLE_POLL);
        agenda.claimed(
            t0,
            Claimed {
                taken: 0,
                full: false,
                next_due: None,
            },
        );
        agenda
    }

    /// The dispatcher's loop in virtual time: it turns every 10 ms (a
    /// delivery handed over at publish, a finished send), which tells the
    /// agenda nothing, and claims whenever the agenda says so. Returns the
    /// instants of its claims.
    fn claims_while_turning_every_10_ms(mut agenda: Agenda, t0: Instant, until: Duration) -> Vec<Duration> {
        let mut claims = Vec::new();
        let mut now = t0;
        while now < t0 + until {
            now += 10 * MS;
            // The loop sleeps until the agenda's instant when it is sooner
            // than the next turn.
            let claim_at = agenda.next_claim();
            if claim_at <= now {
                claims.push(claim_at.max(t0) - t0);
                agenda.claimed(
                    claim_at,
                    Claimed {
                        taken: 1,
                        full: false,
                        next_due: None,
                    },
                );
            }
        }
        claims
    }

    #[test]
    fn a_retry_is_claimed_when_due_however_often_the_loop_turns() {
        let t0 = Instant::now();
        let mut agenda = idle_after_a_claim(t0);
        // The send that failed recorded its retry for t0 + 100 ms.
        agenda.due_at(t0 + 100 * MS);
        let claims = claims_while_turning_every_10_ms(agenda, t0, Duration::from_secs(3));
        assert_eq!(claims[0], 100 * MS, "the retry's claim, at its due time");
        // Then only the safety net, a second after each claim: turning the
        // loop never postponed it.
        assert_eq!(claims[1..], [1100 * MS, 2100 * MS]);
    }

    #[test]
    fn the_safety_net_counts_from_the_last_claim_not_from_the_last_turn() {
        let t0 = Instant::now();
        let agenda = idle_after_a_claim(t0);
        assert_eq!(agenda.next_claim(), t0 + IDLE_POLL);
        assert!(!agenda.is_due(t0 + IDLE_POLL - MS));
        assert!(agenda.is_due(t0 + IDLE_POLL));
    }

    #[test]
    fn an_announcement_only_ever_brings_the_claim_earlier() {
        let t0 = Instant::now();
        let mut agenda = idle_after_a_claim(t0);
        agenda.due_at(t0 + 300 * MS);
        agenda.due_at(t0 + 100 * MS);
        agenda.due_at(t0 + 500 * MS);
        assert_eq!(agenda.next_claim(), t0 + 100 * MS);
        agenda.due_at(t0 + 5 * IDLE_POLL);
        assert_eq!(agenda.next_claim(), t0 + 100 * MS);
    }

    #[test]
    fn after_a_claim_the_database_and_later_announcements_decide() {
        let t0 = Instant::now();
        let cases = [
            // (taken, full, next due in the database, announced before the
            // claim, claim expected at)
            (200, true, Some(900 * MS), None, Duration::ZERO),
            (3, false, Some(400 * MS), None, 400 * MS),
            (3, false, None, None, IDLE_POLL),
            // Announced for after the claim began: kept.
            (3, false, Some(400 * MS), Some(250 * MS), 250 * MS),
            // Announced for before the claim began: it covered that.
            (3, false, None, Some(Duration::ZERO), IDLE_POLL),
            // Due rows left that it could not take: not a spin, a short gap.
            (0, false, Some(Duration::ZERO), None, CONTENDED_GAP),
            // Due rows left after taking some: more at once.
            (5, false, Some(Duration::ZERO), None, Duration::ZERO),
        ];
        for (taken, full, next_due, announced, expected) in cases {
            let mut agenda = idle_after_a_claim(t0);
            if let Some(at) = announced {
                agenda.due_at(t0 + at);
            }
            agenda.claimed(
                t0,
                Claimed {
                    taken,
                    full,
                    next_due: next_due.map(|d| t0 + d),
                },
            );
            assert_eq!(
                agenda.next_claim() - t0,
                expected,
                "taken {taken}, full {full}, next due {next_due:?}, announced {announced:?}"
            );
        }
    }

    #[test]
    fn the_safety_net_is_a_look_unless_work_is_known_to_be_due() {
        let t0 = Instant::now();
        let mut agenda = idle_after_a_claim(t0);
        assert!(agenda.is_due(t0 + IDLE_POLL));
        assert!(!agenda.work_is_due(t0 + IDLE_POLL), "only the safety net: look first");
        agenda.due_at(t0 + 100 * MS);
        assert!(agenda.work_is_due(t0 + 100 * MS), "announced work: claim");
    }

    #[test]
    fn a_failed_claim_is_tried_again_shortly() {
        let t0 = Instant::now();
        let mut agenda = Agenda::new(t0, IDLE_POLL);
        agenda.failed(t0);
        assert_eq!(agenda.next_claim(), t0 + FAILED_GAP);
    }

    #[test]
    fn a_fresh_agenda_claims_at_once() {
        let t0 = Instant::now();
        let agenda = Agenda::new(t0, IDLE_POLL);
        assert_eq!(agenda.next_claim(), t0);
        assert!(agenda.work_is_due(t0), "a claim, not only a look");
    }

    #[test]
    fn whether_to_claim_or_look_or_wait() {
        let t0 = Instant::now();
        let cases = [
            // (announced due at, now, claim or look due, work known due)
            (None, 999 * MS, false, false),
            (None, IDLE_POLL, true, false),
            (Some(100 * MS), 99 * MS, false, false),
            (Some(100 * MS), 100 * MS, true, true),
            (Some(100 * MS), 3 * IDLE_POLL, true, true),
            // Announced past the safety net: the net's look comes first.
            (Some(5 * IDLE_POLL), IDLE_POLL, true, false),
            (Some(5 * IDLE_POLL), 5 * IDLE_POLL, true, true),
        ];
        for (announced, now, is_due, work_is_due) in cases {
            let mut agenda = idle_after_a_claim(t0);
            if let Some(at) = announced {
                agenda.due_at(t0 + at);
            }
            let case = format!("announced {announced:?}, now {now:?}");
            assert_eq!(agenda.is_due(t0 + now), is_due, "{case}");
            assert_eq!(agenda.work_is_due(t0 + now), work_is_due, "{case}");
        }
    }

    #[test]
    fn a_claim_counts_from_when_it_began() {
        // The claim began at 500 ms, after the last one at 0.
        let t0 = Instant::now();
        let began = 500 * MS;
        let cases = [
            // (taken, full, next due in the database, announced before the
            // claim ended, claim expected at)
            (3, false, None, None, began + IDLE_POLL),
            // Announced for before the claim began: it covered that.
            (3, false, None, Some(200 * MS), began + IDLE_POLL),
            (3, false, None, Some(began), began + IDLE_POLL),
            // Announced for after it began: kept.
            (3, false, None, Some(700 * MS), 700 * MS),
            (3, false, Some(900 * MS), Some(700 * MS), 700 * MS),
            (3, false, Some(600 * MS), Some(700 * MS), 600 * MS),
            // Due rows it could not take, due before or as it began.
            (0, false, Some(300 * MS), None, began + CONTENDED_GAP),
            (0, false, Some(began), None, began + CONTENDED_GAP),
            // Due later: then.
            (0, false, Some(800 * MS), None, 800 * MS),
            // It took all it asked for: more at once.
            (10, true, Some(800 * MS), None, began),
            (10, true, None, None, began),
            // Due past the safety net: the net first.
            (3, false, Some(began + 3 * IDLE_POLL), None, began + IDLE_POLL),
        ];
        for (taken, full, next_due, announced, expected) in cases {
            let mut agenda = idle_after_a_claim(t0);
            if let Some(at) = announced {
                agenda.due_at(t0 + at);
            }
            agenda.claimed(
                t0 + began,
                Claimed {
                    taken,
                    full,
                    next_due: next_due.map(|d| t0 + d),
                },
            );
            assert_eq!(
                agenda.next_claim() - t0,
                expected,
                "taken {taken}, full {full}, next due {next_due:?}, announced {announced:?}"
            );
        }
    }

    #[test]
    fn after_a_failed_claim_the_gap_the_safety_net_or_an_announcement_decides() {
        let t0 = Instant::now();
        let cases = [
            // (idle poll, announced after the failure, claim expected at)
            (IDLE_POLL, None, FAILED_GAP),
            (IDLE_POLL, Some(100 * MS), 100 * MS),
            (IDLE_POLL, Some(FAILED_GAP + MS), FAILED_GAP),
            // A safety net shorter than the gap comes first.
            (100 * MS, None, 100 * MS),
        ];
        for (idle_poll, announced, expected) in cases {
            let mut agenda = Agenda::new(t0, idle_poll);
            // Work announced before the claim that failed waits for the gap.
            agenda.due_at(t0);
            agenda.failed(t0);
            if let Some(at) = announced {
                agenda.due_at(t0 + at);
            }
            assert_eq!(
                agenda.next_claim() - t0,
                expected,
                "idle poll {idle_poll:?}, announced {announced:?}"
            );
        }
    }
}
