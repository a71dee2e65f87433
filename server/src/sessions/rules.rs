//! The checks of a consultant's price (`PUT /v1/consultants/me/price`):
//! its range and the accepted currencies.

use parley_domain::Currency;
use parley_domain::protocol::ErrorCode;
use parley_domain::protocol::rest::ConsultantPrice;

use crate::kernel::{ApiError, AppState};

/// The most a price may be, in minor units (EUR 10 000.00 per session or
/// per minute): more is 400 `invalid_price`.
pub const MAX_PRICE_MINOR: i64 = 1_000_000;

/// The body of `PUT /v1/consultants/me/price`, checked: a currency outside
/// `PARLEY_CURRENCIES` (or not a currency at all) is `unsupported_currency`,
/// an amount outside 1..=[`MAX_PRICE_MINOR`] is `invalid_price`, any other
/// bad shape `invalid_field`.
pub fn checked_price(s: &AppState, value: serde_json::Value) -> Result<ConsultantPrice, ApiError> {
    let accepted = &s.marketplace.currencies;
    let list = || accepted.iter().map(Currency::as_str).collect::<Vec<_>>().join(", ");
    if let Some(c) = value.pointer("/amount/currency").and_then(|c| c.as_str())
        && !accepted.iter().any(|a| a.as_str() == c)
    {
        return Err(ApiError::BadRequest(
            ErrorCode::UnsupportedCurrency,
            format!("amount.currency: {c:?} is not accepted here; use one of {}", list()),
        ));
    }
    let price: ConsultantPrice = serde_json::from_value(value)
        .map_err(|e| ApiError::BadRequest(ErrorCode::InvalidField, format!("body: {e}")))?;
    if price.amount.amount_minor <= 0 || price.amount.amount_minor > MAX_PRICE_MINOR {
        return Err(ApiError::BadRequest(
            ErrorCode::InvalidPrice,
            format!(
                "amount.amount_minor: between 1 and {MAX_PRICE_MINOR} minor units (got {})",
                price.amount.amount_minor
            ),
        ));
    }
    Ok(price)
}
