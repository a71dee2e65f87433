//! The `parley` server: configuration, wiring, HTTP router, persistence,
//! telemetry and shutdown (DESIGN.md §1). The binary is `src/main.rs`;
//! tests build an [`Application`] on port 0.
//!
//! Layout: [`kernel`] (state, errors, extractors, idempotency, the
//! deadline worker; imports no area), [`store`] (SQL shared by areas;
//! imports no area), one folder per area — [`sessions`] (sessions and
//! money), [`bookings`], [`profiles`] (profiles and directory),
//! [`reviews`] (reviews and metrics), [`recordings`] (recordings and
//! files), [`webhooks`], [`cluster`] (what nodes agree on: session
//! leases) — and the wiring that imports them all:
//! [`routes`], [`app`], [`openapi`].

pub mod app;
pub mod bookings;
pub mod cluster;
pub mod config;
pub mod disputes;
pub mod engagements;
pub mod kernel;
pub mod media;
pub mod openapi;
pub mod profiles;
pub mod recordings;
pub mod recovery;
pub mod reviews;
pub mod routes;
pub mod sessions;
pub mod store;
pub mod telemetry;
pub mod webhooks;

#[cfg(test)]
mod layout;

pub use app::Application;
pub use config::Config;

// The paths the tests, the load tests and the web demo use.
pub use recordings::{retention, sink as recording};
pub use sessions::reconcile;
pub use store::files;
