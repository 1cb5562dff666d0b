-- The dashboard's people (issue 14): users of a tenant with a role, the
-- one-time links that set their password, their sessions, and the failed
-- logins that rate-limit guessing. Secrets are kept only as SHA-256 (links,
-- session tokens) or argon2id (passwords).
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    -- Lower-cased; one account per address across tenants, so a login
    -- names no tenant.
    email          TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    -- argon2id PHC string; NULL until the user sets one.
    password_hash  TEXT,
    created_at     INTEGER NOT NULL,
    CONSTRAINT users_email_unique UNIQUE (email)
);

-- One-time links: "set your password" for a new or invited user.
CREATE TABLE user_links (
    token_hash  BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);

CREATE TABLE sessions (
    token_hash    BLOB PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    -- The token every form of this session carries (CSRF).
    csrf          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    revoked_at    INTEGER,
    ip            TEXT,
    user_agent    TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Failed logins, kept a while to refuse guessing per account and address.
CREATE TABLE login_failures (
    id      TEXT PRIMARY KEY,
    email   TEXT NOT NULL,
    ip      TEXT NOT NULL,
    at      INTEGER NOT NULL
);
CREATE INDEX login_failures_by_email ON login_failures (email, at);
CREATE INDEX login_failures_by_ip ON login_failures (ip, at);
