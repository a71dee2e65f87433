//! Refunds of captured sessions, with the consultant's share and the fee
//! taken back in proportion.

use parley_domain::protocol::ErrorCode;
use parley_domain::{Money, SessionId, UserId};
use sqlx::Row;

use super::ledger::Entry;
use super::{Billing, BillingError, money};
use crate::provider::{ProviderError, RefundRequest};

impl Billing {
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
    /// Errors: `Conflict(NotCharged)` if nothing was captured,
    /// `Refused(InvalidField)` for an amount below 1,
    /// `Conflict(RefundExceedsCapture)` for more than is left (counting
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
            return Err(BillingError::Conflict(ErrorCode::NotCharged, format!("session {session_id} was not charged")));
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
                        ErrorCode::InvalidField,
                        format!("amount_minor: at least 1 (left {left})"),
                    ));
                }
                if amount <= 0 || amount > left {
                    return Err(BillingError::Conflict(
                        ErrorCode::RefundExceedsCapture,
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
}
