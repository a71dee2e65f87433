//! The timings of a booking (docs/rules.md A1–A9) and the decisions made
//! from them, pure (instants are Unix ms on the server clock): when the
//! hold is placed, when cancelling costs a fee and how much, what a booked
//! session's no-show costs.

use std::time::Duration;

use parley_domain::protocol::ErrorCode;
use parley_domain::protocol::rest::{Booking, BookingState};
use parley_domain::{Money, Timestamp};
use parley_metering::BookedSession;

use crate::config::SeekerNoShow;
use crate::kernel::ApiError;

/// The room opens this long before the start (DESIGN.md §3; kept by the
/// store, which tells the hub when a booked room opens).
pub use crate::store::ROOM_OPENS_BEFORE;
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
pub(crate) const MAX_SLOT_RANGE: Duration = Duration::from_secs(62 * 24 * 3600);
/// Longest decline or cancel reason, bytes.
pub(crate) const MAX_REASON: usize = 200;

/// A duration in whole milliseconds (saturating).
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// When the hold of a booking confirmed at `now` for `start_ms` is placed
/// (Unix ms): at once if the start is at most
/// [`HOLD_AT_CONFIRMATION_WITHIN`] away, else [`HOLD_BEFORE`] the start.
/// A hold lasts 7 days, so it never expires before its session (A4, B6).
pub fn hold_due_ms(start_ms: i64, now: i64) -> i64 {
    if start_ms - now <= ms(HOLD_AT_CONFIRMATION_WITHIN) { now } else { start_ms - ms(HOLD_BEFORE) }
}

/// Whether a booking starting at `start_ms` is still free to cancel or
/// reschedule at `now`: more than [`FREE_CANCEL_BEFORE`] ahead (A8, A9).
pub fn free_to_cancel(start_ms: i64, now: i64) -> bool {
    start_ms - now > ms(FREE_CANCEL_BEFORE)
}

/// The late-cancellation fee for a hold of `hold`: `percent`
/// (`PARLEY_LATE_CANCEL_FEE_PERCENT`) of it, rounded down (the seeker's
/// favour). Also what a seeker who does not come pays under the `charge`
/// no-show policy.
pub fn late_fee(percent: u32, hold: Money) -> Money {
    Money::new(hold.amount_minor * i64::from(percent) / 100, hold.currency)
}

/// A booked session's no-show terms for the meter: the no-show time, and
/// under the `charge` policy the late-cancellation fee of its hold
/// (`pricing`; an unpriced session's no-show is free).
pub fn booked_session(
    no_show_at: Timestamp,
    pricing: Option<&parley_billing::Held>,
    policy: SeekerNoShow,
    fee_percent: u32,
) -> BookedSession {
    let no_show_fee = pricing.filter(|_| policy == SeekerNoShow::Charge).map(|held| late_fee(fee_percent, held.hold));
    BookedSession { join_by: no_show_at, no_show_fee }
}

/// 409 `booking_not_pending`: booking `b` cannot be `what` (accepted,
/// declined…) in its state at `now` (a pending one past its answer time
/// shows as expired).
pub(crate) fn not_pending(b: &Booking, now: i64, what: &str) -> ApiError {
    let state = if b.state == BookingState::Pending && now >= b.respond_by_ms { "expired" } else { b.state.as_str() };
    ApiError::Conflict(ErrorCode::BookingNotPending, format!("booking {} is {state}; it cannot be {what}", b.id))
}
