//! The store's writer task: every write of users, calls, sessions and
//! meters, and billing's statements on a call's path (a hold, a sandbox
//! intent, a settlement's records: [`parley_billing::Committer`]), goes
//! through one task that commits whatever has queued up in one transaction
//! (group commit; a lone one-statement write needs none) and only then
//! answers each writer. On PostgreSQL it commits up to four such batches
//! side by side, each on its own connection ([`lanes`]); writes about the
//! same call, session or user still commit in the order they were queued
//! ([`keys`]). Each lane keeps its connection from one batch to the next
//! ([`held`]).
//!
//! Meter writes are fenced (issue 16): each carries the owner epoch it was
//! made under, and the transaction first locks the rows of the sessions it
//! writes for and reads their current epoch; a write whose epoch is not the
//! current one is refused ([`Refused::Fenced`]) and the rest of the batch is
//! stored. A takeover raises the epoch with a plain `UPDATE` of the same
//! row, so it is ordered before or after a whole batch, never inside one.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::RandomState;

use futures_util::stream::{FuturesUnordered, StreamExt};

use parley_billing::{Done, Statement};
use parley_domain::clock::Wake;
use parley_domain::protocol::{SessionBill, SessionEndReason, UserInfo};
use parley_domain::{CallId, SessionId, Timestamp, UserId};
use parley_metering::{MeterEvent, OwnerEpoch};
use parley_signaling::StoreError;
use parley_signaling::store::{CallRecord, CallState, SessionEvent, SessionRecord};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::{Backend, outbox, store_err};
use held::Held;
use lanes::{keys, lanes, next_batch};
use rows::{RowGroup, row_insert};

mod held;
mod lanes;
mod rows;

/// Webhook events per multi-row insert, and ended sessions per read of
/// them (`outbox::session_events`), on either backend: on PostgreSQL,
/// [`rows_per_statement`]'s 64 made the same runs slower (1,544 to 1,556
/// connections/s against 2,063 to 2,157 at 500, three alternating pairs),
/// for a reason not found.
pub(super) const EVENT_ROWS_PER_STATEMENT: usize = 500;

/// Rows per multi-row statement on `backend` (or items of an `IN` list).
///
/// SQLite: 500. With at most 18 bound values a row (a hold), 9,000 a
/// statement, within its limit on bound parameters (32,766); each
/// statement is a hop to the connection's thread and back, and preparing
/// a long one costs little.
///
/// PostgreSQL: 64. It parses and plans each text anew unless prepared, and
/// a multi-row text is another text at each row count: at 500 rows a
/// statement, 1,000 paid pairs at once were paired into calls at 1,037 to
/// 1,113 connections/s; at 64, 1,819 to 2,031 (16: 1,749 to 1,937; 4: 1,714
/// to 1,726; one row each, a round trip per row: 1,548 to 1,836 at 20 %
/// more CPU). Alternating fresh servers and databases. The webhook events
/// stored with them keep [`EVENT_ROWS_PER_STATEMENT`].
pub(super) fn rows_per_statement(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 500,
        Backend::Postgres => 64,
    }
}

/// Writes committed together at most.
const MAX_BATCH: usize = 256;

/// One write, as the writer task applies it.
#[derive(Debug)]
pub(super) enum Write {
    UsersSeen(Vec<UserInfo>, Timestamp),
    CreateCall(CallRecord),
    CallTransition(CallId, CallState, Timestamp),
    CreateSession(SessionRecord),
    /// A call accepted at the session's opening, and the session it
    /// opened: both or neither.
    Accept(SessionRecord),
    SessionEvent(SessionId, SessionEvent, Timestamp),
    /// A meter event or checkpoint, made under the epoch.
    MeterEvent(SessionId, OwnerEpoch, MeterEvent, Timestamp),
    /// A settlement decision the meter stores itself, made under the epoch.
    Settlement(SessionId, OwnerEpoch, SessionBill, SessionEndReason, Timestamp),
    /// Billing's statements (a hold, a sandbox intent or cancellation, a
    /// settlement's records), run in order and atomically
    /// ([`parley_billing::Committer`]).
    Statements(Vec<Statement>),
}

impl Write {
    /// The session and epoch a fenced write is made under.
    fn fence(&self) -> Option<(&SessionId, OwnerEpoch)> {
        match self {
            Write::MeterEvent(id, epoch, ..) | Write::Settlement(id, epoch, ..) => Some((id, *epoch)),
            _ => None,
        }
    }
}

/// Why a write was not stored.
#[derive(Debug)]
pub(super) enum Refused {
    /// The database failed.
    Failed(StoreError),
    /// The session is owned under another epoch (fencing, issue 16).
    Fenced { mine: OwnerEpoch, current: OwnerEpoch },
}

/// A queued write and who waits for its outcome.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) write: Write,
    pub(super) done: Reply,
}

/// Where a write's outcome goes.
#[derive(Debug)]
pub(super) enum Reply {
    /// A store write: stored, or why not.
    Stored(oneshot::Sender<Result<(), Refused>>),
    /// [`Write::Statements`]: each statement's outcome, or the database's
    /// own error (a unique violation is the caller's to interpret).
    Ran(oneshot::Sender<Result<Vec<Done>, sqlx::Error>>),
}

/// What a committed batch did besides storing: the fenced writes that were
/// refused (index in the batch → the session's current epoch) and the
/// outcomes of [`Write::Statements`] (index → one per statement).
#[derive(Debug)]
struct Outcome {
    fenced: HashMap<usize, OwnerEpoch>,
    ran: HashMap<usize, Vec<Done>>,
}

/// The writer task: commits the queued writes in batches of up to
/// [`MAX_BATCH`], each in one transaction, up to [`lanes`] batches side by
/// side, then answers each write. Writes about the same call, session or
/// user ([`keys`]) commit in the order they were queued: a write waits
/// while a batch with one of its keys commits, and so does every later
/// write with one of its keys.
pub(super) async fn write_batches(
    pool: AnyPool,
    backend: Backend,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    signals: Signals,
) {
    let lanes = lanes(backend);
    // Fused: once the pool is closed it stays ready, so a lane that holds
    // a connection then gives it back at the next turn of the loop.
    let mut closed = pool.close_event();
    if lanes == 1 {
        let mut held = Held::new(pool);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            tokio::select! {
                n = jobs.recv_many(&mut batch, MAX_BATCH) => {
                    if n == 0 {
                        return;
                    }
                    batch = commit(&mut held, backend, batch, &signals).await;
                }
                () = &mut closed, if held.holds() => held.give_back(),
            }
        }
    }
    let signals = &signals;
    // Lanes not committing, with the connections they hold.
    let mut idle: Vec<Held> = Vec::with_capacity(lanes);
    let hasher = RandomState::new();
    // Received and not yet committing, in queue order, with their keys.
    let mut waiting: VecDeque<(Job, Vec<u64>)> = VecDeque::new();
    // The keys of the batches committing, with how many of their writes
    // hold each.
    let mut busy: HashMap<u64, usize> = HashMap::new();
    let mut committing = FuturesUnordered::new();
    let mut received = Vec::with_capacity(MAX_BATCH);
    let mut open = true;
    loop {
        while committing.len() < lanes {
            let batch = next_batch(&mut waiting, &busy);
            if batch.is_empty() {
                break;
            }
            let (batch, keys): (Vec<Job>, Vec<Vec<u64>>) = batch.into_iter().unzip();
            let keys: Vec<u64> = keys.into_iter().flatten().collect();
            for key in &keys {
                *busy.entry(*key).or_default() += 1;
            }
            let mut held = idle.pop().unwrap_or_else(|| Held::new(pool.clone()));
            committing.push(async move {
                commit(&mut held, backend, batch, signals).await;
                (held, keys)
            });
        }
        // Nothing committing means nothing waits: with no key busy, the
        // loop above took every waiting write.
        if !open && committing.is_empty() {
            return;
        }
        tokio::select! {
            Some((lane, keys)) = committing.next() => {
                for key in keys {
                    if let Entry::Occupied(mut held) = busy.entry(key) {
                        *held.get_mut() -= 1;
                        if *held.get() == 0 {
                            held.remove();
                        }
                    }
                }
                idle.push(lane);
            }
            () = &mut closed, if idle.iter().any(Held::holds) => idle.iter_mut().for_each(Held::give_back),
            n = jobs.recv_many(&mut received, MAX_BATCH), if open && committing.len() < lanes => {
                open = n > 0;
                waiting.extend(received.drain(..).map(|job| {
                    let keys = keys(&job.write, &hasher);
                    (job, keys)
                }));
            }
            else => return,
        }
    }
}

/// Commits `batch` in one transaction, then answers each write. If the
/// batch fails, each write is retried in its own transaction so one bad
/// write does not fail the others. Returns `batch`, emptied, for reuse.
async fn commit(held: &mut Held, backend: Backend, mut batch: Vec<Job>, signals: &Signals) -> Vec<Job> {
    let writes: Vec<&Write> = batch.iter().map(|job| &job.write).collect();
    let settles = writes.iter().any(|w| {
        matches!(w, Write::Settlement(..) | Write::SessionEvent(_, SessionEvent::Ended { bill: Some(_), .. }, _))
    });
    let announces = writes.iter().any(|w| {
        matches!(w, Write::CreateSession(_) | Write::Accept(_) | Write::SessionEvent(_, SessionEvent::Ended { .. }, _))
    });
    let ends = writes.iter().any(|w| matches!(w, Write::SessionEvent(_, SessionEvent::Ended { .. }, _)));
    let mut committed = write(held, backend, &writes).await;
    if let Err(e) = &committed {
        tracing::warn!(error = %e, writes = batch.len(), "batch write failed; retrying its writes one by one");
    }
    for (i, job) in batch.drain(..).enumerate() {
        let outcome = match &mut committed {
            Ok(outcome) => Ok((outcome.fenced.get(&i).copied(), outcome.ran.remove(&i))),
            Err(_) => write(held, backend, &[&job.write])
                .await
                .map(|mut outcome| (outcome.fenced.get(&0).copied(), outcome.ran.remove(&0))),
        };
        match job.done {
            Reply::Stored(done) => {
                let result = match outcome {
                    Ok((None, _)) => Ok(()),
                    Ok((Some(current), _)) => {
                        let mine = job.write.fence().map_or(current, |(_, e)| e);
                        Err(Refused::Fenced { mine, current })
                    }
                    Err(e) => Err(Refused::Failed(store_err(e))),
                };
                let _ = done.send(result);
            }
            Reply::Ran(done) => {
                let _ = done.send(outcome.map(|(_, ran)| ran.unwrap_or_default()));
            }
        }
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
    batch
}

/// Who the writer wakes after a commit.
pub(super) struct Signals {
    /// Billing's settlement outbox (a settlement decision was stored).
    pub(super) settled: Wake,
    /// The webhook worker (session events were stored).
    pub(super) webhooks: Wake,
    /// The booking scheduler (a session ended).
    pub(super) bookings: Wake,
}

/// Commits `writes` in one transaction with one multi-row statement per
/// table, in dependency order (a call before its events, a session before
/// its end). Triggers (migrations/*/0002) keep `calls.state` and
/// `sessions.ended_*` in step, row by row in order. Billing's statements
/// run last: single-row inserts in one multi-row insert per table, the
/// others each writer's in its order. Returns the fenced writes that
/// were refused and the statements' outcomes ([`Outcome`]); the others are
/// committed. A lone write that is one statement ([`stands_alone`]) is
/// committed as that statement, without a transaction around it. On the
/// lane's held connection, given back if the write fails ([`held`]).
async fn write(held: &mut Held, backend: Backend, writes: &[&Write]) -> Result<Outcome, sqlx::Error> {
    let written = write_on(held.get().await?, backend, writes).await;
    if written.is_err() {
        held.give_back();
    }
    written
}

/// [`write`] on `conn`.
async fn write_on(conn: &mut AnyConnection, backend: Backend, writes: &[&Write]) -> Result<Outcome, sqlx::Error> {
    if let [only] = writes
        && stands_alone(backend, only)
    {
        let ran = apply(conn, backend, writes, &HashMap::new()).await?;
        return Ok(Outcome { fenced: HashMap::new(), ran });
    }
    let mut tx = conn.begin().await?;
    let fenced = check_fences(&mut tx, backend, writes).await?;
    let ran = apply(&mut tx, backend, writes, &fenced).await?;
    tx.commit().await?;
    Ok(Outcome { fenced, ran })
}

/// Whether `write`, alone in a batch, is one statement on one table (its
/// triggers run inside that statement): atomic by itself, so it needs no
/// `BEGIN` and `COMMIT`, each a round trip to the connection's thread on
/// SQLite. At a steady call rate most batches hold one write: a user seen,
/// a call created or moved on, a join.
fn stands_alone(backend: Backend, write: &Write) -> bool {
    match write {
        Write::UsersSeen(users, _) => users.len() <= rows_per_statement(backend),
        Write::CreateCall(_) | Write::CallTransition(..) => true,
        Write::SessionEvent(_, event, _) => !matches!(event, SessionEvent::Ended { .. }),
        Write::Statements(statements) => statements.len() == 1,
        Write::CreateSession(_) | Write::Accept(_) | Write::MeterEvent(..) | Write::Settlement(..) => false,
    }
}

/// Applies `writes` on `conn` (in the caller's transaction, if any) with
/// one multi-row statement per table, skipping the `fenced` ones, then
/// billing's statements; returns their outcomes by index in `writes`.
async fn apply(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    writes: &[&Write],
    fenced: &HashMap<usize, OwnerEpoch>,
) -> Result<HashMap<usize, Vec<Done>>, sqlx::Error> {
    let mut users: Vec<(&UserInfo, Timestamp)> = Vec::new();
    let (mut calls, mut transitions, mut sessions, mut events) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut meter_events, mut checkpoints, mut settlements) = (Vec::new(), Vec::new(), Vec::new());
    // Billing's writes: single-row inserts (`Statement::insert`) of writers
    // that sent nothing else, grouped by table and columns, go in one
    // insert per group (`rows::insert`); every other statement runs on its
    // own, each writer's in order.
    let mut rows: Vec<RowGroup<'_>> = Vec::new();
    let mut statements = Vec::new();
    for (i, w) in writes.iter().enumerate() {
        if fenced.contains_key(&i) {
            continue;
        }
        match w {
            Write::MeterEvent(id, _, MeterEvent::Checkpoint(s), at) => checkpoints.push((id, *s, *at)),
            Write::MeterEvent(id, _, event, at) => meter_events.push((id, event, *at)),
            Write::Settlement(id, _, bill, reason, at) => settlements.push((id, *bill, *reason, *at)),

            Write::UsersSeen(us, at) => users.extend(us.iter().map(|u| (u, *at))),
            Write::CreateCall(c) => calls.push(c),
            Write::CallTransition(id, state, at) => transitions.push((id, *state, *at)),
            Write::CreateSession(s) => sessions.push(s),
            Write::Accept(s) => {
                transitions.push((&s.call_id, CallState::Accepted, s.opened_at));
                sessions.push(s);
            }
            Write::Statements(batch) => match row_insert(batch) {
                Some((into, values)) => match rows.iter_mut().find(|(t, n, _)| *t == into && *n == values.len()) {
                    Some((_, _, group)) => group.push((i, values)),
                    None => rows.push((into, values.len(), vec![(i, values)])),
                },
                None => statements.push((i, batch)),
            },
            Write::SessionEvent(id, event, at) => {
                if let SessionEvent::Ended { reason, bill: Some(bill), .. } = event {
                    settlements.push((id, *bill, *reason, *at));
                }
                events.push((id, event, *at));
            }
        }
    }
    // A row may be upserted once per statement (PostgreSQL): the last wins.
    let mut seen = HashSet::with_capacity(users.len());
    users.reverse();
    users.retain(|(u, _)| seen.insert(&u.id));

    for chunk in users.chunks(rows_per_statement(backend)) {
        let sql = format!(
            "INSERT INTO users (id, name, role, first_seen_ms, last_seen_ms) VALUES {} \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, \
             last_seen_ms = excluded.last_seen_ms",
            placeholders(backend, chunk.len(), 5)
        );
        let mut q = multi_row(sql, chunk.len());
        for (u, at) in chunk {
            let at = at.unix_millis();
            q = q.bind(u.id.as_str()).bind(&u.name).bind(u.role.as_str()).bind(at).bind(at);
        }
        q.execute(&mut *conn).await?;
    }
    for chunk in calls.chunks(rows_per_statement(backend)) {
        // The `calls_first_event` trigger records each `requested` event.
        let sql = format!(
            "INSERT INTO calls (id, session_id, seeker_id, consultant_id, state, created_ms, updated_ms) VALUES {}",
            placeholders(backend, chunk.len(), 7)
        );
        let mut q = multi_row(sql, chunk.len());
        for c in chunk {
            q = q
                .bind(c.call_id.as_str())
                .bind(c.session_id.as_str())
                .bind(c.seeker_id.as_str())
                .bind(c.consultant_id.as_str())
                .bind(CallState::Requested.as_str())
                .bind(c.created_at.unix_millis())
                .bind(c.created_at.unix_millis());
        }
        q.execute(&mut *conn).await?;
    }
    for chunk in transitions.chunks(rows_per_statement(backend)) {
        let sql =
            format!("INSERT INTO call_events (call_id, state, at_ms) VALUES {}", placeholders(backend, chunk.len(), 3));
        let mut q = multi_row(sql, chunk.len());
        for (id, state, at) in chunk {
            q = q.bind(id.as_str()).bind(state.as_str()).bind(at.unix_millis());
        }
        q.execute(&mut *conn).await?;
    }
    for chunk in sessions.chunks(rows_per_statement(backend)) {
        let sql = format!(
            "INSERT INTO sessions (id, call_id, kind, seeker_id, consultant_id, opened_ms, recording) VALUES {}",
            placeholders(backend, chunk.len(), 7)
        );
        let mut q = multi_row(sql, chunk.len());
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
        q.execute(&mut *conn).await?;
    }
    for chunk in events.chunks(rows_per_statement(backend)) {
        // For `ended`, the `session_events_end` trigger marks the session
        // ended (the first end wins).
        let sql = format!(
            "INSERT INTO session_events (session_id, kind, user_id, detail, at_ms) VALUES {}",
            placeholders(backend, chunk.len(), 5)
        );
        let mut q = multi_row(sql, chunk.len());
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
        q.execute(&mut *conn).await?;
    }
    // Webhook events (session.started / session.ended) with the facts they
    // announce (docs/protocol.md §14).
    let ended: Vec<_> = events
        .iter()
        .filter(|(_, e, _)| matches!(e, SessionEvent::Ended { .. }))
        .map(|(id, e, at)| (*id, *e, *at))
        .collect();
    outbox::session_events(conn, backend, &sessions, &ended).await?;
    // The settlement decision, in the same transaction as the session's end
    // (DESIGN.md B3): a second decision for a session is ignored.
    for (id, bill, reason, at) in settlements {
        parley_billing::insert_settlement(conn, id, &bill, reason.as_str(), at).await?;
    }
    for chunk in meter_events.chunks(rows_per_statement(backend)) {
        let sql = format!(
            "INSERT INTO meter_events (session_id, kind, billable_secs, at_ms) VALUES {}",
            placeholders(backend, chunk.len(), 4)
        );
        let mut q = multi_row(sql, chunk.len());
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
        q.execute(&mut *conn).await?;
    }
    // Checkpoints (M9): one row per session, the latest wins; billable time
    // only grows, so a late write of an older checkpoint (a driver task
    // behind the shutdown drain) never takes time back.
    let mut seen = HashSet::with_capacity(checkpoints.len());
    checkpoints.reverse();
    checkpoints.retain(|(id, _, _)| seen.insert(*id));
    for chunk in checkpoints.chunks(rows_per_statement(backend)) {
        let sql = format!(
            "INSERT INTO meter_checkpoints (session_id, billable_ms, warned, billing_started, hold_warned, at_ms) \
             VALUES {} ON CONFLICT (session_id) DO UPDATE SET billable_ms = excluded.billable_ms, \
             warned = excluded.warned, billing_started = excluded.billing_started, \
             hold_warned = excluded.hold_warned, at_ms = excluded.at_ms \
             WHERE meter_checkpoints.billable_ms <= excluded.billable_ms",
            placeholders(backend, chunk.len(), 6)
        );
        let mut q = multi_row(sql, chunk.len());
        for (id, s, at) in chunk {
            q = q
                .bind(id.as_str())
                .bind(i64::try_from(s.billable_ms).unwrap_or(i64::MAX))
                .bind(i64::from(s.warned))
                .bind(i64::from(s.billing_started))
                .bind(i64::from(s.hold_warned))
                .bind(at.unix_millis());
        }
        q.execute(&mut *conn).await?;
    }
    let mut ran = HashMap::with_capacity(statements.len() + rows.iter().map(|(_, _, g)| g.len()).sum::<usize>());
    rows::insert(conn, backend, &rows, &mut ran).await?;
    for (i, batch) in statements {
        let mut done = Vec::with_capacity(batch.len());
        for statement in batch {
            done.push(statement.run(conn).await?);
        }
        ran.insert(i, done);
    }
    Ok(ran)
}

/// Locks the rows of the sessions `writes` has fenced writes for (a no-op
/// `UPDATE`: row locks on PostgreSQL, the write lock on SQLite, so a
/// takeover's epoch bump waits for this transaction) and returns the
/// fenced writes whose epoch is not their session's current one. A session
/// with no row is not fenced.
async fn check_fences(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    writes: &[&Write],
) -> Result<HashMap<usize, OwnerEpoch>, sqlx::Error> {
    let mut ids: Vec<&str> = writes.iter().filter_map(|w| w.fence()).map(|(id, _)| id.as_str()).collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    ids.sort_unstable();
    ids.dedup();
    let mut current: HashMap<String, OwnerEpoch> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(rows_per_statement(backend)) {
        let sql = format!(
            "UPDATE sessions SET owner_epoch = owner_epoch WHERE id IN {} RETURNING id, owner_epoch",
            placeholders(backend, 1, chunk.len())
        );
        let mut q = multi_row(sql, chunk.len());
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut **tx).await? {
            let epoch: i64 = row.try_get("owner_epoch")?;
            current.insert(row.try_get("id")?, OwnerEpoch(u64::try_from(epoch).unwrap_or(0)));
        }
    }
    Ok(writes
        .iter()
        .enumerate()
        .filter_map(|(i, w)| {
            let (id, mine) = w.fence()?;
            let now = *current.get(id.as_str())?;
            (now != mine).then_some((i, now))
        })
        .collect())
}

/// The query of `sql`, a statement for `rows` rows (or list items) made
/// with [`placeholders`]: kept prepared on its connection only when it is
/// one row, the usual case at a steady call rate. Each row count is a
/// statement of its own, and a prepared statement of hundreds of rows is
/// large: kept, they filled sqlx's cache (100 statements per connection)
/// and took 1.5 KiB per connection in calls after a burst of 1,000 paid
/// calls.
pub(super) fn multi_row<'q>(sql: String, rows: usize) -> Query<'q, Any, AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(rows == 1)
}

/// `rows` groups of `columns` placeholders for a multi-row `VALUES`, one
/// per bound value, in order: `($1, $2), ($3, $4)` on PostgreSQL, `(?, ?),
/// (?, ?)` on SQLite. Only these are spliced into SQL; every value is
/// bound.
///
/// SQLite takes `$N` too, but as a *name*: preparing looks each one up
/// among the statement's earlier names, and binding looks each number's
/// name up again, one by one, so a statement of P parameters costs O(P²).
/// With 500 rows of 7 that was 10 % of the server's CPU in a burst of
/// 1,000 calls (perf, `parley-load signal`). Anonymous `?` are numbered in
/// order and have no name to look up.
pub(super) fn placeholders(backend: Backend, rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 7);
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(r * columns + c + 1).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_each_rows_values() {
        assert_eq!(placeholders(Backend::Postgres, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(Backend::Sqlite, 2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(placeholders(Backend::Postgres, 1, 1), "($1)");
    }
}
