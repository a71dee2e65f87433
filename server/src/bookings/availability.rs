//! A consultant's availability and bookable slots
//! (`/v1/consultants/me/availability`, `/v1/consultants/{id}/slots`) and
//! their prices per purpose (`/v1/consultants/me/prices/{purpose}`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use parley_domain::protocol::rest::{
    Availability, ConsultantPrice, Policy, PriceModel, Purpose, PurposePrices, SlotList,
};
use parley_domain::protocol::{ErrorCode, Role};
use std::time::Duration;

use parley_domain::{Currency, Money, UserId};
use parley_signaling::Store;
use serde::Deserialize;
use sqlx::Row;

use super::rules::{MAX_SLOT_RANGE, ms};
use super::schedule::Schedule;
use super::sql::{db, lock_consultant};
use crate::kernel::{ApiError, AppState, Body, Caller, require};

pub(crate) fn bad(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(code, message.into())
}

/// `GET /v1/policy` (any authenticated user): the terms calls and bookings
/// run under, to show before a call — the free window (M6), the instant-call
/// maximum (M7), the late-cancellation terms and the booking timings
/// (docs/rules.md A-series).
#[utoipa::path(get, path = "/v1/policy", tag = "bookings", security(("bearer" = [])),
    responses((status = 200, body = Policy),
        (status = 401, description = "missing, forged or expired token", body = parley_domain::protocol::Problem)))]
pub(crate) async fn policy(State(s): State<AppState>, Caller(_me): Caller) -> Json<Policy> {
    use super::rules::{
        FREE_CANCEL_BEFORE, HOLD_AT_CONFIRMATION_WITHIN, HOLD_BEFORE, NO_SHOW_AFTER, RESPOND_WITHIN, ROOM_OPENS_BEFORE,
    };
    let meter = s.meters.settings();
    Json(Policy {
        free_window_secs: meter.free_window.as_secs(),
        free_window_warning_secs: meter.warn_before.as_secs(),
        instant_max_minutes: s.billing.config().instant_max_minutes,
        grace_secs: meter.grace.as_secs(),
        free_cancel_before_secs: FREE_CANCEL_BEFORE.as_secs(),
        late_cancel_fee_percent: s.late_cancel_fee_percent,
        hold_at_confirmation_within_secs: HOLD_AT_CONFIRMATION_WITHIN.as_secs(),
        hold_before_secs: HOLD_BEFORE.as_secs(),
        room_opens_before_secs: ROOM_OPENS_BEFORE.as_secs(),
        no_show_after_secs: NO_SHOW_AFTER.as_secs(),
        respond_within_secs: RESPOND_WITHIN.as_secs(),
    })
}

/// What a mentorship session and an interview cost with `consultant`
/// ([`price_for`] of each).
pub async fn purpose_prices(s: &AppState, consultant: &UserId) -> Result<PurposePrices, ApiError> {
    Ok(PurposePrices {
        mentorship: price_for(s, consultant, Purpose::Mentorship).await?,
        interview: price_for(s, consultant, Purpose::Interview).await?,
    })
}

/// The stored availability of `consultant`, if any.
pub async fn availability_of(s: &AppState, consultant: &UserId) -> Result<Option<Availability>, ApiError> {
    let mut conn = s.store.pool().acquire().await.map_err(db)?;
    availability_on(&mut conn, consultant).await
}

/// [`availability_of`] read on `conn`: a caller that holds a connection (or
/// a transaction) takes no second one from the pool, so many such callers
/// at once cannot starve it.
pub(crate) async fn availability_on(
    conn: &mut sqlx::AnyConnection,
    consultant: &UserId,
) -> Result<Option<Availability>, ApiError> {
    let row = sqlx::query("SELECT rules FROM availability WHERE consultant_id = $1")
        .bind(consultant.as_str())
        .fetch_optional(&mut *conn)
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
    Caller(me): Caller,
) -> Result<Json<Option<Availability>>, ApiError> {
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
    Caller(me): Caller,
    Body(req): Body<Availability>,
) -> Result<Json<Availability>, ApiError> {
    require(&me, Role::Consultant)?;
    let a = req;
    let schedule = Schedule::new(&a).map_err(|e| bad(e.code, e.message))?;
    let a = Availability {
        time_zone: schedule.time_zone().to_owned(),
        session_lengths_min: schedule.lengths().to_vec(),
        ..a
    };
    // One transaction under the consultant's lock (the profile write and
    // the booking commands take it too): the availability and the profile
    // change together, never interleaved with a rival's, and not while a
    // booking command checks its slots against the availability.
    let mut tx = s.store.begin_write().await.map_err(db)?;
    lock_consultant(&mut tx, &me.id).await.map_err(db)?;
    sqlx::query(
        "INSERT INTO availability (consultant_id, time_zone, rules, updated_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (consultant_id) DO UPDATE SET time_zone = excluded.time_zone, rules = excluded.rules, \
         updated_ms = excluded.updated_ms",
    )
    .bind(me.id.as_str())
    .bind(&a.time_zone)
    .bind(serde_json::to_string(&a).map_err(|e| ApiError::Internal(e.to_string()))?)
    .bind(s.clock.now().unix_millis())
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    // One time zone and one list of lengths: the profile shows these.
    sqlx::query("UPDATE profiles SET time_zone = $2, session_minutes = $3 WHERE consultant_id = $1")
        .bind(me.id.as_str())
        .bind(&a.time_zone)
        .bind(serde_json::to_string(&a.session_lengths_min).expect("numbers serialise"))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(Json(a))
}

pub(crate) async fn schedule_of(s: &AppState, consultant: &UserId) -> Result<Schedule, ApiError> {
    let mut conn = s.store.pool().acquire().await.map_err(db)?;
    schedule_on(&mut conn, consultant).await
}

/// [`schedule_of`] read on `conn` (see [`availability_on`]).
pub(crate) async fn schedule_on(conn: &mut sqlx::AnyConnection, consultant: &UserId) -> Result<Schedule, ApiError> {
    let Some(a) = availability_on(conn, consultant).await? else {
        return Err(bad(ErrorCode::SlotUnavailable, format!("{consultant} has not published any availability")));
    };
    Schedule::new(&a).map_err(|e| ApiError::Internal(format!("stored availability: {e}")))
}

/// Confirmed bookings of `consultant` overlapping `[from, to)`, as
/// `[start, end)` Unix ms, except `except` (a booking being moved).
pub(crate) async fn busy(
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
    Caller(_me): Caller,
    Path(id): Path<String>,
    q: Result<Query<SlotsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SlotList>, ApiError> {
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

pub(crate) async fn consultant(s: &AppState, raw: String) -> Result<UserId, ApiError> {
    let id = UserId::parse(raw).map_err(|e| bad(ErrorCode::InvalidField, format!("consultant id: {e}")))?;
    match s.store.user(&id).await? {
        Some(u) if u.role == Role::Consultant => Ok(id),
        _ => Err(ApiError::NotFound(ErrorCode::UnknownConsultant, format!("no consultant {id}"))),
    }
}

// ----- prices per purpose -------------------------------------------------

pub(crate) fn purpose_param(raw: &str) -> Result<Purpose, ApiError> {
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
    Caller(me): Caller,
    Path(purpose): Path<String>,
    Body(req): Body<ConsultantPrice>,
) -> Result<Json<ConsultantPrice>, ApiError> {
    require(&me, Role::Consultant)?;
    let purpose = purpose_param(&purpose)?;
    let price = req;
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
    Caller(me): Caller,
    Path(purpose): Path<String>,
) -> Result<StatusCode, ApiError> {
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
