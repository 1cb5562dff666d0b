//! SQLite's one writer connection, shared by every write of the process,
//! and the gathered transactions that run on it.
//!
//! SQLite allows one writer at a time, so writes queue in-process for one
//! connection instead of failing with `SQLITE_BUSY`. The connection sits
//! behind an async mutex rather than in a pool of one: taking a mutex is
//! cheap, whereas a pool hands a connection back through a spawned task and
//! a ping of the connection's thread before the next writer may start — on
//! the path of every publish and every batch of results.
//!
//! A [`SqliteTx`] gathers its statements and sends them to the connection's
//! thread as one text, `BEGIN` and `COMMIT` included, whenever a result is
//! needed: on a busy machine, most of what a transaction costs is waiting
//! for that thread to be scheduled, once per round trip. A publish is one
//! round trip (two with an idempotency check), a batch of outcomes one.
//!
//! Every transaction keeps `PRAGMA synchronous` right. A relaxed one commits
//! with `NORMAL` (no fsync of its own); the next durable one sets `FULL`
//! again in the same text as its `BEGIN`. Relaxing so costs no extra round
//! trip, and no durable commit goes without its fsync, however the relaxed
//! transaction ended. The writer offers nothing but transactions, so no
//! write can slip past that rule.
//!
//! The writer counts the transactions that wrote `subscriptions`
//! ([`SqliteTx::subscriptions_generation`]), so a cache of subscriptions
//! (the outbox's candidates) knows when what it holds may be stale.

use super::sql::{bound, Sql, Value};
use crate::{Result, StoreError};
use futures_util::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteQueryResult, SqliteRow};
use sqlx::{Connection, Either, Executor};
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
    /// Whether a transaction sent `BEGIN` and did not finish (its future
    /// was dropped): the next holder rolls it back first.
    open: bool,
    /// Moves on whenever a transaction writes `subscriptions`.
    subscriptions_generation: u64,
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
                subscriptions_generation: 0,
            }),
        })
    }

    /// Waits for the writer and starts a transaction on it: durable (its
    /// commit is on disk when it returns) or `relaxed` (the commit does not
    /// wait for its own fsync: in WAL mode the log is written in order, so
    /// the next durable commit makes it durable too; until then a power cut,
    /// not a crash of the process, may undo it). Fails once the store is
    /// closed.
    pub(crate) async fn begin(self: &Arc<Self>, relaxed: bool) -> Result<SqliteTx<'_>> {
        let mut state = self.state.lock().await;
        let open = state.open;
        let Some(conn) = state.conn.as_mut() else {
            return Err(StoreError::Unavailable(sqlx::Error::PoolClosed));
        };
        if open {
            // "no transaction is active" if SQLite already rolled it back.
            let _ = sqlx::query("ROLLBACK").execute(conn).await;
            state.open = false;
        }
        Ok(SqliteTx {
            state,
            writer: self.clone(),
            text: String::new(),
            args: Vec::new(),
            relaxed,
            begun: false,
            wrote_subscriptions: false,
        })
    }

    /// The connection itself, durable, for migrations and maintenance
    /// (`VACUUM`), which manage their own transactions. Counts as a write
    /// of `subscriptions`.
    pub(crate) async fn with_connection<T>(
        &self,
        run: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        let mut state = self.state.lock().await;
        state.subscriptions_generation += 1;
        let relaxed = state.relaxed;
        let Some(conn) = state.conn.as_mut() else {
            return Err(StoreError::Unavailable(sqlx::Error::PoolClosed));
        };
        if relaxed {
            sqlx::query("PRAGMA synchronous = FULL").execute(&mut *conn).await?;
        }
        state.relaxed = false;
        run(state.conn.as_mut().expect("checked above")).await
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

/// A transaction on the held writer: other writes wait until it is dropped.
/// Its statements are gathered until a result is needed (see the module
/// docs). Dropped without [`SqliteTx::commit`], nothing is written.
pub(crate) struct SqliteTx<'c> {
    state: MutexGuard<'c, State>,
    /// To roll back, soon after, a transaction dropped unfinished.
    writer: Arc<SqliteWriter>,
    /// Statements gathered and not sent yet, `; `-separated, with
    /// positional placeholders (see [`Sql::positional`]).
    text: String,
    /// Their values.
    args: Vec<Value>,
    relaxed: bool,
    /// Whether `BEGIN` has been sent.
    begun: bool,
    /// Whether a statement of this transaction wrote `subscriptions`.
    wrote_subscriptions: bool,
}

impl Drop for SqliteTx<'_> {
    /// A transaction dropped after `BEGIN` (an early return, an error, a
    /// cancelled request) is rolled back as soon as the writer is free,
    /// rather than at the next write: until then it holds its snapshot, or
    /// the database's write lock if it wrote, which another process
    /// (`signhook admin …`) may be waiting for.
    fn drop(&mut self) {
        if !self.state.open {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let writer = self.writer.clone();
        runtime.spawn(async move {
            let mut state = writer.state.lock().await;
            if state.open {
                if let Some(conn) = state.conn.as_mut() {
                    // "no transaction is active" if SQLite already rolled it back.
                    let _ = sqlx::query("ROLLBACK").execute(conn).await;
                }
                state.open = false;
            }
        });
    }
}

impl SqliteTx<'_> {
    /// Adds a statement to what the next round trip sends.
    pub(crate) fn gather(&mut self, sql: Sql) {
        if sql.writes_table("subscriptions") && !self.wrote_subscriptions {
            self.wrote_subscriptions = true;
            // Moved on at once: no cache entry made from now on, by this
            // transaction or after it, is taken for one made before.
            self.state.subscriptions_generation += 1;
        }
        if !self.text.is_empty() {
            self.text.push_str("; ");
        }
        let (text, args) = sql.positional();
        self.text.push_str(&text);
        self.args.extend(args);
    }

    /// Runs `sql` now, after what is gathered: the rows it changed.
    pub(crate) async fn execute(&mut self, sql: Sql) -> Result<u64> {
        self.gather(sql);
        match self.send(Wanted::LastCount).await? {
            Sent::Count(n) => Ok(n),
            Sent::Rows(_) => unreachable!("a count was asked for"),
        }
    }

    /// Runs `sql` now, after what is gathered: its rows.
    pub(crate) async fn fetch_all(&mut self, sql: Sql) -> Result<Vec<SqliteRow>> {
        self.gather(sql);
        match self.send(Wanted::Rows).await? {
            Sent::Rows(rows) => Ok(rows),
            Sent::Count(_) => unreachable!("rows were asked for"),
        }
    }

    /// `None` once this transaction wrote `subscriptions` (what it would
    /// cache could still be rolled back); otherwise the count of
    /// transactions that wrote them so far.
    pub(crate) fn subscriptions_generation(&self) -> Option<u64> {
        (!self.wrote_subscriptions).then_some(self.state.subscriptions_generation)
    }

    /// Sends what is gathered and commits. A transaction that did nothing
    /// sends nothing.
    pub(crate) async fn commit(mut self) -> Result<()> {
        if !self.begun && self.text.is_empty() {
            return Ok(());
        }
        self.gather(Sql::new("COMMIT"));
        self.send(Wanted::Count).await?;
        self.state.open = false;
        Ok(())
    }

    /// Runs `sql` after what is gathered and commits: the rows `sql`
    /// returned. What is gathered goes first, in a round trip of its own:
    /// `sql` (a claim) is the same text every time and, sent alone with
    /// `COMMIT`, stays prepared, whereas gathered with the transaction's
    /// other statements SQLite would parse it again every time — a
    /// release of ordered keys costs more to parse than the round trip.
    pub(crate) async fn commit_fetching(mut self, sql: Sql) -> Result<Vec<SqliteRow>> {
        if !self.text.is_empty() {
            self.send(Wanted::Count).await?;
        }
        self.gather(sql);
        self.gather(Sql::new("COMMIT"));
        let Sent::Rows(rows) = self.send(Wanted::Rows).await? else {
            unreachable!("rows were asked for")
        };
        self.state.open = false;
        Ok(rows)
    }

    /// Sends the gathered text as one call (`BEGIN` first if not sent yet):
    /// sqlx runs its statements in order. Only what is `wanted` comes back:
    /// results streamed statement by statement cost a hand-over from the
    /// connection's thread each, so a commit takes one summary.
    async fn send(&mut self, wanted: Wanted) -> Result<Sent> {
        let mut text = std::mem::take(&mut self.text);
        let args = std::mem::take(&mut self.args);
        // One statement (`BEGIN` before it or not, `COMMIT` after it or
        // not) is the same text every time — a claim, a read — and worth
        // keeping prepared; gathered statements differ with every
        // transaction, and are not.
        let single = !text.strip_suffix("; COMMIT").unwrap_or(&text).contains("; ");
        let first = !self.begun;
        if first {
            // Immediate: the transaction takes the write lock at once. A
            // deferred one takes it at its first write, and one that read
            // first then fails with SQLITE_BUSY, without waiting, if another
            // process (`signhook admin …` beside a running server) committed
            // in between: its snapshot is stale. The writer's transactions
            // are writes (reads go to the reader pool), so holding the lock
            // from the start costs only the reads that come before a write.
            let begin = match (self.relaxed, self.state.relaxed) {
                (true, false) => "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE; ",
                (false, true) => "PRAGMA synchronous = FULL; BEGIN IMMEDIATE; ",
                _ => "BEGIN IMMEDIATE; ",
            };
            text.insert_str(0, begin);
        }
        if self.relaxed {
            // Set first: if the text fails half-way, the next durable
            // transaction restores FULL all the same.
            self.state.relaxed = true;
        }
        self.state.open = true;
        let conn = self.state.conn.as_mut().expect("checked when begun");
        let query = bound(&text, &args).persistent(single);
        let sent = match wanted {
            Wanted::Count => conn.execute(query).await.map(|done| Sent::Count(done.rows_affected())),
            Wanted::Rows => conn.fetch_all(query).await.map(Sent::Rows),
            // Each statement's result, to take the last one's: the summary
            // would add up stale counts (see `Wanted::Count`).
            Wanted::LastCount => conn
                .fetch_many(query)
                .try_collect::<Vec<_>>()
                .await
                .map(|results| Sent::Count(last_count(&results))),
        };
        let results = match sent {
            Ok(results) => results,
            Err(e) => {
                // "no transaction is active" if SQLite rolled back already.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                self.state.open = false;
                return Err(e.into());
            }
        };
        if first && !self.relaxed {
            self.state.relaxed = false;
        }
        self.begun = true;
        Ok(results)
    }
}

/// What a round trip should bring back.
#[derive(Clone, Copy)]
enum Wanted {
    /// Nothing but success (a commit). The summary's count means little:
    /// SQLite reports, after a statement that changes no row (`BEGIN`,
    /// `COMMIT`), the count of the last one that did.
    Count,
    /// The rows changed by the text's last statement.
    LastCount,
    /// The rows the text selects or returns.
    Rows,
}

/// What a round trip brought back.
enum Sent {
    Count(u64),
    Rows(Vec<SqliteRow>),
}

/// The rows changed by the last statement whose results these are.
fn last_count(results: &[Either<SqliteQueryResult, SqliteRow>]) -> u64 {
    results
        .iter()
        .rev()
        .find_map(|r| match r {
            Either::Left(done) => Some(done.rows_affected()),
            Either::Right(_) => None,
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use crate::db::{Sql, Tx};
    use crate::{Result, Store};
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
    use sqlx::Connection;
    use std::path::Path;

    /// Opens a migrated SQLite store in `dir` with a table `t`.
    async fn sqlite(dir: &Path) -> Store {
        let store = Store::open_sqlite(dir, std::sync::Arc::new(crate::sealing::Keyring::generate()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        tx.gather(Sql::new("CREATE TABLE t (x INTEGER, label TEXT)"))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        store
    }

    /// `PRAGMA synchronous` inside `tx` (2 is FULL, 1 is NORMAL), then
    /// `then` committed.
    async fn synchronous_in(mut tx: Tx<'_>, then: &'static str) -> Result<i64> {
        let row = tx.fetch_one(Sql::new("PRAGMA synchronous")).await?;
        let level = crate::db::DbRow::int(&row, "synchronous")?;
        tx.gather(Sql::new(then)).await?;
        tx.commit().await?;
        Ok(level)
    }

    async fn rows(store: &Store) -> Vec<(i64, String)> {
        let rows = store
            .reader()
            .fetch_all(Sql::new("SELECT x, label FROM t ORDER BY x"))
            .await
            .unwrap();
        rows.iter()
            .map(|row| {
                use crate::db::DbRow;
                (row.int("x").unwrap(), row.text("label").unwrap())
            })
            .collect()
    }

    #[tokio::test]
    async fn gathered_statements_bind_their_values_in_order_and_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(dir.path()).await;
        let mut tx = store.begin().await.unwrap();
        tx.gather(
            Sql::new("INSERT INTO t VALUES ($1, $2), ($3, $4)")
                .bind(1_i64)
                .bind("one")
                .bind(2_i64)
                .bind("two"),
        )
        .await
        .unwrap();
        tx.gather(Sql::new("UPDATE t SET label = $1 WHERE x = $2").bind("TWO").bind(2_i64))
            .await
            .unwrap();
        let changed = tx
            .execute(
                Sql::new("UPDATE t SET label = $1 WHERE x >= $2")
                    .bind("ONE")
                    .bind(1_i64),
            )
            .await
            .unwrap();
        assert_eq!(changed, 2, "the rows of the last statement, not of all");
        tx.execute(Sql::new("UPDATE t SET label = $1 WHERE x = $2").bind("one").bind(1_i64))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(rows(&store).await, [(1, "one".to_owned()), (2, "ONE".to_owned())]);

        // A failing statement takes the whole transaction with it.
        let mut tx = store.begin().await.unwrap();
        tx.gather(Sql::new("INSERT INTO t VALUES (3, 'three')")).await.unwrap();
        tx.gather(Sql::new("INSERT INTO no_such_table VALUES (1)"))
            .await
            .unwrap();
        assert!(tx.commit().await.is_err());
        assert_eq!(rows(&store).await.len(), 2);
    }

    #[tokio::test]
    async fn a_statement_counts_its_own_rows_after_begin_and_after_other_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(dir.path()).await;
        let mut tx = store.begin().await.unwrap();
        tx.gather(Sql::new("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')"))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // SQLite reports after BEGIN the count of the last statement that
        // changed rows (3, above): only the UPDATE's own count may come back.
        let mut tx = store.begin().await.unwrap();
        let changed = tx
            .execute(Sql::new("UPDATE t SET label = 'x' WHERE x = $1").bind(2_i64))
            .await
            .unwrap();
        assert_eq!(changed, 1);
        let none = tx
            .execute(Sql::new("UPDATE t SET label = 'y' WHERE x = $1").bind(9_i64))
            .await
            .unwrap();
        assert_eq!(none, 0);
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn a_durable_sqlite_transaction_syncs_fully_after_a_relaxed_one_however_that_ended() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(dir.path()).await;
        let durable = || async { store.begin().await.unwrap() };
        let relaxed = || async { store.begin_relaxed().await.unwrap() };
        assert_eq!(synchronous_in(durable().await, "SELECT 1").await.unwrap(), 2);

        assert_eq!(synchronous_in(relaxed().await, "SELECT 1").await.unwrap(), 1);
        assert_eq!(synchronous_in(relaxed().await, "SELECT 1").await.unwrap(), 1);
        assert_eq!(
            synchronous_in(durable().await, "SELECT 1").await.unwrap(),
            2,
            "after a commit"
        );

        let failed = synchronous_in(relaxed().await, "INSERT INTO no_such_table VALUES (1)").await;
        assert!(failed.is_err());
        assert_eq!(
            synchronous_in(durable().await, "SELECT 1").await.unwrap(),
            2,
            "after a failure"
        );

        // Begun, written to, and abandoned (as a dropped future would).
        let mut abandoned = relaxed().await;
        abandoned
            .execute(Sql::new("INSERT INTO t VALUES (9, 'abandoned')"))
            .await
            .unwrap();
        drop(abandoned);
        assert_eq!(
            synchronous_in(durable().await, "SELECT 1").await.unwrap(),
            2,
            "after an abandoned one"
        );
        assert!(
            rows(&store).await.is_empty(),
            "the abandoned transaction was rolled back"
        );
    }

    #[tokio::test]
    async fn another_process_writing_between_a_transactions_read_and_its_write_does_not_fail_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(dir.path()).await;
        // Another process's connection (`signhook admin …`), which gives up
        // at once when the database is locked rather than waiting.
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join(crate::SQLITE_FILE))
            .busy_timeout(std::time::Duration::ZERO);
        let mut other = SqliteConnection::connect_with(&options).await.unwrap();

        let mut tx = store.begin().await.unwrap();
        assert!(tx.fetch_all(Sql::new("SELECT x FROM t")).await.unwrap().is_empty());
        let insert = || sqlx::query("INSERT INTO t VALUES (2, 'other')");
        // Refused while the transaction holds the write lock (since its
        // BEGIN); had it committed, the transaction's snapshot would be stale.
        let other_wrote = insert().execute(&mut other).await.is_ok();
        tx.gather(Sql::new("INSERT INTO t VALUES (1, 'after a read')"))
            .await
            .unwrap();
        tx.commit().await.expect("the transaction commits");
        if !other_wrote {
            insert()
                .execute(&mut other)
                .await
                .expect("the other process writes after it");
        }
        assert_eq!(
            rows(&store).await,
            [(1, "after a read".to_owned()), (2, "other".to_owned())]
        );
    }

    #[tokio::test]
    async fn writing_subscriptions_moves_the_generation_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(dir.path()).await;
        let mut tx = store.begin().await.unwrap();
        let before = tx.subscriptions_generation().unwrap();
        tx.gather(Sql::new("UPDATE deliveries SET status = status"))
            .await
            .unwrap();
        assert_eq!(tx.subscriptions_generation(), Some(before), "another table");
        tx.gather(Sql::new("UPDATE subscriptions SET enabled = enabled"))
            .await
            .unwrap();
        assert_eq!(
            tx.subscriptions_generation(),
            None,
            "not cacheable inside the writing transaction"
        );
        drop(tx);
        let tx = store.begin().await.unwrap();
        assert!(tx.subscriptions_generation().unwrap() > before, "even rolled back");
    }
}
