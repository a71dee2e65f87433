//! The ledger (DESIGN.md B7): every money movement once, and what it adds
//! up to for a session, a consultant (earnings) and a seeker (receipts).

use parley_domain::protocol::Outcome;
use parley_domain::protocol::rest::{Earnings, EarningsItem, EarningsTotal, LedgerItem, Receipt};
use parley_domain::{Money, SessionId, Timestamp, UserId};
use sqlx::Row;

use super::{Billing, BillingError, money};
use crate::commit::Statement;

impl Billing {
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
}

/// Whose ledger entries [`Entry::record`] writes, and when.
pub(super) struct Entry<'a> {
    pub(super) session_id: &'a SessionId,
    pub(super) seeker: &'a UserId,
    pub(super) consultant: &'a UserId,
    pub(super) at: Timestamp,
}

impl Entry<'_> {
    /// Records a money movement once, on `conn` (a transaction's, to commit
    /// it with what caused it): a second entry with the same `key` for the
    /// session is ignored.
    pub(super) async fn record(
        &self,
        conn: &mut sqlx::AnyConnection,
        key: &str,
        kind: &str,
        amount: Money,
        provider_ref: Option<&str>,
    ) -> Result<(), BillingError> {
        self.statement(key, kind, amount, provider_ref).run(conn).await?;
        Ok(())
    }

    /// [`Entry::record`]'s statement, for a [`crate::Committer`].
    pub(super) fn statement(&self, key: &str, kind: &str, amount: Money, provider_ref: Option<&str>) -> Statement {
        Statement::new(
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
    }
}

/// The ledger key of a refund that brings the session's refunded total to
/// `total` minor units: the same for our refund call and Stripe's
/// `charge.refunded` (which reports the total), so it is recorded once.
pub(super) fn refund_key(total: i64) -> String {
    format!("refund:upto:{total}")
}
