//! The money path's service, [`Billing`]: prices, holds, settlement (the
//! outbox), commission, the ledger, refunds, provider webhooks and payout
//! onboarding, over the server's database and one [`PaymentProvider`].
//!
//! One file per concern: `prices` (M7), `holds` (B2), `price_reads` (a
//! call's price read before its hold, batched), `outbox` (the
//! settlement outbox and its worker, B3, B4, B6), `ledger` (B7),
//! `refunds`, `disputes` (card chargebacks, D5, D6), `webhooks` (B5),
//! `payouts` (Stripe Connect accounts).

use std::sync::Arc;
use std::time::Duration;

use parley_domain::clock::Wake;
use parley_domain::protocol::ErrorCode;
use parley_domain::protocol::rest::{ConsultantPrice, PriceModel};
use parley_domain::{Clock, Currency, IdError, Money, MoneyError, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::commit::Committer;
use crate::faults::Faults;
use crate::provider::{PaymentProvider, ProviderError};

mod disputes;
mod escrow;
mod holds;
mod ledger;
mod outbox;
mod payouts;
mod price_reads;
mod prices;
mod refunds;
mod webhooks;

pub use disputes::{ChargebackRecovery, ChargebackRow};
pub use escrow::{Decision, EscrowChange, EscrowEvents, NewEngagement, Terms, lock_engagement};
pub use holds::{Held, HoldFor, HoldRefusal, insert_release};
pub use outbox::{StoredSettlement, insert_settlement};

/// Billing settings (from `PARLEY_COMMISSION_BPS`, …; DESIGN.md B4, M7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingConfig {
    /// The platform's commission in basis points of each capture. Default
    /// 2000 (20 %).
    pub commission_bps: u32,
    /// The longest billable time of an instant call: a per-minute hold is
    /// rate × this many minutes (M7). Default 60.
    pub instant_max_minutes: u32,
    /// First retry delay of a failed settlement; doubles per attempt.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Who bears a lost card chargeback (`PARLEY_CHARGEBACK_RECOVERY`, D6).
    pub chargeback_recovery: ChargebackRecovery,
    /// How long a submitted milestone waits for the seeker before it is
    /// released on its own (`PARLEY_ESCROW_AUTO_RELEASE_DAYS`, default 7; E4).
    pub escrow_auto_release: Duration,
    /// The share of what is still in escrow a seeker who cancels an
    /// engagement pays (`PARLEY_ESCROW_CANCEL_FEE_PERCENT`, 0–100, default
    /// 5; E6). Kept by the platform.
    pub escrow_cancel_fee_percent: u32,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            commission_bps: 2000,
            instant_max_minutes: 60,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            chargeback_recovery: ChargebackRecovery::Consultant,
            escrow_auto_release: Duration::from_secs(7 * 24 * 3600),
            escrow_cancel_fee_percent: 5,
        }
    }
}

/// A billing failure (the billing boundary's one error type). Each carries
/// the stable [`ErrorCode`] an API answers with ([`BillingError::code`]);
/// refusals say also whether the request was wrong ([`BillingError::Refused`],
/// HTTP 400) or the state does not allow it ([`BillingError::Conflict`],
/// HTTP 409).
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// The database failed (`internal`).
    #[error("billing database: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored value did not parse (`internal`).
    #[error("billing data: {0}")]
    Data(String),
    /// The provider refused or failed (`payment_provider_error`).
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Money arithmetic failed, or a stored currency did not parse
    /// (`internal`).
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// A stored id did not parse (`internal`).
    #[error("billing data: {0}")]
    Id(#[from] IdError),
    /// The request cannot be carried out as asked: `invalid_field` (a price
    /// or refund amount below 1), `payment_declined`,
    /// `payment_action_required` (a promotion's card). The message says why.
    #[error("{1}")]
    Refused(ErrorCode, String),
    /// What the request names is not in a state that allows it:
    /// `not_charged` (a refund of a session nothing was captured for),
    /// `refund_exceeds_capture`. The message says why.
    #[error("{1}")]
    Conflict(ErrorCode, String),
}

impl BillingError {
    /// The stable code of this error: the refusal's own, `payment_provider_error`
    /// for the provider, `internal` for the rest.
    pub fn code(&self) -> ErrorCode {
        match self {
            BillingError::Refused(code, _) | BillingError::Conflict(code, _) => *code,
            BillingError::Provider(_) => ErrorCode::PaymentProviderError,
            BillingError::Db(_) | BillingError::Data(_) | BillingError::Money(_) | BillingError::Id(_) => {
                ErrorCode::Internal
            }
        }
    }
}

/// The billing service. Share as `Arc<Billing>`.
pub struct Billing {
    pub(crate) pool: AnyPool,
    /// Where the holds placed at a call's set-up and the records of
    /// settlements carried out are committed, with other writes under
    /// load ([`crate::commit`]).
    pub(crate) commits: Arc<dyn Committer>,
    pub(crate) provider: Arc<dyn PaymentProvider>,
    pub(crate) clock: Arc<dyn Clock>,
    cfg: BillingConfig,
    wake: Wake,
    /// Woken when the outbox finishes settlements ([`Billing::on_settled`]).
    settled: std::sync::OnceLock<Wake>,
    /// Where escrow's changes are announced ([`Billing::on_escrow_change`]).
    escrow_events: std::sync::OnceLock<Arc<dyn EscrowEvents>>,
    last_sweep: std::sync::Mutex<Option<Timestamp>>,
    faults: Faults,
    /// The calls' price reads, batched; started at the first call.
    price_reads: std::sync::OnceLock<price_reads::PriceReads>,
}

/// Age after which a hold whose call never became a session is released.
pub const ORPHAN_AFTER: Duration = Duration::from_secs(300);

/// Settlements carried out, by `outcome`: `captured`, `released`,
/// `failed` (counter).
pub const SETTLEMENTS: &str = "parley_settlements_total";
/// Settlement attempts that failed transiently and will be retried (counter).
pub const SETTLEMENT_RETRIES: &str = "parley_settlement_retries_total";
/// Payment holds placed, by `result`: `held`, `requires_action`,
/// `declined`, `failed` (counter).
pub const HOLDS: &str = "parley_holds_total";

/// How long a worker owns a settlement it is carrying out before another
/// worker (another node) may take it over.
const LEASE: Duration = Duration::from_secs(60);

impl Billing {
    /// Billing over `pool` (migrated by the server) with `provider`; the
    /// holds placed at a call's set-up and the records of settlements
    /// carried out are committed by `commits` (on the same database). The outbox worker ([`Billing::run_outbox`]) also
    /// wakes when `wake` is woken (the store does so after committing a
    /// settlement).
    pub fn new(
        pool: AnyPool,
        commits: Arc<dyn Committer>,
        provider: Arc<dyn PaymentProvider>,
        clock: Arc<dyn Clock>,
        cfg: BillingConfig,
        wake: Wake,
    ) -> Arc<Self> {
        Self::new_with_faults(pool, commits, provider, clock, cfg, wake, Faults::default())
    }

    /// Like [`Billing::new`], with crash points `faults` (tests of crash
    /// windows; [`crate::faults`]). Pass the same [`Faults`] to the sandbox
    /// provider ([`crate::SandboxProvider::with_faults`]) to arm its points
    /// through [`Billing::faults`].
    pub fn new_with_faults(
        pool: AnyPool,
        commits: Arc<dyn Committer>,
        provider: Arc<dyn PaymentProvider>,
        clock: Arc<dyn Clock>,
        cfg: BillingConfig,
        wake: Wake,
        faults: Faults,
    ) -> Arc<Self> {
        Arc::new(Billing {
            pool,
            commits,
            provider,
            clock,
            cfg,
            wake,
            settled: std::sync::OnceLock::new(),
            escrow_events: std::sync::OnceLock::new(),
            last_sweep: std::sync::Mutex::new(None),
            faults,
            price_reads: std::sync::OnceLock::new(),
        })
    }

    /// The task reading calls' prices in batches, started on first use
    /// (in the caller's runtime).
    fn price_reads(&self) -> &price_reads::PriceReads {
        self.price_reads.get_or_init(|| price_reads::PriceReads::spawn(self.pool.clone()))
    }

    /// The crash points of this billing (and of its sandbox provider when
    /// built with the same [`Faults`]): tests arm them.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The provider in use.
    pub fn provider(&self) -> &Arc<dyn PaymentProvider> {
        &self.provider
    }

    /// The settings.
    pub fn config(&self) -> &BillingConfig {
        &self.cfg
    }
}

fn money(row: &AnyRow, amount: &str, currency: &str) -> Result<Money, BillingError> {
    let c: String = row.try_get(currency)?;
    let c = Currency::parse(&c)?;
    Ok(Money::new(row.try_get(amount)?, c))
}

fn price_from_row(r: &AnyRow, model: &str, amount: &str) -> Result<ConsultantPrice, BillingError> {
    let m: String = r.try_get(model)?;
    Ok(ConsultantPrice {
        model: PriceModel::parse(&m).ok_or_else(|| BillingError::Data(format!("price model {m:?}")))?,
        amount: money(r, amount, "currency")?,
    })
}
