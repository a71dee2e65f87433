//! Consultants' prices (DESIGN.md M7).

use parley_domain::UserId;
use parley_domain::protocol::ErrorCode;
use parley_domain::protocol::rest::ConsultantPrice;

use super::{Billing, BillingError, price_from_row};

impl Billing {
    /// Sets `consultant`'s price (M7). The amount must be more than zero.
    pub async fn set_price(&self, consultant: &UserId, price: &ConsultantPrice) -> Result<(), BillingError> {
        if price.amount.amount_minor <= 0 {
            return Err(BillingError::Refused(ErrorCode::InvalidField, "amount_minor: must be more than zero".into()));
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
}
