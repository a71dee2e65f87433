//! The money path's service: prices, holds, settlement (the outbox),
//! commission, the ledger, refunds and payout onboarding, over the server's
//! database and one [`PaymentProvider`].

use std::sync::Arc;
use std::time::Duration;

use parley_domain::protocol::rest::{
    ConsultantPrice, Earnings, EarningsItem, EarningsTotal, HoldInfo, LedgerItem, PriceModel, Receipt,
};
use parley_domain::protocol::{Outcome, SessionBill};
use parley_domain::{Clock, Currency, IdError, Money, MoneyError, SessionId, Timestamp, UserId};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use tokio::sync::Notify;

use crate::faults::Faults;
use crate::provider::{
    AccountRequest, CaptureRequest, HoldRequest, IntentStatus, PaymentProvider, ProviderError, RefundRequest,
};
use crate::webhook::{WebhookEvent, WebhookKind};

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
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            commission_bps: 2000,
            instant_max_minutes: 60,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
        }
    }
}

/// A billing failure that is not the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// The database failed.
    #[error("billing database: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored value did not parse.
    #[error("billing data: {0}")]
    Data(String),
    /// The provider refused or failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Money arithmetic failed, or a stored currency did not parse.
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// A stored id did not parse.
    #[error("billing data: {0}")]
    Id(#[from] IdError),
    /// The request cannot be carried out (stable code for the API).
    #[error("{1}")]
    Refused(&'static str, String),
}

/// Why no hold was placed: the call is rejected and the consultant is not
/// rung (DESIGN.md B2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldRefusal {
    /// The consultant charges and the call named no payment method.
    #[error("this consultant charges {0}: name a payment method (payment_method) in call.request")]
    MissingPaymentMethod(String),
    /// The card was declined (or the payment method is unknown).
    #[error("{0}")]
    Declined(String),
    /// The card needs the seeker's authentication (3-D Secure).
    #[error("{0}")]
    ActionRequired(String),
    /// The provider or the database failed; nothing was held.
    #[error("the payment could not be authorised right now ({0}); nothing was charged, try again")]
    Failed(String),
}

/// A session's hold in place, with the price agreed when it was placed:
/// returned when a call's hold is placed, and read back to re-meter an open
/// session after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The consultant's price.
    pub price: ConsultantPrice,
    /// The authorised amount.
    pub hold: Money,
    /// Longest billable time, minutes (instant-call maximum; M7).
    pub max_minutes: u32,
}

/// The settlement of a session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSettlement {
    /// `free`, `charged` or `unanswered`.
    pub outcome: String,
    /// Billable seconds.
    pub billable_secs: u64,
    /// Amount to capture.
    pub amount: Money,
    /// `pending`, `done`, `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// The last error, if an attempt failed.
    pub last_error: Option<String>,
}

fn money(row: &AnyRow, amount: &str, currency: &str) -> Result<Money, BillingError> {
    let c: String = row.try_get(currency)?;
    let c = Currency::parse(&c)?;
    Ok(Money::new(row.try_get(amount)?, c))
}

/// Stores a settlement decision (B3) inside the caller's transaction; a
/// second decision for the same session is ignored. `reason` is the end
/// reason's wire name.
pub async fn insert_settlement(
    conn: &mut sqlx::AnyConnection,
    session_id: &SessionId,
    bill: &SessionBill,
    reason: &str,
    at: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO settlements (session_id, outcome, reason, billable_secs, amount_minor, currency, decided_ms, next_attempt_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (session_id) DO NOTHING",
    )
    .bind(session_id.as_str())
    .bind(bill.outcome.as_str())
    .bind(reason)
    .bind(i64::try_from(bill.billable_secs).unwrap_or(i64::MAX))
    .bind(bill.charge.amount_minor)
    .bind(bill.charge.currency.as_str())
    .bind(at.unix_millis())
    .execute(conn)
    .await
    .map(|_| ())
}

/// Decides, inside the caller's transaction, that the authorised hold of
/// `session_id` (if one is `held`) is to be released: an `unanswered`
/// settlement the outbox carries out (B3, B4). Committed with the change
/// that orphaned the hold (a booking cancelled, declined or moved to a new
/// session), so a crash cannot leave the hold owned by nothing. Returns
/// whether a release was decided (false: no held hold, or the session's
/// settlement was decided already).
pub async fn insert_release(
    conn: &mut sqlx::AnyConnection,
    session_id: &SessionId,
    reason: &str,
    at: Timestamp,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO settlements (session_id, outcome, reason, billable_secs, amount_minor, currency, decided_ms, next_attempt_ms) \
         SELECT session_id, 'unanswered', $2, 0, 0, currency, $3, $3 FROM holds WHERE session_id = $1 AND status = 'held' \
         ON CONFLICT (session_id) DO NOTHING",
    )
    .bind(session_id.as_str())
    .bind(reason)
    .bind(at.unix_millis())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whose hold [`Billing::place_priced_hold`] places.
#[derive(Debug, Clone, Copy)]
pub struct HoldFor<'a> {
    /// The session the hold pays for (`hold:<session_id>`).
    pub session_id: &'a SessionId,
    /// The call or booking's call id (metadata).
    pub call_id: &'a str,
    /// Who pays.
    pub seeker: &'a UserId,
    /// Who is paid.
    pub consultant: &'a UserId,
    /// A booking's room opening time: until then (plus
    /// [`ORPHAN_AFTER`]) a hold without a session is not an orphan.
    pub opens_at: Option<Timestamp>,
}

/// The billing service. Share as `Arc<Billing>`.
pub struct Billing {
    pub(crate) pool: AnyPool,
    pub(crate) provider: Arc<dyn PaymentProvider>,
    pub(crate) clock: Arc<dyn Clock>,
    cfg: BillingConfig,
    wake: Arc<Notify>,
    last_sweep: std::sync::Mutex<Option<Timestamp>>,
    faults: Faults,
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
    /// Billing over `pool` (migrated by the server) with `provider`. The
    /// outbox worker also wakes when `wake` is notified (the store does so
    /// after committing a settlement).
    pub fn new(
        pool: AnyPool,
        provider: Arc<dyn PaymentProvider>,
        clock: Arc<dyn Clock>,
        cfg: BillingConfig,
        wake: Arc<Notify>,
    ) -> Arc<Self> {
        Self::new_with_faults(pool, provider, clock, cfg, wake, Faults::default())
    }

    /// Like [`Billing::new`], with crash points `faults` (tests of crash
    /// windows; [`crate::faults`]). Pass the same [`Faults`] to the sandbox
    /// provider ([`crate::SandboxProvider::with_faults`]) to arm its points
    /// through [`Billing::faults`].
    pub fn new_with_faults(
        pool: AnyPool,
        provider: Arc<dyn PaymentProvider>,
        clock: Arc<dyn Clock>,
        cfg: BillingConfig,
        wake: Arc<Notify>,
        faults: Faults,
    ) -> Arc<Self> {
        Arc::new(Billing { pool, provider, clock, cfg, wake, last_sweep: std::sync::Mutex::new(None), faults })
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

    // ----- prices ----------------------------------------------------------

    /// Sets `consultant`'s price (M7). The amount must be more than zero.
    pub async fn set_price(&self, consultant: &UserId, price: &ConsultantPrice) -> Result<(), BillingError> {
        if price.amount.amount_minor <= 0 {
            return Err(BillingError::Refused("invalid_field", "amount_minor: must be more than zero".into()));
        }
        sqlx::query(
            "INSERT INTO prices (consultant_id, model, amount_minor, currency, updated_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (consultant_id) DO UPDATE SET model = excluded.model, amount_minor = excluded.amount_minor, \
             currency = excluded.currency, updated_ms = excluded.updated_ms",
        )
        .bind(consultant.as_str())
        .bind(price.model.as_str())
        .bind(price.amount.amount_minor)
        .bind(price.amount.currency.as_str())
        .bind(self.clock.now().unix_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes `consultant`'s price: their calls are free again.
    pub async fn clear_price(&self, consultant: &UserId) -> Result<(), BillingError> {
        sqlx::query("DELETE FROM prices WHERE consultant_id = $1")
            .bind(consultant.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// `consultant`'s price, if they charge.
    pub async fn price(&self, consultant: &UserId) -> Result<Option<ConsultantPrice>, BillingError> {
        let row = sqlx::query("SELECT model, amount_minor, currency FROM prices WHERE consultant_id = $1")
            .bind(consultant.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| price_from_row(&r, "model", "amount_minor")).transpose()
    }

    // ----- holds -----------------------------------------------------------

    /// Places the payment hold of a call before the consultant is rung (B2):
    /// the fixed price, or rate × the instant maximum, authorised on
    /// `payment_method` with `capture_method=manual`, destined for the
    /// consultant's payout account. `Ok(None)`: the consultant does not
    /// charge, no hold is needed.
    pub async fn place_hold(
        &self,
        session_id: &SessionId,
        call_id: &str,
        seeker: &UserId,
        consultant: &UserId,
        payment_method: Option<&str>,
    ) -> Result<Option<Held>, HoldRefusal> {
        let failed = |e: BillingError| HoldRefusal::Failed(e.to_string());
        let Some(price) = self.price(consultant).await.map_err(failed)? else { return Ok(None) };
        let max_minutes = self.cfg.instant_max_minutes;
        let hold = HoldFor { session_id, call_id, seeker, consultant, opens_at: None };
        self.place_priced_hold(&hold, price, max_minutes, payment_method).await.map(Some)
    }

    /// Places the hold of a session at `price` for at most `max_minutes`
    /// of billable time (B2): the fixed amount, or rate × `max_minutes`
    /// for per-minute prices. Instant calls use the instant maximum; a
    /// booking its booked length. Idempotency key `hold:<session_id>`.
    pub async fn place_priced_hold(
        &self,
        what: &HoldFor<'_>,
        price: ConsultantPrice,
        max_minutes: u32,
        payment_method: Option<&str>,
    ) -> Result<Held, HoldRefusal> {
        let HoldFor { session_id, call_id, seeker, consultant, opens_at } = *what;
        let failed = |e: BillingError| HoldRefusal::Failed(e.to_string());
        let hold = match price.model {
            PriceModel::Fixed => price.amount,
            PriceModel::PerMinute => {
                Money::new(price.amount.amount_minor.saturating_mul(i64::from(max_minutes)), price.amount.currency)
            }
        };
        let Some(pm) = payment_method.filter(|pm| !pm.trim().is_empty()) else {
            let what = match price.model {
                PriceModel::Fixed => format!("{} per session", price.amount),
                PriceModel::PerMinute => format!("{} per minute", price.amount),
            };
            return Err(HoldRefusal::MissingPaymentMethod(what));
        };
        let destination =
            self.payout_account(consultant).await.map_err(failed)?.filter(|(_, ready)| *ready).map(|(a, _)| a);
        let now = self.clock.now();
        let req = HoldRequest {
            amount: hold,
            payment_method: pm.to_owned(),
            destination: destination.clone(),
            description: format!("Parley session {session_id}"),
            metadata: vec![
                ("session_id".into(), session_id.to_string()),
                ("call_id".into(), call_id.to_owned()),
                ("seeker_id".into(), seeker.to_string()),
                ("consultant_id".into(), consultant.to_string()),
            ],
            idempotency_key: format!("hold:{session_id}"),
        };
        let placed = self.provider.place_hold(&req).await;
        let (status, intent_id, expires, error) = match &placed {
            Ok(i) if i.status == IntentStatus::RequiresCapture => ("held", Some(i.id.clone()), i.hold_expires_at, None),
            Ok(i) => ("requires_action", Some(i.id.clone()), None, None),
            Err(ProviderError::Declined { .. }) | Err(ProviderError::Rejected { .. }) => {
                ("declined", None, None, placed.as_ref().err().map(ToString::to_string))
            }
            Err(ProviderError::Transient(_)) => ("failed", None, None, placed.as_ref().err().map(ToString::to_string)),
        };
        let stored = sqlx::query(
            "INSERT INTO holds (session_id, call_id, seeker_id, consultant_id, provider, intent_id, status, amount_minor, \
             currency, price_model, price_minor, max_billable_secs, destination, expires_ms, error, created_ms, updated_ms, \
             opens_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, $17)",
        )
        .bind(session_id.as_str())
        .bind(call_id)
        .bind(seeker.as_str())
        .bind(consultant.as_str())
        .bind(self.provider.name())
        .bind(intent_id.as_deref())
        .bind(status)
        .bind(hold.amount_minor)
        .bind(hold.currency.as_str())
        .bind(price.model.as_str())
        .bind(price.amount.amount_minor)
        .bind(i64::from(max_minutes) * 60)
        .bind(destination.as_deref())
        .bind(expires.map(Timestamp::unix_millis))
        .bind(error.as_deref())
        .bind(now.unix_millis())
        .bind(opens_at.map(Timestamp::unix_millis))
        .execute(&self.pool)
        .await;
        metrics::counter!(HOLDS, "result" => status).increment(1);
        if let Err(e) = stored {
            // The intent exists but we could not record it: release it now.
            if let Some(id) = &intent_id {
                let _ = self.provider.release(id, &format!("release:{session_id}")).await;
            }
            return Err(HoldRefusal::Failed(e.to_string()));
        }
        match placed {
            Ok(i) if i.status == IntentStatus::RequiresCapture => {
                self.ledger(session_id, "hold", "hold", hold, seeker, consultant, Some(&i.id)).await.map_err(failed)?;
                Ok(Held { price, hold, max_minutes })
            }
            Ok(i) => {
                // Leave nothing authorised behind a call that will not ring.
                let _ = self.provider.release(&i.id, &format!("release:{session_id}")).await;
                Err(HoldRefusal::ActionRequired(
                    "your card needs authentication (3-D Secure) before it can be charged; \
                     confirm it with your bank or use another card"
                        .into(),
                ))
            }
            Err(ProviderError::Declined { message, .. }) => Err(HoldRefusal::Declined(message)),
            Err(ProviderError::Rejected { message, .. }) => Err(HoldRefusal::Declined(message)),
            Err(ProviderError::Transient(m)) => Err(HoldRefusal::Failed(m)),
        }
    }

    /// The call of `session_id` ended unanswered: its hold (if any) is to
    /// be released, through the outbox.
    pub async fn call_unanswered(&self, session_id: &SessionId, reason: &str) -> Result<(), BillingError> {
        let mut conn = self.pool.acquire().await?;
        if insert_release(&mut conn, session_id, reason, self.clock.now()).await? {
            self.wake();
        }
        Ok(())
    }

    /// The price and hold of `session_id`, if it has a hold in place.
    pub async fn session_pricing(&self, session_id: &SessionId) -> Result<Option<Held>, BillingError> {
        let row = sqlx::query(
            "SELECT price_model, price_minor, amount_minor, currency, max_billable_secs FROM holds \
             WHERE session_id = $1 AND status = 'held'",
        )
        .bind(session_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let secs: i64 = row.try_get("max_billable_secs")?;
        Ok(Some(Held {
            price: price_from_row(&row, "price_model", "price_minor")?,
            hold: money(&row, "amount_minor", "currency")?,
            max_minutes: u32::try_from(secs / 60).unwrap_or(u32::MAX),
        }))
    }

    /// The hold of `session_id`, as the API shows it.
    pub async fn hold(&self, session_id: &SessionId) -> Result<Option<HoldInfo>, BillingError> {
        let row = sqlx::query(
            "SELECT status, amount_minor, currency, intent_id, provider, expires_ms FROM holds WHERE session_id = $1",
        )
        .bind(session_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(HoldInfo {
                status: r.try_get("status")?,
                amount: money(&r, "amount_minor", "currency")?,
                intent_id: r.try_get("intent_id")?,
                provider: r.try_get("provider")?,
                expires_at_ms: r.try_get("expires_ms")?,
            })
        })
        .transpose()
    }

    // ----- the settlement outbox (B3) --------------------------------------

    /// Wakes the outbox worker: a settlement was stored.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The outbox worker: carries out due settlements until `shutdown`
    /// resolves. Woken by [`Billing::wake`], and at least every 500 ms for
    /// retries and settlements stored by other nodes.
    pub async fn run_outbox(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.settle_due().await {
                tracing::error!(error = %e, "settlement outbox pass failed");
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Carries out every settlement due now; returns how many were done
    /// (succeeded or failed for good) in this pass.
    pub async fn settle_due(&self) -> Result<usize, BillingError> {
        let now = self.clock.now().unix_millis();
        let due = sqlx::query(
            "SELECT session_id FROM settlements WHERE status = 'pending' AND next_attempt_ms <= $1 \
             ORDER BY next_attempt_ms LIMIT 100",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        self.sweep_orphan_holds().await?;
        let mut finished = 0;
        for row in due {
            let sid: String = row.try_get("session_id")?;
            let session_id = SessionId::parse(sid)?;
            // Claim it: another worker may be looking at the same row.
            let lease = now + i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
            let claimed = sqlx::query(
                "UPDATE settlements SET next_attempt_ms = $3 WHERE session_id = $1 AND status = 'pending' \
                 AND next_attempt_ms <= $2",
            )
            .bind(session_id.as_str())
            .bind(now)
            .bind(lease)
            .execute(&self.pool)
            .await?;
            if claimed.rows_affected() != 1 {
                continue;
            }
            if self.carry_out(&session_id).await? {
                finished += 1;
            }
        }
        Ok(finished)
    }

    /// Holds of calls that never became a session and were never released
    /// (the server that placed them died while they rang): released through
    /// the outbox, at most once a minute, for holds older than
    /// [`ORPHAN_AFTER`] (far beyond any ring); a booking's hold only once its
    /// room is that late to open.
    async fn sweep_orphan_holds(&self) -> Result<(), BillingError> {
        let now = self.clock.now();
        {
            let mut last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| now.since(t) < Duration::from_secs(60)) {
                return Ok(());
            }
            *last = Some(now);
        }
        let before = now.unix_millis() - i64::try_from(ORPHAN_AFTER.as_millis()).unwrap_or(i64::MAX);
        let done = sqlx::query(
            "INSERT INTO settlements (session_id, outcome, reason, billable_secs, amount_minor, currency, decided_ms, next_attempt_ms) \
             SELECT h.session_id, 'unanswered', 'orphaned', 0, 0, h.currency, $2, $2 FROM holds h \
             WHERE h.status = 'held' AND h.created_ms < $1 AND (h.opens_ms IS NULL OR h.opens_ms < $1) \
             AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.session_id = h.session_id) \
             AND NOT EXISTS (SELECT 1 FROM sessions x WHERE x.id = h.session_id) \
             ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(before)
        .bind(now.unix_millis())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() > 0 {
            tracing::warn!(holds = done.rows_affected(), "releasing holds of calls that never became sessions");
        }
        Ok(())
    }

    /// Carries out one claimed settlement; true when it is finished (done
    /// or failed for good), false when it will be retried.
    async fn carry_out(&self, session_id: &SessionId) -> Result<bool, BillingError> {
        let s = sqlx::query(
            "SELECT s.outcome, s.amount_minor, s.currency, s.attempts, h.intent_id, h.status AS hold_status, \
             h.amount_minor AS hold_minor, h.currency AS hold_currency, h.destination, h.expires_ms, h.seeker_id, \
             h.consultant_id FROM settlements s LEFT JOIN holds h ON h.session_id = s.session_id WHERE s.session_id = $1",
        )
        .bind(session_id.as_str())
        .fetch_one(&self.pool)
        .await?;
        let now = self.clock.now();
        let attempts: i64 = s.try_get("attempts")?;
        let hold_status: Option<String> = s.try_get("hold_status")?;
        let intent_id: Option<String> = s.try_get("intent_id")?;
        if hold_status.as_deref() == Some("expired") && s.try_get::<String, _>("outcome")? == Outcome::Charged.as_str()
        {
            // B6: the provider let the authorisation lapse; nothing to capture.
            self.finish(session_id, "failed", Some("the hold expired before capture (DESIGN.md B6)")).await?;
            return Ok(true);
        }
        let (Some("held"), Some(intent_id)) = (hold_status.as_deref(), intent_id) else {
            // No hold in place (a free consultant, or already settled).
            self.finish(session_id, "done", None).await?;
            return Ok(true);
        };
        let amount = money(&s, "amount_minor", "currency")?;
        let hold = money(&s, "hold_minor", "hold_currency")?;
        let seeker = UserId::parse(s.try_get::<String, _>("seeker_id")?)?;
        let consultant = UserId::parse(s.try_get::<String, _>("consultant_id")?)?;
        let destination: Option<String> = s.try_get("destination")?;
        let expires: Option<i64> = s.try_get("expires_ms")?;
        let outcome: String = s.try_get("outcome")?;
        let key = format!("settle:{session_id}");
        let capture = outcome == Outcome::Charged.as_str() && amount.amount_minor > 0;

        if capture && expires.is_some_and(|e| e <= now.unix_millis()) {
            // B6: an expired authorisation is never captured.
            self.set_hold_status(session_id, "expired").await?;
            self.finish(session_id, "failed", Some("the hold expired before capture (DESIGN.md B6)")).await?;
            return Ok(true);
        }
        let result = if capture {
            let amount = Money::new(amount.amount_minor.min(hold.amount_minor), hold.currency);
            let fee = amount.basis_points(self.cfg.commission_bps)?;
            let req = CaptureRequest {
                amount_to_capture: amount.amount_minor,
                application_fee_amount: destination.as_ref().map(|_| fee.amount_minor),
                idempotency_key: key,
            };
            match self.provider.capture(&intent_id, &req).await {
                Ok(_) => {
                    let earnings = Money::new(amount.amount_minor - fee.amount_minor, amount.currency);
                    let r = Some(intent_id.as_str());
                    // The capture's ledger rows, the hold's status and `done`
                    // commit together: no reader sees half a settlement.
                    let mut tx = self.pool.begin().await?;
                    let entry = Entry { session_id, seeker: &seeker, consultant: &consultant, at: now };
                    entry.record(&mut tx, "capture", "capture", amount, r).await?;
                    entry.record(&mut tx, "fee", "fee", fee, r).await?;
                    entry.record(&mut tx, "earnings", "earnings", earnings, r).await?;
                    let rest = hold.amount_minor - amount.amount_minor;
                    if rest > 0 {
                        entry.record(&mut tx, "release", "release", Money::new(rest, hold.currency), r).await?;
                    }
                    self.settled_on(&mut tx, session_id, "captured").await?;
                    tx.commit().await?;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else {
            match self.provider.release(&intent_id, &key).await {
                Ok(_) => {
                    let r = Some(intent_id.as_str());
                    let mut tx = self.pool.begin().await?;
                    let entry = Entry { session_id, seeker: &seeker, consultant: &consultant, at: now };
                    entry.record(&mut tx, "release", "release", hold, r).await?;
                    self.settled_on(&mut tx, session_id, "released").await?;
                    tx.commit().await?;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(()) => {
                metrics::counter!(SETTLEMENTS, "outcome" => if capture { "captured" } else { "released" }).increment(1);
                Ok(true)
            }
            Err(e) if e.is_transient() => {
                metrics::counter!(SETTLEMENT_RETRIES).increment(1);
                let attempts = attempts + 1;
                let exp = u32::try_from(attempts - 1).unwrap_or(u32::MAX).min(20);
                let delay = self.cfg.retry_base.saturating_mul(1 << exp).min(self.cfg.retry_max);
                tracing::warn!(%session_id, attempts, error = %e, retry_in = ?delay, "settlement failed; will retry");
                sqlx::query(
                    "UPDATE settlements SET attempts = $2, next_attempt_ms = $3, last_error = $4 WHERE session_id = $1",
                )
                .bind(session_id.as_str())
                .bind(attempts)
                .bind(now.plus(delay).unix_millis())
                .bind(e.to_string())
                .execute(&self.pool)
                .await?;
                Ok(false)
            }
            Err(e) => {
                metrics::counter!(SETTLEMENTS, "outcome" => "failed").increment(1);
                tracing::error!(%session_id, error = %e, "settlement refused by the provider; needs attention");
                self.finish(session_id, "failed", Some(&e.to_string())).await?;
                Ok(true)
            }
        }
    }

    async fn finish(&self, session_id: &SessionId, status: &str, error: Option<&str>) -> Result<(), BillingError> {
        sqlx::query(
            "UPDATE settlements SET status = $2, attempts = attempts + 1, last_error = COALESCE($3, last_error), \
             done_ms = $4 WHERE session_id = $1",
        )
        .bind(session_id.as_str())
        .bind(status)
        .bind(error)
        .bind(self.clock.now().unix_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks the hold `hold_status` and the settlement `done`, in the
    /// caller's transaction.
    async fn settled_on(
        &self,
        conn: &mut sqlx::AnyConnection,
        session_id: &SessionId,
        hold_status: &str,
    ) -> Result<(), BillingError> {
        let now = self.clock.now().unix_millis();
        sqlx::query("UPDATE holds SET status = $2, updated_ms = $3 WHERE session_id = $1")
            .bind(session_id.as_str())
            .bind(hold_status)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "UPDATE settlements SET status = 'done', attempts = attempts + 1, done_ms = $2 WHERE session_id = $1",
        )
        .bind(session_id.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn set_hold_status(&self, session_id: &SessionId, status: &str) -> Result<(), BillingError> {
        sqlx::query("UPDATE holds SET status = $2, updated_ms = $3 WHERE session_id = $1")
            .bind(session_id.as_str())
            .bind(status)
            .bind(self.clock.now().unix_millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The settlement of `session_id`, if decided.
    pub async fn settlement(&self, session_id: &SessionId) -> Result<Option<StoredSettlement>, BillingError> {
        let row = sqlx::query(
            "SELECT outcome, billable_secs, amount_minor, currency, status, attempts, last_error FROM settlements \
             WHERE session_id = $1",
        )
        .bind(session_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredSettlement {
                outcome: r.try_get("outcome")?,
                billable_secs: u64::try_from(r.try_get::<i64, _>("billable_secs")?).unwrap_or(0),
                amount: money(&r, "amount_minor", "currency")?,
                status: r.try_get("status")?,
                attempts: r.try_get("attempts")?,
                last_error: r.try_get("last_error")?,
            })
        })
        .transpose()
    }

    // ----- the ledger (B7) -------------------------------------------------

    /// Records a money movement once: a second entry with the same
    /// `key` suffix for the session is ignored.
    #[allow(clippy::too_many_arguments)]
    async fn ledger(
        &self,
        session_id: &SessionId,
        key: &str,
        kind: &str,
        amount: Money,
        seeker: &UserId,
        consultant: &UserId,
        provider_ref: Option<&str>,
    ) -> Result<(), BillingError> {
        let mut conn = self.pool.acquire().await?;
        let entry = Entry { session_id, seeker, consultant, at: self.clock.now() };
        entry.record(&mut conn, key, kind, amount, provider_ref).await
    }

    /// The ledger entries of `session_id`, oldest first.
    pub async fn session_ledger(&self, session_id: &SessionId) -> Result<Vec<LedgerItem>, BillingError> {
        let rows = sqlx::query(
            "SELECT kind, amount_minor, currency, at_ms, provider_ref FROM ledger WHERE session_id = $1 ORDER BY id",
        )
        .bind(session_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LedgerItem {
                    kind: r.try_get("kind")?,
                    amount: money(r, "amount_minor", "currency")?,
                    at_ms: r.try_get("at_ms")?,
                    provider_ref: r.try_get("provider_ref")?,
                })
            })
            .collect()
    }

    /// `consultant`'s earnings (B7): per charged session and per currency,
    /// less refunds taken back from them.
    pub async fn earnings(&self, consultant: &UserId) -> Result<Earnings, BillingError> {
        let rows = sqlx::query(
            "SELECT session_id, currency, MIN(at_ms) AS at_ms, \
             CAST(SUM(CASE WHEN kind = 'capture' THEN amount_minor ELSE 0 END) AS BIGINT) AS captured, \
             CAST(SUM(CASE WHEN kind = 'fee' THEN amount_minor WHEN kind = 'fee_reversal' THEN -amount_minor ELSE 0 END) AS BIGINT) AS fee, \
             CAST(SUM(CASE WHEN kind = 'earnings' THEN amount_minor WHEN kind = 'earnings_reversal' THEN -amount_minor ELSE 0 END) AS BIGINT) AS earned \
             FROM ledger WHERE consultant_id = $1 AND kind IN ('capture', 'fee', 'earnings', 'fee_reversal', 'earnings_reversal') \
             GROUP BY session_id, currency ORDER BY MIN(at_ms) DESC, session_id",
        )
        .bind(consultant.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut sessions = Vec::with_capacity(rows.len());
        let mut totals: Vec<EarningsTotal> = Vec::new();
        for r in &rows {
            let sid: String = r.try_get("session_id")?;
            let item = EarningsItem {
                session_id: SessionId::parse(sid)?,
                at_ms: r.try_get("at_ms")?,
                captured: money(r, "captured", "currency")?,
                fee: money(r, "fee", "currency")?,
                earnings: money(r, "earned", "currency")?,
            };
            match totals.iter_mut().find(|t| t.earnings.currency == item.earnings.currency) {
                Some(t) => {
                    t.earnings = t.earnings.checked_add(item.earnings)?;
                    t.sessions += 1;
                }
                None => totals.push(EarningsTotal { earnings: item.earnings, sessions: 1 }),
            }
            sessions.push(item);
        }
        Ok(Earnings { consultant_id: consultant.clone(), totals, sessions })
    }

    /// `seeker`'s receipts (B7): every session they placed a hold for, newest
    /// first, with what was charged and refunded.
    pub async fn receipts(&self, seeker: &UserId) -> Result<Vec<Receipt>, BillingError> {
        let rows = sqlx::query(
            "SELECT h.session_id, h.consultant_id, h.created_ms, h.amount_minor, h.currency, s.outcome, s.billable_secs, \
             (SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM ledger l WHERE l.session_id = h.session_id AND l.kind = 'capture') AS charged, \
             (SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM ledger l WHERE l.session_id = h.session_id AND l.kind = 'refund') AS refunded \
             FROM holds h LEFT JOIN settlements s ON s.session_id = h.session_id \
             WHERE h.seeker_id = $1 AND h.status NOT IN ('declined', 'failed', 'requires_action') \
             ORDER BY h.created_ms DESC, h.session_id",
        )
        .bind(seeker.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let sid: String = r.try_get("session_id")?;
                let cid: String = r.try_get("consultant_id")?;
                let outcome: Option<String> = r.try_get("outcome")?;
                let billable: Option<i64> = r.try_get("billable_secs")?;
                Ok(Receipt {
                    session_id: SessionId::parse(sid)?,
                    consultant_id: UserId::parse(cid)?,
                    at_ms: r.try_get("created_ms")?,
                    hold: money(r, "amount_minor", "currency")?,
                    outcome: match outcome.as_deref() {
                        Some("charged") => Some(Outcome::Charged),
                        Some(_) => Some(Outcome::Free),
                        None => None,
                    },
                    billable_secs: billable.map(|b| u64::try_from(b).unwrap_or(0)),
                    charged: money(r, "charged", "currency")?,
                    refunded: money(r, "refunded", "currency")?,
                })
            })
            .collect()
    }

    // ----- refunds ---------------------------------------------------------

    /// Refunds `amount_minor` (default: all that is left) of a captured
    /// session, taking the consultant's share and the fee back in proportion
    /// (rounded down for the consultant). Each call is one distinct refund
    /// at the provider: its amount is first reserved against what is left
    /// (under the hold row's lock, so concurrent refunds of one session are
    /// serialised and can never together exceed the capture), under its own
    /// sequence number and provider idempotency key
    /// `refund:<session>:<seq>`; the provider's answer and the ledger
    /// entries are then recorded in one transaction. `request_key` (the
    /// caller's `Idempotency-Key`) makes a retried request reuse its
    /// reservation: the same provider refund, never a second one.
    ///
    /// Errors: `Refused("not_charged")` if nothing was captured,
    /// `Refused("invalid_field")` for an amount below 1,
    /// `Refused("refund_exceeds_capture")` for more than is left (counting
    /// refunds under way); `Provider` if the provider refused (the
    /// reservation is freed) or failed (it stays, so nothing is refunded
    /// twice; the same `request_key` retries it).
    pub async fn refund(
        &self,
        session_id: &SessionId,
        amount_minor: Option<i64>,
        request_key: Option<&str>,
    ) -> Result<(String, Money), BillingError> {
        let now = self.clock.now().unix_millis();
        let mut tx = self.pool.begin().await?;
        // The lock: the first statement writes the hold row.
        let locked =
            sqlx::query("UPDATE holds SET updated_ms = updated_ms WHERE session_id = $1 AND status = 'captured'")
                .bind(session_id.as_str())
                .execute(&mut *tx)
                .await?;
        if locked.rows_affected() != 1 {
            return Err(BillingError::Refused("not_charged", format!("session {session_id} was not charged")));
        }
        let row = sqlx::query(
            "SELECT h.intent_id, h.seeker_id, h.consultant_id, h.destination, h.currency, \
             (SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM ledger l WHERE l.session_id = h.session_id AND l.kind = 'capture') AS captured, \
             (SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM ledger l WHERE l.session_id = h.session_id AND l.kind = 'earnings') AS earned, \
             (SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM ledger l WHERE l.session_id = h.session_id AND l.kind = 'refund') AS booked, \
             (SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds r WHERE r.session_id = h.session_id AND r.status = 'pending') AS pending, \
             (SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM refunds r WHERE r.session_id = h.session_id) AS last_seq \
             FROM holds h WHERE h.session_id = $1",
        )
        .bind(session_id.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let captured = money(&row, "captured", "currency")?;
        let cur = captured.currency;
        let refunded = row.try_get::<i64, _>("booked")? + row.try_get::<i64, _>("pending")?;
        let earned: i64 = row.try_get("earned")?;
        let intent_id: String = row.try_get("intent_id")?;
        let destination: Option<String> = row.try_get("destination")?;
        let seeker = UserId::parse(row.try_get::<String, _>("seeker_id")?)?;
        let consultant = UserId::parse(row.try_get::<String, _>("consultant_id")?)?;
        let earlier = match request_key {
            Some(key) => sqlx::query(
                "SELECT seq, amount_minor, status, refund_id FROM refunds WHERE session_id = $1 AND request_key = $2",
            )
            .bind(session_id.as_str())
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?,
            None => None,
        };
        let (seq, amount) = match earlier {
            Some(r) => {
                let (seq, amount): (i64, i64) = (r.try_get("seq")?, r.try_get("amount_minor")?);
                let status: String = r.try_get("status")?;
                match status.as_str() {
                    "done" => {
                        let id: Option<String> = r.try_get("refund_id")?;
                        return Ok((id.unwrap_or_default(), Money::new(amount, cur)));
                    }
                    "failed" => {
                        return Err(BillingError::Provider(ProviderError::Rejected {
                            code: "refund_failed".into(),
                            message: format!("refund {seq} of session {session_id} was refused by the provider"),
                        }));
                    }
                    _ => (seq, amount),
                }
            }
            None => {
                let left = captured.amount_minor - refunded;
                let amount = amount_minor.unwrap_or(left);
                if amount_minor.is_some_and(|a| a <= 0) {
                    return Err(BillingError::Refused(
                        "invalid_field",
                        format!("amount_minor: at least 1 (left {left})"),
                    ));
                }
                if amount <= 0 || amount > left {
                    return Err(BillingError::Refused(
                        "refund_exceeds_capture",
                        format!(
                            "refunding {amount} of session {session_id} would exceed its capture: captured {captured}, \
                             refunded or being refunded {refunded}, left {left}"
                        ),
                    ));
                }
                let seq = row.try_get::<i64, _>("last_seq")? + 1;
                sqlx::query(
                    "INSERT INTO refunds (session_id, seq, amount_minor, currency, status, request_key, created_ms, updated_ms) \
                     VALUES ($1, $2, $3, $4, 'pending', $5, $6, $6)",
                )
                .bind(session_id.as_str())
                .bind(seq)
                .bind(amount)
                .bind(cur.as_str())
                .bind(request_key)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                (seq, amount)
            }
        };
        tx.commit().await?;

        let req = RefundRequest {
            intent_id,
            amount,
            reverse_transfer: destination.is_some(),
            idempotency_key: format!("refund:{session_id}:{seq}"),
        };
        let refund = match self.provider.refund(&req).await {
            Ok(refund) => refund,
            Err(e) => {
                if !e.is_transient() {
                    sqlx::query("UPDATE refunds SET status = 'failed', error = $3, updated_ms = $4 WHERE session_id = $1 AND seq = $2")
                        .bind(session_id.as_str())
                        .bind(seq)
                        .bind(e.to_string())
                        .bind(self.clock.now().unix_millis())
                        .execute(&self.pool)
                        .await?;
                }
                return Err(e.into());
            }
        };
        // Proportional reversal, rounded down for the consultant.
        let back = i64::try_from(i128::from(amount) * i128::from(earned) / i128::from(captured.amount_minor.max(1)))
            .unwrap_or(0);
        let now = self.clock.now();
        let at = now.unix_millis();
        let mut tx = self.pool.begin().await?;
        let r = Some(refund.id.as_str());
        // The refund and its reversals commit together (reconcile never
        // sees one without the others), with the reservation's `done`.
        let entry = Entry { session_id, seeker: &seeker, consultant: &consultant, at: now };
        entry.record(&mut tx, &format!("refund:{seq}"), "refund", Money::new(amount, cur), r).await?;
        entry
            .record(&mut tx, &format!("earnings_reversal:{seq}"), "earnings_reversal", Money::new(back, cur), r)
            .await?;
        entry
            .record(&mut tx, &format!("fee_reversal:{seq}"), "fee_reversal", Money::new(amount - back, cur), r)
            .await?;
        sqlx::query(
            "UPDATE refunds SET status = 'done', refund_id = $3, updated_ms = $4 WHERE session_id = $1 AND seq = $2",
        )
        .bind(session_id.as_str())
        .bind(seq)
        .bind(&refund.id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((refund.id, Money::new(amount, cur)))
    }

    // ----- webhooks (B5) ---------------------------------------------------

    /// Applies a verified provider event once (by event id, B5). Returns
    /// false for an event already processed. The event is marked processed
    /// (`webhook_events`) and its effect written in one transaction, so a
    /// crash or a failure leaves neither and the provider's retry applies it
    /// (issue 13). The mark is the transaction's first statement: a second
    /// delivery of the same event at the same moment waits for the first
    /// (PostgreSQL on the key, SQLite on its write lock) and is then a
    /// duplicate, or applies it if the first failed.
    pub async fn handle_webhook(&self, event: &WebhookEvent) -> Result<bool, BillingError> {
        let kind = match &event.kind {
            WebhookKind::Other(t) => t.as_str(),
            WebhookKind::HoldConfirmed { .. } => "payment_intent.amount_capturable_updated",
            WebhookKind::Captured { .. } => "payment_intent.succeeded",
            WebhookKind::Canceled { .. } => "payment_intent.canceled",
            WebhookKind::PaymentFailed { .. } => "payment_intent.payment_failed",
            WebhookKind::Refunded { .. } => "charge.refunded",
            WebhookKind::DisputeCreated { .. } => "charge.dispute.created",
            WebhookKind::AccountUpdated { .. } => "account.updated",
        };
        let mut tx = self.pool.begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO webhook_events (id, type, received_ms) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&event.id)
        .bind(kind)
        .bind(self.clock.now().unix_millis())
        .execute(&mut *tx)
        .await?;
        if fresh.rows_affected() == 0 {
            return Ok(false);
        }
        self.apply_webhook(&mut tx, event).await?;
        if self.faults.fires("webhook.apply") {
            drop(tx);
            return Err(BillingError::Data("injected crash at webhook.apply".into()));
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn apply_webhook(&self, conn: &mut sqlx::AnyConnection, event: &WebhookEvent) -> Result<(), BillingError> {
        async fn hold_of(
            conn: &mut sqlx::AnyConnection,
            intent: &str,
        ) -> Result<Option<(SessionId, UserId, UserId, String, Currency)>, BillingError> {
            let row = sqlx::query(
                "SELECT session_id, seeker_id, consultant_id, status, currency FROM holds WHERE intent_id = $1",
            )
            .bind(intent)
            .fetch_optional(conn)
            .await?;
            row.map(|r| -> Result<_, BillingError> {
                let parse = |k: &str| -> Result<String, BillingError> { Ok(r.try_get::<String, _>(k)?) };
                Ok((
                    SessionId::parse(parse("session_id")?)?,
                    UserId::parse(parse("seeker_id")?)?,
                    UserId::parse(parse("consultant_id")?)?,
                    parse("status")?,
                    Currency::parse(&parse("currency")?)?,
                ))
            })
            .transpose()
        }
        let now = self.clock.now();
        match &event.kind {
            WebhookKind::Canceled { intent_id } => {
                // Canceled by the provider while we still hold it: lapsed (B6).
                if let Some((sid, ..)) = hold_of(conn, intent_id).await? {
                    sqlx::query(
                        "UPDATE holds SET status = 'expired', updated_ms = $2 WHERE session_id = $1 AND status = 'held'",
                    )
                    .bind(sid.as_str())
                    .bind(now.unix_millis())
                    .execute(&mut *conn)
                    .await?;
                }
            }
            WebhookKind::Captured { intent_id, .. } => {
                if let Some((sid, ..)) = hold_of(conn, intent_id).await? {
                    tracing::info!(session_id = %sid, intent_id, "provider confirms the capture");
                }
            }
            WebhookKind::PaymentFailed { intent_id, message } => {
                tracing::warn!(intent_id, message, "provider reports a failed payment");
            }
            WebhookKind::Refunded { intent_id, amount_refunded } => {
                // Refunds made outside our API (e.g. the dashboard) enter
                // the ledger here; ours are there already.
                if let Some((sid, seeker, consultant, _, currency)) = hold_of(conn, intent_id).await? {
                    // Refunds of ours under way are known too: their ledger
                    // rows are written when the provider has answered.
                    let known: i64 = sqlx::query(
                        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) + \
                         (SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds \
                          WHERE session_id = $1 AND status = 'pending') AS n FROM ledger \
                         WHERE session_id = $1 AND kind = 'refund'",
                    )
                    .bind(sid.as_str())
                    .fetch_one(&mut *conn)
                    .await?
                    .try_get("n")?;
                    let missing = amount_refunded - known;
                    if missing > 0 {
                        let key = refund_key(*amount_refunded);
                        let amount = Money::new(missing, currency);
                        let entry = Entry { session_id: &sid, seeker: &seeker, consultant: &consultant, at: now };
                        entry.record(conn, &key, "refund", amount, Some(intent_id)).await?;
                    }
                }
            }
            WebhookKind::DisputeCreated { intent_id, amount, reason } => {
                if let Some((sid, seeker, consultant, _, currency)) = hold_of(conn, intent_id).await? {
                    tracing::warn!(session_id = %sid, reason, amount, "payment disputed");
                    let key = format!("dispute:{}", event.id);
                    let amount = Money::new(*amount, currency);
                    let entry = Entry { session_id: &sid, seeker: &seeker, consultant: &consultant, at: now };
                    entry.record(conn, &key, "dispute", amount, Some(intent_id)).await?;
                }
            }
            WebhookKind::AccountUpdated { account_id, charges_enabled, payouts_enabled, details_submitted } => {
                sqlx::query(
                    "UPDATE payout_accounts SET charges_enabled = $2, payouts_enabled = $3, details_submitted = $4, \
                     updated_ms = $5 WHERE account_id = $1",
                )
                .bind(account_id)
                .bind(i64::from(*charges_enabled))
                .bind(i64::from(*payouts_enabled))
                .bind(i64::from(*details_submitted))
                .bind(now.unix_millis())
                .execute(&mut *conn)
                .await?;
            }
            WebhookKind::HoldConfirmed { .. } | WebhookKind::Other(_) => {}
        }
        Ok(())
    }

    /// How many provider events were processed (for tests and metrics).
    pub async fn webhooks_processed(&self) -> Result<i64, BillingError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM webhook_events").fetch_one(&self.pool).await?.try_get("n")?)
    }

    // ----- payout accounts -------------------------------------------------

    /// `consultant`'s payout account and whether it can receive transfers.
    pub async fn payout_account(&self, consultant: &UserId) -> Result<Option<(String, bool)>, BillingError> {
        let row = sqlx::query("SELECT account_id, charges_enabled FROM payout_accounts WHERE consultant_id = $1")
            .bind(consultant.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("account_id")?, r.try_get::<i64, _>("charges_enabled")? != 0))).transpose()
    }

    /// Creates `consultant`'s payout account if needed and returns it with
    /// an onboarding link (Stripe Connect Express + Account Link).
    pub async fn payout_onboarding(
        &self,
        consultant: &UserId,
        refresh_url: &str,
        return_url: &str,
    ) -> Result<(String, String), BillingError> {
        let account = match self.payout_account(consultant).await? {
            Some((id, _)) => id,
            None => {
                let acct = self
                    .provider
                    .create_account(&AccountRequest {
                        consultant_id: consultant.to_string(),
                        email: None,
                        country: "DE".into(),
                        idempotency_key: format!("account:{consultant}"),
                    })
                    .await?;
                self.account_updated(
                    consultant,
                    &acct.id,
                    acct.charges_enabled,
                    acct.payouts_enabled,
                    acct.details_submitted,
                )
                .await?;
                acct.id
            }
        };
        let url = self.provider.onboarding_link(&account, refresh_url, return_url).await?;
        Ok((account, url))
    }

    /// Records a payout account's state (on creation, and on Stripe's
    /// `account.updated`).
    pub async fn account_updated(
        &self,
        consultant: &UserId,
        account_id: &str,
        charges_enabled: bool,
        payouts_enabled: bool,
        details_submitted: bool,
    ) -> Result<(), BillingError> {
        sqlx::query(
            "INSERT INTO payout_accounts (consultant_id, account_id, charges_enabled, payouts_enabled, details_submitted, \
             updated_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (consultant_id) DO UPDATE SET \
             account_id = excluded.account_id, charges_enabled = excluded.charges_enabled, \
             payouts_enabled = excluded.payouts_enabled, details_submitted = excluded.details_submitted, \
             updated_ms = excluded.updated_ms",
        )
        .bind(consultant.as_str())
        .bind(account_id)
        .bind(i64::from(charges_enabled))
        .bind(i64::from(payouts_enabled))
        .bind(i64::from(details_submitted))
        .bind(self.clock.now().unix_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Whose ledger entries [`Entry::record`] writes, and when.
struct Entry<'a> {
    session_id: &'a SessionId,
    seeker: &'a UserId,
    consultant: &'a UserId,
    at: Timestamp,
}

impl Entry<'_> {
    /// Records a money movement once, on `conn` (a transaction's, to commit
    /// it with what caused it): a second entry with the same `key` for the
    /// session is ignored.
    async fn record(
        &self,
        conn: &mut sqlx::AnyConnection,
        key: &str,
        kind: &str,
        amount: Money,
        provider_ref: Option<&str>,
    ) -> Result<(), BillingError> {
        sqlx::query(
            "INSERT INTO ledger (entry_key, session_id, kind, amount_minor, currency, seeker_id, consultant_id, \
             provider_ref, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (entry_key) DO NOTHING",
        )
        .bind(format!("{key}:{}", self.session_id))
        .bind(self.session_id.as_str())
        .bind(kind)
        .bind(amount.amount_minor)
        .bind(amount.currency.as_str())
        .bind(self.seeker.as_str())
        .bind(self.consultant.as_str())
        .bind(provider_ref)
        .bind(self.at.unix_millis())
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// The ledger key of a refund that brings the session's refunded total to
/// `total` minor units: the same for our refund call and Stripe's
/// `charge.refunded` (which reports the total), so it is recorded once.
fn refund_key(total: i64) -> String {
    format!("refund:upto:{total}")
}

fn price_from_row(r: &AnyRow, model: &str, amount: &str) -> Result<ConsultantPrice, BillingError> {
    let m: String = r.try_get(model)?;
    Ok(ConsultantPrice {
        model: PriceModel::parse(&m).ok_or_else(|| BillingError::Data(format!("price model {m:?}")))?,
        amount: money(r, amount, "currency")?,
    })
}
