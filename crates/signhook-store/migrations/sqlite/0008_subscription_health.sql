-- A subscription's failure streak, apart from its configuration. Every
-- recorded outcome moves the streak, while the configuration changes only
-- when its owner (or the failure policy) changes it: kept apart, a write to
-- `subscriptions` always means the configuration changed, which is what
-- the SQLite writer's cache of publishing candidates forgets on.
CREATE TABLE subscription_health (
    subscription_id TEXT PRIMARY KEY REFERENCES subscriptions (id),
    -- When the current run of failures began; NULL when the last outcome
    -- was a success.
    failing_since   INTEGER,
    -- Failed attempts since the last success.
    failure_count   INTEGER NOT NULL DEFAULT 0,
    -- When the owner was warned that it would be disabled.
    warned_at       INTEGER
);

INSERT INTO subscription_health (subscription_id, failing_since, failure_count, warned_at)
SELECT id, failing_since, failure_count, warned_at FROM subscriptions;

ALTER TABLE subscriptions DROP COLUMN failing_since;
ALTER TABLE subscriptions DROP COLUMN failure_count;
ALTER TABLE subscriptions DROP COLUMN warned_at;
