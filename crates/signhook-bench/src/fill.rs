//! Rows written straight into a server's database, for the scenarios that
//! must start from where a platform lives rather than from nothing: a month
//! of events, deliveries and attempts (`big-db`), or a backlog of
//! deliveries all due at once (`drain`).
//!
//! Tenants and subscriptions are made through the server (so secrets are
//! sealed and every default is the product's own); only the bulk — events,
//! deliveries, attempts, hourly counts, signature requests — is generated
//! here, by the database itself (a recursive CTE on SQLite,
//! `generate_series` on PostgreSQL), a chunk per transaction. The rows
//! follow formulas, so a later run can name any of them without a lookup:
//! event `i` belongs to tenant `i % tenants`, was created at
//! `start + i × step`, and has the id [`Month::event_id`].
//!
//! The server must not be running while its file is filled (SQLite); on
//! PostgreSQL it could be, but the scenarios stop it too, so both backends
//! are prepared the same way.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::{Connection, Executor};
use std::path::Path;

/// The statuses a generated delivery gets, in thousandths: what a month of
/// a healthy platform looks like (mostly first-try successes, some after
/// retries, a few dead letters and cancellations, very few still pending).
/// Each with the attempts it took.
const MIX: [(u32, &str, u32); 5] = [
    (850, "succeeded", 1),
    (950, "succeeded", 3),
    (990, "failed", 11),
    (999, "canceled", 1),
    (1000, "pending", 1),
];

/// Event types in the generated month, in turn.
pub(crate) const EVENT_TYPES: [&str; 5] = [
    "signer.done",
    "signer.notified",
    "signature_request.done",
    "signature_request.activated",
    "signer.link_opened",
];

/// A generated month: where every row is, by formula.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Month {
    /// Events in all.
    pub events: u64,
    /// Tenants, each with `subscriptions_per_tenant` subscriptions.
    pub tenants: u64,
    pub subscriptions_per_tenant: u64,
    /// Deliveries per event (to that many of its tenant's subscriptions).
    pub fanout: u64,
    /// The first event's `created_at`, in milliseconds.
    pub start_ms: i64,
    /// Milliseconds between two events.
    pub step_ms: i64,
}

impl Month {
    /// Event `i`'s creation time, in milliseconds.
    pub fn created_ms(&self, i: u64) -> i64 {
        self.start_ms + i as i64 * self.step_ms
    }

    /// Event `i`'s id: its time, then its number (time-ordered, as ids are).
    pub fn event_id(&self, i: u64) -> String {
        format!("evt_{:012x}{:020x}", self.created_ms(i), i)
    }

    /// The id of event `i`'s `j`-th delivery.
    pub fn delivery_id(&self, i: u64, j: u64) -> String {
        format!("dlv_{:012x}{:019x}{:x}", self.created_ms(i), i, j)
    }

    /// Signature requests: one per ten events.
    pub fn signature_requests(&self) -> u64 {
        self.events / 10
    }
}

/// The server's database, opened for filling.
pub(crate) enum Db {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Db {
    /// The database of a server started with `--data-dir dir` and, when
    /// given, `--database-url url`.
    pub async fn open(dir: &Path, url: Option<&str>) -> anyhow::Result<Self> {
        Ok(match url {
            Some(url) => Db::Postgres(sqlx::PgConnection::connect(url).await?),
            None => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(dir.join("signhook.db"))
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    // Filling is a preparation step: a crash means starting
                    // it again, so it does not wait for each fsync.
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(std::time::Duration::from_secs(60));
                Db::Sqlite(sqlx::SqliteConnection::connect_with(&options).await?)
            }
        })
    }

    fn postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    async fn run(&mut self, sql: &str) -> anyhow::Result<u64> {
        let done = match self {
            Db::Sqlite(conn) => conn.execute(sql).await?.rows_affected(),
            Db::Postgres(conn) => conn.execute(sql).await?.rows_affected(),
        };
        Ok(done)
    }

    /// The first column of the first row of `sql`, as an integer.
    async fn count(&mut self, sql: &str) -> anyhow::Result<i64> {
        use sqlx::Row;
        Ok(match self {
            Db::Sqlite(conn) => sqlx::query(sql).fetch_one(conn).await?.try_get(0)?,
            Db::Postgres(conn) => sqlx::query(sql).fetch_one(conn).await?.try_get(0)?,
        })
    }

    /// Zero-padded lower-case hex of the integer expression `expr`, `width`
    /// digits.
    fn hex(&self, expr: &str, width: usize) -> String {
        if self.postgres() {
            format!("lpad(to_hex({expr}), {width}, '0')")
        } else {
            format!("printf('%0{width}x', {expr})")
        }
    }

    /// Rows `i` = `from`..`to` (exclusive), as a table `n(i)` to select from.
    fn numbers(&self, from: u64, to: u64) -> String {
        if self.postgres() {
            format!("(SELECT generate_series({from}::BIGINT, {}::BIGINT) AS i) n", to - 1)
        } else {
            format!(
                "(WITH RECURSIVE r(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM r WHERE i + 1 < {to}) \
                 SELECT i FROM r) n"
            )
        }
    }

    fn boolean(&self, value: bool) -> &'static str {
        match (self.postgres(), value) {
            (true, true) => "TRUE",
            (true, false) => "FALSE",
            (false, true) => "1",
            (false, false) => "0",
        }
    }

    /// Lets the planner know the tables' sizes, as a long-running
    /// PostgreSQL's autovacuum would have. SQLite keeps no statistics
    /// unless asked, and the server never asks, so neither does this.
    pub async fn analyze(&mut self) -> anyhow::Result<()> {
        if self.postgres() {
            self.run("ANALYZE").await?;
        }
        Ok(())
    }

    /// The database's size on disk, in bytes.
    pub async fn size_bytes(&mut self, dir: &Path) -> anyhow::Result<u64> {
        if self.postgres() {
            return Ok(self.count("SELECT pg_database_size(current_database())").await? as u64);
        }
        let file = |suffix: &str| {
            std::fs::metadata(dir.join(format!("signhook.db{suffix}")))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        Ok(file("") + file("-wal"))
    }

    /// A table `bench_map (idx, subscription_id, tenant_id, workspace_id)`
    /// numbering the subscriptions tenant by tenant, `per_tenant` each, in
    /// the order of their tenants' creation and their own: the
    /// `subscriptions_per_tenant × t + k`-th is tenant `t`'s `k`-th.
    async fn map_subscriptions(&mut self) -> anyhow::Result<i64> {
        self.run("DROP TABLE IF EXISTS bench_map").await?;
        self.run(
            "CREATE TABLE bench_map AS \
             SELECT row_number() OVER (ORDER BY t.created_at, t.id, s.id) - 1 AS idx, \
                    s.id AS subscription_id, s.tenant_id, \
                    (SELECT w.id FROM workspaces w WHERE w.tenant_id = s.tenant_id ORDER BY w.id LIMIT 1) \
                      AS workspace_id \
             FROM subscriptions s JOIN tenants t ON t.id = s.tenant_id",
        )
        .await?;
        self.run("CREATE UNIQUE INDEX bench_map_idx ON bench_map (idx)").await?;
        self.count("SELECT count(*) FROM bench_map").await
    }

    async fn drop_map(&mut self) -> anyhow::Result<()> {
        self.run("DROP TABLE IF EXISTS bench_map").await?;
        Ok(())
    }

    async fn begin(&mut self) -> anyhow::Result<()> {
        self.run("BEGIN").await?;
        Ok(())
    }

    async fn commit(&mut self) -> anyhow::Result<()> {
        self.run("COMMIT").await?;
        Ok(())
    }
}

/// The SQL `CASE` giving, from a hash in 0..1000, the `column` of [`MIX`]:
/// 1 for the status, 2 for the attempts.
fn mix_case(hash: &str, column: usize) -> String {
    let arms: String = MIX
        .iter()
        .map(|(below, status, attempts)| match column {
            1 => format!(" WHEN {hash} < {below} THEN '{status}'"),
            _ => format!(" WHEN {hash} < {below} THEN {attempts}"),
        })
        .collect();
    format!("CASE{arms} END")
}

/// What a fill wrote.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Written {
    pub events: u64,
    pub deliveries: u64,
    pub attempts: u64,
    pub signature_requests: u64,
    pub hourly_counts: u64,
}

/// Fills `db` with `month`: events, their deliveries and attempts, the
/// subscriptions' hourly counts and the signature requests, `chunk` events
/// per transaction, saying how far it got on stderr. The subscriptions
/// must exist already: `month.tenants × month.subscriptions_per_tenant`.
pub(crate) async fn fill_month(db: &mut Db, month: &Month, chunk: u64, now_ms: i64) -> anyhow::Result<Written> {
    let mapped = db.map_subscriptions().await?;
    anyhow::ensure!(
        mapped as u64 == month.tenants * month.subscriptions_per_tenant,
        "the database has {mapped} subscriptions, the month needs {}",
        month.tenants * month.subscriptions_per_tenant
    );
    let mut written = Written::default();
    let started = std::time::Instant::now();
    let mut from = 0;
    while from < month.events {
        let to = (from + chunk).min(month.events);
        db.begin().await?;
        written.events += db.run(&events_sql(db, month, from, to)).await?;
        let (deliveries, attempts) = deliveries_sql(db, month, from, to, now_ms);
        written.deliveries += db.run(&deliveries).await?;
        written.attempts += db.run(&attempts).await?;
        db.commit().await?;
        from = to;
        eprintln!(
            "big-db: {to} of {} events ({:.0} s)",
            month.events,
            started.elapsed().as_secs_f64()
        );
    }
    db.begin().await?;
    written.signature_requests = db.run(&signature_requests_sql(db, month, now_ms)).await?;
    written.hourly_counts = db.run(&hourly_counts_sql()).await?;
    db.commit().await?;
    db.drop_map().await?;
    Ok(written)
}

/// Events `from..to`: type in turn, data shaped like a lifecycle event's.
fn events_sql(db: &Db, month: &Month, from: u64, to: u64) -> String {
    let created = format!("({} + n.i * {})", month.start_ms, month.step_ms);
    let types: String = EVENT_TYPES
        .iter()
        .enumerate()
        .map(|(k, name)| format!(" WHEN {k} THEN '{name}'"))
        .collect();
    let request = format!("'sr_' || {} || {}", db.hex(&created, 12), db.hex("n.i / 10", 20));
    format!(
        "INSERT INTO events (id, tenant_id, sandbox, type, scope, workspace_id, created_at, data) \
         SELECT 'evt_' || {event_time} || {event_number}, m.tenant_id, {live}, \
                CASE n.i % {types_len}{types} END, 'public_api', m.workspace_id, {created}, \
                '{{\"signature_request\":{{\"id\":\"' || {request} || '\",\"name\":\"Master services agreement ' \
                || (n.i / 10) || '\",\"status\":\"ongoing\",\"sequence\":' || (n.i % 10 + 1) \
                || '}},\"signer\":{{\"id\":\"sg_' || {signer} || '\",\"name\":\"Ada Lovelace\",\
                \"email\":\"ada@example.com\",\"status\":\"done\"}}}}' \
         FROM {numbers} JOIN bench_map m ON m.idx = (n.i % {tenants}) * {per_tenant}",
        event_time = db.hex(&created, 12),
        event_number = db.hex("n.i", 20),
        live = db.boolean(false),
        types_len = EVENT_TYPES.len(),
        signer = db.hex("n.i", 32),
        numbers = db.numbers(from, to),
        tenants = month.tenants,
        per_tenant = month.subscriptions_per_tenant,
    )
}

/// The deliveries of events `from..to` (`month.fanout` each, to
/// consecutive subscriptions of the event's tenant) and their attempts.
/// Statuses follow [`MIX`] by a hash of the delivery's number; pending ones
/// fall due over the coming hour.
fn deliveries_sql(db: &Db, month: &Month, from: u64, to: u64, now_ms: i64) -> (String, String) {
    let created = format!("({} + n.i * {})", month.start_ms, month.step_ms);
    // Consecutive deliveries times a number prime to 1,000: each run of
    // 1,000 deliveries takes every residue once, so the mix is exact and
    // spread evenly over time and tenants.
    let hash = format!("(((n.i * {} + f.j) * 7919) % 1000)", month.fanout);
    let hash = hash.as_str();
    let fanout = if db.postgres() {
        format!("(SELECT generate_series(0, {}) AS j) f", month.fanout - 1)
    } else {
        format!(
            "(WITH RECURSIVE r(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM r WHERE j + 1 < {}) SELECT j FROM r) f",
            month.fanout
        )
    };
    let status = mix_case(hash, 1);
    let attempts = mix_case(hash, 2);
    // A delivery's attempts span ten minutes per retry after its event.
    let last_attempt = format!("({created} + ({attempts} - 1) * 600000 + 50)");
    let pending_due = format!("({now_ms} + (n.i * 7919) % 3600000)");
    let deliveries = format!(
        "INSERT INTO deliveries (id, tenant_id, event_id, subscription_id, status, attempt_count, \
                                 next_attempt_at, due_at, last_attempt_at, created_at, updated_at) \
         SELECT 'dlv_' || {time} || {number} || {j}, m.tenant_id, 'evt_' || {time} || {event_number}, \
                m.subscription_id, {status}, {attempts}, \
                CASE WHEN {status} = 'pending' THEN {pending_due} END, \
                CASE WHEN {status} = 'pending' THEN {pending_due} END, \
                {last_attempt}, {created}, {last_attempt} \
         FROM {numbers} CROSS JOIN {fanout} \
         JOIN bench_map m ON m.idx = (n.i % {tenants}) * {per_tenant} + ((n.i / {tenants}) + f.j) % {per_tenant}",
        time = db.hex(&created, 12),
        number = db.hex("n.i", 19),
        j = db.hex("f.j", 1),
        event_number = db.hex("n.i", 20),
        numbers = db.numbers(from, to),
        tenants = month.tenants,
        per_tenant = month.subscriptions_per_tenant,
    );
    // Attempt `k` of a delivery (its id: the delivery's, less the
    // number's first digit, always 0, plus `k`): 200 for the last of a success, 500
    // before it and for every attempt of a dead letter; a canceled or
    // pending delivery's one attempt failed to connect.
    let from_id = month.delivery_id(from, 0);
    let to_id = if to < month.events {
        format!("d.id < '{}'", month.delivery_id(to, 0))
    } else {
        "TRUE".to_owned()
    };
    let attempt_numbers = if db.postgres() {
        "(SELECT generate_series(0, 10) AS k) a".to_owned()
    } else {
        "(WITH RECURSIVE r(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM r WHERE k < 10) SELECT k FROM r) a".to_owned()
    };
    let attempts = format!(
        "INSERT INTO attempts (id, delivery_id, attempt_number, started_at, scheduled_at, duration_ms, \
                               status_code, response_body, error_kind, error_message, node_id) \
         SELECT 'att_' || substr(d.id, 5, 12) || substr(d.id, 18, 19) || {k}, d.id, a.k + 1, d.created_at + a.k * 600000, \
                d.created_at + a.k * 600000, 20 + (a.k * 37) % 180, \
                CASE WHEN d.status IN ('canceled', 'pending') THEN NULL \
                     WHEN d.status = 'succeeded' AND a.k + 1 = d.attempt_count THEN 200 ELSE 500 END, \
                CASE WHEN d.status IN ('canceled', 'pending') THEN NULL \
                     WHEN d.status = 'succeeded' AND a.k + 1 = d.attempt_count THEN '{{\"ok\":true}}' \
                     ELSE '{{\"error\":\"upstream unavailable\"}}' END, \
                CASE WHEN d.status IN ('canceled', 'pending') THEN 'connect' \
                     WHEN d.status = 'succeeded' AND a.k + 1 = d.attempt_count THEN NULL ELSE 'http' END, \
                CASE WHEN d.status IN ('canceled', 'pending') THEN 'connection refused' END, 'bench_0' \
         FROM deliveries d JOIN {attempt_numbers} ON a.k < d.attempt_count \
         WHERE d.id >= '{from_id}' AND {to_id}",
        k = db.hex("a.k", 1),
    );
    (deliveries, attempts)
}

/// One signature request per ten events, with a realistic spread of
/// statuses. Ongoing ones expire long after any run, so the expiry
/// scheduler has nothing to do with them.
fn signature_requests_sql(db: &Db, month: &Month, now_ms: i64) -> String {
    let created = format!("({} + n.i * 10 * {})", month.start_ms, month.step_ms);
    let hash = "((n.i * 2654435761) % 100)";
    let status = format!(
        "CASE WHEN {hash} < 60 THEN 'done' WHEN {hash} < 75 THEN 'ongoing' WHEN {hash} < 80 THEN 'declined' \
         WHEN {hash} < 85 THEN 'canceled' WHEN {hash} < 95 THEN 'expired' ELSE 'draft' END"
    );
    let expires = format!(
        "CASE WHEN {status} IN ('ongoing', 'draft') THEN {} ELSE {created} + 86400000 END",
        now_ms + 90 * 86_400_000
    );
    format!(
        "INSERT INTO signature_requests (id, tenant_id, sandbox, workspace_id, scope, name, status, sequence, \
                                         ordered_signers, expires_at, metadata, created_at, updated_at) \
         SELECT 'sr_' || {time} || {number}, m.tenant_id, {live}, m.workspace_id, 'public_api', \
                'Master services agreement ' || n.i, {status}, 10, {ordered}, {expires}, '{{}}', {created}, {created} \
         FROM {numbers} JOIN bench_map m ON m.idx = (n.i % {tenants}) * {per_tenant}",
        time = db.hex(&created, 12),
        number = db.hex("n.i", 20),
        live = db.boolean(false),
        ordered = db.boolean(false),
        numbers = db.numbers(0, month.signature_requests().max(1)),
        tenants = month.tenants,
        per_tenant = month.subscriptions_per_tenant,
    )
}

/// The endpoint health counts (attempts and successes per subscription and
/// hour) that a month of such deliveries leaves, computed from the
/// deliveries themselves by hour of their last attempt.
fn hourly_counts_sql() -> String {
    "INSERT INTO subscription_stats (subscription_id, hour, attempts, successes, duration_ms) \
     SELECT subscription_id, last_attempt_at / 3600000, sum(attempt_count), \
            sum(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END), sum(attempt_count) * 60 \
     FROM deliveries GROUP BY subscription_id, last_attempt_at / 3600000"
        .to_owned()
}

/// The backlog an outage leaves: `events` events of the first-made
/// tenant, each with a pending delivery to each of the first
/// `subscriptions` subscriptions made (that tenant's), all due at `due_ms`;
/// `chunk` events per transaction. Returns the deliveries written.
pub(crate) async fn fill_backlog(
    db: &mut Db,
    events: u64,
    subscriptions: u64,
    chunk: u64,
    due_ms: i64,
) -> anyhow::Result<u64> {
    let mapped = db.map_subscriptions().await? as u64;
    anyhow::ensure!(mapped >= subscriptions, "only {mapped} subscriptions exist");
    let mut written = 0;
    let mut from = 0;
    while from < events {
        let to = (from + chunk).min(events);
        let created = format!("({} + n.i)", due_ms - 3_600_000);
        db.begin().await?;
        db.run(&format!(
            "INSERT INTO events (id, tenant_id, sandbox, type, scope, workspace_id, created_at, data) \
             SELECT 'evt_' || {time} || {number}, m.tenant_id, {live}, 'signer.done', 'public_api', \
                    m.workspace_id, {created}, '{{\"backlog\":' || n.i || '}}' \
             FROM {numbers} JOIN bench_map m ON m.idx = 0",
            time = db.hex(&created, 12),
            number = db.hex("n.i", 20),
            live = db.boolean(false),
            numbers = db.numbers(from, to),
        ))
        .await?;
        written += db
            .run(&format!(
                "INSERT INTO deliveries (id, tenant_id, event_id, subscription_id, status, attempt_count, \
                                         next_attempt_at, due_at, last_attempt_at, created_at, updated_at) \
                 SELECT 'dlv_' || {time} || {number} || {sub}, m.tenant_id, 'evt_' || {time} || {event_number}, \
                        m.subscription_id, 'pending', 1, {due_ms}, {due_ms}, {created}, {created}, {created} \
                 FROM {numbers} CROSS JOIN bench_map m WHERE m.idx < {subscriptions}",
                time = db.hex(&created, 12),
                number = db.hex("n.i", 16),
                sub = db.hex("m.idx", 4),
                event_number = db.hex("n.i", 20),
                numbers = db.numbers(from, to),
            ))
            .await?;
        db.commit().await?;
        from = to;
    }
    db.drop_map().await?;
    anyhow::ensure!(
        written == events * subscriptions,
        "wrote {written} deliveries, expected {}",
        events * subscriptions
    );
    Ok(written)
}

/// Saves `value` as `name` in `dir`.
pub(crate) fn save<T: Serialize>(dir: &Path, name: &str, value: &T) -> anyhow::Result<()> {
    std::fs::write(dir.join(name), serde_json::to_vec_pretty(value)?).with_context(|| format!("writing {name}"))
}

/// Reads `name` from `dir`.
pub(crate) fn load<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> anyhow::Result<T> {
    let bytes = std::fs::read(dir.join(name))
        .with_context(|| format!("reading {name} in {}: prepare it first (big-db)", dir.display()))?;
    Ok(serde_json::from_slice(&bytes)?)
}
