//! The `bookings` rows: their columns, reading one, the per-consultant
//! lock every command takes, the queries the scheduler runs, and the
//! booking webhooks.

use parley_domain::protocol::rest::{
    Availability, Booking, BookingPrice, BookingState, PriceModel, Purpose, WebhookEventType,
};
use parley_domain::protocol::{ErrorCode, Role, ServerMessage, UserInfo};
use parley_domain::{CallId, Currency, Money, SessionId, Timestamp, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::rules::{NO_SHOW_AFTER, ROOM_OPENS_BEFORE, ms};
use super::schedule::Schedule;
use crate::kernel::{ApiError, AppState};

/// A database error as a 500.
pub(crate) fn db(e: sqlx::Error) -> ApiError {
    ApiError::Internal(e.to_string())
}

pub(crate) const COLUMNS: &str = "id, session_id, call_id, seeker_id, consultant_id, purpose, length_min, proposed, state, \
    start_ms, end_ms, respond_by_ms, price_model, price_minor, currency, payment_method, record, seeker_name, \
    seeker_premium, hold_status, hold_due_ms, hold_error, reminders_sent, reason, cancelled_by, fee_minor, created_ms, \
    updated_ms, engagement_id, COALESCE((SELECT p.display_name FROM profiles p WHERE p.consultant_id = bookings.consultant_id), \
    (SELECT u.name FROM users u WHERE u.id = bookings.consultant_id), bookings.consultant_id) AS consultant_name";

/// A stored booking and what only the server needs of it.
pub(crate) struct StoredBooking {
    pub(crate) booking: Booking,
    pub(crate) call_id: CallId,
    pub(crate) payment_method: Option<String>,
    pub(crate) seeker_name: String,
    pub(crate) hold_due_ms: Option<i64>,
    /// When the row last changed (Unix ms): the `placing` claim's lease.
    pub(crate) updated_ms: i64,
    /// The package engagement the session draws from instead of a hold (E2).
    pub(crate) engagement_id: Option<String>,
}

pub(crate) fn read(r: &AnyRow) -> Result<StoredBooking, ApiError> {
    let e = |e: sqlx::Error| ApiError::Internal(e.to_string());
    let internal = |m: String| ApiError::Internal(m);
    let proposed: String = r.try_get("proposed").map_err(e)?;
    let state: String = r.try_get("state").map_err(e)?;
    let purpose: String = r.try_get("purpose").map_err(e)?;
    let model: Option<String> = r.try_get("price_model").map_err(e)?;
    let currency: Option<String> = r.try_get("currency").map_err(e)?;
    let price_minor: Option<i64> = r.try_get("price_minor").map_err(e)?;
    let currency = currency.map(|c| Currency::parse(&c)).transpose().map_err(|x| internal(x.to_string()))?;
    let price = match (model, price_minor, currency) {
        (Some(m), Some(a), Some(c)) => Some(BookingPrice {
            model: PriceModel::parse(&m).ok_or_else(|| internal(format!("price model {m}")))?,
            amount: Money::new(a, c),
        }),
        _ => None,
    };
    let fee: Option<i64> = r.try_get("fee_minor").map_err(e)?;
    let start_ms: Option<i64> = r.try_get("start_ms").map_err(e)?;
    let length: i64 = r.try_get("length_min").map_err(e)?;
    let id = |col: &str| -> Result<String, ApiError> { r.try_get::<String, _>(col).map_err(e) };
    let cancelled_by: Option<String> = r.try_get("cancelled_by").map_err(e)?;
    Ok(StoredBooking {
        booking: Booking {
            id: id("id")?,
            session_id: SessionId::parse(id("session_id")?).map_err(|x| internal(x.to_string()))?,
            seeker_id: UserId::parse(id("seeker_id")?).map_err(|x| internal(x.to_string()))?,
            consultant_id: UserId::parse(id("consultant_id")?).map_err(|x| internal(x.to_string()))?,
            seeker_name: id("seeker_name")?,
            consultant_name: id("consultant_name")?,
            purpose: Purpose::parse(&purpose).ok_or_else(|| internal(format!("purpose {purpose}")))?,
            length_min: u32::try_from(length).unwrap_or(0),
            proposed: serde_json::from_str(&proposed).map_err(|x| internal(x.to_string()))?,
            state: BookingState::parse(&state).ok_or_else(|| internal(format!("booking state {state}")))?,
            start_ms,
            opens_at_ms: start_ms.map(|s| s - ms(ROOM_OPENS_BEFORE)),
            respond_by_ms: r.try_get("respond_by_ms").map_err(e)?,
            hold_status: r.try_get("hold_status").map_err(e)?,
            hold_error: r.try_get("hold_error").map_err(e)?,
            record: r.try_get::<i64, _>("record").map_err(e)? != 0,
            reason: r.try_get("reason").map_err(e)?,
            cancelled_by: cancelled_by.map(UserId::parse).transpose().map_err(|x| internal(x.to_string()))?,
            cancellation_fee: match (fee, &price) {
                (Some(f), Some(p)) => Some(Money::new(f, p.amount.currency)),
                _ => None,
            },
            price,
            created_ms: r.try_get("created_ms").map_err(e)?,
        },
        call_id: CallId::parse(id("call_id")?).map_err(|x| internal(x.to_string()))?,
        payment_method: r.try_get("payment_method").map_err(e)?,
        seeker_name: id("seeker_name")?,
        hold_due_ms: r.try_get("hold_due_ms").map_err(e)?,
        updated_ms: r.try_get("updated_ms").map_err(e)?,
        engagement_id: r.try_get("engagement_id").map_err(e)?,
    })
}

pub(crate) async fn load(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Option<StoredBooking>, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM bookings WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *conn).await.map_err(db)?;
    row.as_ref().map(read).transpose()
}

/// A booking `me` is part of (moderators see all), or `unknown_booking`.
pub(crate) async fn mine(s: &AppState, me: &UserInfo, id: &str) -> Result<StoredBooking, ApiError> {
    let mut conn = s.store.pool().acquire().await.map_err(db)?;
    match load(&mut conn, id).await? {
        Some(b) if me.role == Role::Moderator || b.booking.seeker_id == me.id || b.booking.consultant_id == me.id => {
            Ok(b)
        }
        _ => Err(ApiError::NotFound(ErrorCode::UnknownBooking, format!("no booking {id} of yours"))),
    }
}

/// Takes the per-consultant lock inside `tx` (its first statement, so it
/// serialises with the other commands on that consultant's bookings on both
/// backends: SQLite's one writer, PostgreSQL's row lock). The writes of the
/// consultant's availability and profile take it too: each keeps the
/// other's time zone and lengths in step.
pub(crate) async fn lock_consultant(tx: &mut sqlx::AnyConnection, consultant: &UserId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO booking_locks (consultant_id, version) VALUES ($1, 1) \
         ON CONFLICT (consultant_id) DO UPDATE SET version = booking_locks.version + 1",
    )
    .bind(consultant.as_str())
    .execute(&mut *tx)
    .await
    .map(|_| ())
}

pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A transaction holding the lock of booking `id`'s consultant, and the
/// booking as it is under that lock (`None`: no such booking). Every
/// command that changes a booking or its hold reads the booking here and
/// writes it before committing, so the transitions of one booking happen
/// one at a time, each on the state the previous one left (issue 13): the
/// booking and its hold form one state machine, never a stale read.
pub(crate) async fn locked(s: &AppState, id: &str) -> Result<Option<(Tx, StoredBooking)>, ApiError> {
    // The consultant never changes: read it first, outside the lock, so the
    // lock is the transaction's first statement (a SQLite transaction that
    // reads before it writes may not be allowed to write).
    let consultant: Option<String> = sqlx::query_scalar("SELECT consultant_id FROM bookings WHERE id = $1")
        .bind(id)
        .fetch_optional(&s.store.pool())
        .await
        .map_err(db)?;
    let Some(consultant) = consultant else { return Ok(None) };
    let consultant = UserId::parse(consultant).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut tx = s.store.pool().begin().await.map_err(db)?;
    lock_consultant(&mut tx, &consultant).await.map_err(db)?;
    let row = load(&mut tx, id).await?;
    Ok(row.map(|row| (tx, row)))
}

/// [`locked`] for a command of `me`, who must be the booking's seeker or
/// consultant (or a moderator): `unknown_booking` otherwise.
pub(crate) async fn locked_mine(s: &AppState, me: &UserInfo, id: &str) -> Result<(Tx, StoredBooking), ApiError> {
    match locked(s, id).await? {
        Some((tx, b))
            if me.role == Role::Moderator || b.booking.seeker_id == me.id || b.booking.consultant_id == me.id =>
        {
            Ok((tx, b))
        }
        _ => Err(ApiError::NotFound(ErrorCode::UnknownBooking, format!("no booking {id} of yours"))),
    }
}

/// The authorised amount of `session`'s hold, if it is `held`.
pub(crate) async fn held_amount(tx: &mut sqlx::AnyConnection, session: &SessionId) -> Result<Option<Money>, ApiError> {
    let row = sqlx::query("SELECT amount_minor, currency FROM holds WHERE session_id = $1 AND status = 'held'")
        .bind(session.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
    row.map(|r| {
        let currency: String = r.try_get("currency").map_err(db)?;
        let currency = Currency::parse(&currency).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Money::new(r.try_get("amount_minor").map_err(db)?, currency))
    })
    .transpose()
}

/// The no-show time (start + 15 min) of the booked session `session_id`
/// whose room has opened (`held`), for restoring it after a restart; `None`
/// for other sessions.
pub(crate) async fn no_show_time(
    pool: &sqlx::AnyPool,
    session_id: &SessionId,
) -> Result<Option<Timestamp>, sqlx::Error> {
    let start: Option<Option<i64>> =
        sqlx::query_scalar("SELECT start_ms FROM bookings WHERE session_id = $1 AND state = 'held'")
            .bind(session_id.as_str())
            .fetch_optional(pool)
            .await?;
    Ok(start.flatten().map(|start| Timestamp::from_unix_millis(start + ms(NO_SHOW_AFTER))))
}

pub(crate) async fn due(s: &AppState, sql: &str, now: i64) -> Result<Vec<StoredBooking>, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM bookings WHERE {sql} ORDER BY start_ms LIMIT 100");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).fetch_all(&s.store.pool()).await.map_err(db)?;
    rows.iter().map(read).collect()
}

/// Hands a booking event to the outgoing webhooks (docs/protocol.md §14),
/// once per event, booking, session and `tag` (a retried step does not
/// announce twice). The payload is the [`Booking`].
pub(crate) async fn emit_tagged(s: &AppState, kind: WebhookEventType, booking: &Booking, tag: &str) {
    let key = format!("{}:{}:{}:{tag}", kind.as_str(), booking.id, booking.session_id);
    if let Err(e) = s.webhooks.emit_once(&key, kind, booking).await {
        tracing::error!(event = kind.as_str(), booking_id = %booking.id, error = %e, "failed to store a booking webhook");
    }
    push(s, &booking.id).await;
}

/// Tells both sides of booking `id` what it is now (`booking.updated`,
/// docs/protocol.md §7.22), on their live connections. Read afresh, and
/// read and handed to the hub under the node's push lock: pushes of rival
/// changes (an accept and the scheduler placing its hold, a cancel and a
/// reschedule) reach each side in the order they were read, so the last one
/// a side gets is the booking as stored. Best effort: a client that was
/// away reads `GET /v1/bookings` when it reconnects.
pub(crate) async fn push(s: &AppState, id: &str) {
    // The connection is taken before the lock: a push waiting for the lock
    // never holds it while it waits for the pool.
    let mut conn = match s.store.pool().acquire().await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(booking_id = id, error = %e, "failed to read a booking to push it");
            return;
        }
    };
    let _in_order = s.pushes.lock().await;
    match load(&mut conn, id).await {
        Ok(Some(row)) => {
            let b = row.booking;
            let (seeker, consultant) = (b.seeker_id.clone(), b.consultant_id.clone());
            let msg = ServerMessage::BookingUpdated { booking: Box::new(b) };
            s.hub.notify_user(&seeker, &msg);
            s.hub.notify_user(&consultant, &msg);
        }
        Ok(None) => {}
        Err(e) => tracing::error!(booking_id = id, error = %e, "failed to read a booking to push it"),
    }
}

pub(crate) async fn emit(s: &AppState, kind: WebhookEventType, booking: &Booking) {
    emit_tagged(s, kind, booking, "").await;
}

/// Keeps a consultant's availability in step with their profile's time
/// zone and session lengths (one source each for display and scheduling),
/// inside the profile write's transaction. Nothing if they have no
/// availability yet, or if the profile's lengths are not bookable lengths.
pub async fn follow_profile(
    tx: &mut sqlx::AnyConnection,
    consultant: &UserId,
    time_zone: &str,
    lengths: &[u32],
) -> Result<(), sqlx::Error> {
    let Some(row) = sqlx::query("SELECT rules FROM availability WHERE consultant_id = $1")
        .bind(consultant.as_str())
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(());
    };
    let rules: String = row.try_get("rules")?;
    let Ok(mut a) = serde_json::from_str::<Availability>(&rules) else { return Ok(()) };
    a.time_zone = time_zone.to_owned();
    a.session_lengths_min = lengths.to_vec();
    if Schedule::new(&a).is_err() {
        return Ok(());
    }
    sqlx::query("UPDATE availability SET time_zone = $2, rules = $3 WHERE consultant_id = $1")
        .bind(consultant.as_str())
        .bind(time_zone)
        .bind(serde_json::to_string(&a).expect("availability serialises"))
        .execute(&mut *tx)
        .await?;
    Ok(())
}
