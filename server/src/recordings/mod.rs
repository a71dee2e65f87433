//! Recordings (DESIGN.md §6, docs/rules.md R1–R5): the recordings API and
//! the recap ([`http`]), signed downloads ([`download`]), the recorder's
//! sink ([`sink`]) and retention ([`retention`]). Consent and the files
//! themselves live in the store ([`crate::store::consent`],
//! [`crate::store::files`]).

pub mod download;
pub mod http;
pub mod retention;
pub mod sink;
pub mod storage;

pub use http::recap_markdown;
pub use sink::ServerSink;

use axum::Router;

use crate::kernel::AppState;

/// The routes of the recordings area.
pub fn router(state: AppState) -> Router {
    http::router(state.clone()).merge(download::router(state))
}
