-- Punctuality: when each attempt was due, beside when it started.
-- Mirrors ../sqlite/0004_punctuality.sql; see it for the why of each.

ALTER TABLE deliveries ADD COLUMN due_at BIGINT;
UPDATE deliveries SET due_at = CASE WHEN leased_by IS NULL THEN next_attempt_at ELSE updated_at END
WHERE status = 'pending';

ALTER TABLE attempts ADD COLUMN scheduled_at BIGINT;
