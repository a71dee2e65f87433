//! Payment holds: placed before the consultant is rung (DESIGN.md B2),
//! read back to re-meter a session, released when a call goes unanswered.

use parley_domain::protocol::ErrorCode;
use parley_domain::protocol::rest::{ConsultantPrice, HoldInfo, PriceModel};
use parley_domain::{Money, SessionId, Timestamp, UserId};
use sqlx::Row;

use super::{Billing, BillingError, HOLDS, money, price_from_row};
use crate::commit::Statement;
use crate::provider::{HoldRequest, IntentStatus, ProviderError};

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

impl HoldRefusal {
    /// The stable code the call is refused with: `missing_field` (no payment
    /// method), `payment_action_required` (3-D Secure), `payment_declined`
    /// (declined, or nothing could be authorised right now).
    pub fn code(&self) -> ErrorCode {
        match self {
            HoldRefusal::MissingPaymentMethod(_) => ErrorCode::MissingField,
            HoldRefusal::ActionRequired(_) => ErrorCode::PaymentActionRequired,
            HoldRefusal::Declined(_) | HoldRefusal::Failed(_) => ErrorCode::PaymentDeclined,
        }
    }
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

impl Billing {
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
        // The price and the payout account in one read, batched with the
        // reads of calls that arrive together ([`super::price_reads`]).
        let Some(row) = self.price_reads().read(consultant).await.map_err(HoldRefusal::Failed)? else {
            return Ok(None);
        };
        let (price, destination) = (row.price, row.destination);
        let max_minutes = self.cfg.instant_max_minutes;
        let hold = HoldFor { session_id, call_id, seeker, consultant, opens_at: None };
        self.place_hold_to(&hold, price, max_minutes, payment_method, destination).await.map(Some)
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
        let failed = |e: BillingError| HoldRefusal::Failed(e.to_string());
        let destination =
            self.payout_account(what.consultant).await.map_err(failed)?.filter(|(_, ready)| *ready).map(|(a, _)| a);
        self.place_hold_to(what, price, max_minutes, payment_method, destination).await
    }

    /// [`Billing::place_priced_hold`] with the consultant's payout account
    /// read already: `destination` when it can receive transfers.
    async fn place_hold_to(
        &self,
        what: &HoldFor<'_>,
        price: ConsultantPrice,
        max_minutes: u32,
        payment_method: Option<&str>,
        destination: Option<String>,
    ) -> Result<Held, HoldRefusal> {
        let HoldFor { session_id, call_id, seeker, consultant, opens_at } = *what;
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
        // Committed with other writes under load, in one insert with other
        // calls' holds ([`crate::commit`]).
        let insert = Statement::insert(
            "holds (session_id, call_id, seeker_id, consultant_id, provider, intent_id, status, amount_minor, currency, \
             price_model, price_minor, max_billable_secs, destination, expires_ms, error, created_ms, updated_ms, opens_ms)",
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
        .bind(error)
        .bind(now.unix_millis())
        .bind(now.unix_millis())
        .bind(opens_at.map(Timestamp::unix_millis));
        let stored = self.commits.commit_one(insert).await;
        metrics::counter!(HOLDS, "result" => status).increment(1);
        if let Err(e) = stored {
            // The intent exists but we could not record it: release it now.
            if let Some(id) = &intent_id {
                let _ = self.provider.release(id, &format!("release:{session_id}")).await;
            }
            return Err(HoldRefusal::Failed(e.to_string()));
        }
        match placed {
            // The hold's ledger entry (`hold:<session_id>`, B7) was booked
            // by the insert itself (trigger `holds_placed`, migration 0017).
            Ok(i) if i.status == IntentStatus::RequiresCapture => Ok(Held { price, hold, max_minutes }),
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

    /// Records the "hold" of a package session (E2): no card is
    /// authorised; the session is priced at the package's `price` for
    /// `minutes`, and its settlement draws from engagement escrow instead
    /// of capturing (status `escrow`, provider `escrow`, no intent). A
    /// second call for the session changes nothing.
    pub async fn place_escrow_hold(
        &self,
        what: &HoldFor<'_>,
        price: Money,
        minutes: u32,
    ) -> Result<Held, BillingError> {
        let HoldFor { session_id, call_id, seeker, consultant, opens_at } = *what;
        let now = self.clock.now().unix_millis();
        sqlx::query(
            "INSERT INTO holds (session_id, call_id, seeker_id, consultant_id, provider, intent_id, status, amount_minor, \
             currency, price_model, price_minor, max_billable_secs, destination, expires_ms, error, created_ms, updated_ms, \
             opens_ms) VALUES ($1, $2, $3, $4, 'escrow', NULL, 'escrow', $5, $6, 'fixed', $5, $7, NULL, NULL, NULL, $8, $8, $9) \
             ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(session_id.as_str())
        .bind(call_id)
        .bind(seeker.as_str())
        .bind(consultant.as_str())
        .bind(price.amount_minor)
        .bind(price.currency.as_str())
        .bind(i64::from(minutes) * 60)
        .bind(now)
        .bind(opens_at.map(Timestamp::unix_millis))
        .execute(&self.pool)
        .await?;
        Ok(Held {
            price: ConsultantPrice { model: PriceModel::Fixed, amount: price },
            hold: price,
            max_minutes: minutes,
        })
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
             WHERE session_id = $1 AND status IN ('held', 'escrow')",
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
}
