//! The SQL store: signaling's [`Store`] on SQLite (the embedded default) or
//! PostgreSQL, through sqlx's `Any` driver. The SQL is the same text for
//! both (`$N` placeholders work on SQLite too), except the writer's
//! multi-row statements, with anonymous `?` on SQLite (`writer::placeholders`);
//! only the migrations differ (`migrations/sqlite`, `migrations/postgres`).
//!
//! Besides the store proper: [`files`] (recording files and their rows),
//! [`consent`] (who may record) and [`outbox`] (webhook events), which
//! several areas share. The store imports no area.

mod backend;
pub mod consent;
pub mod files;
pub mod outbox;
mod writer;

pub use backend::{Backend, ConnectError};

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use parley_domain::protocol::{Role, UserInfo};
use parley_domain::{CallId, SessionId, Timestamp, UserId};
use parley_signaling::store::{
    CallRecord, CallState, SessionEvent, SessionRecord, StoredCall, StoredSession, TimelineEntry,
};
use parley_signaling::{Store, StoreError};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use parley_billing::{Committer, Done, Statement};
use parley_domain::clock::Wake;
use parley_domain::protocol::rest::TimelineItem;
use parley_domain::protocol::{SessionBill, SessionEndReason};
use parley_metering::{MeterEvent, MeterStore, MeterStoreError, OwnerEpoch, Snapshot};
use tokio::sync::{mpsc, oneshot};
use writer::{Job, Refused, Reply, Signals, Write, write_batches};

/// A booked session's room opens this long before its start (DESIGN.md
/// §3, docs/rules.md A5): the store answers [`Store::scheduled`] with it,
/// and the booking scheduler opens rooms by it.
pub const ROOM_OPENS_BEFORE: Duration = Duration::from_secs(10 * 60);

/// Persistence of users, calls and sessions on SQLite or PostgreSQL.
///
/// Writes go through one writer task that commits whatever has queued up
/// in one transaction (group commit; a lone one-statement write is
/// committed as that statement) and only then answers each writer:
/// a write that returned `Ok` is durable, and under load many writes share
/// one commit. Billing's writes on a call's path (holds, sandbox intents
/// and cancellations, settlements' records) join them: the store is
/// billing's [`Committer`]. Reads go to the pool directly.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    writes: mpsc::UnboundedSender<Job>,
    settled: Wake,
    webhooks: Wake,
    bookings: Wake,
}

fn store_err(e: sqlx::Error) -> StoreError {
    StoreError(e.to_string())
}

impl SqlStore {
    /// Connects to `url` and runs the migrations.
    ///
    /// SQLite gets WAL journaling, `synchronous=NORMAL` and a 5 s busy
    /// timeout; its file is created if missing. A PostgreSQL on this
    /// machine is reached without TLS unless the URL sets `sslmode` or the
    /// server demands it ([`Backend::connect_url`]).
    ///
    /// # Errors
    ///
    /// [`ConnectError`]: `url` is not a SQLite or PostgreSQL URL, the
    /// database cannot be reached, or a migration fails.
    pub async fn connect(url: &str) -> Result<SqlStore, ConnectError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url).ok_or(ConnectError::UnsupportedUrl)?;
        let options = sqlx::any::AnyConnectOptions::from_str(&backend.connect_url(url)).map_err(ConnectError::Url)?;
        let pool = match backend {
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(4)
                // A SQLite connection is a file on this machine: there is
                // no server to lose, and the ping before each use would be
                // one more round trip to the connection's thread.
                .test_before_acquire(false)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        // The busy timeout first, so that every later
                        // statement waits for a lock instead of failing.
                        sqlx::raw_sql(
                            "PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                        )
                        .execute(&mut *conn)
                        .await?;
                        // WAL is a property of the file: set once, by the
                        // first connection to a new database. Setting it on
                        // every new connection, while others write, can
                        // fail with `database is locked` without waiting
                        // (the journal mode's lock is not one the busy
                        // timeout waits for; sqlx sets no journal mode for
                        // this reason).
                        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn).await?;
                        if !mode.eq_ignore_ascii_case("wal") {
                            sqlx::raw_sql("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                        }
                        Ok(())
                    })
                })
                .connect_with(options)
                .await
                .map_err(ConnectError::Connect)?,
            Backend::Postgres => AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await
                .map_err(ConnectError::Connect)?,
        };
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        let (writes, jobs) = mpsc::unbounded_channel();
        let settled = Wake::new();
        let webhooks = Wake::new();
        let bookings = Wake::new();
        let signals = Signals { settled: settled.clone(), webhooks: webhooks.clone(), bookings: bookings.clone() };
        tokio::spawn(write_batches(pool.clone(), backend, jobs, signals));
        Ok(SqlStore { pool, backend, writes, settled, webhooks, bookings })
    }

    /// The pool, for billing (same database).
    pub fn pool(&self) -> AnyPool {
        self.pool.clone()
    }

    /// A transaction that will write and may read before its first write,
    /// visibly or not: on SQLite it takes the write lock at its start
    /// (`BEGIN IMMEDIATE`), waiting for it up to the busy timeout, so that
    /// no later statement of it fails at once with `database is locked`
    /// while another connection writes. A deferred transaction that has
    /// read cannot wait for the lock when it first writes (SQLite's
    /// busy handler is not called for a read transaction that wants to
    /// write, <https://sqlite.org/lang_transaction.html>), and a read may
    /// hide in a write: a statement that fires the directory's full-text
    /// triggers (`profiles_fts`, migrations/sqlite/0009) reads that
    /// table's configuration when a connection first prepares it. On
    /// PostgreSQL a plain `BEGIN`.
    ///
    /// # Errors
    ///
    /// The pool's or the database's: no connection, or (SQLite) the write
    /// lock not had within the busy timeout (5 s).
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Woken after a commit that stored a settlement decision: the
    /// outbox worker waits on it.
    pub fn settlement_signal(&self) -> Wake {
        self.settled.clone()
    }

    /// Notified after a commit that stored webhook events (a session
    /// started or ended): the webhook worker waits on it.
    pub fn webhook_signal(&self) -> Wake {
        self.webhooks.clone()
    }

    /// Notified after a commit that stored a session's end: the booking
    /// scheduler waits on it (it announces booked sessions that ended
    /// `no_show`), as well as on booking commands.
    pub fn booking_signal(&self) -> Wake {
        self.bookings.clone()
    }

    /// The stored meter notices of a session (M8), as timeline items.
    pub async fn meter_timeline(&self, session_id: &SessionId) -> Result<Vec<TimelineItem>, StoreError> {
        let rows = sqlx::query("SELECT kind, billable_secs, at_ms FROM meter_events WHERE session_id = $1 ORDER BY id")
            .bind(session_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(store_err)?;
        rows.iter()
            .map(|r| {
                let secs: i64 = r.try_get("billable_secs").map_err(store_err)?;
                Ok(TimelineItem {
                    at_ms: r.try_get("at_ms").map_err(store_err)?,
                    kind: r.try_get("kind").map_err(store_err)?,
                    user_id: None,
                    detail: Some(format!("billable_secs={secs}")),
                })
            })
            .collect()
    }

    /// Sessions not ended, with their last meter checkpoint (M9), for
    /// recovery after a restart.
    pub async fn open_sessions(&self) -> Result<Vec<(SessionRecord, Snapshot)>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.id, s.call_id, s.kind, s.seeker_id, s.consultant_id, s.opened_ms, s.recording, c.billable_ms, c.warned, \
             c.billing_started, c.hold_warned FROM sessions s LEFT JOIN meter_checkpoints c ON c.session_id = s.id \
             WHERE s.ended_ms IS NULL ORDER BY s.opened_ms",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?;
        rows.iter()
            .map(|row| {
                let billable: Option<i64> = row.try_get("billable_ms").map_err(store_err)?;
                let flag = |k: &str| -> Result<bool, StoreError> {
                    Ok(row.try_get::<Option<i64>, _>(k).map_err(store_err)?.unwrap_or(0) != 0)
                };
                Ok((
                    SessionRecord {
                        session_id: parse_id(row.try_get("id").map_err(store_err)?)?,
                        call_id: parse_id(row.try_get("call_id").map_err(store_err)?)?,
                        seeker_id: parse_id(row.try_get("seeker_id").map_err(store_err)?)?,
                        consultant_id: parse_id(row.try_get("consultant_id").map_err(store_err)?)?,
                        opened_at: Timestamp::from_unix_millis(row.try_get("opened_ms").map_err(store_err)?),
                        recording: row.try_get::<i64, _>("recording").map_err(store_err)? != 0,
                        scheduled: row.try_get::<String, _>("kind").map_err(store_err)? == "scheduled",
                    },
                    Snapshot {
                        billable_ms: u64::try_from(billable.unwrap_or(0)).unwrap_or(0),
                        warned: flag("warned")?,
                        billing_started: flag("billing_started")?,
                        hold_warned: flag("hold_warned")?,
                    },
                ))
            })
            .collect()
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Queues `write` for the writer task and waits until it is committed.
    async fn submit(&self, write: Write) -> Result<(), StoreError> {
        self.submit_fenced(write).await.map_err(|refused| match refused {
            Refused::Failed(e) => e,
            Refused::Fenced { mine, current } => StoreError(format!("fenced: epoch {mine}, current {current}")),
        })
    }

    /// Queues `write` and waits for its outcome, telling a fenced write
    /// (issue 16) from a failed one.
    async fn submit_fenced(&self, write: Write) -> Result<(), Refused> {
        let stopped = || Refused::Failed(StoreError("the database writer has stopped".into()));
        let (done, committed) = oneshot::channel();
        self.writes.send(Job { write, done: Reply::Stored(done) }).map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?
    }

    /// Takes an open session over (issue 16): raises its owner epoch by one
    /// and returns the new epoch, under which the caller meters it from now
    /// on. From this commit on the store refuses the meter writes of every
    /// earlier owner ([`MeterStoreError::Fenced`]), so a paused or
    /// partitioned former owner cannot write over its successor. `None`
    /// when the session is unknown or has ended.
    pub async fn claim_session(&self, session_id: &SessionId) -> Result<Option<OwnerEpoch>, StoreError> {
        let epoch: Option<i64> = sqlx::query_scalar(
            "UPDATE sessions SET owner_epoch = owner_epoch + 1 WHERE id = $1 AND ended_ms IS NULL \
             RETURNING owner_epoch",
        )
        .bind(session_id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_err)?;
        Ok(epoch.map(|e| OwnerEpoch(u64::try_from(e).unwrap_or(0))))
    }

    /// Whether the database answers (`/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ()).map_err(store_err)
    }
}

fn user_from_row(row: &AnyRow) -> Result<UserInfo, StoreError> {
    let id: String = row.try_get("id").map_err(store_err)?;
    let role: String = row.try_get("role").map_err(store_err)?;
    Ok(UserInfo {
        id: UserId::parse(id).map_err(|e| StoreError(e.to_string()))?,
        name: row.try_get("name").map_err(store_err)?,
        role: match role.as_str() {
            "consultant" => Role::Consultant,
            "moderator" => Role::Moderator,
            "recorder" => Role::Recorder,
            _ => Role::Seeker,
        },
    })
}

fn parse_id<T: FromStr>(s: String) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e: T::Err| StoreError(format!("bad stored id {s:?}: {e}")))
}

/// A `calls` row (`id, session_id, seeker_id, consultant_id, state, created_ms`).
fn stored_call(row: &AnyRow) -> Result<StoredCall, StoreError> {
    Ok(StoredCall {
        record: CallRecord {
            call_id: parse_id(row.try_get("id").map_err(store_err)?)?,
            session_id: parse_id(row.try_get("session_id").map_err(store_err)?)?,
            seeker_id: parse_id(row.try_get("seeker_id").map_err(store_err)?)?,
            consultant_id: parse_id(row.try_get("consultant_id").map_err(store_err)?)?,
            created_at: Timestamp::from_unix_millis(row.try_get("created_ms").map_err(store_err)?),
            // Not stored with the call: the session says whether it is recorded.
            recording: false,
            seeker_premium: false,
        },
        state: row.try_get("state").map_err(store_err)?,
    })
}

#[async_trait]
impl Store for SqlStore {
    async fn users_seen(&self, users: &[UserInfo], at: Timestamp) -> Result<(), StoreError> {
        self.submit(Write::UsersSeen(users.to_vec(), at)).await
    }

    async fn user(&self, id: &UserId) -> Result<Option<UserInfo>, StoreError> {
        let row = sqlx::query("SELECT id, name, role FROM users WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn users_with_role(&self, role: Role) -> Result<Vec<UserInfo>, StoreError> {
        let rows = sqlx::query("SELECT id, name, role FROM users WHERE role = $1 ORDER BY name, id")
            .bind(role.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(store_err)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn create_call(&self, call: &CallRecord) -> Result<(), StoreError> {
        self.submit(Write::CreateCall(call.clone())).await
    }

    async fn call_transition(&self, call_id: &CallId, state: CallState, at: Timestamp) -> Result<(), StoreError> {
        self.submit(Write::CallTransition(call_id.clone(), state, at)).await
    }

    async fn call(&self, call_id: &CallId) -> Result<Option<StoredCall>, StoreError> {
        let row =
            sqlx::query("SELECT id, session_id, seeker_id, consultant_id, state, created_ms FROM calls WHERE id = $1")
                .bind(call_id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(store_err)?;
        row.as_ref().map(stored_call).transpose()
    }

    async fn live_calls(&self) -> Result<Vec<StoredCall>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, session_id, seeker_id, consultant_id, state, created_ms FROM calls \
             WHERE state IN ('requested', 'ringing') ORDER BY created_ms, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?;
        rows.iter().map(stored_call).collect()
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.submit(Write::CreateSession(session.clone())).await
    }

    /// One write: the transition and the session commit together.
    async fn accept_call(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.submit(Write::Accept(session.clone())).await
    }

    async fn session_event(
        &self,
        session_id: &SessionId,
        event: &SessionEvent,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.submit(Write::SessionEvent(session_id.clone(), event.clone(), at)).await
    }

    async fn session(&self, session_id: &SessionId) -> Result<Option<StoredSession>, StoreError> {
        let row = sqlx::query(
            "SELECT id, call_id, kind, seeker_id, consultant_id, opened_ms, ended_ms, end_reason, recording \
             FROM sessions WHERE id = $1",
        )
        .bind(session_id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_err)?;
        let Some(row) = row else { return Ok(None) };
        let ended_ms: Option<i64> = row.try_get("ended_ms").map_err(store_err)?;
        Ok(Some(StoredSession {
            record: SessionRecord {
                session_id: parse_id(row.try_get("id").map_err(store_err)?)?,
                call_id: parse_id(row.try_get("call_id").map_err(store_err)?)?,
                seeker_id: parse_id(row.try_get("seeker_id").map_err(store_err)?)?,
                consultant_id: parse_id(row.try_get("consultant_id").map_err(store_err)?)?,
                opened_at: Timestamp::from_unix_millis(row.try_get("opened_ms").map_err(store_err)?),
                recording: row.try_get::<i64, _>("recording").map_err(store_err)? != 0,
                scheduled: row.try_get::<String, _>("kind").map_err(store_err)? == "scheduled",
            },
            ended_at: ended_ms.map(Timestamp::from_unix_millis),
            end_reason: row.try_get("end_reason").map_err(store_err)?,
        }))
    }

    async fn scheduled(
        &self,
        session_id: &SessionId,
    ) -> Result<Option<parley_signaling::store::ScheduledSession>, StoreError> {
        let row = sqlx::query(
            "SELECT seeker_id, consultant_id, start_ms FROM bookings WHERE session_id = $1 AND state IN ('confirmed', 'held')",
        )
        .bind(session_id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_err)?;
        let Some(row) = row else { return Ok(None) };
        let start: i64 = row.try_get("start_ms").map_err(store_err)?;
        Ok(Some(parley_signaling::store::ScheduledSession {
            seeker_id: parse_id(row.try_get("seeker_id").map_err(store_err)?)?,
            consultant_id: parse_id(row.try_get("consultant_id").map_err(store_err)?)?,
            opens_at: Timestamp::from_unix_millis(start - ROOM_OPENS_BEFORE.as_millis() as i64),
        }))
    }

    async fn session_timeline(&self, session_id: &SessionId) -> Result<Vec<TimelineEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, user_id, detail, at_ms FROM session_events WHERE session_id = $1 ORDER BY at_ms, id",
        )
        .bind(session_id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?;
        rows.iter()
            .map(|row| {
                let user: Option<String> = row.try_get("user_id").map_err(store_err)?;
                Ok(TimelineEntry {
                    at: Timestamp::from_unix_millis(row.try_get("at_ms").map_err(store_err)?),
                    kind: row.try_get("kind").map_err(store_err)?,
                    user_id: user.map(parse_id).transpose()?,
                    detail: row.try_get("detail").map_err(store_err)?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl MeterStore for SqlStore {
    async fn meter_event(
        &self,
        session_id: &SessionId,
        epoch: OwnerEpoch,
        event: &MeterEvent,
        at: Timestamp,
    ) -> Result<(), MeterStoreError> {
        self.submit_fenced(Write::MeterEvent(session_id.clone(), epoch, *event, at)).await.map_err(meter_error)
    }

    async fn orphan_settlement(
        &self,
        session_id: &SessionId,
        epoch: OwnerEpoch,
        bill: &SessionBill,
        reason: SessionEndReason,
        at: Timestamp,
    ) -> Result<(), MeterStoreError> {
        self.submit_fenced(Write::Settlement(session_id.clone(), epoch, *bill, reason, at)).await.map_err(meter_error)
    }
}

/// Billing's writes on a call's path (a hold, a sandbox intent or
/// cancellation, a settlement's records) go through the writer task too:
/// committed with whatever else has queued up.
#[async_trait]
impl Committer for SqlStore {
    async fn commit(&self, statements: Vec<Statement>) -> Result<Vec<Done>, sqlx::Error> {
        let (done, committed) = oneshot::channel();
        let job = Job { write: Write::Statements(statements), done: Reply::Ran(done) };
        self.writes.send(job).map_err(|_| sqlx::Error::PoolClosed)?;
        committed.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

fn meter_error(refused: Refused) -> MeterStoreError {
    match refused {
        Refused::Failed(e) => MeterStoreError::Failed(e.0),
        Refused::Fenced { mine, current } => MeterStoreError::Fenced { mine, current },
    }
}
