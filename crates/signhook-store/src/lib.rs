//! Signhook's persistence: one [`Store`] API over SQLite (the embedded
//! default), with its migrations.
//!
//! # Layout
//!
//! One module per aggregate, each holding its queries and records:
//! [`tenants`] (tenants and API keys), [`workspaces`], [`subscriptions`],
//! [`events`] (publishing writes the event and its deliveries in one
//! transaction: the transactional outbox) and [`deliveries`] (claiming with a
//! lease, recording attempts, the delivery log).
//!
//! SQLite allows one writer at a time, so the store keeps two pools over the
//! same file: a single-connection writer (writes queue in-process instead of
//! failing with `SQLITE_BUSY`) and a few read-only connections, which WAL
//! lets run beside the writer.
#![deny(missing_docs)]

pub mod deliveries;
pub mod events;
pub mod subscriptions;
pub mod tenants;
pub mod workspaces;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::time::Duration;

/// The name of the database file inside the data directory.
pub const SQLITE_FILE: &str = "signhook.db";

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
    /// An `Idempotency-Key` was reused for a different request.
    #[error("the Idempotency-Key was already used for a different request")]
    IdempotencyMismatch,
    /// A stored value no longer parses: a bug or a hand-edited database.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database cannot be reached right now (connection refused or
    /// lost, pool exhausted); retrying later may succeed.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database failed otherwise.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => StoreError::Unavailable(e),
            other => StoreError::Database(other),
        }
    }
}

impl StoreError {
    fn corrupt(what: impl std::fmt::Display) -> Self {
        StoreError::Corrupt(what.to_string())
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

/// The handle every part of Signhook persists through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the SQLite database in `data_dir`, in WAL
    /// mode with `synchronous = FULL`: a committed write is on disk.
    /// Does not migrate; call [`Store::migrate`].
    pub async fn open_sqlite(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(SQLITE_FILE);
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self { writer, reader })
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/sqlite").run(&self.writer).await?;
        Ok(())
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// Closes both pools, waiting for connections to be returned.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
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
