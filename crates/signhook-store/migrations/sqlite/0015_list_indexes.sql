-- Lists that stay fast with millions of rows (issue 14, item 5).
--
-- A subscription's dead letters, newest first: the delivery log's most
-- used filter. Partial, so only failed deliveries (few) are in it and a
-- delivery's other status changes never touch it; the log's query names
-- the status literally when it asks for them, so both engines use it.
CREATE INDEX deliveries_dead_letters ON deliveries (subscription_id, id) WHERE status = 'failed';

-- Signature requests by status, newest first (the list's filter).
CREATE INDEX signature_requests_by_status ON signature_requests (tenant_id, sandbox, status, id);
