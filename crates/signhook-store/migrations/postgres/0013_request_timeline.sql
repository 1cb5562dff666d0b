-- A signature request's timeline (the dashboard's request page, issue 14):
-- the trail row of every event a transition emits names that event and its
-- `sequence`, so the page lists a request's events in sequence order from
-- the trail's own index (`audit_trail_by_request`) without searching the
-- events table by payload. No foreign key: events are purged after the
-- retention period while the trail, the legal record, stays.
--
-- Rows written before this migration have neither; their events read in
-- trail order, which is the order they were written.
ALTER TABLE audit_trail ADD COLUMN event_id TEXT;
ALTER TABLE audit_trail ADD COLUMN sequence BIGINT;
