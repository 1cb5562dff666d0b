-- The foundation schema, PostgreSQL dialect. It mirrors
-- ../sqlite/0001_foundation.sql table for table and column for column (a
-- test compares the two); see that file for what each table is for.
--
-- Conventions, the same in every backend so one query text serves both:
-- * ids are prefixed UUIDv7 text (`evt_…`); they sort by creation time.
-- * instants are BIGINT milliseconds since the unix epoch (UTC).
-- * integers are BIGINT, flags BOOLEAN, lists and maps JSON text.
-- Never edit an applied migration: add a new one.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    environment  TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    key_hash     BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    CONSTRAINT api_keys_hash_unique UNIQUE (key_hash)
);

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    is_default  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL,
    CONSTRAINT workspaces_name_unique UNIQUE (tenant_id, name)
);

CREATE TABLE subscriptions (
    id                          TEXT PRIMARY KEY,
    tenant_id                   TEXT NOT NULL REFERENCES tenants (id),
    sandbox                     BOOLEAN NOT NULL,
    url                         TEXT NOT NULL,
    description                 TEXT NOT NULL,
    enabled                     BOOLEAN NOT NULL,
    disabled_reason             TEXT,
    auto_retry                  BOOLEAN NOT NULL,
    subscribed_events           TEXT NOT NULL,
    scopes                      TEXT NOT NULL,
    workspaces                  TEXT NOT NULL,
    headers                     TEXT NOT NULL,
    signature_scheme            TEXT NOT NULL,
    secret                      TEXT NOT NULL,
    previous_secret             TEXT,
    previous_secret_expires_at  BIGINT,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL,
    deleted_at                  BIGINT
);
CREATE INDEX subscriptions_by_tenant ON subscriptions (tenant_id, sandbox, id);

CREATE TABLE events (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    sandbox          BOOLEAN NOT NULL,
    type             TEXT NOT NULL,
    scope            TEXT NOT NULL,
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id),
    created_at       BIGINT NOT NULL,
    data             TEXT NOT NULL,
    idempotency_key  TEXT,
    request_hash     BYTEA,
    CONSTRAINT events_idempotency_unique UNIQUE (tenant_id, sandbox, idempotency_key)
);
CREATE INDEX events_by_tenant ON events (tenant_id, sandbox, id);

-- Claimed with FOR UPDATE SKIP LOCKED by every node's dispatcher.
CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    event_id         TEXT NOT NULL REFERENCES events (id),
    subscription_id  TEXT NOT NULL REFERENCES subscriptions (id),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'canceled')),
    attempt_count    BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    leased_until     BIGINT,
    leased_by        TEXT,
    last_attempt_at  BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id, id);
CREATE INDEX deliveries_by_event ON deliveries (event_id);

CREATE TABLE attempts (
    id              TEXT PRIMARY KEY,
    delivery_id     TEXT NOT NULL REFERENCES deliveries (id),
    attempt_number  BIGINT NOT NULL,
    started_at      BIGINT NOT NULL,
    duration_ms     BIGINT NOT NULL,
    status_code     BIGINT,
    response_body   TEXT,
    error_kind      TEXT,
    error_message   TEXT,
    node_id         TEXT NOT NULL
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, attempt_number);
