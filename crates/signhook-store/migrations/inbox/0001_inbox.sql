-- The inbox's own SQLite database (`signhook inbox`): the requests it
-- received and answered 2xx, their forwards to the app, and the event ids
-- it has seen. Separate from the server's database: an inbox runs beside
-- an integrator's app, with no Signhook server at all.

-- One genuine request, kept from its 2xx until its retention ends.
-- `seq` is the arrival order (forwards per ordering key follow it).
CREATE TABLE inbox_requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The source's name in the configuration; the forward's lane.
    source TEXT NOT NULL,
    -- The sender's event id (`webhook-id`, `X-…-Event-Id`, or derived).
    event_id TEXT NOT NULL,
    body BLOB NOT NULL,
    -- The request's headers as received, a JSON array of [name, value].
    headers TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'forwarded', 'dead')),
    attempt_count INTEGER NOT NULL DEFAULT 0,
    -- Attempts made before the last replay: the retry schedule starts over.
    schedule_offset INTEGER NOT NULL DEFAULT 0,
    -- When the next attempt is due (pending only; a lease's end while held).
    next_attempt_at INTEGER,
    -- When the current attempt was due (received, retry time, replay).
    due_at INTEGER,
    leased_by TEXT,
    leased_until INTEGER,
    finished_at INTEGER,
    last_error TEXT,
    -- The source's ordering key read from the body (a JSON pointer), if it
    -- orders: a request waits while an earlier one of its key is pending.
    ordering_key TEXT
);

-- The claim's scan: pending rows by due time.
CREATE INDEX inbox_requests_due ON inbox_requests (next_attempt_at) WHERE status = 'pending';
-- `inbox list --status …`, newest first, and the retention purge.
CREATE INDEX inbox_requests_by_status ON inbox_requests (status, seq);
-- `inbox show ID` / `inbox replay ID`.
CREATE INDEX inbox_requests_by_event ON inbox_requests (event_id, seq);

-- The earlier pending request of an ordering key.
CREATE INDEX inbox_requests_by_key ON inbox_requests (ordering_key, seq)
    WHERE status = 'pending' AND ordering_key IS NOT NULL;

-- Every attempt to forward a request.
CREATE TABLE inbox_attempts (
    request_seq INTEGER NOT NULL REFERENCES inbox_requests (seq) ON DELETE CASCADE,
    attempt_number INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT,
    -- The first bytes of the app's answer.
    response_body TEXT,
    PRIMARY KEY (request_seq, attempt_number)
);

-- The event ids seen per source, for deduplication, kept for the
-- deduplication window (independent of how long requests are kept).
CREATE TABLE inbox_seen (
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (source, event_id)
);
CREATE INDEX inbox_seen_by_time ON inbox_seen (seen_at);
