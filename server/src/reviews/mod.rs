//! Reviews and metrics (docs/rules.md "Reviews"): reviews and replies,
//! reputations ([`http`]), a consultant's monthly metrics ([`metrics`]).

pub mod http;
pub mod metrics;

pub use http::{reputation, reputations};

use axum::Router;

use crate::kernel::AppState;

/// The routes of the reviews area.
pub fn router(state: AppState) -> Router {
    http::router(state.clone()).merge(metrics::router(state))
}
