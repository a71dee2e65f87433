//! Parley's signaling edge (DESIGN.md §3): a WebSocket at `/v1/signal` that
//! authenticates clients by JWT, tracks consultant presence, runs instant
//! calls (request → hold → ring → accept / decline / cancel / timeout),
//! opens session rooms for exactly their two participants, relays SDP and
//! ICE candidates between them, and lets dropped clients resume.
//!
//! Entry point: [`Signaling::router`]. The crate knows nothing of billing or
//! databases: `server` plugs in a [`Store`] and a [`CallGate`].
//!
//! Module map: `hub` (state and transitions), `connection` (one
//! WebSocket), `link` (resumable per-client state), `auth` (JWT), `turn`
//! (ICE servers), `store` (the traits the server implements).

pub mod auth;
pub mod clock;
mod config;
mod connection;
mod error;
mod hub;
mod link;
pub mod metrics;
pub mod schedule;
pub mod store;
pub mod turn;

use std::sync::Arc;

use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use parley_domain::protocol::{ErrorBody, ErrorCode, Role};
use serde::Deserialize;

pub use auth::{AuthError, Authenticator, Claims, Identity};
pub use config::SignalingConfig;
pub use error::SignalError;
pub use hub::{CLOSE_GOING_AWAY, Hub};
pub use store::{CallGate, GateRefusal, NoHooks, OpenGate, SessionHooks, Store, StoreError};

/// Largest WebSocket message read at all, bytes. Frames between
/// [`parley_domain::protocol::MAX_FRAME_BYTES`] and this are answered with
/// `frame_too_large` and the connection goes on; larger ones close it (1009).
pub const WS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The signaling service: a hub plus the authenticator that admits clients.
#[derive(Clone)]
pub struct Signaling {
    hub: Arc<Hub>,
    auth: Arc<Authenticator>,
}

#[derive(Deserialize)]
struct SignalQuery {
    access_token: Option<String>,
}

impl Signaling {
    /// Signaling over `hub`, admitting tokens `auth` verifies.
    pub fn new(hub: Arc<Hub>, auth: Arc<Authenticator>) -> Self {
        Signaling { hub, auth }
    }

    /// The hub (presence queries, shutdown).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// `GET /v1/signal`: the WebSocket endpoint. A missing, expired or
    /// forged token is refused with 401 and a JSON [`ErrorBody`] before the
    /// upgrade; 503 while shutting down.
    pub fn router(&self) -> Router {
        Router::new().route("/v1/signal", get(upgrade)).with_state(self.clone())
    }
}

async fn upgrade(
    State(sig): State<Signaling>,
    headers: HeaderMap,
    Query(q): Query<SignalQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let identity = match sig.auth.verify_request_identity(&headers, q.access_token.as_deref()) {
        Ok(identity) => identity,
        Err(e) => {
            metrics::error(e.code());
            let body = ErrorBody { code: e.code(), message: e.to_string() };
            return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
        }
    };
    if identity.user.role == Role::Moderator {
        metrics::error(ErrorCode::WrongRole);
        let body =
            ErrorBody { code: ErrorCode::WrongRole, message: "moderators use the REST API, not signaling".into() };
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    if sig.hub.is_shutting_down() {
        let body = ErrorBody { code: ErrorCode::Unavailable, message: "the server is shutting down".into() };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let hub = sig.hub.clone();
    let tracker = hub.connections.clone();
    ws.read_buffer_size(hub.cfg.ws_read_buffer)
        .write_buffer_size(0)
        .max_message_size(WS_MAX_MESSAGE_BYTES)
        .max_frame_size(WS_MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| tracker.track_future(connection::serve(socket, hub, identity)))
}
