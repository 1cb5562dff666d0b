-- Ordered delivery per key (issue 17, DESIGN §10).
--
-- A subscription says how it orders its deliveries ('none', the default,
-- 'signature_request' or 'key') and what a dead letter does to the rest of
-- its key ('skip', the default, or 'block').
ALTER TABLE subscriptions ADD COLUMN ordering TEXT NOT NULL DEFAULT 'none'
    CHECK (ordering IN ('none', 'signature_request', 'key'));
ALTER TABLE subscriptions ADD COLUMN ordering_on_failure TEXT NOT NULL DEFAULT 'skip'
    CHECK (ordering_on_failure IN ('skip', 'block'));

-- The key a published event was given (`ordering_key` of POST /v1/events),
-- echoed in its envelope.
ALTER TABLE events ADD COLUMN ordering_key TEXT;

-- The key a delivery is ordered by, copied from its event under its
-- subscription's ordering when the delivery is written (NULL: unordered),
-- so the rule is an indexed lookup and unordered deliveries pay nothing.
-- An ordered delivery waiting for its turn is pending with no
-- next_attempt_at: the due index, the claim and the dispatcher's agenda
-- never see it until the delivery before it lets the key go.
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;

-- One key's deliveries by status, in event order: the key's head (pending
-- and due), those waiting behind it, and the dead letters that block it.
-- Partial: unordered deliveries are not in it.
CREATE INDEX deliveries_by_ordering_key ON deliveries (subscription_id, ordering_key, status, event_id)
    WHERE ordering_key IS NOT NULL;
