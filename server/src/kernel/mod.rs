//! The shared kernel every area builds on: the state handlers share, the
//! error type and its problem+json answer, the auth and body extractors,
//! idempotency keys, and the routes no area owns (health, readiness,
//! metrics, problem types, dev login). The kernel imports the store and
//! the configuration, never an area.

pub mod error;
pub mod extract;
pub mod guard;
pub mod http;
pub mod idempotency;
pub mod state;
pub mod tickets;
pub mod worker;

pub use error::{ApiError, problem};
pub use extract::{Body, Caller, CallerIdentity};
pub use guard::{require, session_id};
pub use state::{AppState, Marketplace};
