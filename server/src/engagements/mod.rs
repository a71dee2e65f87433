//! Escrow (docs/rules.md E1–E9, issue 19): engagements between a seeker
//! and a consultant funded up front — a package of booked sessions or a
//! list of milestones — charged at once into the platform's balance and
//! paid out to the consultant by Connect transfers as the work is done,
//! or refunded when the engagement is cancelled.
//!
//! Money and state live in billing's escrow service (one state machine
//! under the engagement's row lock); this area checks requests
//! ([`rules`]), reads engagements back ([`sql`]), serves the REST API
//! ([`http`]) and runs the auto-release worker ([`worker`]). Package
//! sessions are booked through the bookings area with an `engagement_id`.

pub mod events;
pub mod http;
pub mod reconcile;
pub mod rules;
pub mod sql;
pub mod worker;

pub use http::router;
