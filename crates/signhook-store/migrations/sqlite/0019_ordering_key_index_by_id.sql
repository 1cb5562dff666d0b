-- A key's next delivery is its earliest waiting one in event order, the
-- delivery's id breaking ties (a resend of the same event): with the id in
-- the index, that order is the index's own, and the release of a key reads
-- its first entry instead of sorting the key's deliveries in a temporary
-- b-tree on every release.
DROP INDEX deliveries_by_ordering_key;
CREATE INDEX deliveries_by_ordering_key ON deliveries (subscription_id, ordering_key, status, event_id, id)
    WHERE ordering_key IS NOT NULL;
