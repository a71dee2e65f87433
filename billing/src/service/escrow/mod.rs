//! Escrow (rules E1–E8): engagements charged up front into the platform's
//! balance and paid out to the consultant by Connect transfers as the work
//! is done — a milestone approved, released on its own, or split by a
//! moderator; a package session charged — or refunded to the seeker when
//! the engagement is cancelled.
//!
//! Every decision is one state machine under the engagement's row lock
//! (the first statement of its transaction writes the engagement row, as
//! bookings lock the consultant's row and refunds the hold's): it moves the
//! milestone (or package) to its new state and reserves each movement out
//! of escrow as a `pending` row of `escrow_moves` whose key is also its
//! provider idempotency key (`release:<milestone>`, `refund:<milestone>`,
//! `draw:<session>`, `cancel:<engagement>`). Only then, with no lock held,
//! is the provider asked; its answer and the ledger rows commit together.
//! So a milestone is released or refunded, never both (E7), and a movement
//! retried after a crash or a provider failure is carried out once.

use parley_domain::protocol::ErrorCode;
use parley_domain::protocol::Outcome;
use parley_domain::{Currency, Money, SessionId, Timestamp, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Billing, BillingError, money};
use crate::provider::{ChargeRequest, IntentStatus, ProviderError, RefundRequest, TransferRequest};

mod events;
mod milestones;
mod moves;

pub use events::{EscrowChange, EscrowEvents};

/// What an engagement buys (E1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Terms {
    /// `sessions` booked sessions of `minutes`, each worth `price`.
    Package {
        /// Number of sessions.
        sessions: u32,
        /// Length of each, minutes.
        minutes: u32,
        /// Price of each.
        price: Money,
    },
    /// Milestones: description and amount, in order.
    Milestones(Vec<(String, Money)>),
}

impl Terms {
    /// What the whole engagement costs. Errors: amounts in several
    /// currencies, or an overflow.
    pub fn total(&self) -> Result<Money, BillingError> {
        match self {
            Terms::Package { sessions, price, .. } => {
                let total = price.amount_minor.checked_mul(i64::from(*sessions));
                Ok(Money::new(
                    total.ok_or_else(|| BillingError::Data("package total overflows".into()))?,
                    price.currency,
                ))
            }
            Terms::Milestones(items) => {
                let mut items = items.iter().map(|(_, m)| *m);
                let first = items.next().ok_or_else(|| BillingError::Data("no milestones".into()))?;
                items.try_fold(first, |sum, m| sum.checked_add(m)).map_err(BillingError::from)
            }
        }
    }
}

/// A new engagement to fund (E1).
#[derive(Debug, Clone, Copy)]
pub struct NewEngagement<'a> {
    /// Who pays.
    pub seeker: &'a UserId,
    /// Who is paid.
    pub consultant: &'a UserId,
    /// Its title.
    pub title: &'a str,
    /// What it buys.
    pub terms: &'a Terms,
    /// The card charged.
    pub payment_method: &'a str,
    /// The seeker's `Idempotency-Key` (per caller): a retry resumes the same
    /// engagement and its funding instead of charging again.
    pub request_key: Option<&'a str>,
}

/// What happens to a milestone (E3–E5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The consultant submits it (`open` → `submitted`; auto-release is due
    /// [`super::BillingConfig::escrow_auto_release`] later).
    Submit {
        /// The note.
        note: String,
        /// Links, JSON-encoded as an array of strings.
        links: Vec<String>,
    },
    /// The seeker approves it (`open`/`submitted` → `released`); approving a
    /// milestone already released answers as it stands.
    Approve,
    /// Its auto-release time passed unanswered (`submitted` → `released`).
    AutoRelease,
    /// Either party disputes it (`open`/`submitted` → `disputed`).
    Dispute {
        /// Why.
        reason: String,
        /// Who.
        by: UserId,
    },
    /// A moderator resolves its dispute (`disputed` → `released`,
    /// `refunded` or `split`).
    Resolve {
        /// Gross minor units released to the consultant; the rest is refunded.
        release_minor: i64,
        /// The moderator's note.
        note: String,
        /// The moderator.
        by: UserId,
    },
}

fn conflict(m: impl Into<String>) -> BillingError {
    BillingError::Conflict(ErrorCode::EngagementState, m.into())
}

fn unknown(id: &str) -> BillingError {
    BillingError::Conflict(ErrorCode::UnknownEngagement, format!("no engagement or milestone {id}"))
}

/// A new id with `prefix` (`eng`, `ms`).
fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Locks engagement `id` for the transaction (its first statement writes
/// the row) and reads it; `None` if there is no such engagement.
async fn lock(conn: &mut sqlx::AnyConnection, id: &str, now: i64) -> Result<Option<AnyRow>, BillingError> {
    let locked = sqlx::query("UPDATE engagements SET updated_ms = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    if locked.rows_affected() != 1 {
        return Ok(None);
    }
    Ok(Some(sqlx::query("SELECT * FROM engagements WHERE id = $1").bind(id).fetch_one(&mut *conn).await?))
}

/// Takes engagement `id`'s row lock for `conn`'s transaction (its first
/// statement must be this one: it writes the row), as every escrow
/// decision does (E7); a package booking counts the sessions left under it
/// (E2). False if there is no such engagement.
pub async fn lock_engagement(conn: &mut sqlx::AnyConnection, id: &str, now_ms: i64) -> Result<bool, BillingError> {
    Ok(lock(conn, id, now_ms).await?.is_some())
}

/// Reserves a movement out of escrow (`pending`) in the deciding
/// transaction; a second reservation under the same key is ignored.
#[allow(clippy::too_many_arguments)]
async fn reserve(
    conn: &mut sqlx::AnyConnection,
    key: &str,
    engagement: &str,
    kind: &str,
    gross: Money,
    fee: i64,
    session: Option<&str>,
    now: i64,
) -> Result<(), BillingError> {
    sqlx::query(
        "INSERT INTO escrow_moves (key, engagement_id, kind, amount_minor, fee_minor, currency, status, session_id, \
         created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $8) ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .bind(engagement)
    .bind(kind)
    .bind(gross.amount_minor)
    .bind(fee)
    .bind(gross.currency.as_str())
    .bind(session)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes one escrow ledger row (B7, E8) keyed `<kind>:<key>`, once. The
/// ledger's `session_id` column holds the engagement id.
#[allow(clippy::too_many_arguments)]
async fn entry(
    conn: &mut sqlx::AnyConnection,
    engagement: &str,
    key: &str,
    kind: &str,
    amount: Money,
    seeker: &str,
    consultant: &str,
    provider_ref: Option<&str>,
    at: i64,
) -> Result<(), BillingError> {
    sqlx::query(
        "INSERT INTO ledger (entry_key, session_id, kind, amount_minor, currency, seeker_id, consultant_id, \
         provider_ref, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (entry_key) DO NOTHING",
    )
    .bind(format!("{kind}:{key}"))
    .bind(engagement)
    .bind(kind)
    .bind(amount.amount_minor)
    .bind(amount.currency.as_str())
    .bind(seeker)
    .bind(consultant)
    .bind(provider_ref)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a milestone engagement `completed` once none of its milestones is
/// open, submitted or disputed (nothing left in escrow).
async fn complete_if_done(conn: &mut sqlx::AnyConnection, engagement: &str, now: i64) -> Result<(), BillingError> {
    sqlx::query(
        "UPDATE engagements SET state = 'completed', updated_ms = $2 WHERE id = $1 AND state = 'active' \
         AND kind = 'milestones' AND NOT EXISTS (SELECT 1 FROM milestones m WHERE m.engagement_id = $1 \
         AND m.state IN ('open', 'submitted', 'disputed'))",
    )
    .bind(engagement)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

impl Billing {
    /// Creates engagement and charges its total at once into the
    /// platform's balance (E1): a PaymentIntent with automatic capture and
    /// no destination, idempotency key `fund:<engagement>`; the ledger
    /// records it as `escrow_fund`. Returns the engagement id (`eng_…`).
    ///
    /// With `request_key`, a retry finds the engagement of the first
    /// attempt and resumes its funding (same provider key): one charge.
    ///
    /// Errors: `Conflict(PayoutAccountRequired)` (the consultant cannot
    /// receive transfers); `Refused(PaymentDeclined)` /
    /// `Refused(PaymentActionRequired)` (the engagement is `failed`,
    /// nothing charged); `Provider` transient (it stays `funding`; retry
    /// with the same key).
    pub async fn fund_engagement(&self, new: &NewEngagement<'_>) -> Result<String, BillingError> {
        if let Some(key) = new.request_key {
            let earlier = sqlx::query("SELECT id FROM engagements WHERE seeker_id = $1 AND request_key = $2")
                .bind(new.seeker.as_str())
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = earlier {
                let id: String = row.try_get("id")?;
                self.charge_engagement(&id).await?;
                return Ok(id);
            }
        }
        let destination = match self.payout_account(new.consultant).await? {
            Some((account, true)) => account,
            _ => {
                return Err(BillingError::Conflict(
                    ErrorCode::PayoutAccountRequired,
                    format!("consultant {} has no payout account ready for transfers", new.consultant),
                ));
            }
        };
        let total = new.terms.total()?;
        let id = new_id("eng");
        let now = self.clock.now().unix_millis();
        let (kind, sessions, minutes, price) = match new.terms {
            Terms::Package { sessions, minutes, price } => {
                ("package", Some(i64::from(*sessions)), Some(i64::from(*minutes)), Some(price.amount_minor))
            }
            Terms::Milestones(_) => ("milestones", None, None, None),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO engagements (id, seeker_id, consultant_id, kind, state, title, amount_minor, currency, sessions, \
             session_minutes, session_price_minor, payment_method, destination, request_key, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, 'funding', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
        )
        .bind(&id)
        .bind(new.seeker.as_str())
        .bind(new.consultant.as_str())
        .bind(kind)
        .bind(new.title)
        .bind(total.amount_minor)
        .bind(total.currency.as_str())
        .bind(sessions)
        .bind(minutes)
        .bind(price)
        .bind(new.payment_method)
        .bind(&destination)
        .bind(new.request_key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Terms::Milestones(items) = new.terms {
            for (seq, (description, amount)) in (1_i64..).zip(items) {
                sqlx::query(
                    "INSERT INTO milestones (id, engagement_id, seq, description, amount_minor, state, updated_ms) \
                     VALUES ($1, $2, $3, $4, $5, 'open', $6)",
                )
                .bind(new_id("ms"))
                .bind(&id)
                .bind(seq)
                .bind(description)
                .bind(amount.amount_minor)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        self.charge_engagement(&id).await?;
        Ok(id)
    }

    /// Charges engagement `id` if it is still `funding` (see
    /// [`Billing::fund_engagement`]); an engagement whose funding failed
    /// answers its refusal again.
    async fn charge_engagement(&self, id: &str) -> Result<(), BillingError> {
        let row = sqlx::query("SELECT * FROM engagements WHERE id = $1").bind(id).fetch_one(&self.pool).await?;
        let state: String = row.try_get("state")?;
        match state.as_str() {
            "funding" => {}
            "failed" => {
                let error: Option<String> = row.try_get("error")?;
                return Err(BillingError::Refused(ErrorCode::PaymentDeclined, error.unwrap_or_default()));
            }
            _ => return Ok(()),
        }
        let amount = money(&row, "amount_minor", "currency")?;
        let req = ChargeRequest {
            amount,
            payment_method: row.try_get("payment_method")?,
            description: format!("Parley engagement {id}"),
            metadata: vec![
                ("engagement_id".into(), id.to_owned()),
                ("seeker_id".into(), row.try_get("seeker_id")?),
                ("consultant_id".into(), row.try_get("consultant_id")?),
            ],
            idempotency_key: format!("fund:{id}"),
        };
        let charged = self.provider.charge(&req).await;
        let now = self.clock.now().unix_millis();
        match charged {
            Ok(c) if c.intent.status == IntentStatus::Succeeded && c.charge_id.is_some() => {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE engagements SET state = 'active', intent_id = $2, charge_id = $3, updated_ms = $4 \
                     WHERE id = $1 AND state = 'funding'",
                )
                .bind(id)
                .bind(&c.intent.id)
                .bind(c.charge_id.as_deref())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 1 {
                    let (seeker, consultant): (String, String) =
                        (row.try_get("seeker_id")?, row.try_get("consultant_id")?);
                    let r = Some(c.intent.id.as_str());
                    entry(&mut tx, id, id, "escrow_fund", amount, &seeker, &consultant, r, now).await?;
                    self.announce(&mut tx, id, None, EscrowChange::Funded).await?;
                }
                tx.commit().await?;
                if done.rows_affected() == 1 {
                    self.announced();
                }
                Ok(())
            }
            Ok(c) => {
                let _ = self.provider.release(&c.intent.id, &format!("release:fund:{id}")).await;
                let m = "your card needs authentication (3-D Secure) before it can be charged; nothing was charged";
                self.funding_failed(id, ErrorCode::PaymentActionRequired, m.to_owned()).await
            }
            Err(ProviderError::Declined { message, .. }) | Err(ProviderError::Rejected { message, .. }) => {
                self.funding_failed(id, ErrorCode::PaymentDeclined, message).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Engagement `id`'s charge was refused: it is `failed`, nothing charged.
    async fn funding_failed(&self, id: &str, code: ErrorCode, message: String) -> Result<(), BillingError> {
        sqlx::query(
            "UPDATE engagements SET state = 'failed', error = $2, updated_ms = $3 WHERE id = $1 AND state = 'funding'",
        )
        .bind(id)
        .bind(&message)
        .bind(self.clock.now().unix_millis())
        .execute(&self.pool)
        .await?;
        Err(BillingError::Refused(code, message))
    }

    /// The engagement a milestone belongs to.
    async fn milestone_engagement(&self, milestone: &str) -> Result<String, BillingError> {
        let row = sqlx::query("SELECT engagement_id FROM milestones WHERE id = $1")
            .bind(milestone)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| unknown(milestone))?;
        Ok(row.try_get("engagement_id")?)
    }

    /// Cancels engagement `id` (E6): what is still in escrow — its open and
    /// submitted milestones, or its package's sessions not charged — is
    /// refunded once (`cancel:<engagement>`), less `fee_percent` of it kept
    /// as the cancellation fee. Refused (`Conflict(EngagementState)`) unless
    /// the engagement is active with no milestone disputed and no package
    /// session booked and still to come.
    pub async fn cancel_engagement(&self, id: &str, by: &UserId, fee_percent: u32) -> Result<(), BillingError> {
        let now = self.clock.now().unix_millis();
        let mut tx = self.pool.begin().await?;
        let eng = lock(&mut tx, id, now).await?.ok_or_else(|| unknown(id))?;
        let state: String = eng.try_get("state")?;
        if state != "active" {
            return Err(conflict(format!("engagement {id} is {state}: cannot cancel it")));
        }
        let currency = Currency::parse(&eng.try_get::<String, _>("currency")?)?;
        let kind: String = eng.try_get("kind")?;
        let unreleased = if kind == "milestones" {
            let row = sqlx::query(
                "SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(SUM(CASE WHEN state IN ('open', 'submitted') \
                 THEN amount_minor ELSE 0 END), 0) AS BIGINT) AS open_minor, \
                 CAST(COALESCE(SUM(CASE WHEN state = 'disputed' THEN 1 ELSE 0 END), 0) AS BIGINT) AS disputed \
                 FROM milestones WHERE engagement_id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            if row.try_get::<i64, _>("disputed")? > 0 {
                return Err(conflict(format!(
                    "engagement {id} has a disputed milestone: a moderator resolves it first"
                )));
            }
            sqlx::query(
                "UPDATE milestones SET state = 'refunded', refunded_minor = amount_minor, release_due_ms = NULL, \
                 updated_ms = $2 WHERE engagement_id = $1 AND state IN ('open', 'submitted')",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            row.try_get::<i64, _>("open_minor")?
        } else {
            // A booked session still to come would run unpaid.
            let booked = sqlx::query(
                "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM bookings b WHERE b.engagement_id = $1 \
                 AND b.state IN ('pending', 'confirmed', 'held') \
                 AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.session_id = b.session_id)",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            if booked.try_get::<i64, _>("n")? > 0 {
                return Err(conflict(format!(
                    "engagement {id} has a booked session to come: cancel the booking first"
                )));
            }
            // What the package's draws left (a draw may be less than a
            // session's price, e.g. a no-show fee).
            let row = sqlx::query(
                "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) AS out FROM escrow_moves \
                 WHERE engagement_id = $1 AND status <> 'failed'",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            (eng.try_get::<i64, _>("amount_minor")? - row.try_get::<i64, _>("out")?).max(0)
        };
        let fee = unreleased * i64::from(fee_percent.min(100)) / 100;
        sqlx::query(
            "UPDATE engagements SET state = 'cancelled', cancel_fee_minor = $2, cancelled_by = $3, updated_ms = $4 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(fee)
        .bind(by.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if unreleased > 0 {
            let gross = Money::new(unreleased, currency);
            reserve(&mut tx, &format!("cancel:{id}"), id, "refund", gross, fee, None, now).await?;
        }
        self.announce(&mut tx, id, None, EscrowChange::Cancelled).await?;
        tx.commit().await?;
        self.announced();
        self.carry_moves(id).await
    }

    /// Package sessions charged (or being charged) so far.
    async fn sessions_drawn(&self, conn: &mut sqlx::AnyConnection, id: &str) -> Result<i64, BillingError> {
        let row = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM escrow_moves WHERE engagement_id = $1 \
             AND session_id IS NOT NULL AND status <> 'failed'",
        )
        .bind(id)
        .fetch_one(conn)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// The settlement of a package session (E2), from the outbox instead of
    /// a capture: a charged outcome draws the session's price from its
    /// engagement (a transfer less the commission, `draw:<session>`); a free
    /// one uses nothing. True when finished, false to retry later.
    pub(super) async fn settle_from_escrow(
        &self,
        session_id: &SessionId,
        outcome: &str,
        amount_minor: i64,
    ) -> Result<bool, BillingError> {
        let now = self.clock.now().unix_millis();
        let found = sqlx::query("SELECT engagement_id FROM bookings WHERE session_id = $1")
            .bind(session_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let engagement: Option<String> = match found {
            Some(r) => r.try_get("engagement_id")?,
            None => None,
        };
        let charged = outcome == Outcome::Charged.as_str() && amount_minor > 0;
        let mut tx = self.pool.begin().await?;
        let mut draw = false;
        if let (true, Some(id)) = (charged, engagement.as_deref())
            && let Some(eng) = lock(&mut tx, id, now).await?
        {
            let state: String = eng.try_get("state")?;
            let sessions: i64 = eng.try_get::<Option<i64>, _>("sessions")?.unwrap_or(0);
            let price = Money::new(
                eng.try_get::<Option<i64>, _>("session_price_minor")?.unwrap_or(0),
                Currency::parse(&eng.try_get::<String, _>("currency")?)?,
            );
            let drawn = self.sessions_drawn(&mut tx, id).await?;
            if state == "active" && drawn < sessions {
                let gross = Money::new(amount_minor.min(price.amount_minor), price.currency);
                let fee = gross.basis_points(self.config().commission_bps)?;
                let key = format!("draw:{session_id}");
                reserve(&mut tx, &key, id, "transfer", gross, fee.amount_minor, Some(session_id.as_str()), now).await?;
                if drawn + 1 == sessions {
                    sqlx::query("UPDATE engagements SET state = 'completed', updated_ms = $2 WHERE id = $1")
                        .bind(id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                draw = true;
            } else {
                tracing::warn!(%session_id, engagement = id, state, drawn, "a package session was charged with nothing left to draw");
            }
        }
        let hold = if draw { "drawn" } else { "unused" };
        sqlx::query("UPDATE holds SET status = $2, updated_ms = $3 WHERE session_id = $1")
            .bind(session_id.as_str())
            .bind(hold)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE settlements SET status = 'done', attempts = attempts + 1, done_ms = $2 WHERE session_id = $1",
        )
        .bind(session_id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if let Some(id) = engagement.filter(|_| draw)
            && let Err(e) = self.carry_moves(&id).await
        {
            // The draw is reserved; the escrow worker retries its transfer.
            tracing::warn!(%session_id, error = %e, "a package session's transfer failed; will retry");
        }
        Ok(true)
    }
}
