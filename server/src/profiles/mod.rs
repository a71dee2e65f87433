//! Profiles and the directory (docs/rules.md "Profiles and directory"):
//! consultant profiles ([`http`], their rules in [`rules`]), the consultant
//! list ([`consultants`]), the directory search ([`directory`]) and
//! promotion packages ([`promotions`]).

pub mod consultants;
pub mod directory;
pub mod http;
pub mod promotions;
pub mod rules;

pub use http::{SchedulingFacts, has_profile, load_profile, rating_of, scheduling_facts};
pub use rules::{language_code, rating, tag};

use axum::Router;
use axum::routing::get;

use crate::kernel::AppState;

/// The routes of the profiles area.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/consultants", get(consultants::consultants))
        .with_state(state.clone())
        .merge(http::router(state.clone()))
        .merge(directory::router(state.clone()))
        .merge(promotions::router(state))
}
