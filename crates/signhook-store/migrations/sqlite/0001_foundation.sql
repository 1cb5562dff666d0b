-- The foundation schema: tenants and their keys, workspaces, webhook
-- subscriptions, events (the outbox) and deliveries with their attempts.
--
-- Conventions, kept the same in every backend so queries read alike:
-- * ids are prefixed UUIDv7 text (`evt_…`); they sort by creation time.
-- * instants are INTEGER milliseconds since the unix epoch (UTC).
-- * lists and maps are JSON text.
-- Never edit an applied migration: add a new one.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Only the SHA-256 of a key is kept; the key itself is shown once.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    environment  TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    key_hash     BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    CONSTRAINT api_keys_hash_unique UNIQUE (key_hash)
);

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    is_default  INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    CONSTRAINT workspaces_name_unique UNIQUE (tenant_id, name)
);

-- A subscription is soft-deleted so that its delivery log stays readable.
-- `previous_secret` keeps signing beside `secret` until
-- `previous_secret_expires_at`, so receivers can rotate without a gap.
CREATE TABLE subscriptions (
    id                          TEXT PRIMARY KEY,
    tenant_id                   TEXT NOT NULL REFERENCES tenants (id),
    sandbox                     INTEGER NOT NULL,
    url                         TEXT NOT NULL,
    description                 TEXT NOT NULL,
    enabled                     INTEGER NOT NULL,
    disabled_reason             TEXT,
    auto_retry                  INTEGER NOT NULL,
    subscribed_events           TEXT NOT NULL,
    scopes                      TEXT NOT NULL,
    workspaces                  TEXT NOT NULL,
    headers                     TEXT NOT NULL,
    signature_scheme            TEXT NOT NULL,
    secret                      TEXT NOT NULL,
    previous_secret             TEXT,
    previous_secret_expires_at  INTEGER,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL,
    deleted_at                  INTEGER
);
CREATE INDEX subscriptions_by_tenant ON subscriptions (tenant_id, sandbox, id);

-- Events are immutable. `idempotency_key` with `request_hash` lets a
-- client retry a publish safely: the same key returns the same event, a
-- different request under the same key is refused.
CREATE TABLE events (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    sandbox          INTEGER NOT NULL,
    type             TEXT NOT NULL,
    scope            TEXT NOT NULL,
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id),
    created_at       INTEGER NOT NULL,
    data             TEXT NOT NULL,
    idempotency_key  TEXT,
    request_hash     BLOB,
    CONSTRAINT events_idempotency_unique UNIQUE (tenant_id, sandbox, idempotency_key)
);
CREATE INDEX events_by_tenant ON events (tenant_id, sandbox, id);

-- One event to one subscription. A pending delivery is due when
-- `next_attempt_at` has passed. Claiming it moves `next_attempt_at` to the
-- end of the lease, so a claim held by a dead process simply falls due
-- again when the lease ends: no sweeper needed.
CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    event_id         TEXT NOT NULL REFERENCES events (id),
    subscription_id  TEXT NOT NULL REFERENCES subscriptions (id),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'canceled')),
    attempt_count    INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    leased_until     INTEGER,
    leased_by        TEXT,
    last_attempt_at  INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id, id);
CREATE INDEX deliveries_by_event ON deliveries (event_id);

CREATE TABLE attempts (
    id              TEXT PRIMARY KEY,
    delivery_id     TEXT NOT NULL REFERENCES deliveries (id),
    attempt_number  INTEGER NOT NULL,
    started_at      INTEGER NOT NULL,
    duration_ms     INTEGER NOT NULL,
    status_code     INTEGER,
    response_body   TEXT,
    error_kind      TEXT,
    error_message   TEXT,
    node_id         TEXT NOT NULL
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, attempt_number);
