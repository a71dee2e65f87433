//! Scheduled sessions (DESIGN.md §3, issue 4): availability, bookable
//! slots, bookings and the scheduler that carries them to a room.
//!
//! A seeker proposes 1–3 slots; the consultant accepts one (or declines)
//! within 72 hours and before the first proposed start. Accepting fixes the
//! slot under a per-consultant lock row, so of two bookings for one slot
//! exactly one is confirmed (`slot_taken` for the other). The payment hold
//! (B2) is placed at confirmation if the start is within 6 days, else 24
//! hours before the start ([`run`]); since a hold lasts 7 days, it never
//! expires before its session (B6). Reminders go out 24 hours before and
//! when the room opens (10 minutes before the start), as `booking.reminder`
//! and as a webhook. The room opens through [`Hub::open_scheduled`]: joins
//! before that get `room_not_open`; a participant absent 15 minutes after
//! the start is a no-show (the session ends `no_show`): the hold is
//! released, unless only the seeker stayed away under the `charge` policy
//! (`PARLEY_SEEKER_NO_SHOW`), when they pay the late-cancellation fee.
//! Cancelling more than 24 hours ahead is free; later, a seeker
//! pays `late_cancel_fee_percent` of the hold (the consultant cancelling
//! never costs the seeker). Rescheduling (more than 24 hours ahead) puts
//! the booking back to pending with new slots and a new session id; the
//! old hold is released.
//!
//! [`Hub::open_scheduled`]: parley_signaling::Hub::open_scheduled

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use parley_domain::protocol::rest::{
    AcceptBooking, Availability, Booking, BookingList, BookingPrice, BookingReason, BookingRequest, BookingState,
    ConsultantPrice, PriceModel, Purpose, RescheduleBooking, SlotList, WebhookEventType,
};
use parley_domain::protocol::{ErrorCode, Role, ServerMessage, SessionBill, UserInfo};
use parley_domain::{CallId, Currency, Money, SessionId, Timestamp, UserId};
use parley_metering::BookedSession;
use parley_signaling::Store;
use parley_signaling::schedule::Schedule;
use parley_signaling::store::SessionRecord;
use serde::Deserialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::api::require;
use crate::config::SeekerNoShow;
use crate::routes::{ApiError, AppState};

/// The room opens this long before the start (DESIGN.md §3).
pub const ROOM_OPENS_BEFORE: Duration = Duration::from_secs(10 * 60);
/// A participant not joined this long after the start is a no-show.
pub const NO_SHOW_AFTER: Duration = Duration::from_secs(15 * 60);
/// How long the consultant has to answer a booking.
pub const RESPOND_WITHIN: Duration = Duration::from_secs(72 * 3600);
/// A hold is placed at confirmation when the start is at most this far.
pub const HOLD_AT_CONFIRMATION_WITHIN: Duration = Duration::from_secs(6 * 24 * 3600);
/// Otherwise the hold is placed this long before the start.
pub const HOLD_BEFORE: Duration = Duration::from_secs(24 * 3600);
/// Cancelling (or rescheduling) more than this far ahead is free.
pub const FREE_CANCEL_BEFORE: Duration = Duration::from_secs(24 * 3600);
/// The first reminder, this long before the start.
pub const REMINDER_BEFORE: Duration = Duration::from_secs(24 * 3600);
/// The farthest ahead a slot may be booked or listed.
pub const BOOKING_HORIZON: Duration = Duration::from_secs(180 * 24 * 3600);
/// Longest range of one slots query.
const MAX_SLOT_RANGE: Duration = Duration::from_secs(62 * 24 * 3600);
/// Longest decline or cancel reason, bytes.
const MAX_REASON: usize = 200;
/// How often the scheduler looks for due work (also woken by commands).
const TICK: Duration = Duration::from_millis(250);

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn db(e: sqlx::Error) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn bad(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(code, message.into())
}

/// The routes of this module.
pub fn router(state: AppState) -> Router {
    let idempotent = axum::middleware::from_fn_with_state(state.clone(), crate::idempotency::layer);
    Router::new()
        .route("/v1/consultants/me/availability", get(my_availability).put(set_availability))
        .route("/v1/consultants/me/prices/{purpose}", put(set_purpose_price).delete(clear_purpose_price))
        .route("/v1/consultants/{id}/slots", get(slots))
        .route("/v1/bookings", post(propose).layer(idempotent).get(list))
        .route("/v1/bookings/{id}", get(one))
        .route("/v1/bookings/{id}/accept", post(accept))
        .route("/v1/bookings/{id}/decline", post(decline))
        .route("/v1/bookings/{id}/cancel", post(cancel))
        .route("/v1/bookings/{id}/reschedule", post(reschedule))
        .with_state(state)
}

fn caller(s: &AppState, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    Ok(s.auth.verify_request(headers, None)?)
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(rejected)
}

/// A body that is not the JSON expected: 400 `invalid_field` (naming the
/// field), and as every route answers them, 413 `payload_too_large` and 415
/// `unsupported_media_type`.
fn rejected(e: JsonRejection) -> ApiError {
    match e {
        JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
            bad(ErrorCode::InvalidField, e.body_text())
        }
        other => ApiError::from(other),
    }
}

// ----- availability ------------------------------------------------------

/// The stored availability of `consultant`, if any.
pub async fn availability_of(s: &AppState, consultant: &UserId) -> Result<Option<Availability>, ApiError> {
    let row = sqlx::query("SELECT rules FROM availability WHERE consultant_id = $1")
        .bind(consultant.as_str())
        .fetch_optional(&s.store.pool())
        .await
        .map_err(db)?;
    row.map(|r| {
        let rules: String = r.try_get("rules").map_err(db)?;
        serde_json::from_str(&rules).map_err(|e| ApiError::Internal(format!("stored availability: {e}")))
    })
    .transpose()
}

/// `GET /v1/consultants/me/availability` (consultants): their rules, `null`
/// if never set (then nobody can book them).
#[utoipa::path(get, path = "/v1/consultants/me/availability", tag = "bookings", security(("bearer" = [])),
    responses((status = 200, body = Option<Availability>),
        (status = 401, description = "missing, forged or expired token", body = parley_domain::protocol::Problem),
        (status = 403, description = "`wrong_role`: consultants only", body = parley_domain::protocol::Problem)))]
pub(crate) async fn my_availability(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Option<Availability>>, ApiError> {
    let me = caller(&s, &headers)?;
    require(&me, Role::Consultant)?;
    Ok(Json(availability_of(&s, &me.id).await?))
}

/// `PUT /v1/consultants/me/availability` (consultants): replaces their time
/// zone, session lengths, weekly rules and exceptions. Bookings already
/// confirmed stay. 400 `unknown_time_zone` or `invalid_field` (naming the
/// field).
#[utoipa::path(put, path = "/v1/consultants/me/availability", tag = "bookings", security(("bearer" = [])),
    request_body = Availability,
    responses((status = 200, body = Availability),
        (status = 400, description = "`unknown_time_zone`, `invalid_field`", body = parley_domain::protocol::Problem),
        (status = 401, description = "missing, forged or expired token", body = parley_domain::protocol::Problem),
        (status = 403, description = "`wrong_role`: consultants only", body = parley_domain::protocol::Problem)))]
pub(crate) async fn set_availability(
    State(s): State<AppState>,
    headers: HeaderMap,
    b: Result<Json<Availability>, JsonRejection>,
) -> Result<Json<Availability>, ApiError> {
    let me = caller(&s, &headers)?;
    require(&me, Role::Consultant)?;
    let a = body(b)?;
    let schedule = Schedule::new(&a).map_err(|e| bad(e.code, e.message))?;
    let a = Availability {
        time_zone: schedule.time_zone().to_owned(),
        session_lengths_min: schedule.lengths().to_vec(),
        ..a
    };
    sqlx::query(
        "INSERT INTO availability (consultant_id, time_zone, rules, updated_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (consultant_id) DO UPDATE SET time_zone = excluded.time_zone, rules = excluded.rules, \
         updated_ms = excluded.updated_ms",
    )
    .bind(me.id.as_str())
    .bind(&a.time_zone)
    .bind(serde_json::to_string(&a).map_err(|e| ApiError::Internal(e.to_string()))?)
    .bind(s.clock.now().unix_millis())
    .execute(&s.store.pool())
    .await
    .map_err(db)?;
    // One time zone and one list of lengths: the profile shows these.
    sqlx::query("UPDATE profiles SET time_zone = $2, session_minutes = $3 WHERE consultant_id = $1")
        .bind(me.id.as_str())
        .bind(&a.time_zone)
        .bind(serde_json::to_string(&a.session_lengths_min).expect("numbers serialise"))
        .execute(&s.store.pool())
        .await
        .map_err(db)?;
    Ok(Json(a))
}

async fn schedule_of(s: &AppState, consultant: &UserId) -> Result<Schedule, ApiError> {
    let Some(a) = availability_of(s, consultant).await? else {
        return Err(bad(ErrorCode::SlotUnavailable, format!("{consultant} has not published any availability")));
    };
    Schedule::new(&a).map_err(|e| ApiError::Internal(format!("stored availability: {e}")))
}

/// Confirmed bookings of `consultant` overlapping `[from, to)`, as
/// `[start, end)` Unix ms, except `except` (a booking being moved).
async fn busy(
    conn: &mut sqlx::AnyConnection,
    consultant: &UserId,
    from: i64,
    to: i64,
    except: Option<&str>,
) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT start_ms, end_ms FROM bookings WHERE consultant_id = $1 AND state IN ('confirmed', 'held') \
         AND start_ms < $3 AND end_ms > $2 AND id <> $4",
    )
    .bind(consultant.as_str())
    .bind(from)
    .bind(to)
    // No booking has the empty id: `None` excludes nothing.
    .bind(except.unwrap_or(""))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|r| Ok((r.try_get("start_ms")?, r.try_get("end_ms")?))).collect()
}

/// Query of `GET /v1/consultants/{id}/slots`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct SlotsQuery {
    /// From, Unix ms (default: now).
    from_ms: Option<i64>,
    /// To, Unix ms (default: 14 days after `from_ms`; at most 62 days).
    to_ms: Option<i64>,
    /// Length, minutes (default: the shortest offered).
    length_min: Option<u32>,
}

/// `GET /v1/consultants/{id}/slots` (any signed-in user): the consultant's
/// free slots of one length, from their availability minus confirmed
/// bookings, in the future only. 400 `slot_unavailable` (a length not
/// offered, no availability), `invalid_field` (a bad range).
#[utoipa::path(get, path = "/v1/consultants/{id}/slots", tag = "bookings", security(("bearer" = [])),
    params(("id" = String, Path, description = "consultant id"), SlotsQuery),
    responses((status = 200, body = SlotList),
        (status = 400, description = "`slot_unavailable`, `invalid_field`", body = parley_domain::protocol::Problem),
        (status = 401, description = "missing, forged or expired token", body = parley_domain::protocol::Problem),
        (status = 404, description = "`unknown_consultant`", body = parley_domain::protocol::Problem)))]
pub(crate) async fn slots(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<SlotsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SlotList>, ApiError> {
    caller(&s, &headers)?;
    let Query(q) = q.map_err(|e| bad(ErrorCode::InvalidField, e.body_text()))?;
    let consultant = consultant(&s, id).await?;
    let schedule = schedule_of(&s, &consultant).await?;
    let now = s.clock.now().unix_millis();
    let from = q.from_ms.unwrap_or(now).max(now);
    let to = q.to_ms.unwrap_or(from + ms(Duration::from_secs(14 * 24 * 3600)));
    if to <= from || to - from > ms(MAX_SLOT_RANGE) {
        return Err(bad(ErrorCode::InvalidField, "to_ms: must be after from_ms (and now), at most 62 days later"));
    }
    let length = q.length_min.unwrap_or(schedule.lengths()[0]);
    if !schedule.offers_length(length) {
        return Err(bad(
            ErrorCode::SlotUnavailable,
            format!("length_min: {length} is not offered; offered: {:?}", schedule.lengths()),
        ));
    }
    let mut conn = s.store.pool().acquire().await.map_err(db)?;
    let taken = busy(&mut conn, &consultant, from, to, None).await.map_err(db)?;
    Ok(Json(SlotList {
        time_zone: schedule.time_zone().to_owned(),
        length_min: length,
        slots: schedule.slots(from, to, length, &taken),
    }))
}

async fn consultant(s: &AppState, raw: String) -> Result<UserId, ApiError> {
    let id = UserId::parse(raw).map_err(|e| bad(ErrorCode::InvalidField, format!("consultant id: {e}")))?;
    match s.store.user(&id).await? {
        Some(u) if u.role == Role::Consultant => Ok(id),
        _ => Err(ApiError::NotFound(ErrorCode::UnknownConsultant, format!("no consultant {id}"))),
    }
}

// ----- prices per purpose -------------------------------------------------

fn purpose_param(raw: &str) -> Result<Purpose, ApiError> {
    match Purpose::parse(raw) {
        Some(p @ (Purpose::Mentorship | Purpose::Interview)) => Ok(p),
        _ => Err(bad(
            ErrorCode::InvalidField,
            format!("purpose: {raw:?}; give mentorship or interview (consultations use /v1/consultants/me/price)"),
        )),
    }
}

/// `PUT /v1/consultants/me/prices/{purpose}` (consultants): the price of
/// `mentorship` or `interview` sessions ([`ConsultantPrice`]; an amount of
/// 0 makes them free). 400 `invalid_price` (negative), `invalid_field`.
#[utoipa::path(put, path = "/v1/consultants/me/prices/{purpose}", tag = "bookings", security(("bearer" = [])),
    params(("purpose" = String, Path, description = "`mentorship` or `interview`")), request_body = ConsultantPrice,
    responses((status = 200, body = ConsultantPrice),
        (status = 400, description = "`invalid_price`, `invalid_field`", body = parley_domain::protocol::Problem),
        (status = 403, description = "`wrong_role`: consultants only", body = parley_domain::protocol::Problem)))]
pub(crate) async fn set_purpose_price(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(purpose): Path<String>,
    b: Result<Json<ConsultantPrice>, JsonRejection>,
) -> Result<Json<ConsultantPrice>, ApiError> {
    let me = caller(&s, &headers)?;
    require(&me, Role::Consultant)?;
    let purpose = purpose_param(&purpose)?;
    let price = body(b)?;
    if price.amount.amount_minor < 0 {
        return Err(bad(ErrorCode::InvalidPrice, "amount_minor: must not be negative"));
    }
    sqlx::query(
        "INSERT INTO purpose_prices (consultant_id, purpose, model, amount_minor, currency, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (consultant_id, purpose) DO UPDATE SET model = excluded.model, \
         amount_minor = excluded.amount_minor, currency = excluded.currency, updated_ms = excluded.updated_ms",
    )
    .bind(me.id.as_str())
    .bind(purpose.as_str())
    .bind(price.model.as_str())
    .bind(price.amount.amount_minor)
    .bind(price.amount.currency.as_str())
    .bind(s.clock.now().unix_millis())
    .execute(&s.store.pool())
    .await
    .map_err(db)?;
    Ok(Json(price))
}

/// `DELETE /v1/consultants/me/prices/{purpose}` (consultants): back to the
/// default — mentorship at the consultation price, interviews free.
#[utoipa::path(delete, path = "/v1/consultants/me/prices/{purpose}", tag = "bookings", security(("bearer" = [])),
    params(("purpose" = String, Path, description = "`mentorship` or `interview`")),
    responses((status = 204, description = "removed"),
        (status = 403, description = "`wrong_role`: consultants only", body = parley_domain::protocol::Problem)))]
pub(crate) async fn clear_purpose_price(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(purpose): Path<String>,
) -> Result<StatusCode, ApiError> {
    let me = caller(&s, &headers)?;
    require(&me, Role::Consultant)?;
    let purpose = purpose_param(&purpose)?;
    sqlx::query("DELETE FROM purpose_prices WHERE consultant_id = $1 AND purpose = $2")
        .bind(me.id.as_str())
        .bind(purpose.as_str())
        .execute(&s.store.pool())
        .await
        .map_err(db)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The price of a `purpose` session with `consultant` (DESIGN.md M7):
/// consultations at their price; mentorship at its own price or the
/// consultation price; interviews at their own price or free. `None`: free.
pub async fn price_for(
    s: &AppState,
    consultant: &UserId,
    purpose: Purpose,
) -> Result<Option<ConsultantPrice>, ApiError> {
    if purpose != Purpose::Consultation {
        let row = sqlx::query(
            "SELECT model, amount_minor, currency FROM purpose_prices WHERE consultant_id = $1 AND purpose = $2",
        )
        .bind(consultant.as_str())
        .bind(purpose.as_str())
        .fetch_optional(&s.store.pool())
        .await
        .map_err(db)?;
        if let Some(r) = row {
            let amount: i64 = r.try_get("amount_minor").map_err(db)?;
            if amount == 0 {
                return Ok(None);
            }
            let model: String = r.try_get("model").map_err(db)?;
            let currency: String = r.try_get("currency").map_err(db)?;
            let model = PriceModel::parse(&model).ok_or_else(|| ApiError::Internal(format!("price model {model}")))?;
            let currency = Currency::parse(&currency).map_err(|e| ApiError::Internal(e.to_string()))?;
            return Ok(Some(ConsultantPrice { model, amount: Money::new(amount, currency) }));
        }
        if purpose == Purpose::Interview {
            return Ok(None);
        }
    }
    Ok(s.billing.price(consultant).await?)
}

// ----- bookings --------------------------------------------------------------

const COLUMNS: &str = "id, session_id, call_id, seeker_id, consultant_id, purpose, length_min, proposed, state, \
    start_ms, end_ms, respond_by_ms, price_model, price_minor, currency, payment_method, record, seeker_name, \
    seeker_premium, hold_status, hold_due_ms, hold_error, reminders_sent, reason, cancelled_by, fee_minor, created_ms, \
    updated_ms";

/// A stored booking and what only the server needs of it.
struct StoredBooking {
    booking: Booking,
    call_id: CallId,
    payment_method: Option<String>,
    seeker_name: String,
    hold_due_ms: Option<i64>,
    /// When the row last changed (Unix ms): the `placing` claim's lease.
    updated_ms: i64,
}

fn read(r: &AnyRow) -> Result<StoredBooking, ApiError> {
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
    })
}

async fn load(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Option<StoredBooking>, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM bookings WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *conn).await.map_err(db)?;
    row.as_ref().map(read).transpose()
}

/// A booking `me` is part of (moderators see all), or `unknown_booking`.
async fn mine(s: &AppState, me: &UserInfo, id: &str) -> Result<StoredBooking, ApiError> {
    let mut conn = s.store.pool().acquire().await.map_err(db)?;
    match load(&mut conn, id).await? {
        Some(b) if me.role == Role::Moderator || b.booking.seeker_id == me.id || b.booking.consultant_id == me.id => {
            Ok(b)
        }
        _ => Err(ApiError::NotFound(ErrorCode::UnknownBooking, format!("no booking {id} of yours"))),
    }
}

/// Checks proposed starts: 1–3, distinct, in the future, within the
/// horizon, inside the consultant's availability, not overlapping a
/// confirmed booking. Returns them sorted.
async fn check_slots(
    s: &AppState,
    conn: &mut sqlx::AnyConnection,
    consultant: &UserId,
    slots: &[i64],
    length_min: u32,
    except: Option<&str>,
) -> Result<Vec<i64>, ApiError> {
    if slots.is_empty() || slots.len() > 3 {
        return Err(bad(ErrorCode::InvalidField, format!("slots: propose 1 to 3 starts, not {}", slots.len())));
    }
    let mut sorted = slots.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != slots.len() {
        return Err(bad(ErrorCode::InvalidField, "slots: the same start is proposed twice"));
    }
    let schedule = schedule_of(s, consultant).await?;
    if !schedule.offers_length(length_min) {
        return Err(bad(
            ErrorCode::SlotUnavailable,
            format!("length_min: {length_min} is not offered; offered: {:?}", schedule.lengths()),
        ));
    }
    let now = s.clock.now().unix_millis();
    let length = i64::from(length_min) * 60_000;
    for &start in &sorted {
        if start <= now {
            return Err(bad(ErrorCode::SlotInPast, format!("slot {start}: starts before now ({now})")));
        }
        if start - now > ms(BOOKING_HORIZON) {
            return Err(bad(ErrorCode::SlotUnavailable, format!("slot {start}: more than 180 days ahead")));
        }
        if !schedule.allows(start, length_min) {
            return Err(bad(
                ErrorCode::SlotUnavailable,
                format!("slot {start}: not within {consultant}'s availability ({})", schedule.time_zone()),
            ));
        }
        if !busy(conn, consultant, start, start + length, except).await.map_err(db)?.is_empty() {
            return Err(ApiError::Conflict(ErrorCode::SlotTaken, format!("slot {start}: already booked")));
        }
    }
    Ok(sorted)
}

/// `POST /v1/bookings` (seekers): propose 1–3 slots ([`BookingRequest`]).
/// 201 with the pending [`Booking`]. 400 `slot_in_past`,
/// `slot_unavailable`, `invalid_field`, `missing_field` (a priced session
/// without `payment_method`); 403 `wrong_role`, `premium_required`,
/// `recording_not_allowed`; 404 `unknown_consultant`; 409 `slot_taken`.
#[utoipa::path(post, path = "/v1/bookings", tag = "bookings", security(("bearer" = [])), request_body = BookingRequest,
    responses((status = 201, body = Booking),
        (status = 400, description = "`slot_in_past`, `slot_unavailable`, `invalid_field`, `missing_field`", body = parley_domain::protocol::Problem),
        (status = 403, description = "`wrong_role`, `premium_required`, `recording_not_allowed`", body = parley_domain::protocol::Problem),
        (status = 404, description = "`unknown_consultant`", body = parley_domain::protocol::Problem),
        (status = 409, description = "`slot_taken`", body = parley_domain::protocol::Problem)))]
pub(crate) async fn propose(
    State(s): State<AppState>,
    headers: HeaderMap,
    b: Result<Json<BookingRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Booking>), ApiError> {
    let identity = s.auth.verify_request_identity(&headers, None)?;
    let me = identity.user;
    require(&me, Role::Seeker)?;
    let req = body(b)?;
    let consultant = consultant(&s, req.consultant_id.to_string()).await?;
    let mut conn = s.store.pool().acquire().await.map_err(db)?;
    let slots = check_slots(&s, &mut conn, &consultant, &req.slots, req.length_min, None).await?;
    if req.record {
        s.consent
            .check_request(&me.id, identity.premium, &consultant)
            .await
            .map_err(|(code, m)| ApiError::Forbidden(code, m))?;
    }
    let price = price_for(&s, &consultant, req.purpose).await?;
    let pm = req.payment_method.filter(|p| !p.trim().is_empty());
    if price.is_some() && pm.is_none() {
        return Err(bad(
            ErrorCode::MissingField,
            "payment_method: this session has a price; give a payment method for its hold",
        ));
    }
    let now = s.clock.now().unix_millis();
    let id = format!("bkg_{}", uuid::Uuid::now_v7().simple());
    let session_id = new_session_id();
    let call_id = CallId::parse(format!("call_{}", uuid::Uuid::now_v7().simple())).expect("valid id");
    let respond_by = (now + ms(RESPOND_WITHIN)).min(slots[0]);
    sqlx::query(
        "INSERT INTO bookings (id, session_id, call_id, seeker_id, consultant_id, purpose, length_min, proposed, state, \
         respond_by_ms, price_model, price_minor, currency, payment_method, record, seeker_name, seeker_premium, \
         hold_status, created_ms, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $18)",
    )
    .bind(&id)
    .bind(session_id.as_str())
    .bind(call_id.as_str())
    .bind(me.id.as_str())
    .bind(consultant.as_str())
    .bind(req.purpose.as_str())
    .bind(i64::from(req.length_min))
    .bind(serde_json::to_string(&slots).expect("numbers serialise"))
    .bind(respond_by)
    .bind(price.as_ref().map(|p| p.model.as_str()))
    .bind(price.as_ref().map(|p| p.amount.amount_minor))
    .bind(price.as_ref().map(|p| p.amount.currency.as_str().to_owned()))
    .bind(pm.as_deref())
    .bind(i64::from(req.record))
    .bind(&me.name)
    .bind(i64::from(identity.premium))
    .bind(if price.is_some() { "scheduled" } else { "none" })
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    let booking = load(&mut conn, &id).await?.expect("just written").booking;
    emit(&s, WebhookEventType::BookingRequested, &booking).await;
    Ok((StatusCode::CREATED, Json(booking)))
}

fn new_session_id() -> SessionId {
    SessionId::parse(format!("ses_{}", uuid::Uuid::now_v7().simple())).expect("valid id")
}

/// `GET /v1/bookings` (anyone): the caller's bookings as seeker or
/// consultant, newest first (at most 200).
#[utoipa::path(get, path = "/v1/bookings", tag = "bookings", security(("bearer" = [])),
    responses((status = 200, body = BookingList),
        (status = 401, description = "missing, forged or expired token", body = parley_domain::protocol::Problem)))]
pub(crate) async fn list(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<BookingList>, ApiError> {
    let me = caller(&s, &headers)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM bookings WHERE seeker_id = $1 OR consultant_id = $1 ORDER BY created_ms DESC, id DESC LIMIT 200"
    );
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(me.id.as_str()).fetch_all(&s.store.pool()).await.map_err(db)?;
    let bookings = rows.iter().map(|r| read(r).map(|b| b.booking)).collect::<Result<_, _>>()?;
    Ok(Json(BookingList { bookings }))
}

/// `GET /v1/bookings/{id}` (its seeker, its consultant, moderators).
/// 404 `unknown_booking`.
#[utoipa::path(get, path = "/v1/bookings/{id}", tag = "bookings", security(("bearer" = [])),
    params(("id" = String, Path, description = "booking id (`bkg_…`)")),
    responses((status = 200, body = Booking),
        (status = 404, description = "`unknown_booking`", body = parley_domain::protocol::Problem)))]
pub(crate) async fn one(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Booking>, ApiError> {
    let me = caller(&s, &headers)?;
    Ok(Json(mine(&s, &me, &id).await?.booking))
}

/// Takes the per-consultant lock inside `tx` (its first statement, so it
/// serialises with the other commands on that consultant's bookings on both
/// backends: SQLite's one writer, PostgreSQL's row lock).
async fn lock_consultant(tx: &mut sqlx::AnyConnection, consultant: &UserId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO booking_locks (consultant_id, version) VALUES ($1, 1) \
         ON CONFLICT (consultant_id) DO UPDATE SET version = booking_locks.version + 1",
    )
    .bind(consultant.as_str())
    .execute(&mut *tx)
    .await
    .map(|_| ())
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A transaction holding the lock of booking `id`'s consultant, and the
/// booking as it is under that lock (`None`: no such booking). Every
/// command that changes a booking or its hold reads the booking here and
/// writes it before committing, so the transitions of one booking happen
/// one at a time, each on the state the previous one left (issue 13): the
/// booking and its hold form one state machine, never a stale read.
async fn locked(s: &AppState, id: &str) -> Result<Option<(Tx, StoredBooking)>, ApiError> {
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
async fn locked_mine(s: &AppState, me: &UserInfo, id: &str) -> Result<(Tx, StoredBooking), ApiError> {
    match locked(s, id).await? {
        Some((tx, b))
            if me.role == Role::Moderator || b.booking.seeker_id == me.id || b.booking.consultant_id == me.id =>
        {
            Ok((tx, b))
        }
        _ => Err(ApiError::NotFound(ErrorCode::UnknownBooking, format!("no booking {id} of yours"))),
    }
}

fn not_pending(b: &Booking, now: i64, what: &str) -> ApiError {
    let state = if b.state == BookingState::Pending && now >= b.respond_by_ms { "expired" } else { b.state.as_str() };
    ApiError::Conflict(ErrorCode::BookingNotPending, format!("booking {} is {state}; it cannot be {what}", b.id))
}

/// `POST /v1/bookings/{id}/accept` (its consultant, [`AcceptBooking`]):
/// confirms one proposed start. The hold is placed now if the start is
/// within 6 days (the booking shows `hold_status` `held`, or `failed` with
/// `hold_error`), else 24 h before. 400 `invalid_field` (not a proposed
/// start), `slot_in_past`; 404 `unknown_booking`; 409 `booking_not_pending`
/// (declined, cancelled, expired…), `slot_taken` (another booking got it).
#[utoipa::path(post, path = "/v1/bookings/{id}/accept", tag = "bookings", security(("bearer" = [])),
    params(("id" = String, Path, description = "booking id")), request_body = AcceptBooking,
    responses((status = 200, body = Booking),
        (status = 400, description = "`invalid_field`, `slot_in_past`", body = parley_domain::protocol::Problem),
        (status = 403, description = "`wrong_role`", body = parley_domain::protocol::Problem),
        (status = 404, description = "`unknown_booking`", body = parley_domain::protocol::Problem),
        (status = 409, description = "`booking_not_pending`, `slot_taken`", body = parley_domain::protocol::Problem)))]
pub(crate) async fn accept(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Result<Json<AcceptBooking>, JsonRejection>,
) -> Result<Json<Booking>, ApiError> {
    let me = caller(&s, &headers)?;
    let req = body(b)?;
    let now = s.clock.now().unix_millis();
    let (mut tx, row) = locked_mine(&s, &me, &id).await?;
    let b = &row.booking;
    if b.consultant_id != me.id {
        return Err(ApiError::Forbidden(ErrorCode::WrongRole, "only the booking's consultant accepts it".into()));
    }
    if b.state != BookingState::Pending || now >= b.respond_by_ms {
        return Err(not_pending(b, now, "accepted"));
    }
    if !b.proposed.contains(&req.start_ms) {
        return Err(bad(ErrorCode::InvalidField, format!("start_ms: {} is not one of {:?}", req.start_ms, b.proposed)));
    }
    if req.start_ms <= now {
        return Err(bad(ErrorCode::SlotInPast, format!("start_ms: {} has passed", req.start_ms)));
    }
    let end = req.start_ms + i64::from(b.length_min) * 60_000;
    let hold_due =
        if req.start_ms - now <= ms(HOLD_AT_CONFIRMATION_WITHIN) { now } else { req.start_ms - ms(HOLD_BEFORE) };
    if !busy(&mut tx, &b.consultant_id, req.start_ms, end, Some(&id)).await.map_err(db)?.is_empty() {
        return Err(ApiError::Conflict(
            ErrorCode::SlotTaken,
            format!("{} is already booked at {}", me.id, req.start_ms),
        ));
    }
    sqlx::query(
        "UPDATE bookings SET state = 'confirmed', start_ms = $2, end_ms = $3, hold_due_ms = $4, updated_ms = $5 \
         WHERE id = $1",
    )
    .bind(&id)
    .bind(req.start_ms)
    .bind(end)
    .bind(hold_due)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    place_due_hold(&s, &id).await;
    let mut conn = s.store.pool().acquire().await.map_err(db)?;
    let booking = load(&mut conn, &id).await?.expect("exists").booking;
    emit(&s, WebhookEventType::BookingConfirmed, &booking).await;
    s.bookings_wake.notify_one();
    Ok(Json(booking))
}

/// `POST /v1/bookings/{id}/decline` (its consultant, optional
/// [`BookingReason`]): a pending booking is declined. 409
/// `booking_not_pending`.
#[utoipa::path(post, path = "/v1/bookings/{id}/decline", tag = "bookings", security(("bearer" = [])),
    params(("id" = String, Path, description = "booking id")), request_body = Option<BookingReason>,
    responses((status = 200, body = Booking),
        (status = 403, description = "`wrong_role`", body = parley_domain::protocol::Problem),
        (status = 404, description = "`unknown_booking`", body = parley_domain::protocol::Problem),
        (status = 409, description = "`booking_not_pending`", body = parley_domain::protocol::Problem)))]
pub(crate) async fn decline(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Result<Option<Json<BookingReason>>, JsonRejection>,
) -> Result<Json<Booking>, ApiError> {
    let me = caller(&s, &headers)?;
    let reason = reason(b)?;
    let now = s.clock.now().unix_millis();
    let (mut tx, row) = locked_mine(&s, &me, &id).await?;
    if row.booking.consultant_id != me.id {
        return Err(ApiError::Forbidden(ErrorCode::WrongRole, "only the booking's consultant declines it".into()));
    }
    if row.booking.state != BookingState::Pending || now >= row.booking.respond_by_ms {
        return Err(not_pending(&row.booking, now, "declined"));
    }
    // A pending booking has no hold (one of an earlier session was settled
    // when it was rescheduled): only a scheduled one to call off.
    sqlx::query(
        "UPDATE bookings SET state = 'declined', reason = $2, updated_ms = $3, \
         hold_status = CASE WHEN hold_status = 'scheduled' THEN 'none' ELSE hold_status END WHERE id = $1",
    )
    .bind(&id)
    .bind(reason.as_deref())
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    let booking = mine(&s, &me, &id).await?.booking;
    emit(&s, WebhookEventType::BookingDeclined, &booking).await;
    Ok(Json(booking))
}

/// The optional `{reason}` body of decline and cancel: none, or JSON whose
/// bad shape is 400 `invalid_field` like every other body.
fn reason(b: Result<Option<Json<BookingReason>>, JsonRejection>) -> Result<Option<String>, ApiError> {
    let b = b.map_err(rejected)?;
    let reason = b.and_then(|Json(b)| b.reason).filter(|r| !r.trim().is_empty());
    if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
        return Err(bad(ErrorCode::InvalidField, format!("reason: at most {MAX_REASON} bytes")));
    }
    Ok(reason)
}

/// `POST /v1/bookings/{id}/cancel` (its seeker or consultant, optional
/// [`BookingReason`]): a pending or confirmed booking is cancelled. More
/// than 24 h before the start it is free (the hold is released); later, a
/// seeker's cancellation costs `late_cancel_fee_percent` of the hold
/// (captured, the rest released; `cancellation_fee`), a consultant's costs
/// the seeker nothing. The hold's fate is decided in the cancellation's own
/// transaction (a settlement the outbox carries out); a hold still being
/// placed is released by its placer. 409 `booking_not_pending` (declined,
/// expired, held or already cancelled).
#[utoipa::path(post, path = "/v1/bookings/{id}/cancel", tag = "bookings", security(("bearer" = [])),
    params(("id" = String, Path, description = "booking id")), request_body = Option<BookingReason>,
    responses((status = 200, body = Booking),
        (status = 404, description = "`unknown_booking`", body = parley_domain::protocol::Problem),
        (status = 409, description = "`booking_not_pending`", body = parley_domain::protocol::Problem)))]
pub(crate) async fn cancel(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Result<Option<Json<BookingReason>>, JsonRejection>,
) -> Result<Json<Booking>, ApiError> {
    let me = caller(&s, &headers)?;
    let reason = reason(b)?;
    let now = s.clock.now();
    let (mut tx, row) = locked_mine(&s, &me, &id).await?;
    let b = &row.booking;
    if !matches!(b.state, BookingState::Pending | BookingState::Confirmed) {
        return Err(ApiError::Conflict(
            ErrorCode::BookingNotPending,
            format!("booking {id} is {}; only pending or confirmed bookings can be cancelled", b.state.as_str()),
        ));
    }
    let late = b.start_ms.is_some_and(|start| start - now.unix_millis() <= ms(FREE_CANCEL_BEFORE));
    let (hold_status, fee) = match b.hold_status.as_str() {
        "held" => {
            let held = held_amount(&mut tx, &b.session_id).await?;
            let fee = held
                .filter(|_| late && me.id == b.seeker_id)
                .map(|h| late_fee(s.late_cancel_fee_percent, h))
                .filter(|f| f.amount_minor > 0);
            match fee {
                Some(fee) => {
                    let bill = SessionBill {
                        outcome: parley_domain::protocol::Outcome::Charged,
                        billable_secs: 0,
                        charge: fee,
                    };
                    parley_billing::insert_settlement(&mut tx, &b.session_id, &bill, "late_cancel", now)
                        .await
                        .map_err(db)?;
                    ("captured", Some(fee))
                }
                None => {
                    parley_billing::insert_release(&mut tx, &b.session_id, "cancelled", now).await.map_err(db)?;
                    ("released", None)
                }
            }
        }
        "scheduled" => ("none", None),
        // `placing`: its placer sees the booking cancelled and releases it.
        other => (other, None),
    };
    sqlx::query(
        "UPDATE bookings SET state = 'cancelled', reason = $2, cancelled_by = $3, fee_minor = $4, \
         hold_status = $5, updated_ms = $6 WHERE id = $1",
    )
    .bind(&id)
    .bind(reason.as_deref())
    .bind(me.id.as_str())
    .bind(fee.map(|f| f.amount_minor))
    .bind(hold_status)
    .bind(now.unix_millis())
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    s.billing.wake();
    let booking = mine(&s, &me, &id).await?.booking;
    emit(&s, WebhookEventType::BookingCancelled, &booking).await;
    Ok(Json(booking))
}

/// The authorised amount of `session`'s hold, if it is `held`.
async fn held_amount(tx: &mut sqlx::AnyConnection, session: &SessionId) -> Result<Option<Money>, ApiError> {
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

/// The late-cancellation fee for a hold of `hold`: `percent`
/// (`PARLEY_LATE_CANCEL_FEE_PERCENT`) of it, rounded down (the seeker's
/// favour). Also what a seeker who does not come pays under the `charge`
/// no-show policy.
fn late_fee(percent: u32, hold: Money) -> Money {
    Money::new(hold.amount_minor * i64::from(percent) / 100, hold.currency)
}

/// A booked session's no-show terms for the meter: the no-show time, and
/// under the `charge` policy the late-cancellation fee of its hold
/// (`pricing`; an unpriced session's no-show is free).
pub(crate) fn booked_session(
    no_show_at: Timestamp,
    pricing: Option<&parley_billing::Held>,
    policy: SeekerNoShow,
    fee_percent: u32,
) -> BookedSession {
    let no_show_fee = pricing.filter(|_| policy == SeekerNoShow::Charge).map(|held| late_fee(fee_percent, held.hold));
    BookedSession { join_by: no_show_at, no_show_fee }
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

/// `POST /v1/bookings/{id}/reschedule` (its seeker or consultant,
/// [`RescheduleBooking`]): new proposed slots, more than 24 h before the
/// current start. The booking is pending again (the consultant accepts one
/// of the new slots), under a new session id; a hold in place is released
/// (decided in this transaction; one still being placed is released by its
/// placer) and placed again on acceptance. Errors as for proposing, plus
/// 409 `booking_not_pending`.
#[utoipa::path(post, path = "/v1/bookings/{id}/reschedule", tag = "bookings", security(("bearer" = [])),
    params(("id" = String, Path, description = "booking id")), request_body = RescheduleBooking,
    responses((status = 200, body = Booking),
        (status = 400, description = "`slot_in_past`, `slot_unavailable`, `invalid_field`", body = parley_domain::protocol::Problem),
        (status = 404, description = "`unknown_booking`", body = parley_domain::protocol::Problem),
        (status = 409, description = "`booking_not_pending`, `slot_taken`", body = parley_domain::protocol::Problem)))]
pub(crate) async fn reschedule(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Result<Json<RescheduleBooking>, JsonRejection>,
) -> Result<Json<Booking>, ApiError> {
    let me = caller(&s, &headers)?;
    let req = body(b)?;
    let now = s.clock.now();
    let (mut tx, row) = locked_mine(&s, &me, &id).await?;
    let b = &row.booking;
    let open = match b.state {
        BookingState::Pending => now.unix_millis() < b.respond_by_ms,
        BookingState::Confirmed => b.start_ms.is_some_and(|start| start - now.unix_millis() > ms(FREE_CANCEL_BEFORE)),
        _ => false,
    };
    if !open {
        return Err(ApiError::Conflict(
            ErrorCode::BookingNotPending,
            format!(
                "booking {id} is {} and can no longer be rescheduled (only more than 24 h ahead)",
                b.state.as_str()
            ),
        ));
    }
    let slots = check_slots(&s, &mut tx, &b.consultant_id, &req.slots, b.length_min, Some(&id)).await?;
    if b.hold_status == "held" {
        parley_billing::insert_release(&mut tx, &b.session_id, "rescheduled", now).await.map_err(db)?;
    }
    let new_session = new_session_id();
    sqlx::query(
        "UPDATE bookings SET state = 'pending', proposed = $2, session_id = $3, start_ms = NULL, end_ms = NULL, \
         respond_by_ms = $4, hold_status = CASE WHEN price_minor IS NULL THEN 'none' ELSE 'scheduled' END, \
         hold_due_ms = NULL, hold_error = NULL, reminders_sent = 0, updated_ms = $5 WHERE id = $1",
    )
    .bind(&id)
    .bind(serde_json::to_string(&slots).expect("numbers serialise"))
    .bind(new_session.as_str())
    .bind((now.unix_millis() + ms(RESPOND_WITHIN)).min(slots[0]))
    .bind(now.unix_millis())
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    s.billing.wake();
    let booking = mine(&s, &me, &id).await?.booking;
    emit(&s, WebhookEventType::BookingRescheduled, &booking).await;
    Ok(Json(booking))
}

// ----- the scheduler -----------------------------------------------------------

/// A hold claimed (`placing`) longer ago than this belongs to a placer that
/// died: another may take it over (the provider call is idempotent by
/// `hold:<session>`, and a hold already recorded is used as it is).
const PLACING_LEASE: Duration = Duration::from_secs(60);

/// Places the hold of confirmed booking `id` if it is due and not placed.
/// A refusal flags the booking (`hold_status` `failed`, `hold_error`); the
/// room will not open for it.
async fn place_due_hold(s: &AppState, id: &str) {
    if let Err(e) = try_place_due_hold(s, id).await {
        tracing::error!(booking_id = id, error = %e, "placing a booking's hold failed");
    }
}

/// The hold's three steps: claim it under the lock (`placing`), ask the
/// provider with no lock held, record the result under the lock again.
/// If the booking moved on meanwhile (cancelled, or rescheduled to a new
/// session), the hold that landed is released at once, in the recording
/// transaction: nothing Parley placed is left owned by nothing.
async fn try_place_due_hold(s: &AppState, id: &str) -> Result<(), ApiError> {
    let now = s.clock.now().unix_millis();
    let Some((mut tx, row)) = locked(s, id).await? else { return Ok(()) };
    let b = &row.booking;
    let due = row.hold_due_ms.is_some_and(|d| d <= now);
    let lapsed = b.hold_status == "placing" && now - row.updated_ms >= ms(PLACING_LEASE);
    if b.state != BookingState::Confirmed || !(b.hold_status == "scheduled" || lapsed) || !due {
        return Ok(());
    }
    let Some(price) = &b.price else { return Ok(()) };
    sqlx::query("UPDATE bookings SET hold_status = 'placing', updated_ms = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;

    let session = b.session_id.clone();
    // A placer that died after the provider answered left its hold recorded.
    let placed: Result<(), String> = match s.billing.hold(&session).await? {
        Some(h) if h.status == "held" => Ok(()),
        Some(h) => Err(format!("the hold is {}", h.status)),
        None => {
            let price = ConsultantPrice { model: price.model, amount: price.amount };
            s.billing
                .place_priced_hold(
                    &parley_billing::HoldFor {
                        session_id: &session,
                        call_id: row.call_id.as_str(),
                        seeker: &b.seeker_id,
                        consultant: &b.consultant_id,
                        opens_at: b.opens_at_ms.map(Timestamp::from_unix_millis),
                    },
                    price,
                    b.length_min,
                    row.payment_method.as_deref(),
                )
                .await
                .map(|_| ())
                .map_err(|refusal| refusal.to_string())
        }
    };

    let now = s.clock.now();
    let Some((mut tx, row)) = locked(s, id).await? else { return Ok(()) };
    let current = row.booking.session_id == session && row.booking.hold_status == "placing";
    let (status, error) = if current && row.booking.state == BookingState::Confirmed {
        match &placed {
            Ok(()) => ("held", None),
            Err(error) => ("failed", Some(error.clone())),
        }
    } else {
        // The booking moved on while the provider was asked.
        if placed.is_ok() {
            let why = if row.booking.session_id == session { "cancelled" } else { "rescheduled" };
            parley_billing::insert_release(&mut tx, &session, why, now).await.map_err(db)?;
            tracing::info!(booking_id = id, session_id = %session, "a hold landed after its booking moved on: released");
        }
        (if placed.is_ok() { "released" } else { "none" }, None)
    };
    if current {
        sqlx::query("UPDATE bookings SET hold_status = $2, hold_error = $3, updated_ms = $4 WHERE id = $1")
            .bind(id)
            .bind(status)
            .bind(error.as_deref())
            .bind(now.unix_millis())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    s.billing.wake();
    if let Some(error) = error {
        tracing::info!(booking_id = id, %error, "a booking's hold was refused: the booking is flagged");
        let mut conn = s.store.pool().acquire().await.map_err(db)?;
        if let Some(b) = load(&mut conn, id).await? {
            emit(s, WebhookEventType::BookingHoldFailed, &b.booking).await;
        }
    }
    Ok(())
}

/// The scheduler: expires unanswered bookings, places due holds, sends
/// reminders and opens rooms, on the server clock, until `shutdown`.
/// Every step is a conditional update, so several nodes may run it.
pub async fn run(s: AppState, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let at = s.clock.now().unix_millis();
        if let Err(e) = tick(&s).await {
            tracing::error!(error = %e, "booking scheduler");
        }
        s.scheduler_progress.send_replace(at);
        tokio::select! {
            _ = &mut shutdown => return,
            _ = s.bookings_wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

async fn due(s: &AppState, sql: &str, now: i64) -> Result<Vec<StoredBooking>, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM bookings WHERE {sql} ORDER BY start_ms LIMIT 100");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).fetch_all(&s.store.pool()).await.map_err(db)?;
    rows.iter().map(read).collect()
}

/// One pass of the scheduler at the server's now.
pub async fn tick(s: &AppState) -> Result<(), ApiError> {
    let now = s.clock.now().unix_millis();
    for row in due(s, "state = 'pending' AND respond_by_ms <= $1", now).await? {
        let done = sqlx::query(
            "UPDATE bookings SET state = 'expired', updated_ms = $2, \
                 hold_status = CASE WHEN hold_status = 'scheduled' THEN 'none' ELSE hold_status END \
                 WHERE id = $1 AND state = 'pending'",
        )
        .bind(&row.booking.id)
        .bind(now)
        .execute(&s.store.pool())
        .await
        .map_err(db)?;
        if done.rows_affected() == 1 {
            let mut b = row.booking;
            b.state = BookingState::Expired;
            emit(s, WebhookEventType::BookingExpired, &b).await;
        }
    }
    for row in due(s, "state = 'confirmed' AND hold_status = 'scheduled' AND hold_due_ms <= $1", now).await? {
        place_due_hold(s, &row.booking.id).await;
    }
    let first_reminder =
        format!("state = 'confirmed' AND reminders_sent = 0 AND start_ms <= $1 + {}", ms(REMINDER_BEFORE));
    for row in due(s, &first_reminder, now).await? {
        if row.booking.start_ms.is_some_and(|start| start - now > ms(ROOM_OPENS_BEFORE)) {
            remind(s, &row, 1).await?;
        }
    }
    let opening = format!("state = 'confirmed' AND start_ms <= $1 + {}", ms(ROOM_OPENS_BEFORE));
    for row in due(s, &opening, now).await? {
        open_room(s, row).await?;
    }
    announce_no_shows(s).await
}

/// Sends reminder number `n` once (a conditional update claims it).
async fn remind(s: &AppState, row: &StoredBooking, n: i64) -> Result<bool, ApiError> {
    let claimed = sqlx::query("UPDATE bookings SET reminders_sent = $2 WHERE id = $1 AND reminders_sent < $2")
        .bind(&row.booking.id)
        .bind(n)
        .execute(&s.store.pool())
        .await
        .map_err(db)?;
    if claimed.rows_affected() != 1 {
        return Ok(false);
    }
    let b = &row.booking;
    let (Some(start), Some(opens)) = (b.start_ms, b.opens_at_ms) else { return Ok(false) };
    let msg = ServerMessage::BookingReminder {
        booking_id: b.id.clone(),
        session_id: b.session_id.clone(),
        start_ms: start,
        opens_at_ms: opens,
    };
    s.hub.notify_user(&b.seeker_id, &msg);
    s.hub.notify_user(&b.consultant_id, &msg);
    emit_tagged(s, WebhookEventType::BookingReminder, b, &n.to_string()).await;
    Ok(true)
}

/// Opens a confirmed booking's room (10 minutes before its start): the
/// meter is told its price, the hub stores the session and admits both.
/// A booking whose hold failed is cancelled instead (nothing to charge).
async fn open_room(s: &AppState, row: StoredBooking) -> Result<(), ApiError> {
    let b = &row.booking;
    let now = s.clock.now().unix_millis();
    match b.hold_status.as_str() {
        // Not placed yet (a scheduler that was down): place it now; the
        // room opens on a later tick.
        "scheduled" | "placing" => {
            place_due_hold(s, &b.id).await;
            return Ok(());
        }
        "failed" => {
            let done = sqlx::query(
                "UPDATE bookings SET state = 'cancelled', reason = $2, updated_ms = $3 WHERE id = $1 AND state = 'confirmed'",
            )
            .bind(&b.id)
            .bind(format!("the payment hold failed: {}", b.hold_error.as_deref().unwrap_or("refused")))
            .bind(now)
            .execute(&s.store.pool())
            .await
            .map_err(db)?;
            if done.rows_affected() == 1 {
                let mut cancelled = b.clone();
                cancelled.state = BookingState::Cancelled;
                emit(s, WebhookEventType::BookingCancelled, &cancelled).await;
            }
            return Ok(());
        }
        _ => {}
    }
    let claimed =
        sqlx::query("UPDATE bookings SET state = 'held', updated_ms = $2 WHERE id = $1 AND state = 'confirmed'")
            .bind(&b.id)
            .bind(now)
            .execute(&s.store.pool())
            .await
            .map_err(db)?;
    if claimed.rows_affected() != 1 {
        return Ok(());
    }
    let start = b.start_ms.expect("confirmed bookings have a start");
    let no_show_at = Timestamp::from_unix_millis(start + ms(NO_SHOW_AFTER));
    let pricing = s.billing.session_pricing(&b.session_id).await?;
    let cfg = pricing.as_ref().map(|held| crate::money::meter_config(s.meters.settings(), held));
    let booked = booked_session(no_show_at, pricing.as_ref(), s.seeker_no_show, s.late_cancel_fee_percent);
    s.meters.expect_scheduled(&b.session_id, cfg, booked);
    let user = |id: &UserId, role: Role, fallback: &str| {
        let id = id.clone();
        let fallback = fallback.to_owned();
        async move {
            let known = s.store.user(&id).await.ok().flatten();
            known.unwrap_or(UserInfo { id, name: fallback, role })
        }
    };
    let seeker = user(&b.seeker_id, Role::Seeker, &row.seeker_name).await;
    let consultant = user(&b.consultant_id, Role::Consultant, b.consultant_id.as_str()).await;
    let record = SessionRecord {
        session_id: b.session_id.clone(),
        call_id: row.call_id.clone(),
        seeker_id: b.seeker_id.clone(),
        consultant_id: b.consultant_id.clone(),
        opened_at: s.clock.now(),
        recording: b.record,
        scheduled: true,
    };
    s.hub.open_scheduled(record, seeker, consultant, no_show_at).await?;
    tracing::info!(booking_id = %b.id, session_id = %b.session_id, "booked room open");
    remind(s, &row, 2).await?;
    Ok(())
}

/// Hands a booking event to the outgoing webhooks (docs/protocol.md §14),
/// once per event, booking, session and `tag` (a retried step does not
/// announce twice). The payload is the [`Booking`].
async fn emit_tagged(s: &AppState, kind: WebhookEventType, booking: &Booking, tag: &str) {
    let key = format!("{}:{}:{}:{tag}", kind.as_str(), booking.id, booking.session_id);
    if let Err(e) = s.webhooks.emit_once(&key, kind, booking).await {
        tracing::error!(event = kind.as_str(), booking_id = %booking.id, error = %e, "failed to store a booking webhook");
    }
}

async fn emit(s: &AppState, kind: WebhookEventType, booking: &Booking) {
    emit_tagged(s, kind, booking, "").await;
}

/// `booking.no_show` for booked sessions that ended `no_show`, once each
/// (a conditional update claims the announcement).
async fn announce_no_shows(s: &AppState) -> Result<(), ApiError> {
    let cols: String = COLUMNS.split(", ").map(|c| format!("b.{}", c.trim())).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT {cols} FROM bookings b JOIN sessions x ON x.id = b.session_id \
         WHERE b.state = 'held' AND b.no_show_announced = 0 AND x.end_reason = 'no_show' LIMIT 100"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&s.store.pool()).await.map_err(db)?;
    for r in &rows {
        let row = read(r)?;
        let claimed = sqlx::query("UPDATE bookings SET no_show_announced = 1 WHERE id = $1 AND no_show_announced = 0")
            .bind(&row.booking.id)
            .execute(&s.store.pool())
            .await
            .map_err(db)?;
        if claimed.rows_affected() == 1 {
            emit(s, WebhookEventType::BookingNoShow, &row.booking).await;
        }
    }
    Ok(())
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
