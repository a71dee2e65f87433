//! One test binary for the billing crate's providers against a local fake Stripe.
//! Each module was a test file of its own; one binary links once.

mod common;
mod fake_stripe;
mod fake_stripe_checks;
mod stripe_escrow;
mod stripe_provider;
mod webhook;
