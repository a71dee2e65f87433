//! Promotions: a consultant pays for featured placement in the directory
//! (issue 4). The money side lives here; the catalogue and the routes are the
//! server's (`server/src/profiles/promotions.rs`).
//!
//! A purchase is charged at once, Stripe-style: a PaymentIntent is confirmed
//! with manual capture (idempotency key `promo:<purchase id>`) and captured in
//! full straight away (`promo:<purchase id>:capture`); an intent that needs
//! 3-D Secure is cancelled again (`promo:<purchase id>:release`). Only a
//! captured payment buys a window. Its row in `promotion_purchases` is
//! written `pending` before the provider is asked, so a payment is never
//! taken without a trace, and is marked `paid` in one transaction with the
//! window (the `featured` upsert) and the ledger entry.
//!
//! Ledger: the capture is one entry of kind `promotion`, key
//! `promotion:<purchase id>`, with the purchase id in the `session_id`
//! column (the ledger is keyed by session; purchase ids start with `promo_`
//! and never collide with `ses_…`) and the consultant as both `seeker_id`
//! (the payer) and `consultant_id`. Earnings and seeker receipts only read
//! session kinds, so this entry never counts as earnings.
//!
//! Windows stack: a purchase starts at once, or at the end of the window
//! running then. `featured.until_ms` is moved by one atomic upsert, so two
//! purchases at the same moment still get back-to-back windows.

use std::time::Duration;

use parley_domain::protocol::ErrorCode;
use parley_domain::protocol::rest::{FeaturedWindow, MyPromotions, PromotionPackage, PromotionReceipt};
use parley_domain::{Currency, Money, Timestamp, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::provider::{CaptureRequest, HoldRequest, IntentStatus, ProviderError};
use crate::service::{Billing, BillingError};

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn receipt(r: &AnyRow) -> Result<PromotionReceipt, BillingError> {
    let currency = Currency::parse(&r.try_get::<String, _>("currency")?)?;
    Ok(PromotionReceipt {
        purchase_id: r.try_get("id")?,
        package_id: r.try_get("package_id")?,
        amount: Money::new(r.try_get("amount_minor")?, currency),
        provider: r.try_get("provider")?,
        provider_ref: r.try_get::<Option<String>, _>("intent_id")?.unwrap_or_default(),
        paid_at_ms: r.try_get::<Option<i64>, _>("paid_ms")?.unwrap_or_default(),
        starts_at_ms: r.try_get::<Option<i64>, _>("starts_ms")?.unwrap_or_default(),
        ends_at_ms: r.try_get::<Option<i64>, _>("ends_ms")?.unwrap_or_default(),
    })
}

impl Billing {
    /// Charges `consultant` for `package` on `payment_method` and, once the
    /// payment is captured, extends their featured placement by the
    /// package's duration. Errors: `Refused(PaymentDeclined)` (declined or
    /// unknown card), `Refused(PaymentActionRequired)` (3-D Secure
    /// needed), `Provider` (the provider failed; nothing was charged, or
    /// the hold was released). No window is bought on any error.
    pub async fn buy_promotion(
        &self,
        consultant: &UserId,
        package: &PromotionPackage,
        payment_method: &str,
    ) -> Result<PromotionReceipt, BillingError> {
        let id = format!("promo_{}", uuid::Uuid::now_v7().simple());
        let duration = millis(Duration::from_secs(package.duration_secs));
        if duration <= 0 || package.price.amount_minor <= 0 {
            return Err(BillingError::Data(format!("package {} has no duration or price", package.id)));
        }
        sqlx::query(
            "INSERT INTO promotion_purchases (id, consultant_id, package_id, amount_minor, currency, duration_ms, \
             status, provider, created_ms) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8)",
        )
        .bind(&id)
        .bind(consultant.as_str())
        .bind(&package.id)
        .bind(package.price.amount_minor)
        .bind(package.price.currency.as_str())
        .bind(duration)
        .bind(self.provider.name())
        .bind(self.clock.now().unix_millis())
        .execute(&self.pool)
        .await?;

        let hold = HoldRequest {
            amount: package.price,
            payment_method: payment_method.to_owned(),
            destination: None,
            description: format!("Parley promotion {} for {consultant}", package.id),
            metadata: vec![
                ("purchase_id".into(), id.clone()),
                ("package_id".into(), package.id.clone()),
                ("consultant_id".into(), consultant.to_string()),
            ],
            idempotency_key: format!("promo:{id}"),
        };
        let intent = match self.provider.place_hold(&hold).await {
            Ok(i) if i.status == IntentStatus::RequiresCapture => i,
            Ok(i) => {
                let _ = self.provider.release(&i.id, &format!("promo:{id}:release")).await;
                self.purchase_failed(&id, "requires_action", Some(&i.id), "the card needs 3-D Secure").await?;
                return Err(BillingError::Refused(
                    ErrorCode::PaymentActionRequired,
                    "your card needs authentication (3-D Secure) before it can be charged; \
                     confirm it with your bank or use another card"
                        .into(),
                ));
            }
            Err(e) => return Err(self.refused(&id, None, e).await),
        };
        let capture = CaptureRequest {
            amount_to_capture: package.price.amount_minor,
            application_fee_amount: None,
            idempotency_key: format!("promo:{id}:capture"),
        };
        if let Err(e) = self.provider.capture(&intent.id, &capture).await {
            let _ = self.provider.release(&intent.id, &format!("promo:{id}:release")).await;
            return Err(self.refused(&id, Some(&intent.id), e).await);
        }

        // Paid: the window, the receipt and the ledger entry, together.
        let now = self.clock.now().unix_millis();
        let mut tx = self.pool.begin().await?;
        let until: i64 = sqlx::query(
            "INSERT INTO featured (consultant_id, until_ms) VALUES ($1, $2 + $3) ON CONFLICT (consultant_id) DO UPDATE \
             SET until_ms = CASE WHEN featured.until_ms > $2 THEN featured.until_ms + $3 ELSE $2 + $3 END \
             RETURNING until_ms",
        )
        .bind(consultant.as_str())
        .bind(now)
        .bind(duration)
        .fetch_one(&mut *tx)
        .await?
        .try_get("until_ms")?;
        sqlx::query(
            "UPDATE promotion_purchases SET status = 'paid', intent_id = $2, starts_ms = $3, ends_ms = $4, paid_ms = $5 \
             WHERE id = $1",
        )
        .bind(&id)
        .bind(&intent.id)
        .bind(until - duration)
        .bind(until)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO ledger (entry_key, session_id, kind, amount_minor, currency, seeker_id, consultant_id, \
             provider_ref, at_ms) VALUES ($1, $2, 'promotion', $3, $4, $5, $5, $6, $7) ON CONFLICT (entry_key) DO NOTHING",
        )
        .bind(format!("promotion:{id}"))
        .bind(&id)
        .bind(package.price.amount_minor)
        .bind(package.price.currency.as_str())
        .bind(consultant.as_str())
        .bind(&intent.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(purchase_id = %id, %consultant, package = %package.id, until_ms = until, "promotion bought");
        Ok(PromotionReceipt {
            purchase_id: id,
            package_id: package.id.clone(),
            amount: package.price,
            provider: self.provider.name().to_owned(),
            provider_ref: intent.id,
            paid_at_ms: now,
            starts_at_ms: until - duration,
            ends_at_ms: until,
        })
    }

    /// Marks purchase `id` failed after the provider's `e`, and turns `e`
    /// into the caller's error.
    async fn refused(&self, id: &str, intent: Option<&str>, e: ProviderError) -> BillingError {
        let (status, err) = match &e {
            ProviderError::Declined { message, .. } | ProviderError::Rejected { message, .. } => {
                ("declined", BillingError::Refused(ErrorCode::PaymentDeclined, message.clone()))
            }
            ProviderError::Transient(_) => ("failed", BillingError::Provider(e.clone())),
        };
        if let Err(db) = self.purchase_failed(id, status, intent, &e.to_string()).await {
            tracing::error!(purchase_id = id, error = %db, "could not mark a refused promotion purchase");
        }
        err
    }

    async fn purchase_failed(
        &self,
        id: &str,
        status: &str,
        intent: Option<&str>,
        error: &str,
    ) -> Result<(), BillingError> {
        sqlx::query("UPDATE promotion_purchases SET status = $2, intent_id = $3, error = $4 WHERE id = $1")
            .bind(id)
            .bind(status)
            .bind(intent)
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// `consultant`'s paid promotions (newest first) and the placement
    /// running now.
    pub async fn promotions(&self, consultant: &UserId) -> Result<MyPromotions, BillingError> {
        let rows = sqlx::query(
            "SELECT id, package_id, amount_minor, currency, provider, intent_id, paid_ms, starts_ms, ends_ms \
             FROM promotion_purchases WHERE consultant_id = $1 AND status = 'paid' ORDER BY paid_ms DESC, id DESC",
        )
        .bind(consultant.as_str())
        .fetch_all(&self.pool)
        .await?;
        let purchases = rows.iter().map(receipt).collect::<Result<Vec<_>, _>>()?;
        let now = self.clock.now().unix_millis();
        // The running windows are back to back: the earliest of them is
        // where the placement began.
        let current = self.featured_until(consultant).await?.map(|until| FeaturedWindow {
            since_ms: purchases.iter().filter(|p| p.ends_at_ms > now).map(|p| p.starts_at_ms).min().unwrap_or(now),
            until_ms: until.unix_millis(),
        });
        Ok(MyPromotions { purchases, current })
    }

    /// The end of `consultant`'s featured placement, if they are featured
    /// now (server clock).
    pub async fn featured_until(&self, consultant: &UserId) -> Result<Option<Timestamp>, BillingError> {
        let row = sqlx::query("SELECT until_ms FROM featured WHERE consultant_id = $1 AND until_ms > $2")
            .bind(consultant.as_str())
            .bind(self.clock.now().unix_millis())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<i64, _>("until_ms")).transpose()?.map(Timestamp::from_unix_millis))
    }
}
