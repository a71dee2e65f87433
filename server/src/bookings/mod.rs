//! Scheduled sessions (DESIGN.md §3, issue 4): availability, bookable
//! slots, bookings and the scheduler that carries them to a room.
//!
//! A seeker proposes 1–3 slots; the consultant accepts one (or declines)
//! within 72 hours and before the first proposed start. Accepting fixes the
//! slot under a per-consultant lock row, so of two bookings for one slot
//! exactly one is confirmed (`slot_taken` for the other). The payment hold
//! (B2) is placed at confirmation if the start is within 6 days, else 24
//! hours before the start ([`worker`]); since a hold lasts 7 days, it never
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
//!
//! Layout: [`rules`] (the timings and the pure decisions), [`schedule`]
//! (availability as absolute time, slots), [`sql`] (the `bookings` rows,
//! the per-consultant lock), [`availability`] and [`http`] (the handlers),
//! [`worker`] (the scheduler).

pub mod availability;
pub mod http;
pub mod rules;
pub mod schedule;
pub mod sql;
pub mod worker;

pub use http::router;
pub use rules::{
    BOOKING_HORIZON, FREE_CANCEL_BEFORE, HOLD_AT_CONFIRMATION_WITHIN, HOLD_BEFORE, NO_SHOW_AFTER, REMINDER_BEFORE,
    RESPOND_WITHIN, ROOM_OPENS_BEFORE,
};
