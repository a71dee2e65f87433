//! Consultant profiles, the directory and promotions (issue 4).
//!
//! Sizes are bytes of UTF-8 text; times are Unix milliseconds of server
//! time; durations are seconds; money is [`Money`] (integer minor units).

use serde::{Deserialize, Serialize};

use super::ConsultantPrice;
use crate::ids::UserId;
use crate::money::Money;
use crate::protocol::PresenceStatus;

/// `PUT /v1/consultants/me/profile` body: the whole profile (a replace, not
/// a patch). Bad input is 400 `invalid_field` naming the field, or
/// `unknown_time_zone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProfileUpdate {
    /// The name seekers see, 1–100 bytes after trimming, no control
    /// characters.
    pub display_name: String,
    /// One line about the consultant, at most 160 bytes, no control
    /// characters. Default empty.
    #[serde(default)]
    pub headline: String,
    /// Free text, at most 5000 bytes. Default empty.
    #[serde(default)]
    pub bio: String,
    /// Expertise tags, at most 20, each 1–40 bytes after trimming; stored
    /// lower-case, duplicates dropped, order kept. Default none.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Languages spoken as BCP 47-style codes: a 2–3 letter language, an
    /// optional 4-letter script and an optional 2-letter or 3-digit region
    /// (`en`, `fr`, `pt-BR`, `zh-Hant-TW`); stored as `pt-BR` (language
    /// lower-case, script title-case, region upper-case), at most 20,
    /// duplicates dropped. Default none.
    #[serde(default)]
    pub languages: Vec<String>,
    /// The consultant's IANA time zone (`Europe/Berlin`); an unknown name is
    /// 400 `unknown_time_zone`. Scheduled sessions use it.
    pub time_zone: String,
    /// Session lengths offered for scheduled sessions, in minutes: 1–6
    /// entries, each 15–240; stored sorted, duplicates dropped.
    pub session_minutes: Vec<u32>,
}

/// A consultant's reviews summed up (`domain::reputation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsultantRating {
    /// How many reviews they have.
    pub count: u64,
    /// The plain mean of their stars (1–5); absent with no reviews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// The Bayesian average of their stars (`reputation::bayesian_average`,
    /// 1–5; the prior's 3.5 with no reviews): what the directory sorts and
    /// filters by.
    pub score: f64,
}

/// `GET /v1/consultants/{id}/profile` and the answer of `PUT
/// /v1/consultants/me/profile`: the profile as stored plus facts kept
/// elsewhere (price, recording consent, payout account, reviews,
/// promotion, presence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsultantProfile {
    /// The consultant.
    pub consultant_id: UserId,
    /// See [`ProfileUpdate`].
    pub display_name: String,
    /// See [`ProfileUpdate`].
    pub headline: String,
    /// See [`ProfileUpdate`].
    pub bio: String,
    /// Lower-case tags.
    pub tags: Vec<String>,
    /// Normalised language codes.
    pub languages: Vec<String>,
    /// IANA time zone.
    pub time_zone: String,
    /// Session lengths offered, minutes, ascending.
    pub session_minutes: Vec<u32>,
    /// When the profile was last written, Unix ms.
    pub updated_at_ms: i64,
    /// Their price (`PUT /v1/consultants/me/price`); absent: free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<ConsultantPrice>,
    /// What a mentorship session and an interview cost with them
    /// (DESIGN.md M7: a purpose without its own price falls back).
    #[serde(default)]
    pub purpose_prices: PurposePrices,
    /// Whether they allow recording (`PUT /v1/consultants/me/recording`).
    pub recording_allowed: bool,
    /// Whether their payout account can receive transfers (onboarding
    /// finished).
    pub payout_ready: bool,
    /// Their reviews summed up.
    pub rating: ConsultantRating,
    /// End of their featured placement, Unix ms, while they are promoted;
    /// absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub featured_until_ms: Option<i64>,
    /// Presence now.
    pub presence: PresenceStatus,
}

/// The price of each booking purpose besides consultations, as a seeker
/// pays it (`PUT /v1/consultants/me/prices/{purpose}` sets one): a
/// mentorship session costs its own price or else the consultation price;
/// an interview its own price or nothing. Absent: free.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurposePrices {
    /// A mentorship session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentorship: Option<ConsultantPrice>,
    /// An interview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interview: Option<ConsultantPrice>,
}

/// `GET /v1/policy`: the terms every call and booking runs under, to show
/// before a call (DESIGN.md §4, rules M6, M7 and the booking policies of
/// docs/rules.md). Durations in seconds; the fee in percent of the hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Policy {
    /// The free window `F`: a session whose billable time stays below it
    /// costs nothing (M6).
    pub free_window_secs: u64,
    /// How long before `F` both sides are asked to continue or end
    /// (`meter.free_window_ending`).
    pub free_window_warning_secs: u64,
    /// The longest billable time of an instant call; a per-minute hold is
    /// the rate × this many minutes (M7).
    pub instant_max_minutes: u32,
    /// How long a participant may be away before the session ends (`G`).
    pub grace_secs: u64,
    /// A seeker who cancels a confirmed booking this close to its start
    /// or closer pays the late-cancellation fee; earlier it is free.
    pub free_cancel_before_secs: u64,
    /// The late-cancellation fee, percent of the hold (rounded down).
    pub late_cancel_fee_percent: u32,
    /// A booking confirmed at most this long before its start has its hold
    /// placed at once; a later one [`Policy::hold_before_secs`] before the
    /// start.
    pub hold_at_confirmation_within_secs: u64,
    /// A booking's hold is placed this long before its start (see above).
    pub hold_before_secs: u64,
    /// The room of a booked session opens this long before its start.
    pub room_opens_before_secs: u64,
    /// A booked session nobody joins ends as a no-show this long after its
    /// start.
    pub no_show_after_secs: u64,
    /// A consultant has this long to answer a proposed booking (or until
    /// its first proposed start, if sooner).
    pub respond_within_secs: u64,
}

/// `POST /v1/ws-tickets`: a one-time ticket for opening the signaling
/// WebSocket (`/v1/signal?ticket=…`) without putting the access token in
/// a URL. Single use, valid [`WsTicket::expires_at_ms`] (30 s of server
/// time after it was issued).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WsTicket {
    /// The ticket: 43 URL-safe characters (256 random bits).
    pub ticket: String,
    /// Until when it opens a connection, Unix ms (server time).
    pub expires_at_ms: i64,
}

/// One consultant in `GET /v1/directory`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DirectoryItem {
    /// The consultant.
    pub id: UserId,
    /// Their display name.
    pub display_name: String,
    /// Their headline (may be empty).
    pub headline: String,
    /// Lower-case tags.
    pub tags: Vec<String>,
    /// Normalised language codes.
    pub languages: Vec<String>,
    /// Their price; absent: free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<ConsultantPrice>,
    /// Their reviews summed up.
    pub rating: ConsultantRating,
    /// Presence now.
    pub presence: PresenceStatus,
    /// Promoted now: featured consultants come first in every sort.
    pub featured: bool,
}

/// `GET /v1/directory` query: every field optional (docs/protocol.md
/// §13.25). Bad values are 400 `invalid_field` naming the parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectoryQuery {
    /// Keywords, all of which must match (name, headline, bio, tags); at
    /// most 200 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Only consultants with this tag (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Only consultants speaking this language (`pt` also matches `pt-BR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Lowest price, minor units (needs `currency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_price: Option<i64>,
    /// Highest price, minor units (needs `currency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<i64>,
    /// Only consultants priced in this ISO 4217 currency, and free ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Only consultants available to call now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_now: Option<bool>,
    /// Lowest Bayesian rating, 1–5 stars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rating: Option<f64>,
    /// `relevance` (with `q`, its default), `rating` (the default without
    /// `q`) or `price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// Items per page, 1–50 (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (with the same other fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `GET /v1/directory` answer: one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DirectoryPage {
    /// At most `limit` consultants, in order.
    pub items: Vec<DirectoryItem>,
    /// Pass as `cursor` (with the same query) for the next page; absent on
    /// the last page. Opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A promotion package on sale (`GET /v1/promotions/packages`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PromotionPackage {
    /// Stable id, e.g. `featured_7d`.
    pub id: String,
    /// What it is, for people.
    pub name: String,
    /// How long the featured placement lasts, seconds.
    pub duration_secs: u64,
    /// What it costs, charged at once.
    pub price: Money,
}

/// `POST /v1/consultants/me/promotions` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PromotionPurchaseRequest {
    /// A [`PromotionPackage`] id; another is 400 `unknown_package`.
    pub package_id: String,
    /// The consultant's payment method (`pm_…`; the sandbox's test cards:
    /// `pm_card_visa` succeeds, `pm_card_chargeDeclined` is declined,
    /// `pm_card_authenticationRequired` needs 3-D Secure).
    pub payment_method: String,
}

/// A paid promotion: the receipt of one purchase and the featured window it
/// bought.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PromotionReceipt {
    /// The purchase (`promo_…`).
    pub purchase_id: String,
    /// The package bought.
    pub package_id: String,
    /// What was charged (captured in full).
    pub amount: Money,
    /// The provider (`sandbox`, `stripe`).
    pub provider: String,
    /// The provider's payment (a PaymentIntent id, `pi_…`).
    pub provider_ref: String,
    /// When it was paid, Unix ms.
    pub paid_at_ms: i64,
    /// Start of the featured window it bought, Unix ms: the purchase time,
    /// or the end of the window running then (windows stack).
    pub starts_at_ms: i64,
    /// End of that window, Unix ms (start + the package's duration).
    pub ends_at_ms: i64,
}

/// A featured placement running now: back-to-back purchased windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeaturedWindow {
    /// When it began, Unix ms.
    pub since_ms: i64,
    /// When it ends, Unix ms (the end of the last window bought).
    pub until_ms: i64,
}

/// `GET /v1/consultants/me/promotions` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MyPromotions {
    /// Paid purchases, newest first (declined or failed attempts are not
    /// receipts and are not listed).
    pub purchases: Vec<PromotionReceipt>,
    /// The placement running now; absent when not featured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<FeaturedWindow>,
}
