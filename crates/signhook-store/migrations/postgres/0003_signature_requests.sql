-- The e-signature lifecycle. Mirrors ../sqlite/0003_signature_requests.sql;
-- see it for the why of each table. Signature requests, their
-- documents, signers and approvers, the audit trail the certificate is made
-- from, and the key that signs links.
--
-- Times are milliseconds since the epoch, as everywhere else. Statuses are
-- checked here as well as in signhook-core's state machine, so a hand-edited
-- row cannot carry a status the code does not know.

CREATE TABLE signature_requests (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL REFERENCES tenants (id),
    sandbox               BOOLEAN NOT NULL,
    workspace_id          TEXT NOT NULL REFERENCES workspaces (id),
    scope                 TEXT NOT NULL,
    name                  TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('draft', 'approval', 'ongoing', 'done', 'declined',
                              'canceled', 'expired', 'deleted', 'permanently_deleted')),
    -- Grows by one with every event; also the optimistic lock: a transition
    -- is written only if the sequence it was computed from is still current.
    sequence              BIGINT NOT NULL DEFAULT 0,
    ordered_signers       BOOLEAN NOT NULL,
    expires_at            BIGINT NOT NULL,
    reminder_interval_ms  BIGINT,
    next_reminder_at      BIGINT,
    metadata              TEXT NOT NULL,
    reason                TEXT,
    status_before_delete  TEXT,
    signed_pdf_sha256     TEXT,
    idempotency_key       TEXT,
    request_hash          BYTEA,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    activated_at          BIGINT,
    completed_at          BIGINT,
    deleted_at            BIGINT,
    CONSTRAINT signature_requests_idempotency_unique UNIQUE (tenant_id, sandbox, idempotency_key)
);
CREATE INDEX signature_requests_by_tenant ON signature_requests (tenant_id, sandbox, id);
-- What the schedulers look for: deadlines, reminders, purges.
CREATE INDEX signature_requests_expiring ON signature_requests (expires_at) WHERE status = 'ongoing';
CREATE INDEX signature_requests_reminding ON signature_requests (next_reminder_at) WHERE status = 'ongoing';
CREATE INDEX signature_requests_deleted ON signature_requests (deleted_at) WHERE status = 'deleted';

CREATE TABLE documents (
    id                    TEXT PRIMARY KEY,
    signature_request_id  TEXT NOT NULL REFERENCES signature_requests (id),
    filename              TEXT NOT NULL,
    size                  BIGINT NOT NULL,
    sha256                TEXT NOT NULL,
    pages                 BIGINT NOT NULL,
    created_at            BIGINT NOT NULL
);
CREATE INDEX documents_by_request ON documents (signature_request_id, id);

-- The signer's last act (sign or decline) keeps its IP and user agent for
-- the signature page; every act is also in audit_trail.
CREATE TABLE signers (
    id                    TEXT PRIMARY KEY,
    signature_request_id  TEXT NOT NULL REFERENCES signature_requests (id),
    position              BIGINT NOT NULL,
    name                  TEXT NOT NULL,
    email                 TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('pending', 'notified', 'link_opened', 'done', 'declined')),
    notified_at           BIGINT,
    link_opened_at        BIGINT,
    signed_at             BIGINT,
    declined_at           BIGINT,
    decline_reason        TEXT,
    acted_ip              TEXT,
    acted_user_agent      TEXT
);
CREATE INDEX signers_by_request ON signers (signature_request_id, position);

CREATE TABLE approvers (
    id                    TEXT PRIMARY KEY,
    signature_request_id  TEXT NOT NULL REFERENCES signature_requests (id),
    position              BIGINT NOT NULL,
    name                  TEXT NOT NULL,
    email                 TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('pending', 'notified', 'approved', 'rejected')),
    notified_at           BIGINT,
    acted_at              BIGINT,
    reject_reason         TEXT
);
CREATE INDEX approvers_by_request ON approvers (signature_request_id, position);

-- Every step of a request, with who did it and from where: the audit
-- certificate is printed from these rows. `id` is a UUIDv7, so ordering by it
-- is chronological.
CREATE TABLE audit_trail (
    id                    TEXT PRIMARY KEY,
    signature_request_id  TEXT NOT NULL REFERENCES signature_requests (id),
    at                    BIGINT NOT NULL,
    action                TEXT NOT NULL,
    actor                 TEXT NOT NULL,
    ip                    TEXT,
    user_agent            TEXT,
    detail                TEXT
);
CREATE INDEX audit_trail_by_request ON audit_trail (signature_request_id, id);

-- The HMAC key of signing links and file links. One row, made by the first
-- node that starts, so every node of a cluster signs and checks alike.
CREATE TABLE link_keys (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    secret      BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);
