//! SQLite's one writer connection, shared by every write of the process.
//!
//! SQLite allows one writer at a time, so writes queue in-process for one
//! connection instead of failing with `SQLITE_BUSY`. The connection sits
//! behind an async mutex rather than in a pool of one: taking a mutex is
//! cheap, whereas a pool hands a connection back through a spawned task and
//! a ping of the connection's thread before the next writer may start — on
//! the path of every publish and every batch of results.
//!
//! Every transaction starts through [`WriterConn::begin`] or
//! [`WriterConn::begin_relaxed`], which keep `PRAGMA synchronous` right. A
//! relaxed transaction commits with `NORMAL` (no fsync of its own); the next
//! durable one sets `FULL` again in the same call as its `BEGIN`. Relaxing
//! so costs no extra round trip, and no durable commit goes without its
//! fsync, however the relaxed transaction ended. The writer offers nothing
//! but transactions, so no write can slip past that rule.

use crate::{Result, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Sqlite, Transaction};
use tokio::sync::{Mutex, MutexGuard};

/// The writer connection of a SQLite store.
#[derive(Debug)]
pub(crate) struct SqliteWriter {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// `None` once the store is closed.
    conn: Option<SqliteConnection>,
    /// Whether the connection was last left with `synchronous = NORMAL`.
    relaxed: bool,
}

/// The writer, held: other writes wait until it is dropped.
pub(crate) struct WriterConn<'a> {
    state: MutexGuard<'a, State>,
}

impl SqliteWriter {
    /// Opens the writer connection (`options` say `synchronous = FULL`).
    pub(crate) async fn connect(options: &SqliteConnectOptions) -> Result<Self> {
        let conn = SqliteConnection::connect_with(options).await?;
        Ok(Self {
            state: Mutex::new(State {
                conn: Some(conn),
                relaxed: false,
            }),
        })
    }

    /// Waits for the writer. Fails once the store is closed.
    pub(crate) async fn lock(&self) -> Result<WriterConn<'_>> {
        let state = self.state.lock().await;
        if state.conn.is_none() {
            return Err(StoreError::Unavailable(sqlx::Error::PoolClosed));
        }
        Ok(WriterConn { state })
    }

    /// Closes the connection once the write in progress, if any, is done.
    pub(crate) async fn close(&self) {
        if let Some(conn) = self.state.lock().await.conn.take() {
            if let Err(e) = conn.close().await {
                tracing::warn!(error = %e, "closing the SQLite writer failed");
            }
        }
    }
}

impl WriterConn<'_> {
    fn conn(&mut self) -> &mut SqliteConnection {
        self.state.conn.as_mut().expect("checked when locked")
    }

    /// Begins a durable transaction: its commit is on disk when it returns.
    pub(crate) async fn begin(&mut self) -> Result<Transaction<'_, Sqlite>, sqlx::Error> {
        let state = &mut *self.state;
        let conn = state.conn.as_mut().expect("checked when locked");
        if state.relaxed {
            let tx = conn.begin_with("PRAGMA synchronous = FULL; BEGIN").await?;
            state.relaxed = false;
            return Ok(tx);
        }
        conn.begin().await
    }

    /// Begins a transaction whose commit does not wait for its own fsync
    /// (see [`crate::Store`]'s `begin_relaxed` callers): in WAL mode the log
    /// is written in order, so the next durable commit makes it durable
    /// too. Until then a power cut, not a crash of the process, may undo it.
    pub(crate) async fn begin_relaxed(&mut self) -> Result<Transaction<'_, Sqlite>, sqlx::Error> {
        let statement = if self.state.relaxed {
            "BEGIN"
        } else {
            "PRAGMA synchronous = NORMAL; BEGIN"
        };
        // Set first: if the call fails half-way, the next durable begin
        // restores FULL all the same.
        self.state.relaxed = true;
        let conn = self.state.conn.as_mut().expect("checked when locked");
        conn.begin_with(statement).await
    }

    /// The connection itself, durable, for migrations (which manage their
    /// own transactions).
    pub(crate) async fn for_migrations(&mut self) -> Result<&mut SqliteConnection, sqlx::Error> {
        if self.state.relaxed {
            sqlx::query("PRAGMA synchronous = FULL").execute(self.conn()).await?;
            self.state.relaxed = false;
        }
        Ok(self.conn())
    }
}
