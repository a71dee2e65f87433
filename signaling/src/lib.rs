//! Parley's signaling edge (DESIGN.md §3): a WebSocket at `/v1/signal` that
//! authenticates clients by JWT, tracks consultant presence, runs instant
//! calls (request → hold → ring → accept / decline / cancel / timeout),
//! opens session rooms for exactly their two participants, relays SDP and
//! ICE candidates between them, and lets dropped clients resume.
//!
//! Entry point: [`Signaling::router`]. The crate knows nothing of billing or
//! databases: `server` plugs in a [`Store`] and a [`CallGate`].
//!
//! Module map: `hub` (`hub::core`: the pure state machine that decides;
//! `hub::driver`: the [`Hub`] that does its IO; `hub::delivery`: how
//! messages reach links), `cluster` (several nodes, one hub: the [`Bus`]
//! seam, edges forwarding sockets to the hub node), `connection` (one
//! WebSocket), `socket` (its RFC 6455 framing, with no buffer kept while
//! idle), `link` (resumable per-client state), `relay` (the fast
//! path of relayed SDP and ICE), `journal` (links copied outside the hub
//! node, in a cluster), `auth` (JWT), `turn` (ICE servers), `store` (the
//! traits the server implements).

pub mod auth;
mod cluster;
mod config;
mod connection;
mod error;
mod hub;
pub mod journal;
mod link;
pub mod metrics;
mod relay;
mod socket;
pub mod store;
pub mod turn;

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use parley_domain::protocol::{ErrorCode, Problem, Role};
use serde::Deserialize;

pub use auth::{AuthError, Authenticator, Claims, Identity, Tickets};
pub use cluster::{Bus, HubChange};
pub use config::SignalingConfig;
pub use connection::{ABUSE_BURSTS, CLOSE_IDLE, CLOSE_RATE_LIMITED, CLOSE_TOO_BIG, RATE_LIMIT_UNIT_BYTES};
pub use error::SignalError;
pub use hub::{CLOSE_GOING_AWAY, CLOSE_RECORDER_CONNECTED, Hub};
pub use journal::{JournalError, JournaledLink, LinkJournal};
pub use store::{CallGate, GateRefusal, JoinExtras, NoHooks, OpenGate, SessionHooks, Store, StoreError};

/// Largest WebSocket message read at all, bytes. Frames between
/// [`parley_domain::protocol::MAX_FRAME_BYTES`] and this are answered with
/// `frame_too_large` and the connection goes on; larger ones close it (1009).
pub const WS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The signaling service: a hub plus the authenticator that admits clients.
#[derive(Clone)]
pub struct Signaling {
    hub: Arc<Hub>,
    auth: Arc<Authenticator>,
    tickets: Option<Arc<dyn Tickets>>,
}

#[derive(Deserialize)]
struct SignalQuery {
    /// A one-time ticket (`POST /v1/ws-tickets`), for browsers, which
    /// cannot set headers on a WebSocket.
    ticket: Option<String>,
}

impl Signaling {
    /// Signaling over `hub`, admitting tokens `auth` verifies.
    pub fn new(hub: Arc<Hub>, auth: Arc<Authenticator>) -> Self {
        Signaling { hub, auth, tickets: None }
    }

    /// Accepts one-time tickets (`?ticket=`) that `tickets` redeems, besides
    /// the `Authorization` header.
    pub fn with_tickets(mut self, tickets: Arc<dyn Tickets>) -> Self {
        self.tickets = Some(tickets);
        self
    }

    /// The hub (presence queries, shutdown).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// `GET /v1/signal`: the WebSocket endpoint, authenticated by the
    /// `Authorization: Bearer` header or a one-time `?ticket=` (the header
    /// wins). Refused before the upgrade with an RFC 9457 problem
    /// ([`Problem`], `application/problem+json`): 401 for a missing,
    /// expired or forged token, or an unknown, used or expired ticket; 403 `wrong_role` for a
    /// moderator; 409 `recorder_connected` for a second connection of a
    /// recorder whose first one is live; 503 while shutting down.
    pub fn router(&self) -> Router {
        Router::new().route("/v1/signal", get(upgrade)).with_state(self.clone())
    }
}

async fn upgrade(
    State(sig): State<Signaling>,
    query: Result<Query<SignalQuery>, QueryRejection>,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    // The token (or ticket) first; then what else the request got wrong.
    let ticket = query.as_ref().ok().and_then(|Query(q)| q.ticket.as_deref()).filter(|t| !t.is_empty());
    let header = auth::bearer(headers).filter(|t| !t.trim().is_empty());
    let verified = match (header, ticket, &sig.tickets) {
        (None, Some(ticket), Some(tickets)) => tickets.redeem(ticket).await,
        _ => sig.auth.verify_request_identity(headers),
    };
    let identity = match verified {
        Ok(identity) => identity,
        Err(e @ AuthError::TicketStore(_)) => {
            tracing::error!(error = %e, "ticket store failed");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.code(), "the ticket could not be checked");
        }
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, e.code(), e.to_string()),
    };
    let accept = match socket::accept_key(request.method(), request.headers()) {
        Ok(accept) => accept,
        Err((status, why)) => return refuse(status, ErrorCode::InvalidField, why),
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        let why = "WebSocket request couldn't be upgraded since no upgrade state was present";
        return refuse(StatusCode::UPGRADE_REQUIRED, ErrorCode::InvalidField, why);
    };
    if identity.user.role == Role::Moderator {
        return refuse(StatusCode::FORBIDDEN, ErrorCode::WrongRole, "moderators use the REST API, not signaling");
    }
    if sig.hub.hub_unknown() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "no hub node is elected yet; retry");
    }
    if identity.user.role == Role::Recorder && sig.hub.is_hub_node() && sig.hub.recorder_connected(&identity.user.id) {
        // Checked again, atomically, when the connection registers.
        let message = format!("recorder {} already has a live connection; retry once it is gone", identity.user.id);
        return refuse(StatusCode::CONFLICT, ErrorCode::RecorderConnected, message);
    }
    if sig.hub.is_shutting_down() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "the server is shutting down");
    }
    let hub = sig.hub.clone();
    let tracker = hub.connections.clone();
    tokio::spawn(tracker.track_future(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = socket::Socket::new(hyper_util::rt::TokioIo::new(upgraded), WS_MAX_MESSAGE_BYTES);
                connection::serve(socket, hub, identity).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    }));
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let fields = response.headers_mut();
    fields.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    fields.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    fields
        .insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a valid header value"));
    response
}

/// The socket of a connection upgraded on this node.
pub(crate) type WebSocket = socket::Socket<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// A refused upgrade: an RFC 9457 problem with a stable `code` (its
/// `message` keeps clients that read [`parley_domain::protocol::ErrorBody`]
/// working).
fn refuse(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    metrics::error(code);
    let mut response = (status, Json(Problem::new(code, status.as_u16(), message))).into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/problem+json"));
    response
}
