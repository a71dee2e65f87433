//! Reviews, reputation and consultant metrics.

use serde::{Deserialize, Serialize};

use crate::ids::{SessionId, UserId};
use crate::money::Money;

/// The longest review or reply text, in characters (Unicode scalar values).
pub const MAX_REVIEW_CHARS: usize = 2000;

/// Reviews per page of `GET /v1/consultants/{id}/reviews` unless `limit` says otherwise.
pub const DEFAULT_REVIEW_PAGE: u32 = 20;

/// The largest `limit` of `GET /v1/consultants/{id}/reviews`.
pub const MAX_REVIEW_PAGE: u32 = 100;

/// `POST /v1/sessions/{id}/review` body (the session's seeker, once, after it ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewRequest {
    /// 1–5 stars (else 400 `invalid_field`).
    pub stars: u8,
    /// Free text, at most [`MAX_REVIEW_CHARS`] characters; may be empty or omitted.
    #[serde(default)]
    pub text: String,
}

/// `POST /v1/reviews/{id}/reply` body (the review's consultant, once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplyRequest {
    /// 1–[`MAX_REVIEW_CHARS`] characters, not only white space.
    pub text: String,
}

/// A consultant's public reply to a review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewReply {
    /// The reply.
    pub text: String,
    /// When it was written (Unix ms).
    pub created_at_ms: i64,
}

/// A seeker's review of one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Review {
    /// `rev_` + UUIDv7.
    pub id: String,
    /// The reviewed session (one review per session).
    pub session_id: SessionId,
    /// Who wrote it: the session's seeker.
    pub seeker_id: UserId,
    /// Who is reviewed: the session's consultant.
    pub consultant_id: UserId,
    /// 1–5.
    pub stars: u8,
    /// The text (may be empty).
    pub text: String,
    /// When it was written (Unix ms).
    pub created_at_ms: i64,
    /// The consultant's reply, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<ReviewReply>,
}

/// A consultant's reputation from their reviews (`domain::reputation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reputation {
    /// Reviews counted.
    pub count: u64,
    /// The plain mean of their stars; `None` without reviews.
    #[serde(default)]
    pub mean: Option<f64>,
    /// The Bayesian average (`reputation::bayesian_average`: the prior is
    /// 5 reviews of 3.5 stars), in stars; 3.5 without reviews. Rank by this.
    pub score: f64,
}

impl Reputation {
    /// The reputation of `count` reviews whose stars add up to `stars_sum`.
    pub fn from_stars(count: u64, stars_sum: u64) -> Reputation {
        Reputation {
            count,
            mean: (count > 0).then(|| stars_sum as f64 / count as f64),
            score: crate::reputation::bayesian_average(count, stars_sum),
        }
    }
}

/// `GET /v1/consultants/{id}/reviews`: one page, newest first, and the
/// consultant's reputation over all their reviews.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewPage {
    /// The consultant.
    pub consultant_id: UserId,
    /// Over all their reviews (not just this page).
    pub reputation: Reputation,
    /// This page, newest first.
    pub reviews: Vec<Review>,
    /// Pass as `?cursor=` for the next page; absent on the last page.
    /// Opaque: do not parse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// How often a consultant took the requests put to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AcceptanceCounts {
    /// Accepted.
    pub accepted: u64,
    /// Declined.
    pub declined: u64,
    /// Not answered in time: an instant call rang until the ring timeout;
    /// a booking expired (72 h, or its first proposed start, passed).
    pub timed_out: u64,
    /// accepted / (accepted + declined + timed_out), 0–1; `None` when that
    /// is zero. Requests the seeker withdrew (a cancelled call, a booking
    /// cancelled while pending), or that ended because either side went
    /// away, do not count; nor do bookings still pending.
    #[serde(default)]
    pub rate: Option<f64>,
}

impl AcceptanceCounts {
    /// The counts with their rate.
    pub fn new(accepted: u64, declined: u64, timed_out: u64) -> AcceptanceCounts {
        let asked = accepted + declined + timed_out;
        AcceptanceCounts { accepted, declined, timed_out, rate: (asked > 0).then(|| accepted as f64 / asked as f64) }
    }

    /// Both kinds together (`all`): the sums and their rate.
    pub fn plus(&self, other: &AcceptanceCounts) -> AcceptanceCounts {
        AcceptanceCounts::new(
            self.accepted + other.accepted,
            self.declined + other.declined,
            self.timed_out + other.timed_out,
        )
    }
}

/// A consultant's acceptance, per kind of request and overall (the
/// requests created in the period).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Acceptance {
    /// Instant calls that rang the consultant.
    pub instant_calls: AcceptanceCounts,
    /// Bookings answered (or left to expire): accepted counts every booking
    /// the consultant confirmed, including those later cancelled or held.
    pub bookings: AcceptanceCounts,
    /// Instant calls and bookings together.
    pub all: AcceptanceCounts,
}

/// One UTC calendar month of [`ConsultantMetrics`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MonthMetrics {
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// The month's first instant (Unix ms, 00:00 UTC on the 1st).
    pub start_ms: i64,
    /// Sessions opened in the month.
    pub sessions: u64,
    /// Billable seconds of those sessions (as settled).
    pub billable_secs: u64,
    /// `billable_secs / 60`, rounded down.
    pub billable_minutes: u64,
    /// Earnings booked in the month, per currency (see [`ConsultantMetrics::earnings`]).
    pub earnings: Vec<Money>,
}

/// `GET /v1/consultants/{id}/metrics`: figures for the period
/// `[from_ms, to_ms)` (all time when absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsultantMetrics {
    /// The consultant.
    pub consultant_id: UserId,
    /// Start of the period (Unix ms, inclusive), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    /// End of the period (Unix ms, exclusive), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
    /// Sessions opened in the period.
    pub sessions: u64,
    /// Billable seconds of those sessions (from their settlements).
    pub billable_secs: u64,
    /// `billable_secs / 60`, rounded down.
    pub billable_minutes: u64,
    /// The consultant's earnings booked in the period, net of the
    /// platform's commission and of refunds taken back from them; one
    /// entry per currency (minor units), none without earnings.
    pub earnings: Vec<Money>,
    /// Reviews written in the period: count, mean and Bayesian score.
    pub rating: Reputation,
    /// Acceptance of requests created in the period.
    pub acceptance: Acceptance,
    /// Per UTC calendar month, oldest first: every month from the first to
    /// the last with any session or earnings (months in between included,
    /// with zeros).
    pub months: Vec<MonthMetrics>,
}
