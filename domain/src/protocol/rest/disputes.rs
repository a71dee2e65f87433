//! Disputes of charged sessions and card chargebacks (docs/rules.md D1–D6).

use serde::{Deserialize, Serialize};

use crate::ids::{SessionId, UserId};
use crate::money::Money;

use super::{ChatLine, RecordingFile, SessionDetails};

/// The longest dispute text, answer or moderator note, in characters.
pub const MAX_DISPUTE_CHARS: usize = 4000;

/// Why a participant disputes a session (a fixed list, D1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DisputeReason {
    /// `consultant_absent`: the consultant did not come or left.
    ConsultantAbsent,
    /// `session_cut_short`: the session ended early.
    SessionCutShort,
    /// `quality`: the connection or the advice was poor.
    Quality,
    /// `not_as_described`: not what the profile offered.
    NotAsDescribed,
    /// `other`: the text says.
    Other,
}

impl DisputeReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DisputeReason::ConsultantAbsent => "consultant_absent",
            DisputeReason::SessionCutShort => "session_cut_short",
            DisputeReason::Quality => "quality",
            DisputeReason::NotAsDescribed => "not_as_described",
            DisputeReason::Other => "other",
        }
    }

    /// The reason named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [
            DisputeReason::ConsultantAbsent,
            DisputeReason::SessionCutShort,
            DisputeReason::Quality,
            DisputeReason::NotAsDescribed,
            DisputeReason::Other,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// Where a dispute stands (D2, D3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    /// `open`: waiting for the other side's answer and a moderator.
    Open,
    /// `answered`: the other side answered; waiting for a moderator.
    Answered,
    /// `deciding`: a moderator's decision is being carried out (a refund
    /// at the provider).
    Deciding,
    /// `decided`: final.
    Decided,
}

impl DisputeStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DisputeStatus::Open => "open",
            DisputeStatus::Answered => "answered",
            DisputeStatus::Deciding => "deciding",
            DisputeStatus::Decided => "decided",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [DisputeStatus::Open, DisputeStatus::Answered, DisputeStatus::Deciding, DisputeStatus::Decided]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// A moderator's decision (D3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DisputeDecision {
    /// `uphold`: the charge stands; nothing is refunded.
    Uphold,
    /// `partial_refund`: `amount_minor` is refunded.
    PartialRefund,
    /// `full_refund`: all that is left of the capture is refunded.
    FullRefund,
}

impl DisputeDecision {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DisputeDecision::Uphold => "uphold",
            DisputeDecision::PartialRefund => "partial_refund",
            DisputeDecision::FullRefund => "full_refund",
        }
    }

    /// The decision named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [DisputeDecision::Uphold, DisputeDecision::PartialRefund, DisputeDecision::FullRefund]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// `POST /v1/sessions/{id}/disputes` body (a participant, D1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OpenDisputeRequest {
    /// From the fixed list.
    pub reason: DisputeReason,
    /// 1–[`MAX_DISPUTE_CHARS`] characters, not only white space.
    pub text: String,
}

/// `POST /v1/disputes/{id}/answer` body (the other side, once, D2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnswerDisputeRequest {
    /// 1–[`MAX_DISPUTE_CHARS`] characters, not only white space.
    pub text: String,
}

/// `POST /v1/disputes/{id}/decision` body (moderators, D3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecideDisputeRequest {
    /// Uphold, partial or full refund.
    pub decision: DisputeDecision,
    /// Minor units to refund: required for `partial_refund` (at least 1, at
    /// most what is left), refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    /// The moderator's note to both parties, 1–[`MAX_DISPUTE_CHARS`]
    /// characters.
    pub note: String,
}

/// A dispute of one charged session (at most one per session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Dispute {
    /// `dsp_` + UUIDv7.
    pub id: String,
    /// The disputed session.
    pub session_id: SessionId,
    /// The session's seeker.
    pub seeker_id: UserId,
    /// The session's consultant.
    pub consultant_id: UserId,
    /// Who opened it (the seeker or the consultant).
    pub opened_by: UserId,
    /// Why.
    pub reason: DisputeReason,
    /// The opener's text.
    pub text: String,
    /// When it was opened, server Unix ms.
    pub opened_at_ms: i64,
    /// Where it stands.
    pub status: DisputeStatus,
    /// The other side's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// When they answered, server Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at_ms: Option<i64>,
    /// The moderator's decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DisputeDecision>,
    /// What the decision refunded (none for `uphold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded: Option<Money>,
    /// The provider's refund (`re_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// The moderator's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The deciding moderator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<UserId>,
    /// When it was decided, server Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at_ms: Option<i64>,
}

/// A card chargeback (a Stripe Dispute, `du_…`/`dp_…`) of a session's
/// payment (D5, D6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Chargeback {
    /// The provider's dispute id.
    pub id: String,
    /// The session paid by the disputed charge.
    pub session_id: SessionId,
    /// The disputed amount.
    pub amount: Money,
    /// The card network's reason, as the provider names it (`fraudulent`…).
    pub reason: String,
    /// The provider's status (`needs_response`, `under_review`, `won`, `lost`…).
    pub status: String,
    /// Evidence is due by then, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_due_ms: Option<i64>,
    /// When Parley submitted the evidence, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_submitted_ms: Option<i64>,
    /// `won` or `lost` once closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// One party's history on the platform, for the evidence bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartyHistory {
    /// The party.
    pub user_id: UserId,
    /// `seeker` or `consultant` in this session.
    pub role: String,
    /// Sessions they took part in (this one included).
    pub sessions: u64,
    /// Of those, charged ones.
    pub charged_sessions: u64,
    /// Disputes they opened (this one included).
    pub disputes_opened: u64,
    /// Disputes opened against them.
    pub disputes_against: u64,
    /// Reviews received (consultants) or written (seekers).
    pub reviews: u64,
    /// Their average stars × 100 (e.g. 450 for 4.5), if any reviews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_stars_x100: Option<u64>,
}

/// `GET /v1/disputes/{id}`: the dispute and the evidence Parley recorded
/// (its parties and moderators). Also as Markdown
/// (`GET /v1/disputes/{id}/bundle.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DisputeBundle {
    /// The dispute.
    pub dispute: Dispute,
    /// The session: timeline (joins, drops, rejoins, media states, meter
    /// notices, end), the meter's decision (billable seconds, outcome),
    /// hold, capture, fee, payout, refunds and ledger.
    pub session: SessionDetails,
    /// Chat lines, oldest first.
    pub chat: Vec<ChatLine>,
    /// Notes, oldest first.
    pub notes: Vec<ChatLine>,
    /// Recording files with fresh download links (only recorded sessions,
    /// which both consented to, R1).
    pub recordings: Vec<RecordingFile>,
    /// Both parties' history: the seeker's, then the consultant's.
    pub history: Vec<PartyHistory>,
    /// Card chargebacks of the session's payment.
    pub chargebacks: Vec<Chargeback>,
}
