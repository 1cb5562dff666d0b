-- The tenant's own event types and where each event came from (issue 17,
-- DESIGN §10).
--
-- `event_types`: the types a tenant registered for `POST /v1/events`, with
-- the JSON Schema (draft 2020-12, as JSON text) that every published `data`
-- must satisfy and an example that satisfies it. Per tenant, shared by its
-- live and sandbox environments (a type is configuration, like a
-- workspace). Never deleted: an archived type takes no new publishes, while
-- its events and the subscriptions naming it stay. `revision` grows with
-- every change, so a node's compiled copy of the schema knows it is stale.
CREATE TABLE event_types (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    schema       TEXT NOT NULL,
    example      TEXT NOT NULL,
    deprecated   INTEGER NOT NULL DEFAULT 0,
    archived     INTEGER NOT NULL DEFAULT 0,
    revision     BIGINT NOT NULL DEFAULT 1,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- Where an event came from, carried in every envelope as `origin`:
-- `lifecycle` (a step of one of Signhook's own signature requests), `api`
-- (published with `POST /v1/events`) or `system` (`webhook.test` and the
-- operational events about the webhook system itself).
--
-- Events written before this migration: the ones a transition recorded in
-- the audit trail (since 0013) are the lifecycle's, the test and
-- operational types are the system's, and the rest were published. A
-- lifecycle event older than 0013 cannot be told from a published one and
-- reads as `api`.
ALTER TABLE events ADD COLUMN origin TEXT NOT NULL DEFAULT 'api';
UPDATE events SET origin = 'system'
 WHERE type IN ('webhook.test', 'webhook.disabling_soon', 'webhook.disabled', 'delivery.failed');
UPDATE events SET origin = 'lifecycle'
 WHERE id IN (SELECT event_id FROM audit_trail WHERE event_id IS NOT NULL);

-- The tenant's setting: `false` when it runs its documents through
-- Signhook, so that `POST /v1/events` refuses the built-in lifecycle types
-- and a receiver can trust that a `signer.done` is Signhook's own.
ALTER TABLE tenants ADD COLUMN allow_lifecycle_publishes INTEGER NOT NULL DEFAULT 1;
