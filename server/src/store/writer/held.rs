//! A lane's connection, kept from one batch to the next.
//!
//! sqlx gives a connection back to its pool by pinging it first, at every
//! release, whatever `test_before_acquire` says (sqlx-core 0.9,
//! `PoolConnection::return_to_pool`), and on PostgreSQL the pool pings it
//! again when it is next acquired: on SQLite a hop to the connection's
//! thread and back, on PostgreSQL a round trip to the server each. The
//! writer commits batch after batch, most of one write at a steady call
//! rate, so each lane keeps its connection instead of taking one from the
//! pool for every batch.
//!
//! A connection that failed a write is given back at once: the pool's
//! release (its ping) rolls back what a failed transaction left, or closes
//! the connection if it is broken (a PostgreSQL restart or failover while
//! it was kept), and the batch's writes are retried on another. A lane
//! also gives its connection back when the pool is closed, so that
//! `Pool::close`, which waits for every connection, returns.

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool};

/// One lane's connection: taken from the pool on first use, kept until
/// [`Held::give_back`].
pub(super) struct Held {
    pool: AnyPool,
    conn: Option<PoolConnection<Any>>,
}

impl Held {
    /// A lane of `pool` that holds no connection yet.
    pub(super) fn new(pool: AnyPool) -> Held {
        Held { pool, conn: None }
    }

    /// The kept connection, acquired from the pool if none is kept.
    ///
    /// # Errors
    ///
    /// The pool's: no connection could be had (the database is down, or
    /// the pool's acquire timed out).
    pub(super) async fn get(&mut self) -> Result<&mut AnyConnection, sqlx::Error> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.pool.acquire().await?,
        };
        Ok(&mut **self.conn.insert(conn))
    }

    /// Gives the connection back to the pool (after a failed write, or
    /// when the pool closes).
    pub(super) fn give_back(&mut self) {
        self.conn = None;
    }

    /// Whether a connection is kept.
    pub(super) fn holds(&self) -> bool {
        self.conn.is_some()
    }
}
