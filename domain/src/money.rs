//! Money as integer minor units with an ISO 4217 currency (DESIGN.md B1:
//! never floats).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// An ISO 4217 alphabetic currency code, upper case (`"EUR"`, `"USD"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "EUR"))]
pub struct Currency([u8; 3]);

/// Why money or a currency is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoneyError {
    /// Not three ASCII upper-case letters.
    BadCurrency(String),
    /// Two amounts in different currencies were combined.
    CurrencyMismatch(Currency, Currency),
    /// The amount is negative where only non-negative amounts make sense.
    Negative(i64),
    /// An operation overflowed `i64` minor units.
    Overflow,
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoneyError::BadCurrency(s) => {
                write!(f, "{s:?} is not an ISO 4217 code (three upper-case letters)")
            }
            MoneyError::CurrencyMismatch(a, b) => write!(f, "cannot combine {a} with {b}"),
            MoneyError::Negative(n) => write!(f, "amount {n} is negative"),
            MoneyError::Overflow => write!(f, "amount overflows"),
        }
    }
}

impl std::error::Error for MoneyError {}

impl Currency {
    /// Parses a three-letter upper-case code.
    pub fn parse(s: &str) -> Result<Self, MoneyError> {
        let b = s.as_bytes();
        if b.len() == 3 && b.iter().all(u8::is_ascii_uppercase) {
            Ok(Currency([b[0], b[1], b[2]]))
        } else {
            Err(MoneyError::BadCurrency(s.to_owned()))
        }
    }

    /// The code as a string slice.
    pub fn as_str(&self) -> &str {
        // Validated as ASCII on construction.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount of money: integer minor units (cents for EUR/USD) and a
/// currency. Serialised as `{"amount_minor": 1500, "currency": "EUR"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Money {
    /// Amount in the currency's minor unit.
    pub amount_minor: i64,
    /// ISO 4217 currency.
    pub currency: Currency,
}

impl Money {
    /// `amount_minor` minor units of `currency`.
    pub fn new(amount_minor: i64, currency: Currency) -> Self {
        Money { amount_minor, currency }
    }

    /// Sum of two amounts of the same currency.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let amount_minor = self.amount_minor.checked_add(other.amount_minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { amount_minor, currency: self.currency })
    }

    /// `bps` basis points (1/100 of a percent) of this amount, rounded down to
    /// a whole minor unit: the platform's commission (DESIGN.md B4).
    pub fn basis_points(self, bps: u32) -> Result<Money, MoneyError> {
        let amount_minor = i128::from(self.amount_minor) * i128::from(bps) / 10_000;
        let amount_minor = i64::try_from(amount_minor).map_err(|_| MoneyError::Overflow)?;
        Ok(Money { amount_minor, currency: self.currency })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_minor, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_is_three_upper_case_letters() {
        assert!(Currency::parse("EUR").is_ok());
        for bad in ["eur", "EU", "EURO", "E1R", ""] {
            assert_eq!(Currency::parse(bad), Err(MoneyError::BadCurrency(bad.into())));
        }
    }

    #[test]
    fn adding_different_currencies_is_an_error() {
        let eur = Currency::parse("EUR").unwrap();
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(Money::new(1, eur).checked_add(Money::new(1, usd)), Err(MoneyError::CurrencyMismatch(eur, usd)));
        assert_eq!(Money::new(1, eur).checked_add(Money::new(2, eur)), Ok(Money::new(3, eur)));
    }

    #[test]
    fn commission_rounds_down_to_a_minor_unit() {
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(Money::new(1999, eur).basis_points(2000).unwrap().amount_minor, 399);
        assert_eq!(Money::new(i64::MAX, eur).basis_points(10_000).unwrap().amount_minor, i64::MAX);
    }
}
