//! The inbox's own database (`signhook inbox`): the genuine requests it
//! answered 2xx, their forwards to the app behind it, and the event ids it
//! has seen (deduplication).
//!
//! One SQLite file in the inbox's data directory ([`INBOX_FILE`]), WAL with
//! `synchronous = FULL`, so a committed batch is on disk before any of its
//! senders gets its 2xx. It has its own migrations (`migrations/inbox`) and
//! is SQLite only: an inbox stands beside one app, on one machine. Writes
//! go through the server store's one writer connection and its gathered
//! transactions ([`crate::db::sqlite`]): a transaction's statements reach
//! SQLite's thread in as few round trips as its results allow, and what a
//! crash may lose at no cost — a claim, a forward's outcome, a release, a
//! purge — commits relaxed, without an fsync of its own, so the receipts'
//! durable commits do not queue behind the forwarder's. (Lost in a power
//! cut, a forward's outcome means the request is forwarded again, as
//! at-least-once allows.) A small pool of readers stands beside it.
//!
//! The forwards are claimed under a lease like the server's deliveries
//! (see [`crate::claims`]): claiming moves `next_attempt_at` to the lease's
//! end, so a request held by an inbox that died falls due again then; an
//! outcome or a release is written only while the lease it was claimed
//! under still holds. An inbox started again gives its own leases back at
//! once ([`InboxStore::release_leases_of`]).
//!
//! Ordering: a request whose source orders by a key waits while an earlier
//! request of the same key is pending (in flight, retrying), so one key has
//! one forward in flight, in arrival order. A dead letter ends the wait.

use crate::claims::Lease;
use crate::db::sqlite::SqliteWriter;
use crate::db::{DbRow, Reader, Row, Sql, Tx};
use crate::work::WorkSignal;
use crate::{Result, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::time::{from_millis, to_millis};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The name of the inbox's database file inside its data directory.
pub const INBOX_FILE: &str = "inbox.db";

/// The most bytes of an app's answer an attempt keeps.
pub const MAX_RESPONSE_EXCERPT: usize = 4096;

/// The inbox's database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct InboxStore {
    writer: Arc<SqliteWriter>,
    reader: SqlitePool,
    work: Arc<WorkSignal>,
}

/// A genuine request, as received.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// The source's name.
    pub source: String,
    /// The sender's event id.
    pub event_id: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// The headers, in order, as received.
    pub headers: Vec<(String, String)>,
    /// When the inbox received it.
    pub received_at: DateTime<Utc>,
    /// Its ordering key, when its source orders.
    pub ordering_key: Option<String>,
}

/// Rows per multi-row statement: 11 parameters each, well under SQLite's
/// limit on bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// The start of a multi-row insert of received requests; each row bound by
/// [`bind_request`].
const INSERT_REQUEST: &str = "INSERT INTO inbox_requests \
    (source, event_id, body, headers, received_at, status, next_attempt_at, due_at, leased_by, leased_until, ordering_key) ";

/// Received requests as rows of [`INSERT_REQUEST`], returning what
/// `returning` names: pending, claimed under `claim` when given (due when
/// its lease ends), else due at once.
fn insert_requests<'a>(
    requests: impl IntoIterator<Item = &'a NewRequest>,
    claim: Option<&Lease>,
    returning: &str,
) -> Sql {
    Sql::new(INSERT_REQUEST)
        .push_values(requests, |row, request| {
            let received_at = to_millis(request.received_at);
            let headers = serde_json::to_string(&request.headers).expect("pairs of strings always serialize");
            row.bind(&request.source)
                .bind(&request.event_id)
                .bind(request.body.clone())
                .bind(headers)
                .bind(received_at)
                .bind("pending")
                .bind(claim.map_or(received_at, |lease| to_millis(lease.until)))
                .bind(received_at)
                .bind(claim.map(|lease| lease.node_id.as_str()))
                .bind(claim.map(|lease| to_millis(lease.until)))
                .bind(request.ordering_key.as_deref());
        })
        .push(&format!(" RETURNING {returning}"))
}

/// What became of a received request.
#[derive(Debug)]
pub enum Received {
    /// Stored; claimed for the inbox's forwarder when it could be sent at
    /// once (a lease was given and no earlier request of its key waits).
    Stored(Option<ClaimedRequest>),
    /// Its event id was seen from this source within the window: not
    /// stored again.
    Duplicate,
}

/// A request claimed for forwarding.
#[derive(Debug, Clone)]
pub struct ClaimedRequest {
    /// Its row (arrival order).
    pub seq: i64,
    /// The source's name.
    pub source: String,
    /// The sender's event id.
    pub event_id: String,
    /// The raw body.
    pub body: Arc<[u8]>,
    /// The headers as received.
    pub headers: Arc<[(String, String)]>,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// The number this attempt will have.
    pub attempt_number: u32,
    /// Its place in the retry schedule (1 after receipt or a replay).
    pub schedule_attempt: u32,
    /// When this attempt was due.
    pub due_at: DateTime<Utc>,
    /// The lease's end, in milliseconds; proves the claim.
    pub lease_until: i64,
    /// Whether its source orders by a key: once it is forwarded or dead,
    /// the next request of its key may go.
    pub ordered: bool,
}

impl ClaimedRequest {
    /// The claim, as proof when giving the request back.
    pub fn held(&self) -> HeldRequest {
        HeldRequest {
            seq: self.seq,
            lease_until: self.lease_until,
            ordered: self.ordered,
        }
    }
}

/// The proof of a claim on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRequest {
    /// The request's row.
    pub seq: i64,
    /// The lease's end, in milliseconds, as the claim wrote it.
    pub lease_until: i64,
    /// Whether the request has an ordering key.
    pub ordered: bool,
}

/// One attempt to forward a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForwardAttempt {
    /// 1 for the first.
    pub attempt_number: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub duration_ms: u64,
    /// The app's status code, when it answered.
    pub status_code: Option<u16>,
    /// What went wrong, when it did.
    pub error: Option<String>,
    /// The first [`MAX_RESPONSE_EXCERPT`] bytes of the app's answer.
    pub response_body: Option<String>,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardOutcome {
    /// The app took it.
    Forwarded,
    /// Try again at this instant.
    RetryAt(DateTime<Utc>),
    /// The schedule is spent: a dead letter, until replayed.
    Dead,
}

/// An attempt and its outcome, as the forwarder records it.
#[derive(Debug, Clone)]
pub struct ForwardRecord {
    /// The claim it was made under.
    pub held: HeldRequest,
    /// The attempt.
    pub attempt: ForwardAttempt,
    /// What follows.
    pub outcome: ForwardOutcome,
}

/// A request's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    /// Waiting for a forward (first, or a retry).
    Pending,
    /// The app took it.
    Forwarded,
    /// Every attempt of the schedule failed.
    Dead,
}

impl RequestStatus {
    fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Forwarded => "forwarded",
            RequestStatus::Dead => "dead",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        match text {
            "pending" => Ok(RequestStatus::Pending),
            "forwarded" => Ok(RequestStatus::Forwarded),
            "dead" => Ok(RequestStatus::Dead),
            other => Err(StoreError::corrupt(format!("inbox request status `{other}`"))),
        }
    }
}

/// A request as `inbox list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestSummary {
    /// The sender's event id.
    pub event_id: String,
    /// The source's name.
    pub source: String,
    /// Its state.
    pub status: RequestStatus,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// A request as `inbox show` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestDetail {
    /// What `list` shows.
    #[serde(flatten)]
    pub summary: RequestSummary,
    /// The headers as received.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    #[serde(skip)]
    pub body: Vec<u8>,
    /// Every attempt, first first.
    pub attempt_log: Vec<ForwardAttempt>,
}

/// What [`InboxStore::purge`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Forwarded requests past their retention.
    pub requests: u64,
    /// Event ids past the deduplication window.
    pub seen: u64,
}

const SUMMARY_COLUMNS: &str = "seq, source, event_id, status, received_at, attempt_count, next_attempt_at, last_error";

/// What a claim returns of each row it took.
const CLAIMED_COLUMNS: &str =
    "seq, source, event_id, body, headers, received_at, attempt_count, schedule_offset, due_at, ordering_key";

/// A claimed request's row (of [`CLAIMED_COLUMNS`]) under a lease ending at
/// `lease_until` (milliseconds); `now` stands in for a missing due time.
fn claimed_from_row(row: &Row, lease_until: i64, now: DateTime<Utc>) -> Result<ClaimedRequest> {
    let attempts = row.int("attempt_count")?;
    let offset = row.int("schedule_offset")?;
    let headers: Vec<(String, String)> =
        serde_json::from_str(&row.text("headers")?).map_err(|e| StoreError::corrupt(format!("stored headers: {e}")))?;
    Ok(ClaimedRequest {
        seq: row.int("seq")?,
        source: row.text("source")?,
        event_id: row.text("event_id")?,
        body: row.opt_bytes("body")?.unwrap_or_default().into(),
        headers: headers.into(),
        received_at: from_millis(row.int("received_at")?),
        attempt_number: attempts as u32 + 1,
        schedule_attempt: (attempts - offset).max(0) as u32 + 1,
        due_at: row.opt_int("due_at")?.map_or(now, from_millis),
        lease_until,
        ordered: row.opt_text("ordering_key")?.is_some(),
    })
}

impl InboxStore {
    /// Opens (creating if needed) the inbox database in `data_dir` and
    /// applies its migrations.
    pub async fn open(data_dir: &Path) -> Result<Self> {
        crate::private_dir(data_dir).map_err(|e| StoreError::Corrupt(format!("cannot create the data dir: {e}")))?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join(INBOX_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A durable commit returns once it is on disk: the 2xx promise.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = Arc::new(SqliteWriter::connect(&options).await?);
        writer
            .with_connection(async |conn| Ok(sqlx::migrate!("./migrations/inbox").run(conn).await?))
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            writer,
            reader,
            work: Arc::default(),
        })
    }

    /// When the forwards this process writes fall due.
    pub fn work_signal(&self) -> Arc<WorkSignal> {
        self.work.clone()
    }

    /// A durable transaction: committed, it is on disk.
    async fn begin(&self) -> Result<Tx<'_>> {
        Ok(Tx::sqlite(self.writer.begin(false).await?, &self.work))
    }

    /// A transaction whose commit waits for no fsync of its own (the next
    /// durable one flushes it): for what a power cut may undo harmlessly.
    async fn begin_relaxed(&self) -> Result<Tx<'_>> {
        Ok(Tx::sqlite(self.writer.begin(true).await?, &self.work))
    }

    fn reader(&self) -> Reader<'_> {
        Reader::Sqlite(&self.reader)
    }

    /// Stores a batch of genuine requests in one transaction (one `fsync`),
    /// each skipped if its event id was seen from its source. With a
    /// `lease`, the stored ones that may go at once are claimed under it.
    /// One result per request, in order; an error fails the whole batch.
    pub async fn receive(&self, batch: &[NewRequest], lease: Option<&Lease>) -> Result<Vec<Received>> {
        let mut tx = self.begin().await?;
        // Which are new: one statement per chunk, not one per request (each
        // statement that returns rows is a round trip to SQLite's thread).
        // Of one id twice in a batch, the first is the new one.
        let mut fresh: HashSet<(String, String)> = HashSet::new();
        for chunk in batch.chunks(ROWS_PER_STATEMENT) {
            let seen = Sql::new("INSERT INTO inbox_seen (source, event_id, seen_at) ")
                .push_values(chunk, |row, request| {
                    row.bind(&request.source)
                        .bind(&request.event_id)
                        .bind(to_millis(request.received_at));
                })
                .push(" ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id");
            for row in tx.fetch_all(seen).await? {
                fresh.insert((row.text("source")?, row.text("event_id")?));
            }
        }
        let mut stored: Vec<Option<&NewRequest>> = batch
            .iter()
            .map(|request| {
                fresh
                    .remove(&(request.source.clone(), request.event_id.clone()))
                    .then_some(request)
            })
            .collect();
        // The ones without a key in one statement per chunk; a keyed one
        // alone, in arrival order, as it may wait for an earlier one of its
        // key (in the database, or just before it in this batch).
        let unkeyed: Vec<&NewRequest> = stored
            .iter()
            .flatten()
            .filter(|r| r.ordering_key.is_none())
            .copied()
            .collect();
        let mut seqs: HashMap<(String, String), i64> = HashMap::new();
        for chunk in unkeyed.chunks(ROWS_PER_STATEMENT) {
            for row in tx
                .fetch_all(insert_requests(chunk.iter().copied(), lease, "seq, source, event_id"))
                .await?
            {
                seqs.insert((row.text("source")?, row.text("event_id")?), row.int("seq")?);
            }
        }
        let mut results = Vec::with_capacity(batch.len());
        for request in stored.iter_mut() {
            let Some(request) = request.take() else {
                results.push(Received::Duplicate);
                continue;
            };
            let (seq, claim) = match &request.ordering_key {
                None => (
                    seqs.remove(&(request.source.clone(), request.event_id.clone()))
                        .ok_or_else(|| StoreError::corrupt("a stored request without its seq"))?,
                    lease,
                ),
                Some(key) => {
                    let waits = tx
                        .fetch_optional(
                            Sql::new(
                                "SELECT 1 AS waits FROM inbox_requests \
                                 WHERE ordering_key = $1 AND status = 'pending' LIMIT 1",
                            )
                            .bind(key),
                        )
                        .await?
                        .is_some();
                    let claim = lease.filter(|_| !waits);
                    let row = tx.fetch_one(insert_requests([request], claim, "seq")).await?;
                    (row.int("seq")?, claim)
                }
            };
            results.push(Received::Stored(claim.map(|lease| ClaimedRequest {
                seq,
                source: request.source.clone(),
                event_id: request.event_id.clone(),
                body: request.body.clone().into(),
                headers: request.headers.clone().into(),
                received_at: request.received_at,
                attempt_number: 1,
                schedule_attempt: 1,
                due_at: request.received_at,
                lease_until: to_millis(lease.until),
                ordered: request.ordering_key.is_some(),
            })));
        }
        // What was stored unclaimed (waiting for its key, or no lease
        // given) is for the next claim to find.
        if let Some(first) = batch
            .first()
            .filter(|_| results.iter().any(|r| matches!(r, Received::Stored(None))))
        {
            tx.work_due_at(first.received_at).await?;
        }
        tx.commit().await?;
        Ok(results)
    }

    /// Claims up to `limit` due requests for `node` until `lease_until`,
    /// oldest due first, at most `per_source` of any source, none of the
    /// sources in `skip`, and none that waits for an earlier request of its
    /// ordering key.
    pub async fn claim_due(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_source: u32,
        skip: &[String],
    ) -> Result<Vec<ClaimedRequest>> {
        let skip = serde_json::to_string(skip).map_err(|e| StoreError::corrupt(e.to_string()))?;
        let lease = to_millis(lease_until);
        let claim = Sql::new(format!(
            "UPDATE inbox_requests SET leased_by = $1, leased_until = $2, next_attempt_at = $2 \
             WHERE seq IN ( \
               SELECT seq FROM ( \
                 SELECT r.seq, ROW_NUMBER() OVER (PARTITION BY r.source ORDER BY r.next_attempt_at, r.seq) AS nth \
                 FROM inbox_requests r \
                 WHERE r.status = 'pending' AND r.next_attempt_at <= $3 \
                   AND r.source NOT IN (SELECT value FROM json_each($4)) \
                   AND (r.ordering_key IS NULL OR NOT EXISTS ( \
                     SELECT 1 FROM inbox_requests e \
                     WHERE e.ordering_key = r.ordering_key AND e.status = 'pending' AND e.seq < r.seq)) \
                 ORDER BY r.next_attempt_at, r.seq LIMIT 2000) \
               WHERE nth <= $5 LIMIT $6) \
             RETURNING {CLAIMED_COLUMNS}"
        ))
        .bind(node)
        .bind(lease)
        .bind(to_millis(now))
        .bind(skip)
        .bind(i64::from(per_source))
        .bind(i64::from(limit));
        // Relaxed: a claim a power cut undoes is due again, as it was.
        let mut tx = self.begin_relaxed().await?;
        let mut claimed = tx.fetch_parsed(claim, |row| claimed_from_row(row, lease, now)).await?;
        tx.commit().await?;
        // RETURNING gives no order: arrival order within a source.
        claimed.sort_by_key(|c| c.seq);
        Ok(claimed)
    }

    /// When a claim could next bring something, leaving out `skip`.
    pub async fn next_due_at(&self, skip: &[String]) -> Result<Option<DateTime<Utc>>> {
        let skip = serde_json::to_string(skip).map_err(|e| StoreError::corrupt(e.to_string()))?;
        let row = self
            .reader()
            .fetch_one(
                Sql::new(
                    "SELECT MIN(next_attempt_at) AS next FROM inbox_requests \
                     WHERE status = 'pending' AND source NOT IN (SELECT value FROM json_each($1))",
                )
                .bind(skip),
            )
            .await?;
        Ok(row.opt_int("next")?.map(from_millis))
    }

    /// Records attempts and their outcomes, each only while `node` still
    /// holds the claim it was made under (a late answer under a lease that
    /// passed on, or for a purged row, leaves the newer state alone). The
    /// batch goes as one JSON parameter of two statements whose text never
    /// changes, so SQLite parses little however many records there are;
    /// relaxed (an outcome a power cut undoes is forwarded again).
    pub async fn record_forwards(&self, node: &str, records: &[ForwardRecord], now: DateTime<Utc>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_relaxed().await?;
        let mut frees_a_key = false;
        let mut rows = Vec::with_capacity(records.len());
        for record in records {
            let (status, next, finished) = match record.outcome {
                ForwardOutcome::Forwarded => (RequestStatus::Forwarded, None, Some(to_millis(now))),
                ForwardOutcome::Dead => (RequestStatus::Dead, None, Some(to_millis(now))),
                ForwardOutcome::RetryAt(at) => {
                    tx.work_due_at(at).await?;
                    (RequestStatus::Pending, Some(to_millis(at)), None)
                }
            };
            // A finished request may free the next of its ordering key.
            frees_a_key |= record.held.ordered && status != RequestStatus::Pending;
            let attempt = &record.attempt;
            let last_error = match (status, &attempt.error, attempt.status_code) {
                (RequestStatus::Forwarded, _, _) => None,
                (_, Some(error), _) => Some(error.clone()),
                (_, None, Some(code)) => Some(format!("the app answered {code}")),
                (_, None, None) => None,
            };
            rows.push(serde_json::json!({
                "seq": record.held.seq,
                "lease_until": record.held.lease_until,
                "status": status.as_str(),
                "next": next,
                "finished": finished,
                "last_error": last_error,
                "attempt": attempt.attempt_number,
                "started_at": to_millis(attempt.started_at),
                "duration_ms": i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX),
                "status_code": attempt.status_code,
                "error": attempt.error,
                "response_body": attempt.response_body,
            }));
        }
        let rows = serde_json::Value::from(rows).to_string();
        // The attempts first, while the leases they prove still hold.
        tx.gather(
            Sql::new(
                "INSERT OR IGNORE INTO inbox_attempts \
                 (request_seq, attempt_number, started_at, duration_ms, status_code, error, response_body) \
                 SELECT r.seq, a.value ->> 'attempt', a.value ->> 'started_at', a.value ->> 'duration_ms', \
                     a.value ->> 'status_code', a.value ->> 'error', a.value ->> 'response_body' \
                 FROM json_each($1) AS a JOIN inbox_requests r ON r.seq = a.value ->> 'seq' \
                     AND r.leased_by = $2 AND r.leased_until = a.value ->> 'lease_until'",
            )
            .bind(rows.as_str())
            .bind(node),
        )
        .await?;
        tx.gather(
            Sql::new(
                "UPDATE inbox_requests SET attempt_count = attempt_count + 1, status = v.status, \
                     next_attempt_at = v.next, due_at = COALESCE(v.next, due_at), leased_by = NULL, \
                     leased_until = NULL, finished_at = v.finished, last_error = v.last_error \
                 FROM (SELECT value ->> 'seq' AS seq, value ->> 'lease_until' AS lease_until, \
                           value ->> 'status' AS status, value ->> 'next' AS next, \
                           value ->> 'finished' AS finished, value ->> 'last_error' AS last_error \
                       FROM json_each($1)) AS v \
                 WHERE inbox_requests.seq = v.seq AND inbox_requests.leased_by = $2 \
                     AND inbox_requests.leased_until = v.lease_until",
            )
            .bind(rows)
            .bind(node),
        )
        .await?;
        if frees_a_key {
            tx.work_due_at(now).await?;
        }
        tx.commit().await
    }

    /// Gives claims back unsent: due again at once.
    pub async fn release(&self, node: &str, held: &[HeldRequest], now: DateTime<Utc>) -> Result<()> {
        if held.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_relaxed().await?;
        for claim in held {
            tx.gather(
                Sql::new(
                    "UPDATE inbox_requests SET leased_by = NULL, leased_until = NULL, next_attempt_at = $1 \
                     WHERE seq = $2 AND leased_by = $3 AND leased_until = $4 AND status = 'pending'",
                )
                .bind(to_millis(now))
                .bind(claim.seq)
                .bind(node)
                .bind(claim.lease_until),
            )
            .await?;
        }
        tx.work_due_at(now).await?;
        tx.commit().await
    }

    /// Gives back every claim `node` holds (an inbox started again under
    /// its id, after a crash): due at once. Returns how many.
    pub async fn release_leases_of(&self, node: &str, now: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.begin_relaxed().await?;
        let released = tx
            .execute(
                Sql::new(
                    "UPDATE inbox_requests SET leased_by = NULL, leased_until = NULL, next_attempt_at = $1 \
                     WHERE status = 'pending' AND leased_by = $2",
                )
                .bind(to_millis(now))
                .bind(node),
            )
            .await?;
        tx.work_due_at(now).await?;
        tx.commit().await?;
        Ok(released)
    }

    /// The newest `limit` requests, of `status` if given.
    pub async fn list(&self, status: Option<RequestStatus>, limit: u32) -> Result<Vec<RequestSummary>> {
        let filter = crate::db::optional_filter(status.is_some(), "status = $1", "$1", "TEXT");
        let sql = Sql::new(format!(
            "SELECT {SUMMARY_COLUMNS} FROM inbox_requests WHERE {filter} ORDER BY seq DESC LIMIT $2"
        ))
        .bind(status.map(RequestStatus::as_str))
        .bind(i64::from(limit));
        self.reader().fetch_parsed(sql, summary_from_row).await
    }

    /// The newest request with `event_id`, with its headers, body and
    /// attempts.
    pub async fn show(&self, event_id: &str) -> Result<Option<RequestDetail>> {
        let request = Sql::new(format!(
            "SELECT {SUMMARY_COLUMNS}, headers, body FROM inbox_requests WHERE event_id = $1 \
             ORDER BY seq DESC LIMIT 1"
        ))
        .bind(event_id);
        let Some(row) = self.reader().fetch_optional(request).await? else {
            return Ok(None);
        };
        let summary = summary_from_row(&row)?;
        let headers = serde_json::from_str(&row.text("headers")?)
            .map_err(|e| StoreError::corrupt(format!("stored headers: {e}")))?;
        let attempts = Sql::new(
            "SELECT attempt_number, started_at, duration_ms, status_code, error, response_body \
             FROM inbox_attempts WHERE request_seq = $1 ORDER BY attempt_number",
        )
        .bind(row.int("seq")?);
        let attempt_log = self
            .reader()
            .fetch_parsed(attempts, |row| {
                Ok(ForwardAttempt {
                    attempt_number: row.int("attempt_number")? as u32,
                    started_at: from_millis(row.int("started_at")?),
                    duration_ms: row.int("duration_ms")?.max(0) as u64,
                    status_code: row.opt_int("status_code")?.map(|c| c as u16),
                    error: row.opt_text("error")?,
                    response_body: row.opt_text("response_body")?,
                })
            })
            .await?;
        Ok(Some(RequestDetail {
            summary,
            headers,
            body: row.opt_bytes("body")?.unwrap_or_default(),
            attempt_log,
        }))
    }

    /// Makes the newest request with `event_id` pending again, due at once,
    /// with a fresh retry schedule. `None` if there is no such request;
    /// its status before otherwise (a pending one is left as it is).
    pub async fn replay(&self, event_id: &str, now: DateTime<Utc>) -> Result<Option<RequestStatus>> {
        let mut tx = self.begin().await?;
        let newest = Sql::new("SELECT seq, status FROM inbox_requests WHERE event_id = $1 ORDER BY seq DESC LIMIT 1")
            .bind(event_id);
        let Some(row) = tx.fetch_optional(newest).await? else {
            return Ok(None);
        };
        let status = RequestStatus::parse(&row.text("status")?)?;
        if status != RequestStatus::Pending {
            tx.gather(
                Sql::new(
                    "UPDATE inbox_requests SET status = 'pending', schedule_offset = attempt_count, \
                     next_attempt_at = $1, due_at = $1, finished_at = NULL WHERE seq = $2",
                )
                .bind(to_millis(now))
                .bind(row.int("seq")?),
            )
            .await?;
            tx.work_due_at(now).await?;
        }
        tx.commit().await?;
        Ok(Some(status))
    }

    /// Makes every dead letter that died at or after `since` (all, without
    /// it) pending again, due at once. Returns how many.
    pub async fn replay_dead(&self, since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.begin().await?;
        let replayed = tx
            .execute(
                Sql::new(
                    "UPDATE inbox_requests SET status = 'pending', schedule_offset = attempt_count, \
                     next_attempt_at = $1, due_at = $1, finished_at = NULL \
                     WHERE status = 'dead' AND finished_at >= $2",
                )
                .bind(to_millis(now))
                .bind(since.map_or(i64::MIN, to_millis)),
            )
            .await?;
        tx.work_due_at(now).await?;
        tx.commit().await?;
        Ok(replayed)
    }

    /// Requests waiting to be forwarded (the queue's depth).
    pub async fn pending_count(&self) -> Result<u64> {
        let row = self
            .reader()
            .fetch_one(Sql::new(
                "SELECT COUNT(*) AS n FROM inbox_requests WHERE status = 'pending'",
            ))
            .await?;
        Ok(row.int("n")?.max(0) as u64)
    }

    /// Deletes forwarded requests finished more than `retention` ago and
    /// event ids seen more than `dedup_window` ago. Dead letters stay until
    /// replayed and forwarded. Relaxed: a purge a power cut undoes is done
    /// again next time.
    pub async fn purge(&self, now: DateTime<Utc>, retention: Duration, dedup_window: Duration) -> Result<Purged> {
        let before = |d: Duration| to_millis(now) - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2);
        let mut tx = self.begin_relaxed().await?;
        let requests = tx
            .execute(
                Sql::new("DELETE FROM inbox_requests WHERE status = 'forwarded' AND finished_at < $1")
                    .bind(before(retention)),
            )
            .await?;
        let seen = tx
            .execute(Sql::new("DELETE FROM inbox_seen WHERE seen_at < $1").bind(before(dedup_window)))
            .await?;
        tx.commit().await?;
        Ok(Purged { requests, seen })
    }
}

fn summary_from_row(row: &Row) -> Result<RequestSummary> {
    Ok(RequestSummary {
        event_id: row.text("event_id")?,
        source: row.text("source")?,
        status: RequestStatus::parse(&row.text("status")?)?,
        received_at: from_millis(row.int("received_at")?),
        attempts: row.int("attempt_count")?.max(0) as u32,
        next_attempt_at: row.opt_int("next_attempt_at")?.map(from_millis),
        last_error: row.opt_text("last_error")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(event_id: &str, key: Option<&str>, at: DateTime<Utc>) -> NewRequest {
        NewRequest {
            source: "krebit".into(),
            event_id: event_id.into(),
            body: format!("{{\"id\":\"{event_id}\"}}").into_bytes(),
            headers: vec![("content-type".into(), "application/json".into())],
            received_at: at,
            ordering_key: key.map(str::to_owned),
        }
    }

    fn lease(now: DateTime<Utc>) -> Lease {
        Lease {
            node_id: "inbox-1".into(),
            until: now + chrono::Duration::seconds(60),
        }
    }

    fn record(claim: &ClaimedRequest, outcome: ForwardOutcome, now: DateTime<Utc>) -> ForwardRecord {
        ForwardRecord {
            held: claim.held(),
            attempt: ForwardAttempt {
                attempt_number: claim.attempt_number,
                started_at: now,
                duration_ms: 3,
                status_code: Some(500),
                error: None,
                response_body: Some("no".into()),
            },
            outcome,
        }
    }

    fn stored(received: Received) -> Option<ClaimedRequest> {
        match received {
            Received::Stored(claim) => claim,
            Received::Duplicate => panic!("stored, not a duplicate"),
        }
    }

    #[tokio::test]
    async fn a_second_copy_of_an_event_id_is_a_duplicate_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = InboxStore::open(dir.path()).await.unwrap();
        let now = Utc::now();
        let results = store
            .receive(
                &[request("evt_1", None, now), request("evt_1", None, now)],
                Some(&lease(now)),
            )
            .await
            .unwrap();
        assert!(matches!(results[0], Received::Stored(Some(_))));
        assert!(matches!(results[1], Received::Duplicate), "the same batch");
        let again = store.receive(&[request("evt_1", None, now)], None).await.unwrap();
        assert!(matches!(again[0], Received::Duplicate), "a later batch");
        // Past the window, the id is forgotten.
        let later = now + chrono::Duration::hours(2);
        let purged = store
            .purge(later, Duration::from_secs(7 * 86_400), Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(purged.seen, 1);
        let after = store.receive(&[request("evt_1", None, later)], None).await.unwrap();
        assert!(matches!(after[0], Received::Stored(None)));
    }

    #[tokio::test]
    async fn a_mixed_batch_keeps_each_request_its_own_row_and_a_key_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = InboxStore::open(dir.path()).await.unwrap();
        let now = Utc::now();
        let batch = [
            request("evt_a", None, now),
            request("evt_k1", Some("doc_1"), now),
            request("evt_b", None, now),
            request("evt_k2", Some("doc_1"), now),
            request("evt_c", None, now),
        ];
        let results = store.receive(&batch, Some(&lease(now))).await.unwrap();
        let claims: Vec<Option<ClaimedRequest>> = results.into_iter().map(stored).collect();
        for (request, claim) in batch.iter().zip(&claims) {
            let Some(claim) = claim else {
                assert_eq!(request.event_id, "evt_k2", "only the key's second waits");
                continue;
            };
            assert_eq!(claim.event_id, request.event_id);
            assert_eq!(&*claim.body, &request.body[..]);
        }
        let seqs: Vec<i64> = claims.iter().flatten().map(|c| c.seq).collect();
        assert_eq!(seqs.len(), 4);
        assert_eq!(seqs.iter().collect::<HashSet<_>>().len(), 4, "one row each: {seqs:?}");
    }

    /// The forwarder claims when work is announced: a forward recorded as
    /// done announces none (nothing waits on it), a retry its time, a keyed
    /// one that finished the moment its key's next may go.
    #[tokio::test]
    async fn recording_announces_only_work_it_makes_due() {
        let dir = tempfile::tempdir().unwrap();
        let store = InboxStore::open(dir.path()).await.unwrap();
        let work = store.work_signal();
        let now = Utc::now();
        let batch = [request("plain", None, now), request("k1", Some("sr_1"), now)];
        let claims: Vec<ClaimedRequest> = store
            .receive(&batch, Some(&lease(now)))
            .await
            .unwrap()
            .into_iter()
            .map(|r| stored(r).expect("claimed at receipt"))
            .collect();
        assert_eq!(work.take(), None, "all claimed at receipt");
        let later = now + chrono::Duration::seconds(1);
        let done = |claim: &ClaimedRequest| record(claim, ForwardOutcome::Forwarded, later);
        store
            .record_forwards("inbox-1", &[done(&claims[0])], later)
            .await
            .unwrap();
        assert_eq!(work.take(), None, "a plain forward done frees nothing");
        store
            .record_forwards("inbox-1", &[done(&claims[1])], later)
            .await
            .unwrap();
        assert_eq!(
            work.take(),
            Some(from_millis(to_millis(later))),
            "a keyed one may free its key's next"
        );
        let retry_at = later + chrono::Duration::seconds(5);
        let again = stored(
            store
                .receive(&[request("again", None, later)], Some(&lease(later)))
                .await
                .unwrap()
                .remove(0),
        )
        .unwrap();
        store
            .record_forwards(
                "inbox-1",
                &[record(&again, ForwardOutcome::RetryAt(retry_at), later)],
                later,
            )
            .await
            .unwrap();
        assert_eq!(work.take(), Some(from_millis(to_millis(retry_at))));
    }

    #[tokio::test]
    async fn a_failed_forward_is_retried_then_dead_then_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let store = InboxStore::open(dir.path()).await.unwrap();
        let now = Utc::now();
        let claim = stored(
            store
                .receive(&[request("evt_1", None, now)], Some(&lease(now)))
                .await
                .unwrap()
                .remove(0),
        )
        .expect("claimed at receipt");
        let retry_at = now + chrono::Duration::seconds(5);
        store
            .record_forwards(
                "inbox-1",
                &[record(&claim, ForwardOutcome::RetryAt(retry_at), now)],
                now,
            )
            .await
            .unwrap();
        assert_eq!(
            store.next_due_at(&[]).await.unwrap(),
            Some(from_millis(to_millis(retry_at)))
        );
        let none = store
            .claim_due("inbox-1", now, now + chrono::Duration::seconds(60), 10, 10, &[])
            .await;
        assert!(none.unwrap().is_empty(), "not due yet");
        let claimed = store
            .claim_due(
                "inbox-1",
                retry_at,
                retry_at + chrono::Duration::seconds(60),
                10,
                10,
                &[],
            )
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!((claimed[0].attempt_number, claimed[0].schedule_attempt), (2, 2));
        assert_eq!(&*claimed[0].body, b"{\"id\":\"evt_1\"}");
        store
            .record_forwards(
                "inbox-1",
                &[record(&claimed[0], ForwardOutcome::Dead, retry_at)],
                retry_at,
            )
            .await
            .unwrap();
        let dead = store.list(Some(RequestStatus::Dead), 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].last_error.as_deref(), Some("the app answered 500"));
        assert_eq!(store.replay_dead(Some(now), retry_at).await.unwrap(), 1);
        let replayed = store
            .claim_due(
                "inbox-1",
                retry_at,
                retry_at + chrono::Duration::seconds(60),
                10,
                10,
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (replayed[0].attempt_number, replayed[0].schedule_attempt),
            (3, 1),
            "a fresh schedule"
        );
        let shown = store.show("evt_1").await.unwrap().unwrap();
        assert_eq!(shown.attempt_log.len(), 2);
    }

    #[tokio::test]
    async fn a_late_answer_under_a_lease_that_passed_on_is_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = InboxStore::open(dir.path()).await.unwrap();
        let now = Utc::now();
        let claim = stored(
            store
                .receive(&[request("evt_1", None, now)], Some(&lease(now)))
                .await
                .unwrap()
                .remove(0),
        )
        .unwrap();
        assert_eq!(store.release_leases_of("inbox-1", now).await.unwrap(), 1);
        store
            .record_forwards("inbox-1", &[record(&claim, ForwardOutcome::Forwarded, now)], now)
            .await
            .unwrap();
        assert_eq!(
            store.pending_count().await.unwrap(),
            1,
            "still pending: the claim was given back"
        );
    }

    #[tokio::test]
    async fn one_key_has_one_forward_in_flight_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = InboxStore::open(dir.path()).await.unwrap();
        let now = Utc::now();
        let results = store
            .receive(
                &[
                    request("a1", Some("doc_a"), now),
                    request("a2", Some("doc_a"), now),
                    request("b1", Some("doc_b"), now),
                ],
                Some(&lease(now)),
            )
            .await
            .unwrap();
        let claimed: Vec<bool> = results
            .into_iter()
            .map(|r| matches!(r, Received::Stored(Some(_))))
            .collect();
        assert_eq!(claimed, [true, false, true], "a2 waits for a1");
        let until = now + chrono::Duration::seconds(60);
        assert!(store
            .claim_due("inbox-1", now, until, 10, 10, &[])
            .await
            .unwrap()
            .is_empty());
        let first = store.show("a1").await.unwrap().unwrap();
        assert_eq!(first.summary.status, RequestStatus::Pending);
        // a1 forwarded: a2 may go.
        let a1 = ClaimedRequest {
            seq: 1,
            source: "krebit".into(),
            event_id: "a1".into(),
            body: Arc::from(&b""[..]),
            headers: Arc::from(Vec::new()),
            received_at: now,
            attempt_number: 1,
            schedule_attempt: 1,
            due_at: now,
            lease_until: to_millis(until),
            ordered: true,
        };
        store
            .record_forwards("inbox-1", &[record(&a1, ForwardOutcome::Forwarded, now)], now)
            .await
            .unwrap();
        let next = store.claim_due("inbox-1", now, until, 10, 10, &[]).await.unwrap();
        assert_eq!(next.iter().map(|c| c.event_id.as_str()).collect::<Vec<_>>(), ["a2"]);
    }
}
