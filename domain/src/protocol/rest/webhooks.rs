//! Outgoing webhooks to the operator's platform (docs/protocol.md §14).
//!
//! Each event is POSTed as a [`WebhookEvent`] whose `data` is one of the
//! payloads below, signed with `Parley-Signature: t=<unix secs>,v1=<hex
//! HMAC-SHA256(secret, "<t>.<raw body>")>` (Stripe's scheme). Delivery is
//! at least once: receivers keep the ids they processed and skip repeats.

use serde::{Deserialize, Serialize};

use crate::ids::{CallId, SessionId, UserId};
use crate::money::Money;
use crate::protocol::{Outcome, SessionBill, SessionEndReason};

/// The prefix of every event id: `evt_` followed by a UUIDv7 (time-ordered).
pub const EVENT_ID_PREFIX: &str = "evt_";

/// The header carrying the signature: `t=<unix secs>,v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "Parley-Signature";

/// The header carrying the event id (the same as the body's `id`).
pub const EVENT_ID_HEADER: &str = "Parley-Event-Id";

/// What happened. The wire name (`as_str`) is the body's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WebhookEventType {
    /// `session.started`: a call was accepted and its session stored
    /// ([`SessionStartedData`]).
    #[serde(rename = "session.started")]
    SessionStarted,
    /// `session.ended`: a session ended; its bill is decided
    /// ([`SessionEndedData`]).
    #[serde(rename = "session.ended")]
    SessionEnded,
    /// `session.settled`: billing carried out (or gave up on) the session's
    /// settlement ([`SessionSettledData`]).
    #[serde(rename = "session.settled")]
    SessionSettled,
    /// `review.created`: a seeker reviewed a session ([`ReviewCreatedData`]).
    #[serde(rename = "review.created")]
    ReviewCreated,
    /// `booking.requested`: a seeker asked for a slot.
    #[serde(rename = "booking.requested")]
    BookingRequested,
    /// `booking.confirmed`: the consultant accepted a booking.
    #[serde(rename = "booking.confirmed")]
    BookingConfirmed,
    /// `booking.declined`: the consultant declined a booking.
    #[serde(rename = "booking.declined")]
    BookingDeclined,
    /// `booking.cancelled`: a participant cancelled a booking.
    #[serde(rename = "booking.cancelled")]
    BookingCancelled,
    /// `booking.rescheduled`: a booking moved to another slot.
    #[serde(rename = "booking.rescheduled")]
    BookingRescheduled,
    /// `booking.expired`: a request was not answered in time.
    #[serde(rename = "booking.expired")]
    BookingExpired,
    /// `booking.reminder`: a booked session starts soon.
    #[serde(rename = "booking.reminder")]
    BookingReminder,
    /// `booking.no_show`: a participant did not come to a booked session.
    #[serde(rename = "booking.no_show")]
    BookingNoShow,
    /// `booking.hold_failed`: the payment hold of a confirmed booking was
    /// refused (`hold_error` says why); the booking is cancelled when its
    /// room would open unless the seeker books again with another card.
    #[serde(rename = "booking.hold_failed")]
    BookingHoldFailed,
    /// `reconcile.findings`: the hourly reconciliation of the ledger with
    /// the payment provider found something wrong
    /// ([`ReconcileFindingsData`]).
    #[serde(rename = "reconcile.findings")]
    ReconcileFindings,
    /// `dispute.opened`: a participant disputed a session (D1); data is the
    /// [`Dispute`](super::Dispute).
    #[serde(rename = "dispute.opened")]
    DisputeOpened,
    /// `dispute.answered`: the other side answered (D2); data is the
    /// [`Dispute`](super::Dispute).
    #[serde(rename = "dispute.answered")]
    DisputeAnswered,
    /// `dispute.decided`: a moderator decided (D3); data is the
    /// [`Dispute`](super::Dispute).
    #[serde(rename = "dispute.decided")]
    DisputeDecided,
    /// `chargeback.opened`: the seeker's card issuer disputed a session's
    /// payment (D5); data is the [`Chargeback`](super::Chargeback).
    #[serde(rename = "chargeback.opened")]
    ChargebackOpened,
    /// `chargeback.closed`: a card dispute was won or lost (D6); data is
    /// the [`Chargeback`](super::Chargeback).
    #[serde(rename = "chargeback.closed")]
    ChargebackClosed,
    /// `engagement.funded`: an engagement's charge succeeded, its money is
    /// in escrow (E1, E9); data is [`EngagementEventData`].
    #[serde(rename = "engagement.funded")]
    EngagementFunded,
    /// `engagement.cancelled`: an engagement was cancelled and what it
    /// still held is refunded (E6, E9); data is [`EngagementEventData`].
    #[serde(rename = "engagement.cancelled")]
    EngagementCancelled,
    /// `milestone.submitted`: the consultant submitted a milestone (E3, E9);
    /// data is [`EngagementEventData`].
    #[serde(rename = "milestone.submitted")]
    MilestoneSubmitted,
    /// `milestone.released`: a milestone was approved, or released on its
    /// own (`auto`), to the consultant (E3, E4, E9); data is
    /// [`EngagementEventData`].
    #[serde(rename = "milestone.released")]
    MilestoneReleased,
    /// `milestone.disputed`: a party disputed a milestone (E5, E9); data is
    /// [`EngagementEventData`].
    #[serde(rename = "milestone.disputed")]
    MilestoneDisputed,
    /// `milestone.resolved`: a moderator resolved a disputed milestone (E5,
    /// E9); data is [`EngagementEventData`].
    #[serde(rename = "milestone.resolved")]
    MilestoneResolved,
}

impl WebhookEventType {
    /// Every event type.
    pub const ALL: &'static [WebhookEventType] = &[
        WebhookEventType::SessionStarted,
        WebhookEventType::SessionEnded,
        WebhookEventType::SessionSettled,
        WebhookEventType::ReviewCreated,
        WebhookEventType::BookingRequested,
        WebhookEventType::BookingConfirmed,
        WebhookEventType::BookingDeclined,
        WebhookEventType::BookingCancelled,
        WebhookEventType::BookingRescheduled,
        WebhookEventType::BookingExpired,
        WebhookEventType::BookingReminder,
        WebhookEventType::BookingNoShow,
        WebhookEventType::BookingHoldFailed,
        WebhookEventType::ReconcileFindings,
        WebhookEventType::DisputeOpened,
        WebhookEventType::DisputeAnswered,
        WebhookEventType::DisputeDecided,
        WebhookEventType::ChargebackOpened,
        WebhookEventType::ChargebackClosed,
        WebhookEventType::EngagementFunded,
        WebhookEventType::EngagementCancelled,
        WebhookEventType::MilestoneSubmitted,
        WebhookEventType::MilestoneReleased,
        WebhookEventType::MilestoneDisputed,
        WebhookEventType::MilestoneResolved,
    ];

    /// The wire name, e.g. `session.ended`.
    pub fn as_str(self) -> &'static str {
        use WebhookEventType::*;
        match self {
            SessionStarted => "session.started",
            SessionEnded => "session.ended",
            SessionSettled => "session.settled",
            ReviewCreated => "review.created",
            BookingRequested => "booking.requested",
            BookingConfirmed => "booking.confirmed",
            BookingDeclined => "booking.declined",
            BookingCancelled => "booking.cancelled",
            BookingRescheduled => "booking.rescheduled",
            BookingExpired => "booking.expired",
            BookingReminder => "booking.reminder",
            BookingNoShow => "booking.no_show",
            BookingHoldFailed => "booking.hold_failed",
            ReconcileFindings => "reconcile.findings",
            DisputeOpened => "dispute.opened",
            DisputeAnswered => "dispute.answered",
            DisputeDecided => "dispute.decided",
            ChargebackOpened => "chargeback.opened",
            ChargebackClosed => "chargeback.closed",
            EngagementFunded => "engagement.funded",
            EngagementCancelled => "engagement.cancelled",
            MilestoneSubmitted => "milestone.submitted",
            MilestoneReleased => "milestone.released",
            MilestoneDisputed => "milestone.disputed",
            MilestoneResolved => "milestone.resolved",
        }
    }

    /// The type named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.as_str() == s)
    }
}

/// The body of every webhook request (JSON). `data` depends on `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent<T> {
    /// `evt_<uuid v7>`: the same on every delivery attempt of this event;
    /// process each id once.
    pub id: String,
    /// The event type, e.g. `session.ended`.
    #[serde(rename = "type")]
    pub event_type: WebhookEventType,
    /// When it happened (server time, Unix ms).
    pub created_ms: i64,
    /// The payload of this type.
    pub data: T,
}

/// The data of the escrow events (`engagement.*`, `milestone.*`, E9): the
/// engagement as `GET /v1/engagements/{id}` shows it right after the
/// change, and the milestone concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EngagementEventData {
    /// The milestone (`ms_…`) of a `milestone.*` event; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milestone_id: Option<String>,
    /// `milestone.released` only: true when released on its own, nobody
    /// having answered in time (E4); false when the seeker approved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<bool>,
    /// The engagement after the change.
    pub engagement: super::Engagement,
}

/// `session.started` data: the call was accepted and the session stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionStartedData {
    /// The session.
    pub session_id: SessionId,
    /// The call that opened it.
    pub call_id: CallId,
    /// The seeker.
    pub seeker_id: UserId,
    /// The consultant.
    pub consultant_id: UserId,
    /// When it opened (Unix ms).
    pub opened_at_ms: i64,
    /// Whether it is recorded.
    pub recording: bool,
}

/// `session.ended` data: the session ended and its bill is decided (the
/// money moves later: `session.settled`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionEndedData {
    /// The session.
    pub session_id: SessionId,
    /// The call that opened it.
    pub call_id: CallId,
    /// The seeker.
    pub seeker_id: UserId,
    /// The consultant.
    pub consultant_id: UserId,
    /// When it opened (Unix ms).
    pub opened_at_ms: i64,
    /// When it ended (Unix ms).
    pub ended_at_ms: i64,
    /// Why it ended: `hangup`, `abandoned`, `length_reached`,
    /// `hold_used_up`, `moderator`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reason: SessionEndReason,
    /// Who hung up (for `hangup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<UserId>,
    /// The meter's decision: outcome, billable seconds, the amount to
    /// capture (minor units + currency). Absent if the session was not
    /// metered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub bill: Option<SessionBill>,
}

/// `session.settled` data: billing finished the session's settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionSettledData {
    /// The session.
    pub session_id: SessionId,
    /// The seeker.
    pub seeker_id: UserId,
    /// The consultant.
    pub consultant_id: UserId,
    /// `done` (the hold was captured or released, or there was none) or
    /// `failed` (refused by the provider, or the hold expired: needs a
    /// person).
    pub status: String,
    /// `free` or `charged`.
    pub outcome: Outcome,
    /// Billable seconds.
    pub billable_secs: u64,
    /// The amount decided at the end (zero when free).
    pub amount: Money,
    /// Captured from the seeker (absent when nothing was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured: Option<Money>,
    /// The platform's commission of the capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<Money>,
    /// The consultant's share of the capture (captured − fee).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earnings: Option<Money>,
    /// When billing finished (Unix ms).
    pub settled_at_ms: i64,
    /// Why it failed (`failed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `review.created` data: a seeker reviewed a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewCreatedData {
    /// The review (`rev_…`).
    pub review_id: String,
    /// The reviewed session.
    pub session_id: SessionId,
    /// The seeker who wrote it.
    pub seeker_id: UserId,
    /// The consultant reviewed.
    pub consultant_id: UserId,
    /// 1–5.
    pub stars: u8,
    /// The text (may be empty).
    pub text: String,
    /// When it was written (Unix ms).
    pub created_at_ms: i64,
}

/// What a reconciliation finding is about (issue 13; `parley reconcile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReconcileFindingKind {
    /// `orphan_hold`: an authorised hold owned by nothing live: its session
    /// is not open, no booking holds it, no settlement is pending, and it is
    /// older than any ringing call or the orphan sweep's age.
    OrphanHold,
    /// `ledger_without_provider_object`: a ledger row (or hold) whose
    /// payment intent the provider does not know.
    LedgerWithoutProviderObject,
    /// `provider_object_without_ledger`: a payment intent at the provider
    /// (authorised or captured) that no hold or purchase records.
    ProviderObjectWithoutLedger,
    /// `provider_state_mismatch`: the hold's status or the ledger's amounts
    /// disagree with the provider's intent (e.g. captured there, held here).
    ProviderStateMismatch,
    /// `capture_split`: a session whose capture ≠ fee + consultant earnings.
    CaptureSplit,
    /// `refund_split`: a session whose refunds ≠ earnings reversals + fee
    /// reversals.
    RefundSplit,
    /// `escrow_balance`: an engagement whose escrow does not add up (E8):
    /// funded − released − refunded − fees kept ≠ what its milestones or
    /// package still hold, a movement the provider refused, or the
    /// provider's charge, refunds or transfers ≠ the ledger's.
    EscrowBalance,
}

impl ReconcileFindingKind {
    /// Every kind.
    pub const ALL: &'static [ReconcileFindingKind] = &[
        ReconcileFindingKind::OrphanHold,
        ReconcileFindingKind::LedgerWithoutProviderObject,
        ReconcileFindingKind::ProviderObjectWithoutLedger,
        ReconcileFindingKind::ProviderStateMismatch,
        ReconcileFindingKind::CaptureSplit,
        ReconcileFindingKind::RefundSplit,
        ReconcileFindingKind::EscrowBalance,
    ];

    /// The wire name, e.g. `orphan_hold`.
    pub fn as_str(self) -> &'static str {
        use ReconcileFindingKind::*;
        match self {
            OrphanHold => "orphan_hold",
            LedgerWithoutProviderObject => "ledger_without_provider_object",
            ProviderObjectWithoutLedger => "provider_object_without_ledger",
            ProviderStateMismatch => "provider_state_mismatch",
            CaptureSplit => "capture_split",
            RefundSplit => "refund_split",
            EscrowBalance => "escrow_balance",
        }
    }
}

/// One thing reconciliation found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReconcileFinding {
    /// What is wrong.
    pub kind: ReconcileFindingKind,
    /// The session (or promotion purchase, `promo_…`) concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The provider's payment intent concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_id: Option<String>,
    /// A sentence for the operator, with the amounts (minor units).
    pub detail: String,
}

/// `reconcile.findings` data, and the report of `parley reconcile --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReconcileFindingsData {
    /// When the check ran (server time, Unix ms).
    pub checked_at_ms: i64,
    /// The payment provider compared with (`sandbox`, `stripe`).
    pub provider: String,
    /// How many findings there are in all.
    pub total: u64,
    /// The findings, oldest first (in a webhook event at most the first 100).
    pub findings: Vec<ReconcileFinding>,
}
