-- Readiness: each node proves the database takes its writes by committing
-- one small row here (`Store::probe_write`) when a write was refused.
CREATE TABLE storage_probes (
    node_id  TEXT PRIMARY KEY,
    at       BIGINT NOT NULL,
    filler   TEXT NOT NULL
);
