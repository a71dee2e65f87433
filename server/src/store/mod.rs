//! The SQL store: signaling's [`Store`] on SQLite (the embedded default) or
//! PostgreSQL, through sqlx's `Any` driver. The SQL is the same text for
//! both (`$N` placeholders work on SQLite too); only the migrations differ
//! (`migrations/sqlite`, `migrations/postgres`).
//!
//! Besides the store proper: [`files`] (recording files and their rows),
//! [`consent`] (who may record) and [`outbox`] (webhook events), which
//! several areas share. The store imports no area.

mod backend;
pub mod consent;
pub mod files;
pub mod outbox;

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

use parley_domain::clock::Wake;
use parley_domain::protocol::rest::TimelineItem;
use parley_domain::protocol::{SessionBill, SessionEndReason};
use parley_metering::{MeterEvent, MeterStore, MeterStoreError, Snapshot};
use tokio::sync::{mpsc, oneshot};

/// Rows per multi-row statement (at most 7 bound values each: well within
/// SQLite's and PostgreSQL's limits on bound parameters).
const ROWS_PER_STATEMENT: usize = 500;

/// A booked session's room opens this long before its start (DESIGN.md
/// §3, docs/rules.md A5): the store answers [`Store::scheduled`] with it,
/// and the booking scheduler opens rooms by it.
pub const ROOM_OPENS_BEFORE: Duration = Duration::from_secs(10 * 60);

/// Persistence of users, calls and sessions on SQLite or PostgreSQL.
///
/// Writes go through one writer task that commits whatever has queued up
/// in one transaction (group commit) and only then answers each writer:
/// a write that returned `Ok` is durable, and under load many writes share
/// one commit. Reads go to the pool directly.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    writes: mpsc::UnboundedSender<Job>,
    settled: Wake,
    webhooks: Wake,
    bookings: Wake,
}

/// Writes committed together at most.
const MAX_BATCH: usize = 256;

/// One write, as the writer task applies it.
#[derive(Debug)]
enum Write {
    UsersSeen(Vec<UserInfo>, Timestamp),
    CreateCall(CallRecord),
    CallTransition(CallId, CallState, Timestamp),
    CreateSession(SessionRecord),
    SessionEvent(SessionId, SessionEvent, Timestamp),
    MeterEvent(SessionId, MeterEvent, Timestamp),
    Settlement(SessionId, SessionBill, SessionEndReason, Timestamp),
}

#[derive(Debug)]
struct Job {
    write: Write,
    done: oneshot::Sender<Result<(), StoreError>>,
}

fn store_err(e: sqlx::Error) -> StoreError {
    StoreError(e.to_string())
}

impl SqlStore {
    /// Connects to `url` and runs the migrations.
    ///
    /// SQLite gets WAL journaling, `synchronous=NORMAL` and a 5 s busy
    /// timeout; its file is created if missing.
    ///
    /// # Errors
    ///
    /// [`ConnectError`]: `url` is not a SQLite or PostgreSQL URL, the
    /// database cannot be reached, or a migration fails.
    pub async fn connect(url: &str) -> Result<SqlStore, ConnectError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url).ok_or(ConnectError::UnsupportedUrl)?;
        let options = sqlx::any::AnyConnectOptions::from_str(url).map_err(ConnectError::Url)?;
        let pool = match backend {
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(4)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        sqlx::raw_sql(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                        )
                        .execute(conn)
                        .await?;
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
        tokio::spawn(write_batches(pool.clone(), jobs, signals));
        Ok(SqlStore { pool, backend, writes, settled, webhooks, bookings })
    }

    /// The pool, for billing (same database).
    pub fn pool(&self) -> AnyPool {
        self.pool.clone()
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
        let (done, committed) = oneshot::channel();
        self.writes.send(Job { write, done }).map_err(|_| StoreError("the database writer has stopped".into()))?;
        committed.await.map_err(|_| StoreError("the database writer has stopped".into()))?
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
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredCall {
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
        }))
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.submit(Write::CreateSession(session.clone())).await
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

/// The writer task: commits every queued write in one transaction, then
/// answers each. If the batch fails, each write is retried in its own
/// transaction so one bad write does not fail the others.
async fn write_batches(pool: AnyPool, mut jobs: mpsc::UnboundedReceiver<Job>, signals: Signals) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let writes: Vec<&Write> = batch.iter().map(|job| &job.write).collect();
        let settles = writes.iter().any(|w| {
            matches!(w, Write::Settlement(..) | Write::SessionEvent(_, SessionEvent::Ended { bill: Some(_), .. }, _))
        });
        let announces = writes
            .iter()
            .any(|w| matches!(w, Write::CreateSession(_) | Write::SessionEvent(_, SessionEvent::Ended { .. }, _)));
        let ends = writes.iter().any(|w| matches!(w, Write::SessionEvent(_, SessionEvent::Ended { .. }, _)));
        let committed = write(&pool, &writes).await;
        if let Err(e) = &committed {
            tracing::warn!(error = %e, writes = batch.len(), "batch write failed; retrying its writes one by one");
        }
        for job in batch.drain(..) {
            let result = match &committed {
                Ok(()) => Ok(()),
                Err(_) => write(&pool, &[&job.write]).await.map_err(store_err),
            };
            let _ = job.done.send(result);
        }
        if settles {
            signals.settled.wake();
        }
        if announces {
            signals.webhooks.wake();
        }
        if ends {
            signals.bookings.wake();
        }
    }
}

/// Who the writer wakes after a commit.
struct Signals {
    /// Billing's settlement outbox (a settlement decision was stored).
    settled: Wake,
    /// The webhook worker (session events were stored).
    webhooks: Wake,
    /// The booking scheduler (a session ended).
    bookings: Wake,
}

/// Commits `writes` in one transaction with one multi-row statement per
/// table, in dependency order (a call before its events, a session before
/// its end). Triggers (migrations/*/0002) keep `calls.state` and
/// `sessions.ended_*` in step, row by row in order.
async fn write(pool: &AnyPool, writes: &[&Write]) -> Result<(), sqlx::Error> {
    let mut users: Vec<(&UserInfo, Timestamp)> = Vec::new();
    let (mut calls, mut transitions, mut sessions, mut events) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut meter_events, mut checkpoints, mut settlements) = (Vec::new(), Vec::new(), Vec::new());
    for w in writes {
        match w {
            Write::MeterEvent(id, MeterEvent::Checkpoint(s), at) => checkpoints.push((id, *s, *at)),
            Write::MeterEvent(id, event, at) => meter_events.push((id, event, *at)),
            Write::Settlement(id, bill, reason, at) => settlements.push((id, *bill, *reason, *at)),

            Write::UsersSeen(us, at) => users.extend(us.iter().map(|u| (u, *at))),
            Write::CreateCall(c) => calls.push(c),
            Write::CallTransition(id, state, at) => transitions.push((id, *state, *at)),
            Write::CreateSession(s) => sessions.push(s),
            Write::SessionEvent(id, event, at) => {
                if let SessionEvent::Ended { reason, bill: Some(bill), .. } = event {
                    settlements.push((id, *bill, *reason, *at));
                }
                events.push((id, event, *at));
            }
        }
    }
    // A row may be upserted once per statement (PostgreSQL): the last wins.
    let mut seen = std::collections::HashSet::with_capacity(users.len());
    users.reverse();
    users.retain(|(u, _)| seen.insert(&u.id));

    let mut tx = pool.begin().await?;
    for chunk in users.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO users (id, name, role, first_seen_ms, last_seen_ms) VALUES {} \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, \
             last_seen_ms = excluded.last_seen_ms",
            placeholders(chunk.len(), &[0, 1, 2, 3, 3], 4)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (u, at) in chunk {
            q = q.bind(u.id.as_str()).bind(&u.name).bind(u.role.as_str()).bind(at.unix_millis());
        }
        q.execute(&mut *tx).await?;
    }
    for chunk in calls.chunks(ROWS_PER_STATEMENT) {
        // The `calls_first_event` trigger records each `requested` event.
        let sql = format!(
            "INSERT INTO calls (id, session_id, seeker_id, consultant_id, state, created_ms, updated_ms) VALUES {}",
            placeholders(chunk.len(), &[0, 1, 2, 3, 4, 5, 5], 6)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for c in chunk {
            q = q
                .bind(c.call_id.as_str())
                .bind(c.session_id.as_str())
                .bind(c.seeker_id.as_str())
                .bind(c.consultant_id.as_str())
                .bind(CallState::Requested.as_str())
                .bind(c.created_at.unix_millis());
        }
        q.execute(&mut *tx).await?;
    }
    for chunk in transitions.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO call_events (call_id, state, at_ms) VALUES {}",
            placeholders(chunk.len(), &[0, 1, 2], 3)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, state, at) in chunk {
            q = q.bind(id.as_str()).bind(state.as_str()).bind(at.unix_millis());
        }
        q.execute(&mut *tx).await?;
    }
    for chunk in sessions.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO sessions (id, call_id, kind, seeker_id, consultant_id, opened_ms, recording) VALUES {}",
            placeholders(chunk.len(), &[0, 1, 2, 3, 4, 5, 6], 7)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for s in chunk {
            q = q
                .bind(s.session_id.as_str())
                .bind(s.call_id.as_str())
                .bind(if s.scheduled { "scheduled" } else { "instant" })
                .bind(s.seeker_id.as_str())
                .bind(s.consultant_id.as_str())
                .bind(s.opened_at.unix_millis())
                .bind(i64::from(s.recording));
        }
        q.execute(&mut *tx).await?;
    }
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        // For `ended`, the `session_events_end` trigger marks the session
        // ended (the first end wins).
        let sql = format!(
            "INSERT INTO session_events (session_id, kind, user_id, detail, at_ms) VALUES {}",
            placeholders(chunk.len(), &[0, 1, 2, 3, 4], 5)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, event, at) in chunk {
            let (user, detail): (Option<&UserId>, Option<&str>) = match event {
                SessionEvent::Joined(u) | SessionEvent::Left(u) | SessionEvent::Dropped(u) => (Some(u), None),
                SessionEvent::Media(u, state) => (Some(u), Some(state.as_str())),
                SessionEvent::Chat(u, _, text) => (Some(u), Some(text.as_str())),
                SessionEvent::RecordingStarted(u) => (Some(u), None),
                SessionEvent::RecordingStopped(reason) => (None, Some(reason.as_str())),
                SessionEvent::Ended { reason, by, .. } => (by.as_ref(), Some(reason.as_str())),
            };
            q = q
                .bind(id.as_str())
                .bind(event.kind())
                .bind(user.map(UserId::as_str))
                .bind(detail)
                .bind(at.unix_millis());
        }
        q.execute(&mut *tx).await?;
    }
    // Webhook events (session.started / session.ended) with the facts they
    // announce (docs/protocol.md §14).
    let ended: Vec<_> = events
        .iter()
        .filter(|(_, e, _)| matches!(e, SessionEvent::Ended { .. }))
        .map(|(id, e, at)| (*id, *e, *at))
        .collect();
    outbox::session_events(&mut tx, &sessions, &ended).await?;
    // The settlement decision, in the same transaction as the session's end
    // (DESIGN.md B3): a second decision for a session is ignored.
    for (id, bill, reason, at) in settlements {
        parley_billing::insert_settlement(&mut tx, id, &bill, reason.as_str(), at).await?;
    }
    for chunk in meter_events.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO meter_events (session_id, kind, billable_secs, at_ms) VALUES {}",
            placeholders(chunk.len(), &[0, 1, 2, 3], 4)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, event, at) in chunk {
            let secs = match event {
                MeterEvent::FreeWindowEnding { billable_secs }
                | MeterEvent::BillingStarted { billable_secs }
                | MeterEvent::HoldEnding { billable_secs } => *billable_secs,
                MeterEvent::Checkpoint(s) => s.billable_ms / 1000,
            };
            q = q
                .bind(id.as_str())
                .bind(event.kind())
                .bind(i64::try_from(secs).unwrap_or(i64::MAX))
                .bind(at.unix_millis());
        }
        q.execute(&mut *tx).await?;
    }
    // Checkpoints (M9): one row per session, the latest wins; billable time
    // only grows, so a late write of an older checkpoint (a driver task
    // behind the shutdown drain) never takes time back.
    let mut seen = std::collections::HashSet::with_capacity(checkpoints.len());
    checkpoints.reverse();
    checkpoints.retain(|(id, _, _)| seen.insert(*id));
    for chunk in checkpoints.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO meter_checkpoints (session_id, billable_ms, warned, billing_started, hold_warned, at_ms) \
             VALUES {} ON CONFLICT (session_id) DO UPDATE SET billable_ms = excluded.billable_ms, \
             warned = excluded.warned, billing_started = excluded.billing_started, \
             hold_warned = excluded.hold_warned, at_ms = excluded.at_ms \
             WHERE meter_checkpoints.billable_ms <= excluded.billable_ms",
            placeholders(chunk.len(), &[0, 1, 2, 3, 4, 5], 6)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, s, at) in chunk {
            q = q
                .bind(id.as_str())
                .bind(i64::try_from(s.billable_ms).unwrap_or(i64::MAX))
                .bind(i64::from(s.warned))
                .bind(i64::from(s.billing_started))
                .bind(i64::from(s.hold_warned))
                .bind(at.unix_millis());
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await
}

#[async_trait]
impl MeterStore for SqlStore {
    async fn meter_event(
        &self,
        session_id: &SessionId,
        event: &MeterEvent,
        at: Timestamp,
    ) -> Result<(), MeterStoreError> {
        self.submit(Write::MeterEvent(session_id.clone(), *event, at)).await.map_err(|e| MeterStoreError(e.0))
    }

    async fn orphan_settlement(
        &self,
        session_id: &SessionId,
        bill: &SessionBill,
        reason: SessionEndReason,
        at: Timestamp,
    ) -> Result<(), MeterStoreError> {
        self.submit(Write::Settlement(session_id.clone(), *bill, reason, at)).await.map_err(|e| MeterStoreError(e.0))
    }
}

/// `rows` groups of numbered placeholders for a multi-row `VALUES`: row `r`
/// binds `per_row` values and its columns use them in the order `columns`
/// gives (a value may serve two columns). Only these numbers are spliced
/// into SQL; every value is bound.
fn placeholders(rows: usize, columns: &[usize], per_row: usize) -> String {
    let row = |r: usize| {
        let cols: Vec<String> = columns.iter().map(|c| format!("${}", r * per_row + c + 1)).collect();
        format!("({})", cols.join(", "))
    };
    (0..rows).map(row).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_each_rows_values() {
        assert_eq!(placeholders(2, &[0, 1, 1], 2), "($1, $2, $2), ($3, $4, $4)");
        assert_eq!(placeholders(1, &[0], 1), "($1)");
    }
}
