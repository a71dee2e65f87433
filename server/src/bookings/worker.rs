//! The booking scheduler: expires unanswered bookings, places due holds,
//! sends reminders, opens rooms and announces no-shows, on the server
//! clock. A deadline-driven worker ([`crate::kernel::worker`]): each pass
//! returns the next instant something falls due, and a booking command
//! wakes it early.

use std::time::Duration;

use parley_domain::protocol::rest::{BookingState, ConsultantPrice, WebhookEventType};
use parley_domain::protocol::{Role, ServerMessage, UserInfo};
use parley_domain::{Timestamp, UserId};
use parley_signaling::Store;
use parley_signaling::store::SessionRecord;
use sqlx::Row;

use super::rules::{NO_SHOW_AFTER, REMINDER_BEFORE, ROOM_OPENS_BEFORE, booked_session, ms};
use super::sql::{COLUMNS, StoredBooking, db, due, emit, emit_tagged, load, locked, push, read};
use crate::kernel::worker::{self, Job, earliest};
use crate::kernel::{ApiError, AppState};

/// A hold claimed (`placing`) longer ago than this belongs to a placer that
/// died: another may take it over (the provider call is idempotent by
/// `hold:<session>`, and a hold already recorded is used as it is).
const PLACING_LEASE: Duration = Duration::from_secs(60);

/// Places the hold of confirmed booking `id` if it is due and not placed.
/// A refusal flags the booking (`hold_status` `failed`, `hold_error`); the
/// room will not open for it.
pub(crate) async fn place_due_hold(s: &AppState, id: &str) {
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
        Some(h) if h.status == "held" || h.status == "escrow" => Ok(()),
        Some(h) => Err(format!("the hold is {}", h.status)),
        None if row.engagement_id.is_some() => {
            // A package session: priced from its escrow, no card (E2).
            let what = parley_billing::HoldFor {
                session_id: &session,
                call_id: row.call_id.as_str(),
                seeker: &b.seeker_id,
                consultant: &b.consultant_id,
                opens_at: b.opens_at_ms.map(Timestamp::from_unix_millis),
            };
            s.billing.place_escrow_hold(&what, price.amount, b.length_min).await.map(|_| ()).map_err(|e| e.to_string())
        }
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
    if current && status == "held" {
        push(s, id).await;
    }
    if let Some(error) = error {
        tracing::info!(booking_id = id, %error, "a booking's hold was refused: the booking is flagged");
        let mut conn = s.store.pool().acquire().await.map_err(db)?;
        if let Some(b) = load(&mut conn, id).await? {
            emit(s, WebhookEventType::BookingHoldFailed, &b.booking).await;
        }
    }
    Ok(())
}

/// If the next pass fails, it is tried again this long after (server clock).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The longest the scheduler waits without a pass: bookings another node
/// changed (its commands wake only its own scheduler) are seen within this
/// (server clock).
pub const RESCAN_EVERY: Duration = Duration::from_secs(60);

/// The scheduler as a [`Job`]: every pass is a set of conditional updates,
/// so several nodes may run it. Run it with [`kernel::worker::run`] on the
/// state's clock and `bookings_wake` (booking commands and session ends
/// wake it); it reports each pass's time in `scheduler_progress`.
///
/// [`kernel::worker::run`]: crate::kernel::worker::run
pub struct Scheduler(pub AppState);

impl Job for Scheduler {
    async fn step(&self, now: Timestamp) -> Option<Timestamp> {
        let s = &self.0;
        if let Err(e) = tick(s).await {
            tracing::error!(error = %e, "booking scheduler");
            return Some(now.plus(RETRY_AFTER));
        }
        let rescan = now.plus(RESCAN_EVERY);
        match next_due(s, s.clock.now().unix_millis()).await {
            Ok(next) => earliest(next.map(Timestamp::from_unix_millis), Some(rescan)),
            Err(e) => {
                tracing::error!(error = %e, "booking scheduler: cannot read the next deadline");
                Some(now.plus(RETRY_AFTER))
            }
        }
    }

    fn stepped(&self, now: Timestamp) {
        self.0.scheduler_progress.send_replace(now.unix_millis());
    }
}

/// The scheduler until `shutdown`: a [`Scheduler`] run by the kernel's
/// deadline worker on `s`'s clock, woken by `s.bookings_wake`.
pub async fn run(s: AppState, shutdown: impl std::future::Future<Output = ()> + Send) {
    let (clock, wake) = (s.clock.clone(), s.bookings_wake.clone());
    worker::run(Scheduler(s), clock, wake, shutdown).await;
}

/// The earliest instant (Unix ms) at which a pass has something to do,
/// as of `now`: a pending booking's answer time, a scheduled hold's due
/// time, a `placing` claim's lease end, a first reminder (while the room
/// is not yet open), a room opening. `None`: nothing scheduled. (A no-show
/// is announced when its session ends, which wakes the scheduler.)
async fn next_due(s: &AppState, now: i64) -> Result<Option<i64>, ApiError> {
    let sql = format!(
        "SELECT CAST(MIN(t) AS BIGINT) AS next FROM ( \
           SELECT respond_by_ms AS t FROM bookings WHERE state = 'pending' \
           UNION ALL SELECT hold_due_ms AS t FROM bookings \
             WHERE state = 'confirmed' AND hold_status = 'scheduled' AND hold_due_ms IS NOT NULL \
           UNION ALL SELECT updated_ms + {lease} AS t FROM bookings WHERE state = 'confirmed' AND hold_status = 'placing' \
           UNION ALL SELECT start_ms - {reminder} AS t FROM bookings \
             WHERE state = 'confirmed' AND reminders_sent = 0 AND start_ms - {opens} > $1 \
           UNION ALL SELECT start_ms - {opens} AS t FROM bookings \
             WHERE state = 'confirmed' AND hold_status NOT IN ('scheduled', 'placing') \
         ) due",
        lease = ms(PLACING_LEASE),
        reminder = ms(REMINDER_BEFORE),
        opens = ms(ROOM_OPENS_BEFORE),
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).fetch_one(&s.store.pool()).await.map_err(db)?;
    row.try_get::<Option<i64>, _>("next").map_err(db)
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
    let cfg = pricing.as_ref().map(|held| crate::sessions::gate::meter_config(s.meters.settings(), held));
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

/// `booking.no_show` for booked sessions that ended `no_show`, once each
/// (a conditional update claims the announcement).
async fn announce_no_shows(s: &AppState) -> Result<(), ApiError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM bookings WHERE state = 'held' AND no_show_announced = 0 \
         AND session_id IN (SELECT x.id FROM sessions x WHERE x.end_reason = 'no_show') LIMIT 100"
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
