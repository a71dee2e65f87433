//! Billing: payment providers, holds, the settlement outbox, commission,
//! the ledger and provider webhooks (DESIGN.md §5, B1–B8).
//!
//! Billing never computes durations (ARCHITECTURE.md invariant): it receives
//! the meter's settlement decision and carries it out exactly once.
//!
//! Module map: `commit` (statements committed with other writes: group
//! commit, through the server's store writer), `faults` (crash points for
//! tests of crash windows),
//! `promotions` (paid featured placement, charged at once),
//! `provider` (the [`PaymentProvider`] seam), `sandbox` (the
//! embedded default provider, B8), `service` ([`Billing`], one file per
//! concern: `prices`, `holds`, `outbox` (the settlement outbox and its
//! deadline-driven worker), `ledger`, `refunds`, `disputes` (card chargebacks), `webhooks`,
//! `payouts`),
//! `stripe` (the Stripe API provider over async-stripe), `webhook` (Stripe
//! webhook verification and parsing, B5).
//!
//! Errors: [`BillingError`] is the boundary's one error type; refusals
//! carry their stable [`parley_domain::protocol::ErrorCode`] (and
//! [`HoldRefusal::code`], [`webhook::WebhookError::code`] theirs), so an API
//! maps them to problems without reading messages.

pub mod commit;
pub mod faults;
pub mod promotions;
pub mod provider;
pub mod sandbox;
pub mod service;
pub mod stripe;
pub mod webhook;

pub use commit::{Arg, Committer, Done, Statement};
pub use faults::Faults;
pub use provider::{
    Account, AccountRequest, CaptureRequest, ChargeRequest, Charged, DisputeEvidence, DisputeState, HoldRequest,
    Intent, IntentStatus, PaymentProvider, ProviderError, Refund, RefundRequest, Transfer, TransferRequest,
};
pub use sandbox::SandboxProvider;
pub use service::{
    Billing, BillingConfig, BillingError, ChargebackRecovery, ChargebackRow, Decision, EscrowChange, EscrowEvents,
    Held, HoldFor, HoldRefusal, NewEngagement, StoredSettlement, Terms, insert_release, insert_settlement,
    lock_engagement,
};
