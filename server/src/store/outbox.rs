//! The webhook outbox (`webhook_outbox`, docs/protocol.md §14): events for
//! the operator's platform are rows, written in the same transaction as the
//! fact they announce where that is possible (session start and end in the
//! store's writer, a review with its insert), so nothing is announced that
//! is not stored and nothing stored is lost on a crash. The webhook worker
//! (the webhooks area) delivers them; areas only store them here.

use std::collections::HashMap;
use std::sync::Arc;

use parley_billing::Statement;
use parley_domain::clock::Wake;
use parley_domain::protocol::rest::{
    EVENT_ID_PREFIX, SessionEndedData, SessionStartedData, WebhookEvent, WebhookEventType,
};
use parley_domain::{Clock, SessionId, Timestamp, UserId};
use parley_signaling::store::{SessionEvent, SessionRecord};
use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, Row};

use super::Backend;
use super::writer::{EVENT_ROWS_PER_STATEMENT, multi_row, placeholders};

/// A webhook failure that is not the receiver's.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The database failed.
    #[error("webhook outbox: {0}")]
    Db(#[from] sqlx::Error),
    /// The payload did not serialise.
    #[error("webhook payload: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored value did not parse.
    #[error("webhook data: {0}")]
    Data(String),
}

/// A new event id: `evt_` + UUIDv7 (time-ordered), 36 characters.
pub fn new_event_id() -> String {
    format!("{EVENT_ID_PREFIX}{}", uuid::Uuid::now_v7().simple())
}

/// An event ready to be stored: its id and the exact body every delivery
/// attempt sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// `evt_…`.
    pub id: String,
    /// Its type.
    pub event_type: WebhookEventType,
    /// `{"id","type","created_ms","data"}`.
    pub body: String,
    /// When it happened.
    pub created: Timestamp,
    /// At most one event is stored per key (e.g. `session.ended:<session>`).
    pub dedupe_key: Option<String>,
}

impl NewEvent {
    /// A new event of `event_type` with `data`, created at `at`.
    pub fn new(
        event_type: WebhookEventType,
        data: &impl Serialize,
        at: Timestamp,
        dedupe_key: Option<String>,
    ) -> Result<NewEvent, serde_json::Error> {
        let id = new_event_id();
        let body =
            serde_json::to_string(&WebhookEvent { id: id.clone(), event_type, created_ms: at.unix_millis(), data })?;
        Ok(NewEvent { id, event_type, body, created: at, dedupe_key })
    }
}

/// Stores `event` inside the caller's transaction (so it is committed with
/// the fact it announces); false if an event with its dedupe key exists.
/// Call [`Outbox::wake`] after the commit.
pub async fn insert_event(conn: &mut AnyConnection, event: &NewEvent) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO webhook_outbox (id, type, body, dedupe_key, created_ms, next_attempt_ms) \
         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
    )
    .bind(&event.id)
    .bind(event.event_type.as_str())
    .bind(&event.body)
    .bind(event.dedupe_key.as_deref())
    .bind(event.created.unix_millis())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The store writer's part (inside its transaction): `session.started` for
/// each session stored, `session.ended` for each end (once per session).
/// However many sessions a batch starts or ends, that is one read of the
/// ended sessions and one insert of the events per
/// [`EVENT_ROWS_PER_STATEMENT`] (each statement a round trip to the connection's
/// thread on SQLite). An end for a session not stored is logged and
/// announces nothing.
pub(crate) async fn session_events(
    conn: &mut AnyConnection,
    backend: Backend,
    started: &[&SessionRecord],
    ended: &[(&SessionId, &SessionEvent, Timestamp)],
) -> Result<(), sqlx::Error> {
    let encode = |e: serde_json::Error| sqlx::Error::Encode(Box::new(e));
    let mut events = Vec::with_capacity(started.len() + ended.len());
    for s in started {
        let data = SessionStartedData {
            session_id: s.session_id.clone(),
            call_id: s.call_id.clone(),
            seeker_id: s.seeker_id.clone(),
            consultant_id: s.consultant_id.clone(),
            opened_at_ms: s.opened_at.unix_millis(),
            recording: s.recording,
        };
        let key = format!("session.started:{}", s.session_id);
        events.push(NewEvent::new(WebhookEventType::SessionStarted, &data, s.opened_at, Some(key)).map_err(encode)?);
    }
    let ended: Vec<_> = ended
        .iter()
        .filter_map(|(id, event, at)| match event {
            SessionEvent::Ended { reason, by, bill } => Some((*id, reason, by, bill, *at)),
            _ => None,
        })
        .collect();
    for chunk in ended.chunks(EVENT_ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT id, call_id, seeker_id, consultant_id, opened_ms FROM sessions WHERE id IN {}",
            placeholders(backend, 1, chunk.len())
        );
        let mut q = multi_row(sql, chunk.len());
        for (id, ..) in chunk {
            q = q.bind(id.as_str());
        }
        let rows = q.fetch_all(&mut *conn).await?;
        let mut stored = HashMap::with_capacity(rows.len());
        for row in rows {
            stored.insert(row.try_get::<String, _>("id")?, row);
        }
        for (id, reason, by, bill, at) in chunk {
            let Some(row) = stored.get(id.as_str()) else {
                tracing::warn!(session_id = %id, "session.ended for a session not stored; no webhook");
                continue;
            };
            let parse = |col: &str| -> Result<String, sqlx::Error> { row.try_get::<String, _>(col) };
            let bad = |e: parley_domain::IdError| sqlx::Error::Decode(Box::new(e));
            let data = SessionEndedData {
                session_id: (*id).clone(),
                call_id: parley_domain::CallId::parse(parse("call_id")?).map_err(bad)?,
                seeker_id: UserId::parse(parse("seeker_id")?).map_err(bad)?,
                consultant_id: UserId::parse(parse("consultant_id")?).map_err(bad)?,
                opened_at_ms: row.try_get("opened_ms")?,
                ended_at_ms: at.unix_millis(),
                reason: **reason,
                ended_by: (*by).clone(),
                bill: **bill,
            };
            let key = format!("session.ended:{id}");
            events.push(NewEvent::new(WebhookEventType::SessionEnded, &data, *at, Some(key)).map_err(encode)?);
        }
    }
    for chunk in events.chunks(EVENT_ROWS_PER_STATEMENT) {
        // Rows are inserted in order: of two with one dedupe key (a
        // session ended twice in one batch), the first stands.
        let sql = format!(
            "INSERT INTO webhook_outbox (id, type, body, dedupe_key, created_ms, next_attempt_ms) VALUES {} \
             ON CONFLICT DO NOTHING",
            placeholders(backend, chunk.len(), 6)
        );
        let mut q = multi_row(sql, chunk.len());
        for e in chunk {
            let at = e.created.unix_millis();
            q = q.bind(&e.id).bind(e.event_type.as_str()).bind(&e.body).bind(e.dedupe_key.as_deref()).bind(at).bind(at);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The webhook worker's writes for a pass of finished settlements, as
/// billing's [`Statement`]s for the store's writer (committed together, in
/// order): `events` inserted, each unless an event with its dedupe key is
/// stored (`ON CONFLICT DO NOTHING`; no statement without events), then
/// the settlements of `sessions` marked announced where they are not yet.
/// Placeholders as [`placeholders`] writes them (anonymous on SQLite: a
/// numbered name costs a lookup per parameter there); not kept prepared,
/// since their texts vary with the counts. At most [`EVENT_ROWS_PER_STATEMENT`]
/// events and sessions.
pub fn settled_statements(backend: Backend, events: &[NewEvent], sessions: Vec<String>) -> Vec<Statement> {
    let mut statements = Vec::with_capacity(2);
    if !events.is_empty() {
        let sql = format!(
            "INSERT INTO webhook_outbox (id, type, body, dedupe_key, created_ms, next_attempt_ms) VALUES {} \
             ON CONFLICT DO NOTHING",
            placeholders(backend, events.len(), 6)
        );
        let insert = events.iter().fold(Statement::new(sql).transient(), |q, e| {
            let at = e.created.unix_millis();
            q.bind(e.id.as_str())
                .bind(e.event_type.as_str())
                .bind(e.body.as_str())
                .bind(e.dedupe_key.as_deref())
                .bind(at)
                .bind(at)
        });
        statements.push(insert);
    }
    let sql = format!(
        "UPDATE settlements SET announced = 1 WHERE announced = 0 AND session_id IN {}",
        placeholders(backend, 1, sessions.len())
    );
    statements.push(sessions.into_iter().fold(Statement::new(sql).transient(), Statement::bind));
    statements
}

/// Stores events and wakes the delivery worker. Share as `Arc<Outbox>`.
pub struct Outbox {
    pool: AnyPool,
    clock: Arc<dyn Clock>,
    wake: Wake,
}

impl Outbox {
    /// The outbox over `pool` (migrated by the store); `wake` is the
    /// delivery worker's signal (the store's
    /// [`webhook_signal`](super::SqlStore::webhook_signal)).
    pub fn new(pool: AnyPool, clock: Arc<dyn Clock>, wake: Wake) -> Arc<Outbox> {
        Arc::new(Outbox { pool, clock, wake })
    }

    /// Stores an event of `event_type` with `data`, created now, and wakes
    /// the worker. Returns its id.
    pub async fn emit(&self, event_type: WebhookEventType, data: &impl Serialize) -> Result<String, OutboxError> {
        let event = NewEvent::new(event_type, data, self.clock.now(), None)?;
        let mut conn = self.pool.acquire().await?;
        insert_event(&mut conn, &event).await?;
        self.wake();
        Ok(event.id)
    }

    /// Like [`Outbox::emit`], but at most once per `dedupe_key` (e.g.
    /// `booking.reminder:<booking>`): `None` if that key was used before.
    pub async fn emit_once(
        &self,
        dedupe_key: &str,
        event_type: WebhookEventType,
        data: &impl Serialize,
    ) -> Result<Option<String>, OutboxError> {
        let event = NewEvent::new(event_type, data, self.clock.now(), Some(dedupe_key.to_owned()))?;
        let mut conn = self.pool.acquire().await?;
        let stored = insert_event(&mut conn, &event).await?;
        self.wake();
        Ok(stored.then_some(event.id))
    }

    /// Wakes the worker: an event was stored.
    pub fn wake(&self) {
        self.wake.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_body_is_the_envelope_with_its_id() {
        let at = Timestamp::from_unix_millis(1_700_000_000_123);
        let e = NewEvent::new(WebhookEventType::ReviewCreated, &serde_json::json!({"stars": 5}), at, None).unwrap();
        assert!(e.id.starts_with("evt_") && e.id.len() == 36, "{}", e.id);
        let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": e.id, "type": "review.created", "created_ms": 1_700_000_000_123_i64, "data": {"stars": 5}})
        );
        assert_ne!(new_event_id(), new_event_id());
    }
}
