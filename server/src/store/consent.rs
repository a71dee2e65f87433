//! Who may record (DESIGN.md §6, docs/rules.md R1): premium seekers
//! (operator API or token claim) and consultants who allow it, in the
//! `premium_seekers` and `recording_consent` tables.

use parley_domain::protocol::ErrorCode;
use parley_domain::{Timestamp, UserId};
use sqlx::Row;

use super::SqlStore;

/// Who may record: premium seekers (operator API or token claim) and
/// consultants who allow it. Backed by the database.
#[derive(Clone)]
pub struct Consent {
    store: SqlStore,
}

impl Consent {
    /// Consent over `store`'s database.
    pub fn new(store: SqlStore) -> Consent {
        Consent { store }
    }

    /// Whether the operator marked `seeker` premium.
    pub async fn is_premium(&self, seeker: &UserId) -> Result<bool, sqlx::Error> {
        let row = sqlx::query("SELECT premium FROM premium_seekers WHERE seeker_id = $1")
            .bind(seeker.as_str())
            .fetch_optional(&self.store.pool())
            .await?;
        Ok(match row {
            Some(row) => row.try_get::<i64, _>("premium")? != 0,
            None => false,
        })
    }

    /// Marks `seeker` premium or not, at `now`.
    pub async fn set_premium(&self, seeker: &UserId, premium: bool, now: Timestamp) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO premium_seekers (seeker_id, premium, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (seeker_id) DO UPDATE SET premium = excluded.premium, updated_ms = excluded.updated_ms",
        )
        .bind(seeker.as_str())
        .bind(i64::from(premium))
        .bind(now.unix_millis())
        .execute(&self.store.pool())
        .await?;
        Ok(())
    }

    /// Whether `consultant` allows recording (default: no).
    pub async fn recording_allowed(&self, consultant: &UserId) -> Result<bool, sqlx::Error> {
        let row = sqlx::query("SELECT allowed FROM recording_consents WHERE consultant_id = $1")
            .bind(consultant.as_str())
            .fetch_optional(&self.store.pool())
            .await?;
        Ok(match row {
            Some(row) => row.try_get::<i64, _>("allowed")? != 0,
            None => false,
        })
    }

    /// Sets whether `consultant` allows recording, at `now`.
    pub async fn set_recording_allowed(
        &self,
        consultant: &UserId,
        allowed: bool,
        now: Timestamp,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO recording_consents (consultant_id, allowed, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (consultant_id) DO UPDATE SET allowed = excluded.allowed, updated_ms = excluded.updated_ms",
        )
        .bind(consultant.as_str())
        .bind(i64::from(allowed))
        .bind(now.unix_millis())
        .execute(&self.store.pool())
        .await?;
        Ok(())
    }

    /// Checks a recording request of `seeker` (whose token says
    /// `token_premium`) to call `consultant`: `Err` with
    /// `premium_required` or `recording_not_allowed`.
    pub async fn check_request(
        &self,
        seeker: &UserId,
        token_premium: bool,
        consultant: &UserId,
    ) -> Result<(), (ErrorCode, String)> {
        let internal = |e: sqlx::Error| (ErrorCode::Internal, e.to_string());
        if !(token_premium || self.is_premium(seeker).await.map_err(internal)?) {
            return Err((ErrorCode::PremiumRequired, "recording is for premium seekers".into()));
        }
        if !self.recording_allowed(consultant).await.map_err(internal)? {
            return Err((ErrorCode::RecordingNotAllowed, "this consultant does not allow recording".into()));
        }
        Ok(())
    }
}
