//! Billing: payment providers, holds, the settlement outbox, commission,
//! the ledger and provider webhooks (DESIGN.md §5, B1–B8).
//!
//! Billing never computes durations (ARCHITECTURE.md invariant): it receives
//! the meter's settlement decision and carries it out exactly once.

pub mod provider;
pub mod stripe;
pub mod webhook;

pub use provider::{
    Account, AccountRequest, CaptureRequest, HoldRequest, Intent, IntentStatus, PaymentProvider, ProviderError,
    Refund, RefundRequest,
};
