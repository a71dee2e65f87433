//! The `parley` server: configuration, wiring, HTTP router, persistence,
//! telemetry and shutdown (DESIGN.md §1). The binary is `src/main.rs`;
//! tests build an [`Application`] on port 0.

pub mod api;
pub mod app;
pub mod bookings;
pub mod config;
pub mod directory;
pub mod extract;
pub mod files;
pub mod idempotency;
pub mod metrics_api;
pub mod money;
pub mod openapi;
pub mod profiles;
pub mod promotions;
pub mod reconcile;
pub mod recording;
pub mod retention;
pub mod reviews;
pub mod routes;
pub mod store;
pub mod telemetry;
pub mod webhooks;

pub use app::Application;
pub use config::Config;
