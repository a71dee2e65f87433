//! Writes committed together with other writes (group commit): the hold a
//! call places before ringing and the sandbox intent behind it are each one
//! statement, and under load many calls place theirs at once; so are the
//! records of settlements the outbox carries out together. Each
//! statement committed on its own writes every database page it touched to
//! SQLite's log (4 KiB a page) and, on PostgreSQL, waits for its own log
//! flush; committed together, many share those pages and that flush.
//!
//! A [`Statement`] owns its SQL and values, so whoever commits it (a
//! [`Committer`]) can run it later, inside a transaction shared with other
//! writers, and again on its own if that transaction fails.

use std::borrow::Cow;
use std::fmt::Write as _;

use async_trait::async_trait;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection};

/// A value bound to one of a [`Statement`]'s placeholders (`$1`, `$2`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// An integer (amounts in minor units, Unix milliseconds, counts), or NULL.
    Int(Option<i64>),
    /// Text, or NULL.
    Text(Option<String>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_owned()))
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}

impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::Text(v.map(str::to_owned))
    }
}

impl Arg {
    /// Binds this value to `query`'s next placeholder.
    pub fn bind_to<'q>(&self, query: Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments> {
        match self {
            Arg::Int(v) => query.bind(*v),
            Arg::Text(v) => query.bind(v.as_deref()),
        }
    }
}

/// `count` numbered placeholders, `$1, $2, …, $count` (a row's values, an
/// `IN` list), on SQLite and PostgreSQL alike.
pub(crate) fn numbered(count: usize) -> String {
    let mut list = String::with_capacity(count * 5);
    for n in 1..=count {
        let _ = write!(list, "{}${n}", if n > 1 { ", " } else { "" });
    }
    list
}

/// One SQL statement with its values, owned: `$N` placeholders (the same
/// text on SQLite and PostgreSQL), bound in order.
#[derive(Debug, Clone)]
pub struct Statement {
    sql: Sql,
    args: Vec<Arg>,
    returning: bool,
    transient: bool,
}

/// A [`Statement`]'s SQL.
#[derive(Debug, Clone)]
enum Sql {
    /// As written.
    Text(Cow<'static, str>),
    /// `INSERT INTO <into> VALUES (<a placeholder per value>)`: one row,
    /// which a committer may insert with other rows for the same `into`.
    Insert(&'static str),
}

impl Statement {
    /// A statement of `sql`, with no values bound yet.
    pub fn new(sql: impl Into<Cow<'static, str>>) -> Self {
        Statement { sql: Sql::Text(sql.into()), args: Vec::new(), returning: false, transient: false }
    }

    /// The insert of one row into `into`, a table and its columns
    /// (`"holds (session_id, call_id, …)"`), with a value bound per
    /// column: `INSERT INTO <into> VALUES ($1, …, $n)`. A committer may
    /// insert it with other such rows for the same `into` in one
    /// multi-row statement ([`Statement::insert_into`]): so it must not
    /// need to know its own effect beyond success (no `RETURNING`, no
    /// `ON CONFLICT`); a failing row fails the statement it shares, which
    /// the committer then runs row by row.
    pub fn insert(into: &'static str) -> Self {
        Statement { sql: Sql::Insert(into), args: Vec::new(), returning: false, transient: false }
    }

    /// Binds the next placeholder to `arg`.
    #[must_use]
    pub fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// The statement returns at most one row (`… RETURNING …`): its
    /// [`Done::row`] holds it, and [`Done::rows_affected`] is 1 with a row
    /// and 0 without. Not for [`Statement::insert`].
    #[must_use]
    pub fn returning_row(mut self) -> Self {
        self.returning = true;
        self
    }

    /// The statement is not kept prepared on the connection that runs it:
    /// for a text that varies from one statement to the next (a list of as
    /// many placeholders as values), each of which would otherwise take a
    /// place in the connection's cache of prepared statements (100, least
    /// recently used first out) from one that is run again.
    #[must_use]
    pub fn transient(mut self) -> Self {
        self.transient = true;
        self
    }

    /// For a row of [`Statement::insert`]: its table and columns, and its
    /// values in column order, to be inserted with other rows for the same
    /// table and columns (the values of each row go through
    /// [`Arg::bind_to`]).
    pub fn insert_into(&self) -> Option<(&'static str, &[Arg])> {
        match self.sql {
            Sql::Insert(into) if !self.returning => Some((into, &self.args)),
            _ => None,
        }
    }

    /// Runs the statement on `conn`, in whatever transaction `conn` is in.
    ///
    /// # Errors
    ///
    /// The database's error (a unique violation, a lost connection, …).
    pub async fn run(&self, conn: &mut AnyConnection) -> Result<Done, sqlx::Error> {
        let sql = match &self.sql {
            Sql::Text(sql) => sql.clone(),
            Sql::Insert(into) => Cow::Owned(format!("INSERT INTO {into} VALUES ({})", numbered(self.args.len()))),
        };
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(!self.transient);
        let query = self.args.iter().fold(query, |q, arg| arg.bind_to(q));
        if self.returning {
            let row = query.fetch_optional(conn).await?;
            Ok(Done { rows_affected: u64::from(row.is_some()), row })
        } else {
            let done = query.execute(conn).await?;
            Ok(Done { rows_affected: done.rows_affected(), row: None })
        }
    }
}

/// What a committed [`Statement`] did.
pub struct Done {
    /// Rows inserted, updated or deleted.
    pub rows_affected: u64,
    /// The row a [`Statement::returning_row`] statement returned.
    pub row: Option<AnyRow>,
}

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `AnyRow` has no `Debug`: say whether there is one.
        f.debug_struct("Done").field("rows_affected", &self.rows_affected).field("row", &self.row.is_some()).finish()
    }
}

/// Commits statements, possibly in one transaction with other writers'
/// (the server's store writer does: one commit for whatever has queued up).
/// Billing sends its writes on a call's path through it: the hold
/// (DESIGN.md B2), the sandbox's intent and its cancellation, and what
/// records a settlement carried out (its ledger rows, the hold's status,
/// the settlement done; B3, B7).
///
/// Never call it while holding a transaction of the same database: the
/// committer's transaction may wait for that one's locks.
#[async_trait]
pub trait Committer: Send + Sync {
    /// Runs `statements` in order, atomically (all committed or none), and
    /// answers once they are durable, with each one's outcome in order.
    ///
    /// # Errors
    ///
    /// The first failing statement's database error; nothing of
    /// `statements` is kept. A failure of another writer's statement in a
    /// shared transaction is not this one's: the committer retries each
    /// writer's statements on their own, so a unique violation answered
    /// here is this write's own.
    async fn commit(&self, statements: Vec<Statement>) -> Result<Vec<Done>, sqlx::Error>;

    /// [`Committer::commit`] of one statement.
    ///
    /// # Errors
    ///
    /// As [`Committer::commit`].
    async fn commit_one(&self, statement: Statement) -> Result<Done, sqlx::Error> {
        let mut done = self.commit(vec![statement]).await?;
        done.pop().ok_or_else(|| sqlx::Error::Protocol("the committer answered no outcome".into()))
    }
}
