-- What an endpoint's dashboard page shows (issue 14).
--
-- The headers of each attempt's request as it was sent (a JSON array of
-- [name, value] pairs), so the delivery log shows the request exactly;
-- custom header values are not kept here (they may be credentials, which
-- are sealed at rest in `subscriptions`). NULL for attempts made before.
ALTER TABLE attempts ADD COLUMN request_headers TEXT;

-- Attempts per subscription and hour (unix milliseconds of the hour's
-- start): how many, how many succeeded, their summed duration. Written with
-- each batch of outcomes, one row per subscription and hour of the batch,
-- so an endpoint's success rate and latency over 24 h and 7 d read a few
-- hundred rows, however many attempts were made.
CREATE TABLE subscription_stats (
    subscription_id  TEXT NOT NULL,
    hour             BIGINT NOT NULL,
    attempts         BIGINT NOT NULL,
    successes        BIGINT NOT NULL,
    duration_ms      BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, hour)
);

-- An endpoint's page lists its recent recovery jobs.
CREATE INDEX recoveries_by_subscription ON recoveries (subscription_id, id);
