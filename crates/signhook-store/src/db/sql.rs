//! Statements and rows, the same for both backends: an [`Sql`] is a text
//! with `$1`-style placeholders (which both drivers understand) and the
//! values bound to them; a [`Row`] reads columns of either driver's rows.

use crate::Result;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Database, Encode, Row as _, Type};
use std::borrow::Cow;
use std::fmt::Write as _;

/// One bound value, typed even when NULL (PostgreSQL checks a parameter's
/// type against its column). Text and bytes are owned, so a gathered
/// statement keeps its values until it is sent.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}
impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(Some(v))
    }
}
impl From<Option<bool>> for Value {
    fn from(v: Option<bool>) -> Self {
        Value::Bool(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(Some(v))
    }
}
impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Value::Text(v)
    }
}
/// Borrowed text (a `&str`, an id) is copied, so the statement owns it.
impl<T: AsRef<str> + ?Sized> From<&T> for Value {
    fn from(v: &T) -> Self {
        Value::Text(Some(v.as_ref().to_owned()))
    }
}
impl<T: AsRef<str> + ?Sized> From<Option<&T>> for Value {
    fn from(v: Option<&T>) -> Self {
        Value::Text(v.map(|v| v.as_ref().to_owned()))
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(Some(v))
    }
}
impl From<Option<Vec<u8>>> for Value {
    fn from(v: Option<Vec<u8>>) -> Self {
        Value::Bytes(v)
    }
}

/// A statement and its values.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    text: Cow<'static, str>,
    args: Vec<Value>,
}

impl Sql {
    /// A statement whose `$n` placeholders the following [`Sql::bind`]s fill
    /// in order.
    pub(crate) fn new(text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// Binds the next placeholder.
    pub(crate) fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Appends text (for statements built from parts, like `VALUES` lists).
    pub(crate) fn push(mut self, text: &str) -> Self {
        self.text.to_mut().push_str(text);
        self
    }

    fn placeholder(&mut self, value: Value) {
        self.args.push(value);
        let n = self.args.len();
        // Written in place: a multi-row statement has thousands.
        let _ = write!(self.text.to_mut(), "${n}");
    }

    /// Appends `VALUES (…), (…)`: one row per item, its values bound by
    /// `row` in column order.
    pub(crate) fn push_values<T>(
        mut self,
        items: impl IntoIterator<Item = T>,
        mut row: impl FnMut(ValuesRow<'_>, T),
    ) -> Self {
        self.text.to_mut().push_str("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            self.text.to_mut().push_str(if i == 0 { "(" } else { ", (" });
            row(
                ValuesRow {
                    sql: &mut self,
                    first: true,
                },
                item,
            );
            self.text.to_mut().push(')');
        }
        self
    }

    /// The values, in placeholder order.
    pub(crate) fn args(&self) -> &[Value] {
        &self.args
    }

    /// The statement's text.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The statement with anonymous `?` placeholders, and its values in the
    /// order they appear (a value used twice is bound twice).
    ///
    /// SQLite treats `$1` as a *named* parameter and finds a name's number
    /// by walking the statement's list of names, so binding a statement of
    /// a few thousand named parameters (a multi-row `INSERT`) costs time in
    /// their square; anonymous ones are bound in order, at no search. They
    /// also number across a text of several statements, as a gathered
    /// transaction needs.
    pub(crate) fn positional(self) -> (String, Vec<Value>) {
        let mut text = String::with_capacity(self.text.len());
        let mut args: Vec<Value> = Vec::with_capacity(self.args.len());
        // Each value moves out at its first use (a publish's event data is
        // not copied again); a later use copies it from where it went.
        let mut values: Vec<Option<Value>> = self.args.into_iter().map(Some).collect();
        let mut placed: Vec<Option<usize>> = vec![None; values.len()];
        let mut chars = self.text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            if c == '\'' {
                quoted = !quoted;
            }
            let number_follows = chars.peek().is_some_and(char::is_ascii_digit);
            if c != '$' || quoted || !number_follows {
                text.push(c);
                continue;
            }
            let mut n = 0usize;
            while let Some(digit) = chars.peek().and_then(|d| d.to_digit(10)) {
                n = n * 10 + digit as usize;
                chars.next();
            }
            text.push('?');
            let index = n.wrapping_sub(1);
            let value = match (values.get_mut(index), placed.get(index).copied().flatten()) {
                (Some(_), Some(at)) => args[at].clone(),
                (Some(slot), None) => {
                    placed[index] = Some(args.len());
                    slot.take().expect("moved once: placed says where it went")
                }
                // A placeholder without its value binds NULL, as SQLite does.
                (None, _) => Value::Int(None),
            };
            args.push(value);
        }
        (text, args)
    }

    /// Whether the statement writes the table `table` (`INSERT INTO`,
    /// `UPDATE`, `DELETE FROM`): what caches of that table must forget.
    pub(crate) fn writes_table(&self, table: &str) -> bool {
        let text = self.text.trim_start();
        let Some(rest) = ["INSERT INTO ", "UPDATE ", "DELETE FROM "]
            .iter()
            .find_map(|verb| text.strip_prefix(verb))
        else {
            return false;
        };
        let name = rest.split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("");
        name == table
    }
}

/// One row of [`Sql::push_values`].
pub(crate) struct ValuesRow<'a> {
    sql: &'a mut Sql,
    first: bool,
}

impl ValuesRow<'_> {
    /// Binds the row's next column.
    pub(crate) fn bind(mut self, value: impl Into<Value>) -> Self {
        if !self.first {
            self.sql.text.to_mut().push_str(", ");
        }
        self.first = false;
        self.sql.placeholder(value.into());
        self
    }
}

/// A statement's two texts, where SQLite and PostgreSQL differ.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialects {
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Which backend a statement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    /// The text for this backend.
    pub(crate) fn pick(self, dialects: Dialects) -> &'static str {
        match self {
            Kind::Sqlite => dialects.sqlite,
            Kind::Postgres => dialects.postgres,
        }
    }
}

/// A row of either backend.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

/// Column access shared by both backends' rows.
pub(crate) trait DbRow {
    fn text(&self, column: &str) -> Result<String>;
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
    fn flag(&self, column: &str) -> Result<bool>;
    fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>>;
}

impl Row {
    fn get<T>(&self, column: &str) -> Result<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + Type<sqlx::Sqlite>,
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + Type<sqlx::Postgres>,
    {
        Ok(match self {
            Row::Sqlite(row) => row.try_get(column)?,
            Row::Postgres(row) => row.try_get(column)?,
        })
    }
}

impl DbRow for Row {
    fn text(&self, column: &str) -> Result<String> {
        self.get(column)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        self.get(column)
    }
    fn int(&self, column: &str) -> Result<i64> {
        self.get(column)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        self.get(column)
    }
    fn flag(&self, column: &str) -> Result<bool> {
        self.get(column)
    }
    fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>> {
        self.get(column)
    }
}

/// `sql` as the driver's query, its values bound in order.
pub(crate) fn bound<'q, DB: Database>(sql: &'q str, args: &'q [Value]) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
where
    Option<i64>: Encode<'q, DB> + Type<DB>,
    Option<bool>: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Option<&'q [u8]>: Encode<'q, DB> + Type<DB>,
{
    let mut query = sqlx::query(sql);
    for value in args {
        query = match value {
            Value::Int(v) => query.bind(*v),
            Value::Bool(v) => query.bind(*v),
            Value::Text(v) => query.bind(v.as_deref()),
            Value::Bytes(v) => query.bind(v.as_deref()),
        };
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_positional_outside_string_literals() {
        let sql = Sql::new("UPDATE t SET a = $1, b = '$2', c = $2 WHERE d = $1 AND e = '$.a'")
            .bind(7_i64)
            .bind("x");
        let (text, args) = sql.positional();
        assert_eq!(text, "UPDATE t SET a = ?, b = '$2', c = ? WHERE d = ? AND e = '$.a'");
        let ints: Vec<String> = args.iter().map(|v| format!("{v:?}")).collect();
        assert_eq!(ints, ["Int(Some(7))", "Text(Some(\"x\"))", "Int(Some(7))"]);
    }

    #[test]
    fn built_statements_number_their_values_in_order() {
        let sql = Sql::new("UPDATE t SET a = $1 FROM (")
            .bind(7_i64)
            .push_values([("x", 1_i64), ("y", 2)], |row, (name, n)| {
                row.bind(name).bind(n);
            })
            .push(") AS v WHERE t.id = v.column1");
        assert_eq!(
            sql.text(),
            "UPDATE t SET a = $1 FROM (VALUES ($2, $3), ($4, $5)) AS v WHERE t.id = v.column1"
        );
        assert_eq!(sql.args.len(), 5);
    }

    #[test]
    fn the_written_table_is_read_from_the_statement() {
        assert!(Sql::new("UPDATE subscriptions SET enabled = FALSE").writes_table("subscriptions"));
        assert!(Sql::new("  INSERT INTO subscriptions (id) VALUES ($1)").writes_table("subscriptions"));
        assert!(Sql::new("DELETE FROM subscriptions WHERE id = $1").writes_table("subscriptions"));
        assert!(!Sql::new("UPDATE subscription_health SET failure_count = 0").writes_table("subscriptions"));
        assert!(!Sql::new("SELECT * FROM subscriptions").writes_table("subscriptions"));
        assert!(!Sql::new("UPDATE deliveries SET status = $1").writes_table("subscriptions"));
    }
}
