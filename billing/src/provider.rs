//! The payment-provider seam: what the money path asks of Stripe (or of the
//! embedded sandbox that behaves like Stripe's test mode, DESIGN.md B8).
//!
//! Every write carries an idempotency key chosen by the caller, so a retried
//! request after a network error or a 5xx is carried out once
//! (<https://docs.stripe.com/api/idempotent_requests>). Amounts are integer
//! minor units with a currency (B1).

use async_trait::async_trait;
use parley_domain::{Money, Timestamp};

/// A payment hold: a PaymentIntent with `capture_method=manual`, confirmed
/// (DESIGN.md B2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRequest {
    /// Amount to authorise: the fixed price, or rate × maximum length.
    pub amount: Money,
    /// The seeker's payment method (`pm_…`), e.g. `pm_card_visa` in test mode.
    pub payment_method: String,
    /// The consultant's connected account (`acct_…`), sent as
    /// `transfer_data[destination]` so the capture pays them (B4). `None`:
    /// the funds stay with the platform (the consultant has not onboarded).
    pub destination: Option<String>,
    /// Shown on the PaymentIntent (`description`).
    pub description: String,
    /// Stored on the PaymentIntent as `metadata[...]` (e.g. `session_id`).
    pub metadata: Vec<(String, String)>,
    /// The `Idempotency-Key` header.
    pub idempotency_key: String,
}

/// A PaymentIntent's status, as Stripe names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntentStatus {
    /// `requires_payment_method`.
    RequiresPaymentMethod,
    /// `requires_confirmation`.
    RequiresConfirmation,
    /// `requires_action`: the card needs the customer (3-D Secure).
    RequiresAction,
    /// `processing`.
    Processing,
    /// `requires_capture`: the hold is in place.
    RequiresCapture,
    /// `succeeded`: captured.
    Succeeded,
    /// `canceled`: released (or expired).
    Canceled,
}

impl IntentStatus {
    /// Stripe's name for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            IntentStatus::RequiresPaymentMethod => "requires_payment_method",
            IntentStatus::RequiresConfirmation => "requires_confirmation",
            IntentStatus::RequiresAction => "requires_action",
            IntentStatus::Processing => "processing",
            IntentStatus::RequiresCapture => "requires_capture",
            IntentStatus::Succeeded => "succeeded",
            IntentStatus::Canceled => "canceled",
        }
    }

    /// The status named `s` by Stripe.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "requires_payment_method" => IntentStatus::RequiresPaymentMethod,
            "requires_confirmation" => IntentStatus::RequiresConfirmation,
            "requires_action" => IntentStatus::RequiresAction,
            "processing" => IntentStatus::Processing,
            "requires_capture" => IntentStatus::RequiresCapture,
            "succeeded" => IntentStatus::Succeeded,
            "canceled" => IntentStatus::Canceled,
            _ => return None,
        })
    }
}

/// A PaymentIntent as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// `pi_…`.
    pub id: String,
    /// Current status.
    pub status: IntentStatus,
    /// The authorised amount.
    pub amount: Money,
    /// `amount_received`: captured so far (minor units).
    pub amount_received: i64,
    /// When the authorisation lapses (card authorisations last 7 days,
    /// DESIGN.md B6); `None` if not authorised.
    pub hold_expires_at: Option<Timestamp>,
}

/// A capture of a held PaymentIntent (DESIGN.md B4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRequest {
    /// `amount_to_capture`, at most the amount capturable.
    pub amount_to_capture: i64,
    /// `application_fee_amount`: the platform's commission; only sent when the
    /// intent has a `transfer_data[destination]`.
    pub application_fee_amount: Option<i64>,
    /// The `Idempotency-Key` header, `settle:<session_id>` (B3).
    pub idempotency_key: String,
}

/// A refund of a captured PaymentIntent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// `payment_intent`.
    pub intent_id: String,
    /// `amount` in minor units; at most what was captured and not refunded.
    pub amount: i64,
    /// `reverse_transfer` and `refund_application_fee`: take the refund back
    /// from the consultant's account and the platform's fee in proportion.
    pub reverse_transfer: bool,
    /// The `Idempotency-Key` header.
    pub idempotency_key: String,
}

/// A refund as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// `re_…`.
    pub id: String,
    /// Amount refunded.
    pub amount: Money,
    /// `succeeded`, `pending`, `failed`…
    pub status: String,
}

/// Evidence answering a card dispute (a chargeback), sent as Stripe's
/// `evidence[...]` text fields with `submit=true`
/// (<https://docs.stripe.com/api/disputes/update>). The combined text is
/// at most [`MAX_EVIDENCE_CHARS`] characters, as Stripe allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeEvidence {
    /// The provider's dispute (`du_…`, `dp_…`).
    pub dispute_id: String,
    /// `evidence[uncategorized_text]`: the evidence bundle as Markdown.
    pub uncategorized_text: String,
    /// `evidence[service_date]`: the session's date, `YYYY-MM-DD` (UTC).
    pub service_date: String,
    /// `evidence[product_description]`: what was sold.
    pub product_description: String,
    /// `evidence[access_activity_log]`: the session's timeline (joins,
    /// drops, media states, the meter's decision).
    pub access_activity_log: String,
    /// `evidence[customer_communication]`: as Stripe takes it, the id of a
    /// file uploaded with `purpose=dispute_evidence`; `None` sends nothing
    /// (Parley puts the session's chat into the uncategorized text).
    pub customer_communication: Option<String>,
    /// `evidence[service_documentation]`: a file id as above, or `None`.
    pub service_documentation: Option<String>,
    /// The `Idempotency-Key` header (`evidence:<dispute>`).
    pub idempotency_key: String,
}

/// The longest combined evidence text Stripe accepts, in characters.
pub const MAX_EVIDENCE_CHARS: usize = 150_000;

/// A card dispute as the provider reports it after evidence was submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeState {
    /// `du_…`.
    pub id: String,
    /// `needs_response`, `under_review`, `won`, `lost`…
    pub status: String,
    /// `evidence_details.submission_count`.
    pub submission_count: u64,
}

/// A consultant's payout account: a Stripe Connect Express account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRequest {
    /// Our consultant's id, stored as `metadata[consultant_id]`.
    pub consultant_id: String,
    /// Their email, if known.
    pub email: Option<String>,
    /// ISO 3166-1 alpha-2 country, e.g. `DE`.
    pub country: String,
    /// The `Idempotency-Key` header.
    pub idempotency_key: String,
}

/// A connected account's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// `acct_…`.
    pub id: String,
    /// `charges_enabled`.
    pub charges_enabled: bool,
    /// `payouts_enabled`.
    pub payouts_enabled: bool,
    /// `details_submitted`.
    pub details_submitted: bool,
}

/// A charge into the platform's balance: a PaymentIntent with automatic
/// capture, confirmed at creation, with no `transfer_data` (escrow funding,
/// rule E1). Money leaves it later by [`TransferRequest`]s and refunds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Amount charged at once.
    pub amount: Money,
    /// The seeker's payment method (`pm_…`).
    pub payment_method: String,
    /// Shown on the PaymentIntent (`description`).
    pub description: String,
    /// Stored as `metadata[...]` (e.g. `engagement_id`).
    pub metadata: Vec<(String, String)>,
    /// The `Idempotency-Key` header (`fund:<engagement>`).
    pub idempotency_key: String,
}

/// A charge as made: the intent (`succeeded` when paid, `requires_action`
/// when the card needs authentication) and its charge (`ch_…`), the
/// `source_transaction` of the transfers paid out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charged {
    /// The PaymentIntent.
    pub intent: Intent,
    /// Its latest charge (`ch_…`); `None` if nothing was charged.
    pub charge_id: Option<String>,
}

/// A Connect transfer from the platform's balance to a connected account
/// (<https://docs.stripe.com/api/transfers/create>): tied to the charge
/// that funded it, so it never exceeds what that charge brought in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    /// Amount sent to the account (minor units, at least 1).
    pub amount: Money,
    /// The connected account (`acct_…`).
    pub destination: String,
    /// `source_transaction`: the funding charge (`ch_…`).
    pub source_transaction: String,
    /// `transfer_group` and `metadata[engagement_id]`.
    pub group: String,
    /// The `Idempotency-Key` header (`release:<milestone>`, `draw:<session>`).
    pub idempotency_key: String,
}

/// A transfer as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// `tr_…`.
    pub id: String,
    /// Amount transferred.
    pub amount: Money,
    /// `amount_reversed`.
    pub amount_reversed: i64,
}

/// Why a provider call failed, sorted by what the caller must do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The card was declined (Stripe `card_error`, HTTP 402). Final.
    #[error("card declined ({decline_code}): {message}")]
    Declined {
        /// Stripe's `decline_code` (or `code`), e.g. `generic_decline`.
        decline_code: String,
        /// Stripe's message, readable by the seeker.
        message: String,
    },
    /// The request was refused as invalid (HTTP 400/404/409 other than a
    /// card error): retrying the same request fails the same way. Final.
    #[error("rejected by the provider ({code}): {message}")]
    Rejected {
        /// Stripe's error `code` (e.g. `payment_intent_unexpected_state`).
        code: String,
        /// Stripe's message.
        message: String,
    },
    /// A network error, a timeout, HTTP 429 or a 5xx: retry later with the
    /// same idempotency key.
    #[error("provider unavailable: {0}")]
    Transient(String),
}

impl ProviderError {
    /// Whether retrying the same request (same idempotency key) may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ProviderError::Transient(_))
    }
}

/// A payment provider: Stripe's API, or the embedded sandbox (B8).
///
/// Implementations are `Send + Sync` and cheap to share behind an `Arc`.
#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// The provider's name in logs and the ledger (`sandbox`, `stripe`).
    fn name(&self) -> &'static str;

    /// Creates and confirms a PaymentIntent with `capture_method=manual`
    /// (B2). On success the intent is `requires_capture` (hold in place) or
    /// `requires_action` (the card needs authentication: no hold).
    /// A decline is [`ProviderError::Declined`].
    async fn place_hold(&self, req: &HoldRequest) -> Result<Intent, ProviderError>;

    /// Captures a held intent (B4). Capturing an intent already captured
    /// with the same idempotency key returns the first result.
    async fn capture(&self, intent_id: &str, req: &CaptureRequest) -> Result<Intent, ProviderError>;

    /// Cancels a held intent: the hold is released in full (B4).
    async fn release(&self, intent_id: &str, idempotency_key: &str) -> Result<Intent, ProviderError>;

    /// Reads an intent's current state.
    async fn intent(&self, intent_id: &str) -> Result<Intent, ProviderError>;

    /// Refunds (part of) a captured intent.
    async fn refund(&self, req: &RefundRequest) -> Result<Refund, ProviderError>;

    /// Submits `evidence` for a card dispute (`POST /v1/disputes/{id}` with
    /// `evidence[...]` and `submit=true`). A retry with the same idempotency
    /// key is the same submission.
    async fn submit_dispute_evidence(&self, evidence: &DisputeEvidence) -> Result<DisputeState, ProviderError>;
    /// Charges at once into the platform's balance (automatic capture, no
    /// destination; escrow funding, E1). A decline is
    /// [`ProviderError::Declined`].
    async fn charge(&self, req: &ChargeRequest) -> Result<Charged, ProviderError>;

    /// Transfers from the platform's balance to a connected account, out of
    /// `source_transaction` (E3). Refused (`balance_insufficient`) when the
    /// charge has not that much left (received − refunded − transferred).
    async fn transfer(&self, req: &TransferRequest) -> Result<Transfer, ProviderError>;

    /// Reverses (part of) a transfer back to the platform's balance
    /// (<https://docs.stripe.com/api/transfer_reversals/create>); at most
    /// what is not reversed yet.
    async fn reverse_transfer(
        &self,
        transfer_id: &str,
        amount: i64,
        idempotency_key: &str,
    ) -> Result<Transfer, ProviderError>;

    /// Creates a Connect Express account for a consultant's payouts.
    async fn create_account(&self, req: &AccountRequest) -> Result<Account, ProviderError>;

    /// An Account Link (`type=account_onboarding`) the consultant opens to
    /// finish onboarding; returns its URL.
    async fn onboarding_link(
        &self,
        account_id: &str,
        refresh_url: &str,
        return_url: &str,
    ) -> Result<String, ProviderError>;
}
