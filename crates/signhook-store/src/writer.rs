//! SQLite's one writer connection, shared by every write of the process.
//!
//! SQLite allows one writer at a time, so writes queue in-process for one
//! connection instead of failing with `SQLITE_BUSY`. The connection sits
//! behind an async mutex rather than in a pool of one: taking a mutex is
//! cheap, whereas a pool hands a connection back through a spawned task and
//! a ping of the connection's thread before the next writer may start — on
//! the path of every publish and every batch of results.
//!
//! Every transaction starts through [`WriterConn::begin`],
//! [`WriterConn::writes`] or [`WriterConn::relaxed_writes`], which keep
//! `PRAGMA synchronous` right. A relaxed transaction commits with `NORMAL`
//! (no fsync of its own); the next durable one sets `FULL` again in the same
//! call as its `BEGIN`. Relaxing so costs no extra round trip, and no durable
//! commit goes without its fsync, however the relaxed transaction ended. The
//! writer offers nothing but transactions, so no write can slip past that
//! rule.
//!
//! The hot paths (publishing, recording attempt outcomes) write through
//! [`SqliteWrites`]: their statements are gathered and sent to the
//! connection's thread as one text, `BEGIN` and `COMMIT` included, so a
//! whole transaction costs one round trip — on a busy machine, most of what
//! a transaction costs is waiting for that thread to be scheduled, once per
//! statement. [`PgWrites`] is the same interface over a PostgreSQL
//! transaction, where statements run one at a time.
//!
//! The writer also keeps each tenant's subscriptions, parsed, for
//! publishing ([`SqliteWrites::candidates`]): every write goes through it,
//! so it knows when they may have changed. Any transaction that can change
//! them — every [`WriterConn::begin`], and gathered writes that need their
//! results ([`SqliteWrites::apply`]) — forgets them all. Gathered writes
//! that never apply (publishing, recording outcomes) write only events,
//! deliveries, attempts and failure streaks.

use crate::sealing::Keyring;
use crate::subscriptions::Subscription;
use crate::{Result, StoreError};
use signhook_core::ids::TenantId;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Postgres, QueryBuilder, Sqlite, Transaction};
use std::collections::HashMap;
use std::sync::Arc;
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
    /// Whether a [`SqliteWrites`] sent `BEGIN` and did not finish (its
    /// future was dropped): the next holder rolls it back first.
    open: bool,
    /// Each tenant and environment's subscriptions, as publishing needs them.
    candidates: HashMap<(TenantId, bool), Candidates>,
}

/// A tenant's subscriptions of one environment (live or sandbox), not
/// deleted, parsed and shared. Their configuration is current; their failure
/// streak may be behind, as it moves with every recorded outcome.
pub(crate) type Candidates = Arc<Vec<Arc<Subscription>>>;

/// Subscriptions as publishing shares them.
fn shared(subscriptions: Vec<Subscription>) -> Candidates {
    Arc::new(subscriptions.into_iter().map(Arc::new).collect())
}

/// Tenants and environments whose subscriptions the writer keeps at most;
/// beyond, it starts over (a bound on memory, not a policy).
const MAX_CACHED_CANDIDATES: usize = 1_000;

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
                open: false,
                candidates: HashMap::new(),
            }),
        })
    }

    /// Waits for the writer. Fails once the store is closed.
    pub(crate) async fn lock(&self) -> Result<WriterConn<'_>> {
        let mut held = self.state.lock().await;
        let state = &mut *held;
        let Some(conn) = state.conn.as_mut() else {
            return Err(StoreError::Unavailable(sqlx::Error::PoolClosed));
        };
        if state.open {
            // "no transaction is active" if SQLite already rolled it back.
            let _ = sqlx::query("ROLLBACK").execute(conn).await;
            state.open = false;
        }
        Ok(WriterConn { state: held })
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
        state.candidates.clear();
        let conn = state.conn.as_mut().expect("checked when locked");
        if state.relaxed {
            let tx = conn.begin_with("PRAGMA synchronous = FULL; BEGIN").await?;
            state.relaxed = false;
            return Ok(tx);
        }
        conn.begin().await
    }

    /// A durable transaction made of gathered statements (see
    /// [`SqliteWrites`]). Unless the transaction is [`SqliteWrites::apply`]d,
    /// those statements must leave subscriptions as they are, failure
    /// streaks aside (see the module docs).
    pub(crate) async fn writes<'q>(&mut self) -> Result<SqliteWrites<'_, 'q>, sqlx::Error> {
        Ok(SqliteWrites::new(&mut self.state, false))
    }

    /// Like [`WriterConn::writes`], but the commit does not wait for its own
    /// fsync: in WAL mode the log is written in order, so the next durable
    /// commit makes it durable too. Until then a power cut, not a crash of
    /// the process, may undo it.
    pub(crate) async fn relaxed_writes<'q>(&mut self) -> Result<SqliteWrites<'_, 'q>, sqlx::Error> {
        Ok(SqliteWrites::new(&mut self.state, true))
    }

    /// The connection itself, durable, for migrations (which manage their
    /// own transactions).
    pub(crate) async fn for_migrations(&mut self) -> Result<&mut SqliteConnection, sqlx::Error> {
        self.state.candidates.clear();
        if self.state.relaxed {
            sqlx::query("PRAGMA synchronous = FULL").execute(self.conn()).await?;
            self.state.relaxed = false;
        }
        Ok(self.conn())
    }
}

/// A SQLite write transaction whose statements are gathered and sent at
/// once. Until something needs the transaction applied ([`Self::apply`]),
/// nothing has been sent: reads come first ([`Self::reads`]) and run on the
/// held writer, which no other write can pass, so they see what the
/// transaction would. Dropped without [`Self::commit`], nothing is written.
pub(crate) struct SqliteWrites<'c, 'q> {
    state: &'c mut State,
    /// What is still to send: `BEGIN` (with the right `synchronous` before
    /// it) until sent, then the statements gathered since.
    text: QueryBuilder<'q, Sqlite>,
    /// Statements gathered in `text`.
    gathered: usize,
    relaxed: bool,
    /// Whether `BEGIN` has been sent.
    begun: bool,
}

impl<'c, 'q> SqliteWrites<'c, 'q> {
    fn new(state: &'c mut State, relaxed: bool) -> Self {
        let begin = match (relaxed, state.relaxed) {
            (true, false) => "PRAGMA synchronous = NORMAL; BEGIN",
            (false, true) => "PRAGMA synchronous = FULL; BEGIN",
            _ => "BEGIN",
        };
        Self {
            state,
            text: QueryBuilder::new(begin),
            gathered: 0,
            relaxed,
            begun: false,
        }
    }

    /// The connection, for reads before any statement is gathered.
    pub(crate) fn reads(&mut self) -> &mut SqliteConnection {
        debug_assert_eq!(self.gathered, 0, "reads come before the statements");
        self.state.conn.as_mut().expect("checked when locked")
    }

    /// The subscriptions an event of `tenant` in this environment may go to,
    /// kept by the writer between publishes (see the module docs).
    pub(crate) async fn candidates(&mut self, tenant: &TenantId, sandbox: bool, keys: &Keyring) -> Result<Candidates> {
        let key = (tenant.clone(), sandbox);
        if let Some(cached) = self.state.candidates.get(&key) {
            return Ok(cached.clone());
        }
        let loaded = shared(crate::events::load_candidates!(self.reads(), tenant, sandbox, keys));
        if self.state.candidates.len() >= MAX_CACHED_CANDIDATES {
            self.state.candidates.clear();
        }
        self.state.candidates.insert(key, loaded.clone());
        Ok(loaded)
    }

    /// Starts the next statement: append it to the builder returned, binding
    /// every value with `push_bind` (`$n` would count from the start of the
    /// text).
    pub(crate) async fn statement(&mut self) -> Result<&mut QueryBuilder<'q, Sqlite>, sqlx::Error> {
        if !self.text.sql().is_empty() {
            self.text.push("; ");
        }
        self.gathered += 1;
        Ok(&mut self.text)
    }

    /// Applies every statement so far, beginning the transaction: then the
    /// writes dereference to the connection inside it, for statements whose
    /// results the caller needs (`&mut *writes`, as with a transaction).
    pub(crate) async fn apply(&mut self) -> Result<(), sqlx::Error> {
        self.state.candidates.clear();
        if !self.begun || self.gathered > 0 {
            self.send().await?;
        }
        Ok(())
    }

    /// Sends what is gathered (`BEGIN` first if not sent yet) and commits.
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        if !self.begun && self.gathered == 0 {
            return Ok(());
        }
        if !self.text.sql().is_empty() {
            self.text.push("; ");
        }
        self.text.push("COMMIT");
        self.send().await?;
        self.state.open = false;
        Ok(())
    }

    /// Sends `text` as one call: sqlx runs its statements in order, binding
    /// the `?`s across them.
    async fn send(&mut self) -> Result<(), sqlx::Error> {
        if self.relaxed {
            // Set first: if the text fails half-way, the next durable
            // transaction restores FULL all the same.
            self.state.relaxed = true;
        }
        self.state.open = true;
        let mut text = std::mem::replace(&mut self.text, QueryBuilder::new(""));
        let conn = self.state.conn.as_mut().expect("checked when locked");
        // Not cached: the text differs with every batch's size.
        let sent = text.build().persistent(false).execute(&mut *conn).await;
        if let Err(e) = sent {
            // "no transaction is active" if SQLite rolled back already.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            self.state.open = false;
            return Err(e);
        }
        if !self.begun && !self.relaxed {
            self.state.relaxed = false;
        }
        self.begun = true;
        self.gathered = 0;
        Ok(())
    }
}

/// [`SqliteWrites`]'s interface over a PostgreSQL transaction: each statement
/// runs when the next one starts (the extended protocol takes one at a time).
pub(crate) struct PgWrites<'q> {
    tx: Transaction<'static, Postgres>,
    statements: QueryBuilder<'q, Postgres>,
}

/// How [`PgWrites`] begin, on the PostgreSQL pool.
pub(crate) trait PgWritesExt {
    /// A durable transaction.
    async fn writes<'q>(&self) -> Result<PgWrites<'q>, sqlx::Error>;
    /// A transaction with `synchronous_commit` off: its commit does not wait
    /// for the WAL flush, which the next durable commit does.
    async fn relaxed_writes<'q>(&self) -> Result<PgWrites<'q>, sqlx::Error>;
}

impl PgWritesExt for PgPool {
    async fn writes<'q>(&self) -> Result<PgWrites<'q>, sqlx::Error> {
        Ok(PgWrites::new(self.begin().await?))
    }

    async fn relaxed_writes<'q>(&self) -> Result<PgWrites<'q>, sqlx::Error> {
        Ok(PgWrites::new(
            self.begin_with("BEGIN; SET LOCAL synchronous_commit = off").await?,
        ))
    }
}

impl<'q> PgWrites<'q> {
    fn new(tx: Transaction<'static, Postgres>) -> Self {
        Self {
            tx,
            statements: QueryBuilder::new(""),
        }
    }

    /// The transaction, for reads before any statement is gathered.
    pub(crate) fn reads(&mut self) -> &mut PgConnection {
        debug_assert!(self.statements.sql().is_empty(), "reads come before the statements");
        &mut self.tx
    }

    /// The subscriptions an event of `tenant` in this environment may go to,
    /// read in the transaction.
    pub(crate) async fn candidates(&mut self, tenant: &TenantId, sandbox: bool, keys: &Keyring) -> Result<Candidates> {
        Ok(shared(crate::events::load_candidates!(
            self.reads(),
            tenant,
            sandbox,
            keys
        )))
    }

    /// Runs the statement before, then starts the next one.
    pub(crate) async fn statement(&mut self) -> Result<&mut QueryBuilder<'q, Postgres>, sqlx::Error> {
        self.run().await?;
        Ok(&mut self.statements)
    }

    /// Applies every statement so far (see [`SqliteWrites::apply`]).
    pub(crate) async fn apply(&mut self) -> Result<(), sqlx::Error> {
        self.run().await
    }

    /// Runs the last statement and commits.
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.run().await?;
        self.tx.commit().await
    }

    async fn run(&mut self) -> Result<(), sqlx::Error> {
        if !self.statements.sql().is_empty() {
            self.statements.build().execute(&mut *self.tx).await?;
            self.statements.reset();
        }
        Ok(())
    }
}

impl std::ops::Deref for SqliteWrites<'_, '_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.state.conn.as_ref().expect("checked when locked")
    }
}

impl std::ops::DerefMut for SqliteWrites<'_, '_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        debug_assert!(self.begun && self.gathered == 0, "apply() comes first");
        self.state.conn.as_mut().expect("checked when locked")
    }
}

impl std::ops::Deref for PgWrites<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for PgWrites<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        debug_assert!(self.statements.sql().is_empty(), "apply() comes first");
        &mut self.tx
    }
}

#[cfg(test)]
mod tests {
    use crate::{with_pool, Result, Store};
    use std::path::Path;

    /// Opens a migrated SQLite store in `dir`.
    async fn sqlite(dir: &Path) -> Store {
        let store = Store::open_sqlite(dir, std::sync::Arc::new(crate::sealing::Keyring::generate()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let created: Result<()> = async {
            with_pool!(store, writer, |pool, dialect| {
                let mut writes = pool.writes().await?;
                writes.statement().await?.push("CREATE TABLE t (x INTEGER, label TEXT)");
                writes.commit().await?;
                Ok(())
            })
        }
        .await;
        created.unwrap();
        store
    }

    /// In a transaction on the writer (relaxed or not): `PRAGMA synchronous`
    /// (2 is FULL, 1 is NORMAL) once begun, then `then` committed.
    async fn synchronous_in(store: &Store, relaxed: bool, then: &str) -> Result<i64> {
        with_pool!(store, writer, |pool, dialect| {
            let mut writes = if relaxed {
                pool.relaxed_writes().await?
            } else {
                pool.writes().await?
            };
            writes.apply().await?;
            let level: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *writes).await?;
            writes.statement().await?.push(then);
            writes.commit().await?;
            Ok(level)
        })
    }

    async fn rows(store: &Store) -> Vec<(i64, String)> {
        with_pool!(store, reader, |pool, dialect| {
            sqlx::query_as("SELECT x, label FROM t ORDER BY x")
                .fetch_all(pool)
                .await
                .unwrap()
        })
    }

    #[tokio::test]
    async fn gathered_statements_bind_their_values_in_order_and_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(dir.path()).await;
        let written: Result<()> = async {
            with_pool!(store, writer, |pool, dialect| {
                let mut writes = pool.writes().await?;
                writes
                    .statement()
                    .await?
                    .push("INSERT INTO t VALUES (")
                    .push_bind(1_i64)
                    .push(", ")
                    .push_bind("one")
                    .push("), (")
                    .push_bind(2_i64)
                    .push(", ")
                    .push_bind("two")
                    .push(")");
                writes
                    .statement()
                    .await?
                    .push("UPDATE t SET label = ")
                    .push_bind("TWO")
                    .push(" WHERE x = ")
                    .push_bind(2_i64);
                writes.commit().await?;
                Ok(())
            })
        }
        .await;
        written.unwrap();
        assert_eq!(rows(&store).await, [(1, "one".to_owned()), (2, "TWO".to_owned())]);

        // A failing statement takes the whole transaction with it.
        let failed: Result<()> = async {
            with_pool!(store, writer, |pool, dialect| {
                let mut writes = pool.writes().await?;
                writes.statement().await?.push("INSERT INTO t VALUES (3, 'three')");
                writes.statement().await?.push("INSERT INTO no_such_table VALUES (1)");
                writes.commit().await?;
                Ok(())
            })
        }
        .await;
        assert!(failed.is_err());
        assert_eq!(rows(&store).await.len(), 2);
    }

    #[tokio::test]
    async fn a_durable_sqlite_transaction_syncs_fully_after_a_relaxed_one_however_that_ended() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(dir.path()).await;
        assert_eq!(synchronous_in(&store, false, "SELECT 1").await.unwrap(), 2);

        assert_eq!(synchronous_in(&store, true, "SELECT 1").await.unwrap(), 1);
        assert_eq!(synchronous_in(&store, true, "SELECT 1").await.unwrap(), 1);
        assert_eq!(
            synchronous_in(&store, false, "SELECT 1").await.unwrap(),
            2,
            "after a commit"
        );

        let failed = synchronous_in(&store, true, "INSERT INTO no_such_table VALUES (1)").await;
        assert!(failed.is_err());
        assert_eq!(
            synchronous_in(&store, false, "SELECT 1").await.unwrap(),
            2,
            "after a failure"
        );

        // Begun, written to, and abandoned (as a dropped future would).
        let abandoned: Result<()> = async {
            with_pool!(store, writer, |pool, dialect| {
                let mut writes = pool.relaxed_writes().await?;
                writes.apply().await?;
                sqlx::query("INSERT INTO t VALUES (9, 'abandoned')")
                    .execute(&mut *writes)
                    .await?;
                Ok(())
            })
        }
        .await;
        abandoned.unwrap();
        assert_eq!(
            synchronous_in(&store, false, "SELECT 1").await.unwrap(),
            2,
            "after an abandoned one"
        );
        assert!(
            rows(&store).await.is_empty(),
            "the abandoned transaction was rolled back"
        );
    }
}
