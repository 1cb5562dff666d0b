//! The store's execution layer: statements written once, run on either
//! backend.
//!
//! A statement is an [`Sql`]: its text with `$1`-style placeholders and its
//! values. Reads outside a transaction go through a [`Reader`]; writes
//! through a [`Tx`], a transaction that dispatches on the backend. Every
//! store helper is a plain `async fn(&mut Tx, …)` or `async fn(&Reader, …)`,
//! so helpers call each other like any functions.
//!
//! Where the dialects differ, both texts sit side by side in a
//! [`Dialects`], and [`Tx::pick`] or [`Reader::pick`] chooses.
//!
//! On SQLite a transaction is gathered: statements whose results nobody
//! needs ([`Tx::gather`]) are sent with the next one that has a result, or
//! with `COMMIT` (see [`sqlite`]). On PostgreSQL each statement runs when
//! given, inside a real transaction.

pub(crate) mod sql;
pub(crate) mod sqlite;

pub(crate) use sql::{DbRow, Dialects, Kind, Row, Sql};

use crate::work::WorkSignal;
use crate::{Result, StoreError};
use chrono::{DateTime, Utc};
use sql::bound;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

/// Reads outside a transaction: SQLite's read-only pool (WAL lets it read
/// beside the writer) or PostgreSQL's pool.
#[derive(Clone, Copy)]
pub(crate) enum Reader<'a> {
    Sqlite(&'a SqlitePool),
    Postgres(&'a PgPool),
}

impl Reader<'_> {
    /// Which backend this is.
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Reader::Sqlite(_) => Kind::Sqlite,
            Reader::Postgres(_) => Kind::Postgres,
        }
    }

    /// The text for this backend.
    pub(crate) fn pick(&self, dialects: Dialects) -> &'static str {
        self.kind().pick(dialects)
    }

    /// Every row.
    pub(crate) async fn fetch_all(&self, sql: Sql) -> Result<Vec<Row>> {
        Ok(match self {
            Reader::Sqlite(pool) => bound(sql.text(), sql.args())
                .fetch_all(*pool)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Reader::Postgres(pool) => bound(sql.text(), sql.args())
                .fetch_all(*pool)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    /// Every row, each made a `T` by `parse`.
    pub(crate) async fn fetch_parsed<T>(&self, sql: Sql, parse: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
        self.fetch_all(sql).await?.iter().map(parse).collect()
    }

    /// The first row, if any.
    pub(crate) async fn fetch_optional(&self, sql: Sql) -> Result<Option<Row>> {
        Ok(match self {
            Reader::Sqlite(pool) => bound(sql.text(), sql.args())
                .fetch_optional(*pool)
                .await?
                .map(Row::Sqlite),
            Reader::Postgres(pool) => bound(sql.text(), sql.args())
                .fetch_optional(*pool)
                .await?
                .map(Row::Postgres),
        })
    }

    /// The one row (an error when there is none).
    pub(crate) async fn fetch_one(&self, sql: Sql) -> Result<Row> {
        self.fetch_optional(sql)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }
}

/// What reads rows: a [`Reader`] or a [`Tx`], for helpers that read the
/// same way in and out of a transaction.
pub(crate) trait Fetch {
    /// Which backend this is.
    fn kind(&self) -> Kind;
    /// Every row.
    async fn fetch_all(&mut self, sql: Sql) -> Result<Vec<Row>>;
}

impl Fetch for Reader<'_> {
    fn kind(&self) -> Kind {
        Reader::kind(self)
    }
    async fn fetch_all(&mut self, sql: Sql) -> Result<Vec<Row>> {
        Reader::fetch_all(self, sql).await
    }
}

impl Fetch for Tx<'_> {
    fn kind(&self) -> Kind {
        Tx::kind(self)
    }
    async fn fetch_all(&mut self, sql: Sql) -> Result<Vec<Row>> {
        Tx::fetch_all(self, sql).await
    }
}

/// A write transaction on either backend. Dropped without [`Tx::commit`],
/// nothing it wrote stays.
///
/// A transaction that writes work for the dispatchers says when it falls
/// due ([`Tx::work_due_at`]); the announcement is made once the commit
/// succeeded — to this process's dispatcher through its [`WorkSignal`], to
/// other nodes through PostgreSQL's `NOTIFY` — so a claim that follows sees
/// the rows.
pub(crate) struct Tx<'c> {
    conn: Conn<'c>,
    work: &'c WorkSignal,
    /// The earliest instant the work written falls due.
    due: Option<DateTime<Utc>>,
}

enum Conn<'c> {
    Sqlite(sqlite::SqliteTx<'c>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl<'c> Tx<'c> {
    pub(crate) fn sqlite(tx: sqlite::SqliteTx<'c>, work: &'c WorkSignal) -> Self {
        Self {
            conn: Conn::Sqlite(tx),
            work,
            due: None,
        }
    }

    pub(crate) fn postgres(tx: sqlx::Transaction<'static, sqlx::Postgres>, work: &'c WorkSignal) -> Self {
        Self {
            conn: Conn::Postgres(tx),
            work,
            due: None,
        }
    }

    /// Which backend this is.
    pub(crate) fn kind(&self) -> Kind {
        match self.conn {
            Conn::Sqlite(_) => Kind::Sqlite,
            Conn::Postgres(_) => Kind::Postgres,
        }
    }

    /// The text for this backend.
    pub(crate) fn pick(&self, dialects: Dialects) -> &'static str {
        self.kind().pick(dialects)
    }

    /// A statement whose result nobody needs: SQLite sends it with the next
    /// statement that has one, or with the commit (its error, if any, comes
    /// then); PostgreSQL runs it now.
    pub(crate) async fn gather(&mut self, sql: Sql) -> Result<()> {
        match &mut self.conn {
            Conn::Sqlite(tx) => tx.gather(sql),
            Conn::Postgres(tx) => {
                bound(sql.text(), sql.args()).execute(&mut **tx).await?;
            }
        }
        Ok(())
    }

    /// Runs a statement now; the number of rows it changed.
    pub(crate) async fn execute(&mut self, sql: Sql) -> Result<u64> {
        match &mut self.conn {
            Conn::Sqlite(tx) => tx.execute(sql).await,
            Conn::Postgres(tx) => Ok(bound(sql.text(), sql.args()).execute(&mut **tx).await?.rows_affected()),
        }
    }

    /// Every row, as the transaction sees them.
    pub(crate) async fn fetch_all(&mut self, sql: Sql) -> Result<Vec<Row>> {
        Ok(match &mut self.conn {
            Conn::Sqlite(tx) => tx.fetch_all(sql).await?.into_iter().map(Row::Sqlite).collect(),
            Conn::Postgres(tx) => bound(sql.text(), sql.args())
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    /// Every row, each made a `T` by `parse`.
    pub(crate) async fn fetch_parsed<T>(&mut self, sql: Sql, parse: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
        self.fetch_all(sql).await?.iter().map(parse).collect()
    }

    /// The first row, if any.
    pub(crate) async fn fetch_optional(&mut self, sql: Sql) -> Result<Option<Row>> {
        Ok(self.fetch_all(sql).await?.into_iter().next())
    }

    /// The one row (an error when there is none).
    pub(crate) async fn fetch_one(&mut self, sql: Sql) -> Result<Row> {
        self.fetch_optional(sql)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// Tells every listening node, on commit, that something happened on
    /// `channel` (PostgreSQL `NOTIFY`; nothing on SQLite: one process).
    pub(crate) async fn notify(&mut self, channel: &'static str) -> Result<()> {
        match self.conn {
            Conn::Sqlite(_) => Ok(()),
            Conn::Postgres(_) => self.gather(Sql::new("SELECT pg_notify($1, '')").bind(channel)).await,
        }
    }

    /// Says that this transaction wrote deliveries due at `at` (now, or a
    /// retry's time): the dispatchers are told once it commits.
    pub(crate) async fn work_due_at(&mut self, at: DateTime<Utc>) -> Result<()> {
        if self.due.is_none() {
            self.notify(crate::WAKE_CHANNEL).await?;
        }
        self.due = Some(self.due.map_or(at, |due| due.min(at)));
        Ok(())
    }

    /// When a cache of subscriptions filled now may be used and kept: on
    /// SQLite, the count of transactions that wrote `subscriptions` so far
    /// (an entry made under an older count is stale), unless this one wrote
    /// them itself. `None` on PostgreSQL, where other nodes write too.
    pub(crate) fn subscriptions_generation(&self) -> Option<u64> {
        match &self.conn {
            Conn::Sqlite(tx) => tx.subscriptions_generation(),
            Conn::Postgres(_) => None,
        }
    }

    /// Runs `sql` last (an `UPDATE … RETURNING`), commits, then announces
    /// the work written: the rows `sql` returned. On SQLite `sql` goes with
    /// `COMMIT` alone, a text kept prepared (see
    /// [`sqlite::SqliteTx::commit_fetching`]).
    pub(crate) async fn commit_fetching(self, sql: Sql) -> Result<Vec<Row>> {
        let rows = match self.conn {
            Conn::Sqlite(tx) => tx.commit_fetching(sql).await?.into_iter().map(Row::Sqlite).collect(),
            Conn::Postgres(mut tx) => {
                let rows = bound(sql.text(), sql.args()).fetch_all(&mut *tx).await?;
                tx.commit().await?;
                rows.into_iter().map(Row::Postgres).collect()
            }
        };
        if let Some(at) = self.due {
            self.work.due_at(at);
        }
        Ok(rows)
    }

    /// Commits, then announces the work written.
    pub(crate) async fn commit(self) -> Result<()> {
        match self.conn {
            Conn::Sqlite(tx) => tx.commit().await?,
            Conn::Postgres(tx) => tx.commit().await?,
        }
        if let Some(at) = self.due {
            self.work.due_at(at);
        }
        Ok(())
    }
}

/// A JSON array of strings, for a list parameter
/// (`json_each($n)` on SQLite, `json_array_elements_text($n)` on PostgreSQL).
/// An optional filter of a list's query, its parameter bound either way:
/// `condition` when the filter is given, else a test that `param` is NULL.
/// A given filter is then in the SQL itself, where it can bound an index
/// scan, rather than behind an `OR` on a parameter; the `CAST` tells
/// PostgreSQL the parameter's type (`TEXT` or `BIGINT`, as `ty`).
pub(crate) fn optional_filter(given: bool, condition: &'static str, param: &str, ty: &str) -> String {
    if given {
        condition.to_owned()
    } else {
        format!("CAST({param} AS {ty}) IS NULL")
    }
}

pub(crate) fn json_strings<'a>(items: impl Iterator<Item = &'a str>) -> String {
    serde_json::Value::from(items.collect::<Vec<_>>()).to_string()
}
