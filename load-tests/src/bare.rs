//! A bare signaling relay: the floor Parley's relay is measured against
//! (issue 17). Not part of the server and never shipped with it; it runs as
//! the `bare-relay` binary of this package (or in-process, in the tests).
//!
//! It is a plain tokio + tokio-tungstenite server that speaks just enough of
//! Parley's signaling protocol, with the protocol's own types
//! ([`parley_domain::protocol`]) and serde shapes, for `parley-load signal`
//! to run unchanged against it:
//!
//! * HTTP: `GET /healthz` and `/readyz`, `GET /v1/consultants` (always an
//!   empty list: it only answers the generator's token check) and
//!   `POST /v1/dev/login` (a token minted with the relay's secret);
//! * `GET /v1/signal` with `Authorization: Bearer <JWT>`: the token is
//!   checked as Parley checks it (HS256 with the relay's secret, expiry,
//!   `sub` / `name` / `role`), then `hello`;
//! * `presence.set`, `call.request` → `ack` and `call.incoming` to the
//!   consultant, `call.accept` → `call.accepted` to both, `room.join` →
//!   the room `ack` (the seeker offers) and `participant.joined`,
//!   `sdp.offer` / `sdp.answer` / `ice.candidate` relayed to the other
//!   participant with `from` set, `session.end` → `session.ended` to both,
//!   `ping`; an `ack` for every request that carries an `id`.
//!
//! What it leaves out is what Parley does beyond relaying: no database, no
//! payment hold, no meter, no replay buffer or `resume`, no rate limit, no
//! WebSocket pings, no ring timeout, no recorder; other request types are
//! answered with `unknown_type`.
//!
//! How it relays: one task per connection reads and handles its frames (a
//! relayed message is parsed into the typed protocol, as any server that
//! checks what it forwards does, and queued for the other participant with
//! `from` set) and, in between, drains the connection's own unbounded mpsc
//! queue, writing everything queued with one flush. The only shared state
//! is one map of users, calls and sessions behind a mutex, held for a map
//! lookup and a channel send on the relay path, never across an `await`.
//! Sockets have `TCP_NODELAY` and the listen backlog is 4096, as in Parley.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

mod auth;
mod conn;
mod http;
mod state;

use self::auth::Keys;
use self::state::State;

/// Connections the kernel may hold waiting for `accept` (Parley's value).
const LISTEN_BACKLOG: u32 = 4096;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection shares.
struct Shared {
    keys: Keys,
    state: Mutex<State>,
}

impl Shared {
    /// The state, locked (a panic elsewhere does not stop the relay).
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A bound bare relay; [`BareRelay::run`] serves it.
pub struct BareRelay {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl BareRelay {
    /// Binds `addr` (a loopback address, port 0 for any free port); tokens
    /// are checked and minted with `secret`.
    pub fn bind(addr: SocketAddr, secret: &[u8]) -> anyhow::Result<BareRelay> {
        if !crate::target::is_loopback(addr.ip()) {
            anyhow::bail!("--addr {addr}: the bare relay listens on loopback addresses only");
        }
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.bind(addr).with_context(|| format!("cannot bind {addr}"))?;
        let listener = socket.listen(LISTEN_BACKLOG)?;
        let shared = Arc::new(Shared { keys: Keys::new(secret), state: Mutex::new(State::default()) });
        Ok(BareRelay { listener, shared })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until the process ends, each in a task of its own.
    pub async fn run(self) {
        loop {
            match self.listener.accept().await {
                Ok((tcp, _)) => {
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        let _ = tcp.set_nodelay(true);
                        accept(tcp, shared).await;
                    });
                }
                // Out of file descriptors, most likely: the clients see it
                // as failed connections; try again shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }
}

/// One accepted TCP connection: an HTTP request, or the WebSocket upgrade.
async fn accept(mut tcp: TcpStream, shared: Arc<Shared>) {
    let Ok(Ok(Some((head, rest)))) = tokio::time::timeout(HEAD_TIMEOUT, http::read_head(&mut tcp)).await else {
        return;
    };
    if head.path() == "/v1/signal" && head.is_websocket_upgrade() {
        let user = match head.bearer().ok_or_else(auth::missing_token).and_then(|t| shared.keys.verify(t)) {
            Ok(user) => user,
            Err(refusal) => return http::refuse(&mut tcp, refusal).await,
        };
        if let Some(ws) = http::upgrade(tcp, &head, rest).await {
            conn::serve(ws, user, shared).await;
        }
    } else {
        http::answer(&mut tcp, &head, rest, &shared.keys).await;
    }
}

#[cfg(test)]
mod tests;
