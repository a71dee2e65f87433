//! Helpers shared by billing's tests against the fake Stripe.
#![allow(dead_code)]

use parley_billing::HoldRequest;
use parley_billing::stripe::{StripeConfig, StripeProvider};
use parley_domain::{Currency, Money};

use crate::fake_stripe::FakeStripe;

pub fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

/// The real Stripe provider, pointed at `fake`.
pub fn provider(fake: &FakeStripe) -> StripeProvider {
    StripeProvider::new(&StripeConfig { secret_key: "sk_test_parley".into(), api_base: Some(fake.base_url()) }).unwrap()
}

/// A EUR 60.00 hold on `pm` with idempotency key `key`.
pub fn hold(pm: &str, key: &str, destination: Option<&str>) -> HoldRequest {
    HoldRequest {
        amount: eur(6000),
        payment_method: pm.into(),
        destination: destination.map(str::to_owned),
        description: "Parley call".into(),
        metadata: vec![("session_id".into(), "ses_1".into())],
        idempotency_key: key.into(),
    }
}
