-- The embeddable portal (issue 14): a platform's API key asks for a
-- one-time link that opens the webhook pages of its tenant and environment
-- for its own customer, in an iframe of the platform's app.
--
-- One row a link. The link's token is kept only as its SHA-256, and works
-- once: opening it stores the SHA-256 of the session token that the
-- portal's pages then carry in their path (a cookie would not reach an
-- iframe of another site in browsers that block third-party cookies).
CREATE TABLE portal_sessions (
    link_hash        BLOB PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    sandbox          INTEGER NOT NULL,
    -- The `write` capability: change endpoints, see their secrets.
    can_write        INTEGER NOT NULL,
    link_expires_at  INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    -- Set when the link is opened.
    session_hash     BLOB UNIQUE,
    csrf             TEXT,
    opened_at        INTEGER,
    last_seen_at     INTEGER
);

-- How the portal looks for a tenant's customers.
CREATE TABLE portal_themes (
    tenant_id     TEXT PRIMARY KEY REFERENCES tenants (id),
    product_name  TEXT,
    logo_url      TEXT,
    -- `#rrggbb`.
    accent_color  TEXT,
    updated_at    INTEGER NOT NULL
);
