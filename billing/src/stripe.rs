//! The Stripe payment provider: [`PaymentProvider`] over Stripe's API through
//! async-stripe's typed requests (<https://docs.stripe.com/api>).
//!
//! Holds are PaymentIntents with `capture_method=manual`, confirmed at
//! creation (DESIGN.md B2); settlement captures with `amount_to_capture` and
//! `application_fee_amount` (B4); every write carries the caller's
//! `Idempotency-Key` (B3, <https://docs.stripe.com/api/idempotent_requests>).
//! Amounts are integer minor units (B1).
//!
//! Errors are sorted from the HTTP status and Stripe's error object
//! (<https://docs.stripe.com/error-handling>): a `card_error` (HTTP 402) is
//! [`ProviderError::Declined`]; a network error, a timeout, HTTP 429 or a
//! 5xx is [`ProviderError::Transient`]; any other 4xx is
//! [`ProviderError::Rejected`].

use std::collections::HashMap;
use std::time::Duration;

use ::stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use async_trait::async_trait;
use parley_domain::{Currency, Money, Timestamp};
use stripe_connect::account::{
    CreateAccount, CreateAccountCapabilities, CreateAccountCapabilitiesCardPayments,
    CreateAccountCapabilitiesTransfers, CreateAccountType,
};
use stripe_connect::account_link::{CreateAccountLink, CreateAccountLinkType};
use stripe_connect::transfer::{CreateTransfer, RetrieveTransfer};
use stripe_connect::transfer_reversal::CreateIdTransferReversal;
use stripe_core::dispute::{UpdateDispute, UpdateDisputeEvidence};
use stripe_core::payment_intent::{
    CancelPaymentIntent, CapturePaymentIntent, CreatePaymentIntent, CreatePaymentIntentTransferData,
    RetrievePaymentIntent,
};
use stripe_core::refund::CreateRefund;
use stripe_shared::{PaymentIntent, PaymentIntentAllowedPaymentMethodTypes, PaymentIntentCaptureMethod};

use crate::provider::{
    Account, AccountRequest, CaptureRequest, ChargeRequest, Charged, DisputeEvidence, DisputeState, HoldRequest,
    Intent, IntentStatus, PaymentProvider, ProviderError, Refund, RefundRequest, Transfer, TransferRequest,
};

/// Stripe's API base URL, the default of [`StripeConfig::api_base`].
pub const STRIPE_API_BASE: &str = "https://api.stripe.com/";

/// How long a card authorisation lasts before Stripe cancels the
/// uncaptured PaymentIntent: 7 days for online card payments (DESIGN.md B6,
/// <https://docs.stripe.com/payments/place-a-hold-on-a-payment-method>).
pub const HOLD_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Per-attempt timeout of a Stripe request; a timeout is
/// [`ProviderError::Transient`] and the caller retries with the same key.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach Stripe. Deserialisable from the server's configuration.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
pub struct StripeConfig {
    /// The secret API key (`sk_test_…` or `sk_live_…`), sent as
    /// `Authorization: Bearer …`.
    pub secret_key: String,
    /// The API base URL, e.g. `http://127.0.0.1:12111` for a local fake;
    /// `None`: Stripe's, [`STRIPE_API_BASE`]. Requests go to
    /// `{api_base}/v1/…`.
    pub api_base: Option<String>,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never log the secret key.
        f.debug_struct("StripeConfig").field("secret_key", &"<redacted>").field("api_base", &self.api_base).finish()
    }
}

/// The Stripe configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Stripe configuration: {0}")]
pub struct StripeConfigError(String);

/// The Stripe [`PaymentProvider`]. Cheap to clone; share it behind an `Arc`.
#[derive(Clone, Debug)]
pub struct StripeProvider {
    client: Client,
}

impl StripeProvider {
    /// A provider talking to `config.api_base` (Stripe's by default).
    ///
    /// # Errors
    /// The key or the base URL cannot be used in a request.
    pub fn new(config: &StripeConfig) -> Result<Self, StripeConfigError> {
        if config.secret_key.is_empty() {
            return Err(StripeConfigError("the secret key is empty".to_owned()));
        }
        let mut builder = ClientBuilder::new(config.secret_key.clone()).timeout(REQUEST_TIMEOUT);
        if let Some(base) = &config.api_base {
            // async-stripe joins `{base}v1/…` without a separator: the base
            // must end with '/'.
            let base = if base.ends_with('/') { base.clone() } else { format!("{base}/") };
            builder = builder.url(base);
        }
        let client = builder.build().map_err(|e| StripeConfigError(e.to_string()))?;
        Ok(StripeProvider { client })
    }
}

/// The request strategy that sends `key` as the `Idempotency-Key` header,
/// once: retries are the caller's (the settlement outbox, B3), always with
/// the same key.
fn idempotent(key: &str) -> Result<RequestStrategy, ProviderError> {
    let key = IdempotencyKey::new(key)
        .map_err(|e| ProviderError::Rejected { code: "invalid_idempotency_key".to_owned(), message: e.to_string() })?;
    Ok(RequestStrategy::Idempotent(key))
}

/// Sorts an async-stripe error by what the caller must do.
fn map_error(err: StripeError) -> ProviderError {
    match err {
        StripeError::Stripe(api, status) => {
            let kind = api.type_.as_str().to_owned();
            let code = api.code.as_ref().map(|c| c.as_str().to_owned());
            let message = api.message.clone().unwrap_or_else(|| format!("HTTP {status} ({kind})"));
            if status == 429 || status >= 500 || kind == "api_error" {
                return ProviderError::Transient(format!("HTTP {status}: {message}"));
            }
            // A concurrent request with the same idempotency key, or a lock
            // held by one: the saved result is there once it finishes.
            if status == 409 && matches!(code.as_deref(), Some("idempotency_key_in_use" | "lock_timeout")) {
                return ProviderError::Transient(format!("HTTP {status}: {message}"));
            }
            if status == 402 || kind == "card_error" {
                let decline_code = api.decline_code.clone().or(code).unwrap_or_else(|| "card_declined".to_owned());
                return ProviderError::Declined { decline_code, message };
            }
            ProviderError::Rejected { code: code.unwrap_or(kind), message }
        }
        StripeError::ClientError(msg) => ProviderError::Transient(format!("network error: {msg}")),
        StripeError::Timeout => ProviderError::Transient("timed out".to_owned()),
        // async-stripe reports an error response whose body is not a Stripe
        // error object (a proxy's 502 page, a truncated body) this way, and
        // drops the status: treat it as transient, the retry carries the
        // same idempotency key so nothing happens twice.
        StripeError::JSONDeserialize(msg) => ProviderError::Transient(format!("unreadable response: {msg}")),
        StripeError::ConfigError(msg) => ProviderError::Rejected { code: "config_error".to_owned(), message: msg },
    }
}

/// Our view of a Stripe PaymentIntent.
fn to_intent(pi: &PaymentIntent) -> Result<Intent, ProviderError> {
    let unexpected = |message: String| ProviderError::Rejected { code: "unexpected_response".to_owned(), message };
    let status = IntentStatus::parse(pi.status.as_str())
        .ok_or_else(|| unexpected(format!("unknown PaymentIntent status {:?}", pi.status.as_str())))?;
    let currency = Currency::parse(&pi.currency.to_string().to_ascii_uppercase())
        .map_err(|e| unexpected(format!("PaymentIntent currency: {e}")))?;
    let hold_expires_at = (status == IntentStatus::RequiresCapture)
        .then(|| Timestamp::from_unix_millis(pi.created.saturating_mul(1000)).plus(HOLD_LIFETIME));
    Ok(Intent {
        id: pi.id.as_str().to_owned(),
        status,
        amount: Money::new(pi.amount, currency),
        amount_received: pi.amount_received,
        hold_expires_at,
    })
}

/// Stripe's lower-case currency code of `c`.
fn stripe_currency(c: Currency) -> stripe_types::Currency {
    c.as_str().to_ascii_lowercase().parse().unwrap_or_else(|e| match e {})
}

fn to_transfer(tr: &stripe_shared::Transfer) -> Result<Transfer, ProviderError> {
    let currency = Currency::parse(&tr.currency.to_string().to_ascii_uppercase()).map_err(|e| {
        ProviderError::Rejected { code: "unexpected_response".to_owned(), message: format!("transfer currency: {e}") }
    })?;
    Ok(Transfer {
        id: tr.id.as_str().to_owned(),
        amount: Money::new(tr.amount, currency),
        amount_reversed: tr.amount_reversed,
    })
}

#[async_trait]
impl PaymentProvider for StripeProvider {
    fn name(&self) -> &'static str {
        "stripe"
    }

    /// `POST /v1/payment_intents` with `capture_method=manual`, `confirm=true`
    /// (<https://docs.stripe.com/api/payment_intents/create>).
    async fn place_hold(&self, req: &HoldRequest) -> Result<Intent, ProviderError> {
        let currency: stripe_types::Currency =
            req.amount.currency.as_str().to_ascii_lowercase().parse().unwrap_or_else(|e| match e {});
        let metadata: HashMap<String, String> = req.metadata.iter().cloned().collect();
        let mut create = CreatePaymentIntent::new(req.amount.amount_minor, currency)
            .capture_method(PaymentIntentCaptureMethod::Manual)
            .confirm(true)
            .payment_method(req.payment_method.clone())
            .allowed_payment_method_types(vec![PaymentIntentAllowedPaymentMethodTypes::Card])
            .description(req.description.clone())
            .metadata(metadata);
        if let Some(destination) = &req.destination {
            create = create.transfer_data(CreatePaymentIntentTransferData::new(destination.clone()));
        }
        let pi = create
            .customize()
            .request_strategy(idempotent(&req.idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(map_error)?;
        to_intent(&pi)
    }

    /// `POST /v1/payment_intents/{id}/capture`
    /// (<https://docs.stripe.com/api/payment_intents/capture>).
    async fn capture(&self, intent_id: &str, req: &CaptureRequest) -> Result<Intent, ProviderError> {
        let mut capture = CapturePaymentIntent::new(intent_id).amount_to_capture(req.amount_to_capture);
        if let Some(fee) = req.application_fee_amount {
            capture = capture.application_fee_amount(fee);
        }
        let pi = capture
            .customize()
            .request_strategy(idempotent(&req.idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(map_error)?;
        to_intent(&pi)
    }

    /// `POST /v1/payment_intents/{id}/cancel`
    /// (<https://docs.stripe.com/api/payment_intents/cancel>).
    async fn release(&self, intent_id: &str, idempotency_key: &str) -> Result<Intent, ProviderError> {
        let pi = CancelPaymentIntent::new(intent_id)
            .customize()
            .request_strategy(idempotent(idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(map_error)?;
        to_intent(&pi)
    }

    /// `GET /v1/payment_intents/{id}`
    /// (<https://docs.stripe.com/api/payment_intents/retrieve>).
    async fn intent(&self, intent_id: &str) -> Result<Intent, ProviderError> {
        let pi = RetrievePaymentIntent::new(intent_id).send(&self.client).await.map_err(map_error)?;
        to_intent(&pi)
    }

    /// `POST /v1/refunds` (<https://docs.stripe.com/api/refunds/create>);
    /// with `reverse_transfer` also `refund_application_fee`
    /// (<https://docs.stripe.com/connect/destination-charges#issuing-refunds>).
    async fn refund(&self, req: &RefundRequest) -> Result<Refund, ProviderError> {
        let mut create = CreateRefund::new().payment_intent(req.intent_id.clone()).amount(req.amount);
        if req.reverse_transfer {
            create = create.reverse_transfer(true).refund_application_fee(true);
        }
        let re = create
            .customize()
            .request_strategy(idempotent(&req.idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(map_error)?;
        let currency = Currency::parse(&re.currency.to_string().to_ascii_uppercase()).map_err(|e| {
            ProviderError::Rejected { code: "unexpected_response".to_owned(), message: format!("refund currency: {e}") }
        })?;
        Ok(Refund {
            id: re.id.as_str().to_owned(),
            amount: Money::new(re.amount, currency),
            status: re.status.unwrap_or_else(|| "pending".to_owned()),
        })
    }

    /// `POST /v1/disputes/{id}` with `evidence[...]` and `submit=true`
    /// (<https://docs.stripe.com/api/disputes/update>).
    async fn submit_dispute_evidence(&self, ev: &DisputeEvidence) -> Result<DisputeState, ProviderError> {
        let mut evidence = UpdateDisputeEvidence::new();
        evidence.uncategorized_text = Some(ev.uncategorized_text.clone());
        evidence.service_date = Some(ev.service_date.clone());
        evidence.product_description = Some(ev.product_description.clone());
        evidence.access_activity_log = Some(ev.access_activity_log.clone());
        evidence.customer_communication = ev.customer_communication.clone();
        evidence.service_documentation = ev.service_documentation.clone();
        let dispute = UpdateDispute::new(ev.dispute_id.as_str())
            .evidence(evidence)
            .submit(true)
            .customize()
            .request_strategy(idempotent(&ev.idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(map_error)?;
        Ok(DisputeState {
            id: dispute.id.as_str().to_owned(),
            status: dispute.status.as_str().to_owned(),
            submission_count: dispute.evidence_details.submission_count,
        })
    }

    /// `POST /v1/payment_intents` with `capture_method=automatic`,
    /// `confirm=true` and no `transfer_data`: the money lands in the
    /// platform's balance (escrow funding, E1;
    /// <https://docs.stripe.com/connect/separate-charges-and-transfers>).
    async fn charge(&self, req: &ChargeRequest) -> Result<Charged, ProviderError> {
        let currency = stripe_currency(req.amount.currency);
        let metadata: HashMap<String, String> = req.metadata.iter().cloned().collect();
        let pi = CreatePaymentIntent::new(req.amount.amount_minor, currency)
            .capture_method(PaymentIntentCaptureMethod::Automatic)
            .confirm(true)
            .payment_method(req.payment_method.clone())
            .allowed_payment_method_types(vec![PaymentIntentAllowedPaymentMethodTypes::Card])
            .description(req.description.clone())
            .metadata(metadata)
            .customize()
            .request_strategy(idempotent(&req.idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(map_error)?;
        let charge_id = pi.latest_charge.as_ref().map(|c| c.id().as_str().to_owned());
        Ok(Charged { intent: to_intent(&pi)?, charge_id })
    }

    /// `POST /v1/transfers` with `source_transaction` and `transfer_group`
    /// (<https://docs.stripe.com/api/transfers/create>).
    async fn transfer(&self, req: &TransferRequest) -> Result<Transfer, ProviderError> {
        let metadata = HashMap::from([("engagement_id".to_owned(), req.group.clone())]);
        let tr = CreateTransfer::new(stripe_currency(req.amount.currency), req.destination.clone())
            .amount(req.amount.amount_minor)
            .source_transaction(req.source_transaction.clone())
            .transfer_group(req.group.clone())
            .metadata(metadata)
            .customize()
            .request_strategy(idempotent(&req.idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(map_error)?;
        to_transfer(&tr)
    }

    /// `POST /v1/transfers/{id}/reversals`
    /// (<https://docs.stripe.com/api/transfer_reversals/create>), then the
    /// transfer as it stands.
    async fn reverse_transfer(
        &self,
        transfer_id: &str,
        amount: i64,
        idempotency_key: &str,
    ) -> Result<Transfer, ProviderError> {
        CreateIdTransferReversal::new(transfer_id)
            .amount(amount)
            .customize()
            .request_strategy(idempotent(idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(map_error)?;
        let tr = RetrieveTransfer::new(transfer_id).send(&self.client).await.map_err(map_error)?;
        to_transfer(&tr)
    }

    /// `POST /v1/accounts` with `type=express` and the `card_payments` and
    /// `transfers` capabilities (<https://docs.stripe.com/api/accounts/create>).
    async fn create_account(&self, req: &AccountRequest) -> Result<Account, ProviderError> {
        let mut card_payments = CreateAccountCapabilitiesCardPayments::new();
        card_payments.requested = Some(true);
        let mut transfers = CreateAccountCapabilitiesTransfers::new();
        transfers.requested = Some(true);
        let mut capabilities = CreateAccountCapabilities::new();
        capabilities.card_payments = Some(card_payments);
        capabilities.transfers = Some(transfers);
        let metadata = HashMap::from([("consultant_id".to_owned(), req.consultant_id.clone())]);
        let mut create = CreateAccount::new()
            .type_(CreateAccountType::Express)
            .country(req.country.clone())
            .capabilities(capabilities)
            .metadata(metadata);
        if let Some(email) = &req.email {
            create = create.email(email.clone());
        }
        let account = create
            .customize()
            .request_strategy(idempotent(&req.idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(map_error)?;
        Ok(Account {
            id: account.id.as_str().to_owned(),
            charges_enabled: account.charges_enabled.unwrap_or(false),
            payouts_enabled: account.payouts_enabled.unwrap_or(false),
            details_submitted: account.details_submitted.unwrap_or(false),
        })
    }

    /// `POST /v1/account_links` with `type=account_onboarding`
    /// (<https://docs.stripe.com/api/account_links/create>). Account Links
    /// are single-use and short-lived, so no idempotency key is sent.
    async fn onboarding_link(
        &self,
        account_id: &str,
        refresh_url: &str,
        return_url: &str,
    ) -> Result<String, ProviderError> {
        let link = CreateAccountLink::new(account_id, CreateAccountLinkType::AccountOnboarding)
            .refresh_url(refresh_url)
            .return_url(return_url)
            .send(&self.client)
            .await
            .map_err(map_error)?;
        Ok(link.url)
    }
}
