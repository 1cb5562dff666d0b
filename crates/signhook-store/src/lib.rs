//! Signhook's persistence: one [`Store`] API over SQLite (the embedded
//! default) or PostgreSQL (several nodes), with the migrations of both.
//!
//! # Layout
//!
//! One module per aggregate, each holding its queries and records:
//! [`tenants`] (tenants and API keys), [`users`] (the dashboard's users,
//! their one-time links and sessions), [`workspaces`], [`subscriptions`],
//! [`events`] (the event records and the feed), [`event_types`] (the
//! tenant's own event types and the tenant's publishing setting), [`publish`] (publishing
//! through the API), [`claims`] (claiming due deliveries under a lease,
//! releasing them, and what a restarted node gives back), [`deliveries`] (recording attempts, resends, the
//! delivery log), [`ordering`] (ordered delivery: the lease on a key,
//! blocked keys, skipping a dead letter), [`policy`] (the warn-then-disable sweep), [`recoveries`]
//! (resend jobs), [`relays`] (`signhook listen`'s relay subscriptions and
//! which node holds their sockets), [`retention`] (purging old events), [`inbox`] (the
//! `signhook inbox` gateway's own SQLite database, with its own
//! migrations) and
//! [`signature_requests`] (the e-signature lifecycle's aggregate, its
//! documents and audit trail). [`blobs`] keeps files (uploaded PDFs, signed
//! PDFs, audit certificates) in a local directory or an S3-compatible
//! bucket.
//!
//! Two private modules hold what they share. `outbox` writes an event and
//! its deliveries in the transaction that made the event happen — for
//! publishing, the lifecycle, the failure policy, recording and resends
//! alike — and keeps the tenants' candidate subscriptions. `db` is the
//! execution layer: statements (`Sql`) with `$1`-style placeholders, which
//! both drivers understand, run through a transaction (`Tx`) or a reader
//! that dispatch on the backend; where the dialects differ, both texts sit
//! side by side. [`work`] announces to this node's dispatcher, after each
//! commit, when the deliveries it wrote fall due.
//!
//! One publish, from the route to the recorded outcome: [`publish`] loads
//! the candidates and writes the event and its deliveries through `outbox`;
//! the dispatcher takes them from the publish (or claims them, [`claims`]),
//! sends them, and [`deliveries`] records each outcome — with, for a dead
//! letter, `delivery.failed` through `outbox` again.
//!
//! SQLite allows one writer at a time, so its store keeps one writer
//! connection behind an async mutex (writes queue in-process instead of
//! failing with `SQLITE_BUSY`) and a pool of read-only connections, which
//! WAL lets run beside the writer; a transaction's statements are gathered
//! and sent in as few round trips as its reads allow. PostgreSQL uses one
//! pool for both.
#![deny(missing_docs)]

pub mod blobs;
pub mod claims;
mod db;
pub mod deliveries;
pub mod event_types;
pub mod events;
pub mod inbox;
pub mod ordering;
mod outbox;
pub mod policy;
pub mod portal;
pub mod publish;
pub mod recoveries;
pub mod relays;
pub mod retention;
pub mod sealing;
pub mod signature_requests;
pub mod subscriptions;
pub mod tenants;
pub mod users;
pub mod work;
pub mod workspaces;

use db::{DbRow, Reader, Sql, Tx};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The name of the database file inside the data directory.
pub const SQLITE_FILE: &str = "signhook.db";

/// Creates `dir` (and its parents) if missing and makes it readable by this
/// user only (0700): databases, documents and keys live in such directories.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// The PostgreSQL channel on which publishes announce new deliveries.
pub const WAKE_CHANNEL: &str = "signhook_deliveries";

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness rule was broken; `field` names the API field at fault.
    #[error("{field} already exists")]
    Conflict {
        /// The API field whose value is taken.
        field: &'static str,
    },
    /// The row changed since it was read (another node or task moved it
    /// on): nothing was written; load it again and recompute.
    #[error("the record changed meanwhile")]
    Stale,
    /// An `Idempotency-Key` was reused for a different request.
    #[error("the Idempotency-Key was already used for a different request")]
    IdempotencyMismatch,
    /// A stored value no longer parses: a bug or a hand-edited database.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database URL cannot be used.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The database cannot be reached right now (connection refused or
    /// lost, server shutting down, pool exhausted); retrying later may
    /// succeed.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database refuses writes: its disk is full, it is read-only, or
    /// a quota or file-size limit is reached. Reads still work; writes work
    /// again once space returns, by themselves.
    #[error("the database refuses writes (disk full, read-only or over quota)")]
    StorageRefused(#[source] sqlx::Error),
    /// The database failed otherwise.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A sealed secret could not be opened (see [`sealing`]).
    #[error(transparent)]
    Sealing(#[from] sealing::SealingError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_connection_loss(&e) {
            StoreError::Unavailable(e)
        } else if is_storage_refusal(&e) {
            StoreError::StorageRefused(e)
        } else {
            StoreError::Database(e)
        }
    }
}

/// Whether an error means "the database is not reachable now" rather than
/// "this statement is wrong": I/O and pool errors, and PostgreSQL's
/// connection-exception (08…) and operator-intervention (57P…) classes, which
/// is what a restarting server answers.
fn is_connection_loss(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        sqlx::Error::Protocol(_) => true,
        _ => false,
    }
}

/// Whether the database refused a write for want of space or permission:
/// SQLite's `SQLITE_FULL`, `SQLITE_READONLY` and `SQLITE_IOERR` families
/// (a write that hit a file-size limit is an I/O error), PostgreSQL's
/// `disk_full`, `read_only_sql_transaction` and `io_error`.
fn is_storage_refusal(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else { return false };
    let Some(code) = db.code() else { return false };
    match code.parse::<i32>() {
        // SQLite: extended result codes; the primary code is the low byte.
        // (A PostgreSQL SQLSTATE of digits only, like 53100, is not one.)
        Ok(extended) if code.len() < 5 => matches!(extended & 0xff, 8 | 10 | 13),
        _ => matches!(code.as_ref(), "53100" | "25006" | "58030"),
    }
}

impl StoreError {
    /// Whether SQLite answered "database is locked" (`SQLITE_BUSY`, any
    /// extended code) after its busy timeout: another process held the
    /// database; the same transaction may succeed when tried again.
    pub fn is_busy(&self) -> bool {
        let StoreError::Database(sqlx::Error::Database(db)) = self else {
            return false;
        };
        db.code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|extended| extended & 0xff == 5)
    }

    fn corrupt(what: impl std::fmt::Display) -> Self {
        StoreError::Corrupt(what.to_string())
    }

    /// Maps a broken UNIQUE constraint to a conflict on the API field
    /// `field`, and any other error to itself.
    fn conflict_on(field: &'static str) -> impl Fn(StoreError) -> StoreError {
        move |e| match e {
            StoreError::Database(db) if is_unique_violation(&db) => StoreError::Conflict { field },
            other => other,
        }
    }
}

/// The result type of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A page of a listing, ordered by id, with whether more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Whether a further page exists.
    pub has_more: bool,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows.
    fn from_rows(mut rows: Vec<T>, limit: u32) -> Self {
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        Page { items: rows, has_more }
    }
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite {
        writer: Arc<db::sqlite::SqliteWriter>,
        reader: SqlitePool,
    },
    Postgres {
        pool: PgPool,
    },
}

/// Which database a store runs on, as the operator names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `signhook.db` in this directory.
    SqliteDir(std::path::PathBuf),
    /// A `postgres://` URL.
    Postgres(String),
}

impl Location {
    /// PostgreSQL when `database_url` is given, SQLite in `data_dir` otherwise.
    pub fn new(database_url: Option<&str>, data_dir: &Path) -> Result<Self> {
        match database_url {
            None => Ok(Location::SqliteDir(data_dir.to_owned())),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Location::Postgres(url.to_owned()))
            }
            Some(_) => Err(StoreError::InvalidUrl(
                "--database-url must start with postgres:// (leave it out to use SQLite in --data-dir)".into(),
            )),
        }
    }
}

/// The handle every part of Signhook persists through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// Announces, after each commit, when the deliveries it wrote fall due.
    work: Arc<work::WorkSignal>,
    /// Seals and opens the secrets kept in the database.
    keys: Arc<sealing::Keyring>,
    /// The tenants' subscriptions as publishing needs them (SQLite only).
    candidates: Arc<outbox::CandidateCache>,
}

impl Store {
    /// Opens the store at `location` (creating a SQLite file if needed),
    /// sealing secrets with `keys`. Does not migrate; call
    /// [`Store::migrate`], then [`Store::reseal`].
    pub async fn open(location: &Location, keys: Arc<sealing::Keyring>) -> Result<Self> {
        match location {
            Location::SqliteDir(dir) => Self::open_sqlite(dir, keys).await,
            Location::Postgres(url) => Self::open_postgres(url, keys).await,
        }
    }

    /// Opens (creating if needed) the SQLite database in `data_dir`, in WAL
    /// mode with `synchronous = FULL`: a committed write is on disk.
    pub async fn open_sqlite(data_dir: &Path, keys: Arc<sealing::Keyring>) -> Result<Self> {
        let path = data_dir.join(SQLITE_FILE);
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = Arc::new(db::sqlite::SqliteWriter::connect(&options).await?);
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            backend: Backend::Sqlite { writer, reader },
            work: Arc::default(),
            keys,
            candidates: Arc::default(),
        })
    }

    /// Connects to PostgreSQL at `url`. If the server goes away later, every
    /// use answers [`StoreError::Unavailable`] until it is back; the pool
    /// reconnects by itself.
    pub async fn open_postgres(url: &str, keys: Arc<sealing::Keyring>) -> Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Self {
            backend: Backend::Postgres { pool },
            work: Arc::default(),
            keys,
            candidates: Arc::default(),
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres { .. } => "postgres",
        }
    }

    /// A durable write transaction: once [`Tx::commit`] returns, what it
    /// wrote is on disk. On SQLite it holds the process's one writer.
    async fn begin(&self) -> Result<Tx<'_>> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => Ok(Tx::sqlite(writer.begin(false).await?, &self.work)),
            Backend::Postgres { pool } => Ok(Tx::postgres(pool.begin().await?, &self.work)),
        }
    }

    /// A write transaction whose commit does not wait for its own flush to
    /// disk (the next durable commit flushes it): only for writes whose loss
    /// in a power cut is harmless — an attempt's outcome, after which the
    /// delivery is sent again, as at-least-once allows.
    async fn begin_relaxed(&self) -> Result<Tx<'_>> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => Ok(Tx::sqlite(writer.begin(true).await?, &self.work)),
            Backend::Postgres { pool } => Ok(Tx::postgres(
                pool.begin_with("BEGIN; SET LOCAL synchronous_commit = off").await?,
                &self.work,
            )),
        }
    }

    /// What raising events needs: the candidates' cache and the keys.
    fn outbox(&self) -> outbox::Outbox<'_> {
        outbox::Outbox {
            cache: &self.candidates,
            keys: &self.keys,
        }
    }

    /// Reads outside a transaction.
    fn reader(&self) -> Reader<'_> {
        match &self.backend {
            Backend::Sqlite { reader, .. } => Reader::Sqlite(reader),
            Backend::Postgres { pool } => Reader::Postgres(pool),
        }
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                writer
                    .with_connection(async |conn| Ok(sqlx::migrate!("./migrations/sqlite").run(conn).await?))
                    .await?
            }
            Backend::Postgres { pool } => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        self.reader().fetch_one(Sql::new("SELECT 1 AS one")).await?;
        Ok(())
    }

    /// Commits one small row for `node_id` (and a few kilobytes with it, so
    /// that the write needs space): whether the database takes writes now.
    pub async fn probe_write(&self, node_id: &str, now: chrono::DateTime<chrono::Utc>) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.gather(
            Sql::new(
                "INSERT INTO storage_probes (node_id, at, filler) VALUES ($1, $2, $3) \
                 ON CONFLICT (node_id) DO UPDATE SET at = excluded.at, filler = excluded.filler",
            )
            .bind(node_id)
            .bind(signhook_core::time::to_millis(now))
            .bind("0".repeat(4096)),
        )
        .await?;
        tx.commit().await
    }

    /// When the deliveries this process writes fall due (see [`work`]):
    /// what its dispatcher waits on. Shared by every clone of the store.
    pub fn work_signal(&self) -> Arc<work::WorkSignal> {
        self.work.clone()
    }

    /// Waits for other nodes' publishes (PostgreSQL `LISTEN`); `None` on
    /// SQLite, where every publish happens in this process.
    pub async fn work_listener(&self) -> Result<Option<WorkListener>> {
        match &self.backend {
            Backend::Sqlite { .. } => Ok(None),
            Backend::Postgres { pool } => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(WAKE_CHANNEL).await?;
                Ok(Some(WorkListener(listener)))
            }
        }
    }

    /// Waits for other nodes' API-key revocations (PostgreSQL `LISTEN` on
    /// [`tenants::KEYS_CHANNEL`]); `None` on SQLite, where every revocation
    /// happens in this process.
    pub async fn key_revocations(&self) -> Result<Option<WorkListener>> {
        match &self.backend {
            Backend::Sqlite { .. } => Ok(None),
            Backend::Postgres { pool } => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(tenants::KEYS_CHANNEL).await?;
                Ok(Some(WorkListener(listener)))
            }
        }
    }

    /// The tables and their columns, sorted: to check that both backends'
    /// migrations define the same schema.
    pub async fn schema(&self) -> Result<Vec<(String, String)>> {
        let sql = match &self.backend {
            Backend::Sqlite { .. } => {
                "SELECT m.name AS table_name, p.name AS column_name FROM sqlite_master m \
                 JOIN pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
                 AND m.name NOT LIKE '_sqlx%'"
            }
            Backend::Postgres { .. } => {
                "SELECT CAST(table_name AS TEXT) AS table_name, CAST(column_name AS TEXT) AS column_name \
                 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name NOT LIKE '_sqlx%'"
            }
        };
        let mut columns = self
            .reader()
            .fetch_all(Sql::new(sql))
            .await?
            .iter()
            .map(|row| Ok((row.text("table_name")?, row.text("column_name")?)))
            .collect::<Result<Vec<_>>>()?;
        columns.sort();
        Ok(columns)
    }

    /// Closes the pools, waiting for connections to be returned.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { writer, reader } => {
                writer.close().await;
                reader.close().await;
            }
            Backend::Postgres { pool } => pool.close().await,
        }
    }
}

/// Notifications from other nodes (PostgreSQL `LISTEN`): deliveries were
/// created ([`Store::work_listener`]), or API keys revoked
/// ([`Store::key_revocations`]).
pub struct WorkListener(sqlx::postgres::PgListener);

impl WorkListener {
    /// Waits for the next notification. If the connection drops, the
    /// listener reconnects by itself; the error is returned so the caller
    /// can log it and treat it as a wake-up (work may have been missed).
    pub async fn recv(&mut self) -> Result<()> {
        self.0.recv().await?;
        Ok(())
    }
}

/// Reads a JSON text column into `T`, naming the column when it is corrupt.
fn from_json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(format_args!("{column}: {e}")))
}

/// Whether a database error is a broken UNIQUE constraint.
fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error().is_some_and(|db| db.is_unique_violation())
}
