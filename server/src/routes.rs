//! The whole HTTP API: the kernel's routes and every area's, merged. This
//! file, the application wiring (`app.rs`) and the OpenAPI document are
//! the only places that import every area.

use axum::routing::get;
use axum::{Json, Router};

use crate::kernel::{AppState, http};

/// The routes of every mode.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .merge(http::router(state.clone()))
        .merge(crate::recordings::router(state.clone()))
        .merge(crate::bookings::router(state.clone()))
        .merge(crate::engagements::router(state.clone()))
        .merge(crate::reviews::router(state.clone()))
        .merge(crate::profiles::router(state.clone()))
        .merge(crate::disputes::router(state.clone()))
        .merge(crate::sessions::router(state))
}

pub use http::{dev_router, landing_router};
