//! Disputes (docs/rules.md D1–D6): a participant disputes an ended,
//! charged session; the other side answers once; a moderator decides
//! (uphold, partial or full refund through billing's serialised refund
//! path); the evidence bundle Parley assembles from what it recorded
//! ([`bundle`]); card chargebacks answered with that bundle ([`worker`]).
//!
//! One file per concern: [`rules`] (window, texts, ids), [`sql`] (the
//! `disputes` rows and the parties' history), [`http`] (the routes),
//! [`bundle`] (the evidence bundle and its Markdown), [`worker`]
//! (chargeback notices and evidence submission).

pub mod bundle;
pub mod http;
pub mod rules;
pub mod sql;
pub mod worker;

pub use http::router;
