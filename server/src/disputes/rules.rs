//! The rules of disputes that need no database: the window (D1), texts,
//! decisions' amounts (D3), ids.

use std::time::Duration;

use parley_domain::Timestamp;
use parley_domain::protocol::ErrorCode;
use parley_domain::protocol::rest::{DecideDisputeRequest, DisputeDecision, MAX_DISPUTE_CHARS};

use crate::kernel::ApiError;

/// A new dispute id: `dsp_` + UUIDv7 (time-ordered).
pub fn new_dispute_id() -> String {
    format!("dsp_{}", uuid::Uuid::now_v7().simple())
}

/// Whether a session that ended at `ended` may still be disputed at `now`
/// with a window of `days` days (D1): up to and including the window's
/// last millisecond.
pub fn within_window(ended: Timestamp, now: Timestamp, days: u32) -> bool {
    now <= ended.plus(Duration::from_secs(u64::from(days) * 24 * 3600))
}

/// `text` trimmed, if it has 1–[`MAX_DISPUTE_CHARS`] characters; else 400
/// `invalid_field` naming `field`.
pub fn checked_text(field: &str, text: &str) -> Result<String, ApiError> {
    let t = text.trim();
    let n = t.chars().count();
    if n == 0 || n > MAX_DISPUTE_CHARS {
        return Err(ApiError::BadRequest(
            ErrorCode::InvalidField,
            format!("{field}: 1 to {MAX_DISPUTE_CHARS} characters, not only white space (got {n})"),
        ));
    }
    Ok(t.to_owned())
}

/// The refund a decision asks for (D3): `None` for `uphold`, `Some(None)`
/// (all that is left) for `full_refund`, `Some(Some(amount))` for
/// `partial_refund`. 400 `invalid_field` for a partial refund without an
/// amount of at least 1, or an amount with another decision.
pub fn refund_of(req: &DecideDisputeRequest) -> Result<Option<Option<i64>>, ApiError> {
    let bad = |m: &str| Err(ApiError::BadRequest(ErrorCode::InvalidField, m.to_owned()));
    match (req.decision, req.amount_minor) {
        (DisputeDecision::PartialRefund, Some(a)) if a >= 1 => Ok(Some(Some(a))),
        (DisputeDecision::PartialRefund, _) => bad("amount_minor: a partial refund needs an amount of at least 1"),
        (_, Some(_)) => bad("amount_minor: only for partial_refund"),
        (DisputeDecision::Uphold, None) => Ok(None),
        (DisputeDecision::FullRefund, None) => Ok(Some(None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_includes_its_last_millisecond() {
        let end = Timestamp::from_unix_millis(1_000);
        let days14 = 14 * 24 * 3600 * 1000;
        assert!(within_window(end, Timestamp::from_unix_millis(1_000 + days14), 14));
        assert!(!within_window(end, Timestamp::from_unix_millis(1_001 + days14), 14));
    }

    #[test]
    fn texts_and_amounts_are_checked() {
        assert!(checked_text("text", "  ").is_err());
        assert_eq!(checked_text("text", " ok ").unwrap(), "ok");
        assert!(checked_text("text", &"x".repeat(MAX_DISPUTE_CHARS + 1)).is_err());
        let req = |decision, amount_minor| DecideDisputeRequest { decision, amount_minor, note: "n".into() };
        assert_eq!(refund_of(&req(DisputeDecision::PartialRefund, Some(5))).unwrap(), Some(Some(5)));
        assert!(refund_of(&req(DisputeDecision::PartialRefund, Some(0))).is_err());
        assert!(refund_of(&req(DisputeDecision::Uphold, Some(5))).is_err());
        assert_eq!(refund_of(&req(DisputeDecision::FullRefund, None)).unwrap(), Some(None));
        assert_eq!(refund_of(&req(DisputeDecision::Uphold, None)).unwrap(), None);
    }
}
