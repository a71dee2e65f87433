//! Movements out of escrow (E3, E6, E7): carried out at the provider under
//! their keys after the deciding transaction, recorded with their ledger
//! rows; the escrow worker's pass (E4) releases due milestones and retries
//! movements the provider failed.

use super::*;

impl Billing {
    /// Carries out the pending movements of engagement `id`, oldest first.
    /// The first failure is returned after the others were tried.
    pub async fn carry_moves(&self, id: &str) -> Result<(), BillingError> {
        let keys = sqlx::query(
            "SELECT key FROM escrow_moves WHERE engagement_id = $1 AND status = 'pending' ORDER BY created_ms, key",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let mut first = Ok(());
        for k in keys {
            let key: String = k.try_get("key")?;
            if let Err(e) = self.carry_move(&key).await
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// Asks the provider for one pending movement (its key is the
    /// idempotency key) and records the answer with its ledger rows:
    /// `escrow_release` (to the consultant) or `escrow_refund` (to the
    /// seeker), and `escrow_fee` (kept by the platform).
    async fn carry_move(&self, key: &str) -> Result<(), BillingError> {
        let m = sqlx::query(
            "SELECT m.engagement_id, m.kind, m.amount_minor, m.fee_minor, m.currency, m.status, e.seeker_id, \
             e.consultant_id, e.intent_id, e.charge_id, e.destination FROM escrow_moves m \
             JOIN engagements e ON e.id = m.engagement_id WHERE m.key = $1",
        )
        .bind(key)
        .fetch_one(&self.pool)
        .await?;
        if m.try_get::<String, _>("status")? != "pending" {
            return Ok(());
        }
        let engagement: String = m.try_get("engagement_id")?;
        let kind: String = m.try_get("kind")?;
        let gross = money(&m, "amount_minor", "currency")?;
        let fee = Money::new(m.try_get("fee_minor")?, gross.currency);
        let net = Money::new(gross.amount_minor - fee.amount_minor, gross.currency);
        let intent: Option<String> = m.try_get("intent_id")?;
        let charge: Option<String> = m.try_get("charge_id")?;
        let (seeker, consultant): (String, String) = (m.try_get("seeker_id")?, m.try_get("consultant_id")?);
        let asked = if net.amount_minor <= 0 {
            Ok(None)
        } else if kind == "transfer" {
            let req = TransferRequest {
                amount: net,
                destination: m.try_get("destination")?,
                source_transaction: charge.unwrap_or_default(),
                group: engagement.clone(),
                idempotency_key: key.to_owned(),
            };
            self.provider.transfer(&req).await.map(|t| Some(t.id))
        } else {
            let req = RefundRequest {
                intent_id: intent.unwrap_or_default(),
                amount: net.amount_minor,
                reverse_transfer: false,
                idempotency_key: key.to_owned(),
            };
            self.provider.refund(&req).await.map(|r| Some(r.id))
        };
        let now = self.clock.now().unix_millis();
        let provider_ref = match asked {
            Ok(r) => r,
            Err(e) => {
                let status = if e.is_transient() { "pending" } else { "failed" };
                if status == "failed" {
                    tracing::error!(key, error = %e, "an escrow movement was refused by the provider; needs attention");
                }
                sqlx::query("UPDATE escrow_moves SET status = $2, error = $3, updated_ms = $4 WHERE key = $1 AND status = 'pending'")
                    .bind(key)
                    .bind(status)
                    .bind(e.to_string())
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                return Err(e.into());
            }
        };
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE escrow_moves SET status = 'done', provider_ref = $2, error = NULL, updated_ms = $3 \
             WHERE key = $1 AND status = 'pending'",
        )
        .bind(key)
        .bind(provider_ref.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            let r = provider_ref.as_deref();
            let to = if kind == "transfer" { "escrow_release" } else { "escrow_refund" };
            entry(&mut tx, &engagement, key, to, net, &seeker, &consultant, r, now).await?;
            entry(&mut tx, &engagement, key, "escrow_fee", fee, &seeker, &consultant, r, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One pass of the escrow worker at `now` (E4): releases every
    /// submitted milestone whose auto-release time has passed, and retries
    /// movements still pending a minute after they were last tried.
    /// Returns when the next pass is due: the earliest auto-release or
    /// retry, at the latest a minute after `now`.
    pub async fn escrow_pass(&self, now: Timestamp) -> Result<Timestamp, BillingError> {
        let at = now.unix_millis();
        let due = sqlx::query(
            "SELECT id FROM milestones WHERE state = 'submitted' AND release_due_ms <= $1 ORDER BY release_due_ms, id LIMIT 100",
        )
        .bind(at)
        .fetch_all(&self.pool)
        .await?;
        for row in due {
            let id: String = row.try_get("id")?;
            if let Err(e) = self.decide_milestone(&id, &Decision::AutoRelease).await {
                tracing::warn!(milestone = id, error = %e, "auto-release failed; will retry");
            }
        }
        let retry = sqlx::query(
            "SELECT DISTINCT engagement_id FROM escrow_moves WHERE status = 'pending' AND updated_ms <= $1",
        )
        .bind(at - RETRY_MS)
        .fetch_all(&self.pool)
        .await?;
        for row in retry {
            let id: String = row.try_get("engagement_id")?;
            if let Err(e) = self.carry_moves(&id).await {
                tracing::warn!(engagement = id, error = %e, "an escrow movement failed again; will retry");
            }
        }
        let next = sqlx::query(
            "SELECT MIN(t) AS t FROM (SELECT MIN(release_due_ms) AS t FROM milestones WHERE state = 'submitted' \
             UNION ALL SELECT MIN(updated_ms) + $1 AS t FROM escrow_moves WHERE status = 'pending') x",
        )
        .bind(RETRY_MS)
        .fetch_one(&self.pool)
        .await?;
        let next: Option<i64> = next.try_get("t")?;
        let latest = at + RETRY_MS;
        // A due time already past is one whose release failed: try again a
        // second later rather than at once.
        Ok(Timestamp::from_unix_millis(next.map_or(latest, |t| t.min(latest)).max(at + 1000)))
    }
}

/// How long a pending movement waits before the worker tries it again, and
/// the longest the worker sleeps (server time, ms).
const RETRY_MS: i64 = 60_000;
