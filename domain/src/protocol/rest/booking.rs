//! Availability, bookable slots and scheduled sessions (DESIGN.md §3).
//!
//! Times of day are local to the consultant's time zone (`"HH:MM"`, 24 h,
//! `"24:00"` allowed as an end); instants are Unix milliseconds of server
//! time; lengths are minutes.

use serde::{Deserialize, Serialize};

use crate::ids::{SessionId, UserId};
use crate::money::Money;

use super::PriceModel;

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

/// A window of local time within one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimeWindow {
    /// Start, `"HH:MM"` local time.
    pub start: String,
    /// End, `"HH:MM"` local time after `start` (`"24:00"` = midnight).
    pub end: String,
}

/// A recurring weekly window: every `weekday`, from `start` to `end` local time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WeeklyRule {
    /// The day.
    pub weekday: Weekday,
    /// Start, `"HH:MM"` local time.
    pub start: String,
    /// End, `"HH:MM"` local time (`"24:00"` allowed).
    pub end: String,
}

/// A date whose availability differs from the weekly rules: its `windows`
/// replace them that day (none: not available at all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DateException {
    /// The local date, `"YYYY-MM-DD"`.
    pub date: String,
    /// The windows that day; empty = unavailable.
    #[serde(default)]
    pub windows: Vec<TimeWindow>,
}

/// `GET`/`PUT /v1/consultants/me/availability`: when a consultant can be
/// booked. Errors: 400 `unknown_time_zone`, `invalid_field` (a bad time,
/// date, length, an empty or overlapping window, too many rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Availability {
    /// IANA time zone the rules are in (e.g. `"Europe/Paris"`); DST is
    /// followed, so `09:00` stays `09:00` local all year.
    pub time_zone: String,
    /// Session lengths offered, minutes (15–240, at most 6).
    pub session_lengths_min: Vec<u32>,
    /// Weekly windows (at most 50).
    #[serde(default)]
    pub weekly: Vec<WeeklyRule>,
    /// Date exceptions (at most 100).
    #[serde(default)]
    pub exceptions: Vec<DateException>,
}

/// One bookable slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Slot {
    /// Start, Unix ms.
    pub start_ms: i64,
    /// End, Unix ms (`start_ms` + the length).
    pub end_ms: i64,
}

/// `GET /v1/consultants/{id}/slots`: the free slots of one length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SlotList {
    /// The consultant's time zone.
    pub time_zone: String,
    /// The length asked for, minutes.
    pub length_min: u32,
    /// Free slots, earliest first.
    pub slots: Vec<Slot>,
}

/// What a session is for; each has its own price (DESIGN.md M7 models).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Purpose {
    /// Paid advice (the consultant's price, `PUT /v1/consultants/me/price`).
    #[default]
    Consultation,
    /// Mentorship: its own price, or the consultation price if none is set.
    Mentorship,
    /// A hiring interview: its own price, free if none is set.
    Interview,
}

impl Purpose {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Consultation => "consultation",
            Purpose::Mentorship => "mentorship",
            Purpose::Interview => "interview",
        }
    }

    /// The purpose named `s`.
    pub fn parse(s: &str) -> Option<Purpose> {
        [Purpose::Consultation, Purpose::Mentorship, Purpose::Interview].into_iter().find(|p| p.as_str() == s)
    }
}

/// `POST /v1/bookings` (seekers): propose 1–3 slots to a consultant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BookingRequest {
    /// The consultant.
    pub consultant_id: UserId,
    /// 1–3 proposed starts, Unix ms, each in the consultant's availability.
    pub slots: Vec<i64>,
    /// The length, minutes: one the consultant offers.
    pub length_min: u32,
    /// What the session is for (default `consultation`).
    #[serde(default)]
    pub purpose: Purpose,
    /// The payment method the hold is placed on (required when the session
    /// has a price), e.g. `pm_card_visa` in the sandbox.
    #[serde(default)]
    pub payment_method: Option<String>,
    /// Ask for the session to be recorded (premium seekers, consultants who
    /// allow it; DESIGN.md §6).
    #[serde(default)]
    pub record: bool,
    /// A package engagement (`eng_…`) the session draws from instead of a
    /// hold (E2): the seeker's, active, with a session left; the length is
    /// the package's and no payment method is needed.
    #[serde(default)]
    pub engagement_id: Option<String>,
}

/// `POST /v1/bookings/{id}/accept` (the consultant): which proposed slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AcceptBooking {
    /// The chosen start, Unix ms: one of the booking's `proposed`.
    pub start_ms: i64,
}

/// `POST /v1/bookings/{id}/reschedule` (either side, more than 24 h ahead):
/// new proposed slots; the booking waits for the consultant again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RescheduleBooking {
    /// 1–3 new starts, Unix ms.
    pub slots: Vec<i64>,
}

/// `POST /v1/bookings/{id}/decline` and `/cancel`: an optional reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BookingReason {
    /// Why (at most 200 bytes), shown to the other side.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A booking's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BookingState {
    /// Waiting for the consultant (72 h at most, and never past the first
    /// proposed start).
    Pending,
    /// Accepted: a slot is fixed and the session will open.
    Confirmed,
    /// The consultant declined.
    Declined,
    /// The consultant did not answer in time.
    Expired,
    /// Cancelled by either side.
    Cancelled,
    /// The session was held (its room opened).
    Held,
}

impl BookingState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            BookingState::Pending => "pending",
            BookingState::Confirmed => "confirmed",
            BookingState::Declined => "declined",
            BookingState::Expired => "expired",
            BookingState::Cancelled => "cancelled",
            BookingState::Held => "held",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<BookingState> {
        use BookingState::*;
        [Pending, Confirmed, Declined, Expired, Cancelled, Held].into_iter().find(|b| b.as_str() == s)
    }
}

/// A booking, as both sides see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Booking {
    /// `bkg_…`.
    pub id: String,
    /// The session it opens (its room, meter and hold use this id).
    pub session_id: SessionId,
    /// The seeker who proposed it.
    pub seeker_id: UserId,
    /// The consultant.
    pub consultant_id: UserId,
    /// The seeker's display name (from their token when they proposed).
    #[serde(default)]
    pub seeker_name: String,
    /// The consultant's display name (their profile's, else the name they
    /// last connected with, else their id).
    #[serde(default)]
    pub consultant_name: String,
    /// What it is for.
    pub purpose: Purpose,
    /// The length, minutes.
    pub length_min: u32,
    /// The proposed starts, Unix ms.
    pub proposed: Vec<i64>,
    /// The state.
    pub state: BookingState,
    /// The accepted start, Unix ms (confirmed and later).
    pub start_ms: Option<i64>,
    /// When the room opens (10 minutes before the start), Unix ms.
    pub opens_at_ms: Option<i64>,
    /// Until when the consultant may accept, Unix ms (pending).
    pub respond_by_ms: i64,
    /// The price: fixed per session, or per minute beyond the free window.
    /// `None`: free.
    pub price: Option<BookingPrice>,
    /// The hold: `none` (free), `scheduled` (placed 24 h before the start,
    /// DESIGN.md §3), `held`, `failed` (the booking is flagged; see
    /// `hold_error`), `released`, `captured`.
    pub hold_status: String,
    /// Why the hold failed.
    pub hold_error: Option<String>,
    /// Recording was asked for (and allowed).
    pub record: bool,
    /// Why it was declined or cancelled.
    pub reason: Option<String>,
    /// Who cancelled.
    pub cancelled_by: Option<UserId>,
    /// The late-cancellation fee charged (seeker cancelling within 24 h).
    pub cancellation_fee: Option<Money>,
    /// Created, Unix ms.
    pub created_ms: i64,
}

/// A booking's price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BookingPrice {
    /// `fixed` or `per_minute`.
    pub model: PriceModel,
    /// The amount (per session, or per started minute).
    pub amount: Money,
}

/// `GET /v1/bookings`: the caller's bookings (as seeker or consultant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BookingList {
    /// Newest first.
    pub bookings: Vec<Booking>,
}
