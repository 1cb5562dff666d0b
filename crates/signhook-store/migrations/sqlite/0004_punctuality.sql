-- Punctuality: when each attempt was due, beside when it started, so the
-- delivery log and the metrics show how late an attempt left.

-- When a pending delivery's next attempt is due, as scheduled: at creation,
-- after a failed attempt (the retry's time), on a resend or a recovery.
-- Unlike `next_attempt_at`, a claim leaves it alone (a claim moves
-- `next_attempt_at` to the end of its lease) and so does a release, so the
-- attempt that follows knows when it was meant to leave. NULL once the
-- delivery is settled. Rows from before this migration take the best
-- value there is: `next_attempt_at` unless claimed, else their last change.
ALTER TABLE deliveries ADD COLUMN due_at INTEGER;
UPDATE deliveries SET due_at = CASE WHEN leased_by IS NULL THEN next_attempt_at ELSE updated_at END
WHERE status = 'pending';

-- When the attempt was due (its delivery's `due_at` when it was claimed);
-- NULL for attempts made before this migration. Lateness is
-- `started_at - scheduled_at`.
ALTER TABLE attempts ADD COLUMN scheduled_at INTEGER;
