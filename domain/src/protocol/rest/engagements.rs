//! Escrowed engagements (rules E1–E8): a package of sessions or a list of
//! milestones, funded up front and paid out to the consultant as the work
//! is done. Amounts are integer minor units with a currency.

use serde::{Deserialize, Serialize};

use crate::ids::{SessionId, UserId};
use crate::money::Money;

/// The most milestones of one engagement.
pub const MAX_MILESTONES: usize = 20;
/// The most sessions of one package.
pub const MAX_PACKAGE_SESSIONS: u32 = 50;
/// The longest title, description, note or reason, in characters.
pub const MAX_ENGAGEMENT_TEXT: usize = 2000;
/// The most links of a submission.
pub const MAX_LINKS: usize = 10;

/// A package's terms: `sessions` booked sessions of `minutes` each, each
/// worth `price` (the whole package costs `sessions` × `price`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PackageTerms {
    /// 1–[`MAX_PACKAGE_SESSIONS`].
    pub sessions: u32,
    /// Length of each session, minutes (1–240).
    pub minutes: u32,
    /// The price of one session (in an accepted currency, at least 1).
    pub price: Money,
}

/// A milestone to fund: what is to be delivered and what it pays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MilestoneTerms {
    /// 1–[`MAX_ENGAGEMENT_TEXT`] characters.
    pub description: String,
    /// At least 1; every milestone of an engagement in one currency.
    pub amount: Money,
}

/// `POST /v1/engagements` body (seekers): exactly one of `package` and
/// `milestones` (1–[`MAX_MILESTONES`]). The total is charged at once on
/// `payment_method` into the platform's balance (E1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateEngagement {
    /// The consultant (with a payout account ready).
    pub consultant_id: UserId,
    /// 1–[`MAX_ENGAGEMENT_TEXT`] characters.
    pub title: String,
    /// A package of sessions.
    #[serde(default)]
    pub package: Option<PackageTerms>,
    /// Milestones.
    #[serde(default)]
    pub milestones: Option<Vec<MilestoneTerms>>,
    /// The card charged, e.g. `pm_card_visa` in the sandbox.
    pub payment_method: String,
}

/// A milestone as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Milestone {
    /// `ms_…`.
    pub id: String,
    /// 1, 2, … in the order funded.
    pub seq: u32,
    /// What is to be delivered.
    pub description: String,
    /// What it pays (gross: the consultant receives it less the commission).
    pub amount: Money,
    /// `open`, `submitted`, `disputed`, `released`, `refunded` or `split`.
    pub state: String,
    /// The consultant's submission note.
    pub note: Option<String>,
    /// The consultant's submission links.
    pub links: Vec<String>,
    /// When a submitted milestone is released unless answered (E4).
    pub release_due_ms: Option<i64>,
    /// Why it is disputed.
    pub dispute_reason: Option<String>,
    /// Released to the consultant (gross).
    pub released: Money,
    /// Refunded to the seeker.
    pub refunded: Money,
    /// The moderator's note on a resolved dispute.
    pub resolution_note: Option<String>,
}

/// An engagement as the API shows it (its parties and moderators).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Engagement {
    /// `eng_…`.
    pub id: String,
    /// Who funded it.
    pub seeker_id: UserId,
    /// Who is paid.
    pub consultant_id: UserId,
    /// `package` or `milestones`.
    pub kind: String,
    /// `funding`, `active`, `failed`, `cancelled` or `completed`.
    pub state: String,
    /// The title.
    pub title: String,
    /// What was charged.
    pub funded: Money,
    /// Paid out to the consultant so far (gross, commission included).
    pub released: Money,
    /// Refunded to the seeker so far.
    pub refunded: Money,
    /// Still held in escrow: funded − released − refunded − fees kept.
    pub escrowed: Money,
    /// The package's terms.
    pub package: Option<PackageTerms>,
    /// Package sessions charged so far (a free session does not count, E2).
    pub sessions_used: u32,
    /// Package sessions left to book: neither charged nor taken by a pending,
    /// confirmed or held booking (0 unless active, E2).
    pub sessions_left: u32,
    /// The milestones, in order.
    pub milestones: Vec<Milestone>,
    /// The cancellation fee kept, if cancelled (E6).
    pub cancel_fee: Option<Money>,
    /// The charge's PaymentIntent (`pi_…`).
    pub intent_id: Option<String>,
    /// Why funding failed.
    pub error: Option<String>,
    /// Unix ms.
    pub created_at_ms: i64,
    /// The package's sessions drawn so far.
    pub sessions: Vec<SessionId>,
}

/// `POST /v1/milestones/{id}/submit` body (the consultant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitMilestone {
    /// What was done, 1–[`MAX_ENGAGEMENT_TEXT`] characters.
    pub note: String,
    /// Up to [`MAX_LINKS`] `http(s)` links.
    #[serde(default)]
    pub links: Vec<String>,
}

/// `POST /v1/milestones/{id}/dispute` body (either party).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DisputeMilestone {
    /// Why, 1–[`MAX_ENGAGEMENT_TEXT`] characters.
    pub reason: String,
}

/// `POST /v1/milestones/{id}/resolve` body (moderators): how much of the
/// disputed milestone goes to the consultant; the rest is refunded.
/// `release_minor` = amount: release; 0: refund; between: split (E5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResolveMilestone {
    /// 0–amount, minor units of the milestone's currency.
    pub release_minor: i64,
    /// The moderator's note, 1–[`MAX_ENGAGEMENT_TEXT`] characters.
    pub note: String,
}
