//! Consultants' payout accounts (Stripe Connect Express) and onboarding.

use parley_domain::UserId;
use sqlx::Row;

use super::{Billing, BillingError};
use crate::provider::AccountRequest;

impl Billing {
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
