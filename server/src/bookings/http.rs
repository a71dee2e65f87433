//! The booking commands (`/v1/bookings…`): propose, list, read, accept,
//! decline, cancel, reschedule. Each command that changes a booking runs
//! under its consultant's lock ([`super::sql::locked`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use parley_domain::protocol::rest::{
    AcceptBooking, Booking, BookingList, BookingReason, BookingRequest, BookingState, RescheduleBooking,
    WebhookEventType,
};
use parley_domain::protocol::{ErrorCode, Role, SessionBill};
use parley_domain::{CallId, SessionId, UserId};

use super::availability::{self, bad, busy, consultant, price_for, schedule_on};
use super::rules::{
    BOOKING_HORIZON, MAX_REASON, RESPOND_WITHIN, free_to_cancel, hold_due_ms, late_fee, ms, not_pending,
};
use super::sql::{COLUMNS, db, emit, held_amount, load, locked_mine, mine, read};
use super::worker::place_due_hold;
use crate::kernel::{ApiError, AppState, Body, Caller, CallerIdentity, require};

/// The routes of the bookings area (availability, prices per purpose,
/// slots, bookings).
pub fn router(state: AppState) -> Router {
    let idempotent = axum::middleware::from_fn_with_state(state.clone(), crate::kernel::idempotency::layer);
    Router::new()
        .route(
            "/v1/consultants/me/availability",
            get(availability::my_availability).put(availability::set_availability),
        )
        .route(
            "/v1/consultants/me/prices/{purpose}",
            put(availability::set_purpose_price).delete(availability::clear_purpose_price),
        )
        .route("/v1/consultants/{id}/slots", get(availability::slots))
        .route("/v1/policy", get(availability::policy))
        .route("/v1/bookings", post(propose).layer(idempotent).get(list))
        .route("/v1/bookings/{id}", get(one))
        .route("/v1/bookings/{id}/accept", post(accept))
        .route("/v1/bookings/{id}/decline", post(decline))
        .route("/v1/bookings/{id}/cancel", post(cancel))
        .route("/v1/bookings/{id}/reschedule", post(reschedule))
        .with_state(state)
}

/// Checks proposed starts: 1–3, distinct, in the future, within the
/// horizon, inside the consultant's availability, not overlapping a
/// confirmed booking. Returns them sorted.
pub(crate) async fn check_slots(
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
    let schedule = schedule_on(conn, consultant).await?;
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
/// `recording_not_allowed`; 404 `unknown_consultant`, `unknown_engagement`;
/// 409 `slot_taken`, `engagement_state` (a package with no session left to
/// book, decided under the engagement's lock, E2).
#[utoipa::path(post, path = "/v1/bookings", tag = "bookings", security(("bearer" = [])), request_body = BookingRequest,
    responses((status = 201, body = Booking),
        (status = 400, description = "`slot_in_past`, `slot_unavailable`, `invalid_field`, `missing_field`", body = parley_domain::protocol::Problem),
        (status = 403, description = "`wrong_role`, `premium_required`, `recording_not_allowed`", body = parley_domain::protocol::Problem),
        (status = 404, description = "`unknown_consultant`, `unknown_engagement`", body = parley_domain::protocol::Problem),
        (status = 409, description = "`slot_taken`, `engagement_state` (no package session left)", body = parley_domain::protocol::Problem)))]
pub(crate) async fn propose(
    State(s): State<AppState>,
    CallerIdentity(identity): CallerIdentity,
    Body(req): Body<BookingRequest>,
) -> Result<(StatusCode, Json<Booking>), ApiError> {
    let me = identity.user;
    require(&me, Role::Seeker)?;
    let consultant = consultant(&s, req.consultant_id.to_string()).await?;
    let mut conn = s.store.pool().acquire().await.map_err(db)?;
    let slots = check_slots(&s, &mut conn, &consultant, &req.slots, req.length_min, None).await?;
    drop(conn);
    if req.record {
        s.consent
            .check_request(&me.id, identity.premium, &consultant)
            .await
            .map_err(|(code, m)| ApiError::Forbidden(code, m))?;
    }
    let now = s.clock.now().unix_millis();
    let (price, pm) = match &req.engagement_id {
        Some(_) => (None, None),
        None => (price_for(&s, &consultant, req.purpose).await?, req.payment_method.filter(|p| !p.trim().is_empty())),
    };
    if price.is_some() && pm.is_none() {
        return Err(bad(
            ErrorCode::MissingField,
            "payment_method: this session has a price; give a payment method for its hold",
        ));
    }
    let mut tx = s.store.pool().begin().await.map_err(db)?;
    let price = match &req.engagement_id {
        // A package session draws from its escrow: no card, no hold (E2).
        // Whether a session is left is decided under the engagement's
        // lock, which this transaction holds until the booking is stored.
        Some(eng) => Some(
            crate::engagements::sql::package_booking(&mut tx, now, eng, &me.id, &consultant, req.length_min).await?,
        ),
        None => price,
    };
    let id = format!("bkg_{}", uuid::Uuid::now_v7().simple());
    let session_id = new_session_id();
    let call_id = CallId::parse(format!("call_{}", uuid::Uuid::now_v7().simple())).expect("valid id");
    let respond_by = (now + ms(RESPOND_WITHIN)).min(slots[0]);
    sqlx::query(
        "INSERT INTO bookings (id, session_id, call_id, seeker_id, consultant_id, purpose, length_min, proposed, state, \
         respond_by_ms, price_model, price_minor, currency, payment_method, record, seeker_name, seeker_premium, \
         hold_status, created_ms, updated_ms, engagement_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $18, $19)",
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
    .bind(req.engagement_id.as_deref())
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let booking = load(&mut tx, &id).await?.expect("just written").booking;
    tx.commit().await.map_err(db)?;
    emit(&s, WebhookEventType::BookingRequested, &booking).await;
    s.bookings_wake.wake();
    Ok((StatusCode::CREATED, Json(booking)))
}

pub(crate) fn new_session_id() -> SessionId {
    SessionId::parse(format!("ses_{}", uuid::Uuid::now_v7().simple())).expect("valid id")
}

/// `GET /v1/bookings` (anyone): the caller's bookings as seeker or
/// consultant, newest first (at most 200).
#[utoipa::path(get, path = "/v1/bookings", tag = "bookings", security(("bearer" = [])),
    responses((status = 200, body = BookingList),
        (status = 401, description = "missing, forged or expired token", body = parley_domain::protocol::Problem)))]
pub(crate) async fn list(State(s): State<AppState>, Caller(me): Caller) -> Result<Json<BookingList>, ApiError> {
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
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Json<Booking>, ApiError> {
    Ok(Json(mine(&s, &me, &id).await?.booking))
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
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<AcceptBooking>,
) -> Result<Json<Booking>, ApiError> {
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
    let hold_due = hold_due_ms(req.start_ms, now);
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
    s.bookings_wake.wake();
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
    Caller(me): Caller,
    Path(id): Path<String>,
    b: Option<Body<BookingReason>>,
) -> Result<Json<Booking>, ApiError> {
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
fn reason(b: Option<Body<BookingReason>>) -> Result<Option<String>, ApiError> {
    let reason = b.and_then(|Body(b)| b.reason).filter(|r| !r.trim().is_empty());
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
    Caller(me): Caller,
    Path(id): Path<String>,
    b: Option<Body<BookingReason>>,
) -> Result<Json<Booking>, ApiError> {
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
    let late = b.start_ms.is_some_and(|start| !free_to_cancel(start, now.unix_millis()));
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
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<RescheduleBooking>,
) -> Result<Json<Booking>, ApiError> {
    let now = s.clock.now();
    let (mut tx, row) = locked_mine(&s, &me, &id).await?;
    let b = &row.booking;
    let open = match b.state {
        BookingState::Pending => now.unix_millis() < b.respond_by_ms,
        BookingState::Confirmed => b.start_ms.is_some_and(|start| free_to_cancel(start, now.unix_millis())),
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
    s.bookings_wake.wake();
    Ok(Json(booking))
}
