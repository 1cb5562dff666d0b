-- Relay subscriptions for `signhook listen` (issue 16, item 2).
--
-- A relay subscription is a subscription like any other — same fan-out,
-- same retry schedule, same delivery log — whose attempts go over the
-- WebSocket of a `signhook listen` CLI instead of an HTTPS POST. There is
-- one per API key (`relay_key_id`), made the first time the key listens
-- and resumed after, so its secret stays the same for the key.
--
-- Only the node holding the CLI's socket sends its deliveries: it writes
-- itself into `relay_node` and renews `relay_until` while the socket
-- lives. A claim takes a relay subscription's deliveries only for the
-- node named there, while `relay_until` is ahead; with no holder they wait
-- pending, unclaimed and untried. A node that dies stops renewing, so its
-- hold lapses by itself.
ALTER TABLE subscriptions ADD COLUMN kind TEXT NOT NULL DEFAULT 'endpoint' CHECK (kind IN ('endpoint', 'relay'));
ALTER TABLE subscriptions ADD COLUMN relay_key_id TEXT REFERENCES api_keys (id);
ALTER TABLE subscriptions ADD COLUMN relay_node TEXT;
ALTER TABLE subscriptions ADD COLUMN relay_until BIGINT;

-- One live relay subscription per key; a deleted one leaves room for the
-- next `signhook listen` to make a new one.
CREATE UNIQUE INDEX subscriptions_relay_of_key ON subscriptions (relay_key_id)
    WHERE relay_key_id IS NOT NULL AND deleted_at IS NULL;
-- The claim's condition reads the relays, which are few.
CREATE INDEX subscriptions_relays ON subscriptions (id) WHERE kind = 'relay';
