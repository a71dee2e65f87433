//! Sessions and money (docs/rules.md "Money"): the session details, prices,
//! earnings, receipts, refunds, payouts and Stripe's webhook ([`http`]);
//! how billing and metering plug into the hub ([`gate`]); reconciliation
//! with the payment provider ([`reconcile`]).

pub mod details;
pub mod gate;
pub mod http;
pub mod reconcile;
pub mod rules;

pub use http::router;
