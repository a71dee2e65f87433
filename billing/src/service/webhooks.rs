//! Verified provider events applied once (DESIGN.md B5).

use parley_domain::{Currency, Money, SessionId, UserId};
use sqlx::Row;

use super::disputes::{DisputeEvent, Parties};
use super::ledger::{Entry, refund_key};
use super::{Billing, BillingError};
use crate::webhook::{DisputeChange, WebhookEvent, WebhookKind};

impl Billing {
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
            WebhookKind::Dispute { change: DisputeChange::Created, .. } => "charge.dispute.created",
            WebhookKind::Dispute { change: DisputeChange::Updated, .. } => "charge.dispute.updated",
            WebhookKind::Dispute { change: DisputeChange::Closed, .. } => "charge.dispute.closed",
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
            WebhookKind::Dispute { change, dispute_id, intent_id, amount, reason, status, due_by } => {
                if let Some((session_id, seeker, consultant, _, currency)) = hold_of(conn, intent_id).await? {
                    let parties = Parties { session_id, seeker, consultant, currency };
                    let ev = DisputeEvent {
                        change: *change,
                        dispute_id,
                        intent_id,
                        amount: *amount,
                        reason,
                        status,
                        due_by: *due_by,
                    };
                    self.apply_dispute(conn, &parties, &ev).await?;
                } else {
                    tracing::warn!(dispute_id, intent_id, "card dispute of a payment Parley does not know");
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
}
