-- When endpoints fail: rate limits, the warn-then-disable streak, manual
-- resends, redirect targets, recovery jobs, and where warnings are mailed.
-- Mirrors ../sqlite/0002_failure_policy.sql; see it for the why of each.

ALTER TABLE subscriptions ADD COLUMN rate_limit_per_second BIGINT;
ALTER TABLE subscriptions ADD COLUMN failing_since BIGINT;
ALTER TABLE subscriptions ADD COLUMN failure_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN warned_at BIGINT;

ALTER TABLE tenants ADD COLUMN admin_email TEXT;

ALTER TABLE deliveries ADD COLUMN schedule_offset BIGINT NOT NULL DEFAULT 0;

ALTER TABLE attempts ADD COLUMN location TEXT;

CREATE TABLE recoveries (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    subscription_id  TEXT NOT NULL REFERENCES subscriptions (id),
    since_at         BIGINT NOT NULL,
    until_at         BIGINT,
    status           TEXT NOT NULL CHECK (status IN ('running', 'done')),
    total            BIGINT NOT NULL,
    resent           BIGINT NOT NULL DEFAULT 0,
    cursor           TEXT NOT NULL DEFAULT '',
    leased_until     BIGINT,
    leased_by        TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX recoveries_running ON recoveries (created_at) WHERE status = 'running';
