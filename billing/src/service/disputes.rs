//! Card chargebacks (docs/rules.md D5, D6): Stripe's `charge.dispute.*`
//! events applied to the ledger, the evidence submitted once, and the
//! outcome (won, or lost with the consultant's share recovered or not, by
//! [`ChargebackRecovery`]).
//!
//! Moderated disputes between a seeker and a consultant move money through
//! [`Billing::refund`] (the serialised, idempotent refund path); this file
//! is only about the card network's disputes.

use parley_domain::{Currency, Money, SessionId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::ledger::Entry;
use super::{Billing, BillingError, money};
use crate::provider::DisputeEvidence;
use crate::webhook::DisputeChange;

/// Who bears a lost chargeback (`PARLEY_CHARGEBACK_RECOVERY`, D6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChargebackRecovery {
    /// The consultant gives back their share of the lost amount in
    /// proportion to what they earned (an `earnings_reversal`), the
    /// platform its fee (a `fee_reversal`), as for a refund. The default.
    #[default]
    Consultant,
    /// The platform bears the whole loss (one `fee_reversal` of the lost
    /// amount); the consultant keeps their earnings.
    Platform,
}

/// A card chargeback as stored (`chargebacks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargebackRow {
    /// The provider's dispute id.
    pub id: String,
    /// The session paid by the disputed charge.
    pub session_id: SessionId,
    /// The session's seeker and consultant.
    pub seeker_id: UserId,
    /// The session's consultant.
    pub consultant_id: UserId,
    /// The disputed amount.
    pub amount: Money,
    /// The network's reason.
    pub reason: String,
    /// The provider's status.
    pub status: String,
    /// Evidence due by (Unix ms).
    pub due_ms: Option<i64>,
    /// When our evidence was accepted by the provider (Unix ms).
    pub evidence_submitted_ms: Option<i64>,
    /// `won` or `lost` once closed.
    pub outcome: Option<String>,
    /// Whether the operator was told it was opened (`chargeback.opened`).
    pub opened_notified: bool,
    /// Whether the operator was told how it closed (`chargeback.closed`).
    pub closed_notified: bool,
}

impl ChargebackRow {
    fn from_row(r: &AnyRow) -> Result<ChargebackRow, BillingError> {
        Ok(ChargebackRow {
            id: r.try_get("id")?,
            session_id: SessionId::parse(r.try_get::<String, _>("session_id")?)?,
            seeker_id: UserId::parse(r.try_get::<String, _>("seeker_id")?)?,
            consultant_id: UserId::parse(r.try_get::<String, _>("consultant_id")?)?,
            amount: money(r, "amount_minor", "currency")?,
            reason: r.try_get("reason")?,
            status: r.try_get("status")?,
            due_ms: r.try_get("due_ms")?,
            evidence_submitted_ms: r.try_get("evidence_submitted_ms")?,
            outcome: r.try_get("outcome")?,
            opened_notified: r.try_get::<i64, _>("opened_notified")? != 0,
            closed_notified: r.try_get::<i64, _>("closed_notified")? != 0,
        })
    }

    /// Whether evidence is still to be submitted at `now`: not yet
    /// accepted, the dispute still needs a response, and not past due.
    pub fn needs_evidence(&self, now: Timestamp) -> bool {
        self.evidence_submitted_ms.is_none()
            && self.outcome.is_none()
            && matches!(self.status.as_str(), "needs_response" | "warning_needs_response")
            && self.due_ms.is_none_or(|due| now.unix_millis() < due)
    }
}

const COLUMNS: &str = "c.id, c.session_id, h.seeker_id, h.consultant_id, c.amount_minor, c.currency, c.reason, \
    c.status, c.due_ms, c.evidence_submitted_ms, c.outcome, c.opened_notified, c.closed_notified";

/// One `charge.dispute.*` event's content.
pub(super) struct DisputeEvent<'a> {
    pub(super) change: DisputeChange,
    pub(super) dispute_id: &'a str,
    pub(super) intent_id: &'a str,
    pub(super) amount: i64,
    pub(super) reason: &'a str,
    pub(super) status: &'a str,
    pub(super) due_by: Option<i64>,
}

/// The session's parties and currency, for ledger entries.
pub(super) struct Parties {
    pub(super) session_id: SessionId,
    pub(super) seeker: UserId,
    pub(super) consultant: UserId,
    pub(super) currency: Currency,
}

impl Billing {
    /// Applies a `charge.dispute.*` event inside the webhook's transaction
    /// (D5, D6): `created` marks the session's funds disputed (a `dispute`
    /// ledger entry, the `chargebacks` row); `updated` follows the status
    /// and due date; `closed` books the outcome once: `won` → a
    /// `dispute_won` entry (the funds are back), `lost` → a `chargeback`
    /// entry and its reversals by [`ChargebackRecovery`] (so the ledger's
    /// `chargeback` = `earnings_reversal` + `fee_reversal` of it).
    pub(super) async fn apply_dispute(
        &self,
        conn: &mut AnyConnection,
        p: &Parties,
        ev: &DisputeEvent<'_>,
    ) -> Result<(), BillingError> {
        let now = self.clock.now();
        let at = now.unix_millis();
        let due_ms = ev.due_by.map(|s| s.saturating_mul(1000));
        let closed = ev.change == DisputeChange::Closed;
        let outcome = match ev.status {
            "won" | "warning_closed" if closed => Some("won"),
            "lost" if closed => Some("lost"),
            _ => None,
        };
        sqlx::query(
            "INSERT INTO chargebacks (id, session_id, intent_id, amount_minor, currency, reason, status, due_ms, outcome, \
             created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, due_ms = COALESCE(excluded.due_ms, chargebacks.due_ms), \
             outcome = COALESCE(chargebacks.outcome, excluded.outcome), updated_ms = excluded.updated_ms",
        )
        .bind(ev.dispute_id)
        .bind(p.session_id.as_str())
        .bind(ev.intent_id)
        .bind(ev.amount)
        .bind(p.currency.as_str())
        .bind(ev.reason)
        .bind(ev.status)
        .bind(due_ms)
        .bind(outcome)
        .bind(at)
        .execute(&mut *conn)
        .await?;
        let entry = Entry { session_id: &p.session_id, seeker: &p.seeker, consultant: &p.consultant, at: now };
        let amount = Money::new(ev.amount, p.currency);
        let r = Some(ev.dispute_id);
        // Every dispute event marks the funds disputed once (a `closed`
        // may be the first we hear of it).
        entry.record(conn, &format!("dispute:{}", ev.dispute_id), "dispute", amount, r).await?;
        tracing::warn!(session_id = %p.session_id, dispute = ev.dispute_id, status = ev.status, amount = ev.amount, "card dispute");
        match outcome {
            Some("won") => {
                entry.record(conn, &format!("dispute_won:{}", ev.dispute_id), "dispute_won", amount, r).await?;
            }
            Some(_) => self.book_lost(conn, &entry, ev.dispute_id, amount).await?,
            None => {}
        }
        Ok(())
    }

    /// Books a lost chargeback of `amount`: the loss (`chargeback`), and
    /// who bears it (D6).
    async fn book_lost(
        &self,
        conn: &mut AnyConnection,
        entry: &Entry<'_>,
        dispute_id: &str,
        amount: Money,
    ) -> Result<(), BillingError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN kind = 'capture' THEN amount_minor ELSE 0 END), 0) AS BIGINT) AS captured, \
             CAST(COALESCE(SUM(CASE WHEN kind = 'earnings' THEN amount_minor WHEN kind = 'earnings_reversal' THEN -amount_minor ELSE 0 END), 0) AS BIGINT) AS earned, \
             CAST(COALESCE(SUM(CASE WHEN kind = 'earnings' THEN amount_minor ELSE 0 END), 0) AS BIGINT) AS earned_gross \
             FROM ledger WHERE session_id = $1",
        )
        .bind(entry.session_id.as_str())
        .fetch_one(&mut *conn)
        .await?;
        let captured: i64 = row.try_get("captured")?;
        let earned: i64 = row.try_get("earned")?;
        let gross: i64 = row.try_get("earned_gross")?;
        let share = match self.cfg.chargeback_recovery {
            ChargebackRecovery::Platform => 0,
            ChargebackRecovery::Consultant => {
                let prop = i128::from(amount.amount_minor) * i128::from(gross) / i128::from(captured.max(1));
                i64::try_from(prop).unwrap_or(0).clamp(0, earned.max(0))
            }
        };
        let cur = amount.currency;
        let r = Some(dispute_id);
        entry.record(conn, &format!("chargeback:{dispute_id}"), "chargeback", amount, r).await?;
        entry
            .record(conn, &format!("chargeback_earnings:{dispute_id}"), "earnings_reversal", Money::new(share, cur), r)
            .await?;
        let rest = Money::new(amount.amount_minor - share, cur);
        entry.record(conn, &format!("chargeback_fee:{dispute_id}"), "fee_reversal", rest, r).await?;
        Ok(())
    }

    /// The chargebacks of `session_id`, oldest first.
    pub async fn chargebacks_of(&self, session_id: &SessionId) -> Result<Vec<ChargebackRow>, BillingError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM chargebacks c JOIN holds h ON h.session_id = c.session_id \
             WHERE c.session_id = $1 ORDER BY c.created_ms, c.id"
        )))
        .bind(session_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ChargebackRow::from_row).collect()
    }

    /// Chargebacks with work left: the operator not yet told of their
    /// opening or closing, or evidence not yet submitted nor refused by
    /// the provider; oldest first.
    pub async fn chargebacks_pending(&self) -> Result<Vec<ChargebackRow>, BillingError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM chargebacks c JOIN holds h ON h.session_id = c.session_id \
             WHERE c.opened_notified = 0 OR (c.outcome IS NOT NULL AND c.closed_notified = 0) \
             OR (c.evidence_submitted_ms IS NULL AND c.evidence_error IS NULL AND c.outcome IS NULL) \
             ORDER BY c.created_ms, c.id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ChargebackRow::from_row).collect()
    }

    /// Records that the operator was told of chargeback `id`'s opening
    /// (`closed` false) or closing (`closed` true).
    pub async fn chargeback_notified(&self, id: &str, closed: bool) -> Result<(), BillingError> {
        let column = if closed { "closed_notified" } else { "opened_notified" };
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE chargebacks SET {column} = 1 WHERE id = $1")))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Submits `evidence` for chargeback `evidence.dispute_id` once (D5):
    /// the provider call carries the idempotency key `evidence:<dispute>`,
    /// so a retry after a failure or a crash is the same submission; on
    /// success the submission time is stored and the chargeback is not
    /// submitted again. Returns false if it had been submitted already.
    ///
    /// Errors: `Provider` (a transient failure is retried by the caller
    /// with the same key; a refusal is stored in `evidence_error` and not
    /// retried).
    pub async fn submit_chargeback_evidence(&self, mut evidence: DisputeEvidence) -> Result<bool, BillingError> {
        let row = sqlx::query("SELECT evidence_submitted_ms, evidence_error FROM chargebacks WHERE id = $1")
            .bind(&evidence.dispute_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Err(BillingError::Data(format!("no chargeback {}", evidence.dispute_id)));
        };
        let done: Option<i64> = row.try_get("evidence_submitted_ms")?;
        let refused: Option<String> = row.try_get("evidence_error")?;
        if done.is_some() || refused.is_some() {
            return Ok(false);
        }
        evidence.idempotency_key = format!("evidence:{}", evidence.dispute_id);
        match self.provider.submit_dispute_evidence(&evidence).await {
            Ok(state) => {
                sqlx::query(
                    "UPDATE chargebacks SET evidence_submitted_ms = $2, status = CASE WHEN outcome IS NULL THEN $3 ELSE status END, \
                     updated_ms = $2 WHERE id = $1",
                )
                .bind(&evidence.dispute_id)
                .bind(self.clock.now().unix_millis())
                .bind(&state.status)
                .execute(&self.pool)
                .await?;
                Ok(true)
            }
            Err(e) => {
                if !e.is_transient() {
                    sqlx::query("UPDATE chargebacks SET evidence_error = $2, updated_ms = $3 WHERE id = $1")
                        .bind(&evidence.dispute_id)
                        .bind(e.to_string())
                        .bind(self.clock.now().unix_millis())
                        .execute(&self.pool)
                        .await?;
                }
                Err(BillingError::Provider(e))
            }
        }
    }

    /// Whether `e` is a provider failure worth retrying later.
    pub fn is_transient(e: &BillingError) -> bool {
        matches!(e, BillingError::Provider(p) if p.is_transient())
    }
}
