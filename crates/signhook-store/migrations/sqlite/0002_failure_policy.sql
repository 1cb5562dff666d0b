-- When endpoints fail: rate limits, the warn-then-disable streak, manual
-- resends, redirect targets, recovery jobs, and where warnings are mailed.

-- Deliveries per second to this endpoint, when its owner caps them.
ALTER TABLE subscriptions ADD COLUMN rate_limit_per_second INTEGER;
-- The run of failed attempts since the last success: the disable policy
-- reads these; one success clears them.
ALTER TABLE subscriptions ADD COLUMN failing_since INTEGER;
ALTER TABLE subscriptions ADD COLUMN failure_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN warned_at INTEGER;

-- Where `webhook.disabling_soon` is e-mailed when SMTP is configured.
ALTER TABLE tenants ADD COLUMN admin_email TEXT;

-- A resend starts a fresh retry schedule: attempts before it do not count
-- against the new one.
ALTER TABLE deliveries ADD COLUMN schedule_offset INTEGER NOT NULL DEFAULT 0;

-- The `location` of a 3xx answer (redirects are not followed).
ALTER TABLE attempts ADD COLUMN location TEXT;

-- "Resend everything that failed since T" as a durable job: any node claims
-- a running job under a lease and advances `cursor` batch by batch, so a
-- restart or a crash resumes where the last committed batch ended.
CREATE TABLE recoveries (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    subscription_id  TEXT NOT NULL REFERENCES subscriptions (id),
    since_at         INTEGER NOT NULL,
    until_at         INTEGER,
    status           TEXT NOT NULL CHECK (status IN ('running', 'done')),
    total            INTEGER NOT NULL,
    resent           INTEGER NOT NULL DEFAULT 0,
    cursor           TEXT NOT NULL DEFAULT '',
    leased_until     INTEGER,
    leased_by        TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX recoveries_running ON recoveries (created_at) WHERE status = 'running';
