//! Several nodes, one hub (issue 16; docs/rules.md C7).
//!
//! Every node of a cluster accepts WebSockets and REST requests; one node
//! at a time — the *hub node*, elected by the server (a Redis lease) and
//! told to every node's [`Hub`] with [`Hub::set_hub_node`] — runs the hub
//! core: presence, rings, rooms, relay, the links and their replay
//! buffers, and the meters of live sessions. Every other node is an
//! *edge*: it terminates its clients' sockets, checks their frames' size
//! and rate limit, and forwards them to the hub node over the [`Bus`];
//! the hub node serves each such connection as it serves its own
//! (`remote`), and sends the numbered messages back to the edge that holds
//! the socket. So a client may connect to any node and resume on any
//! other with replay (the link lives on the hub node), and one core
//! decides everything, as on a single node (DESIGN §1: single-node and
//! multi-node behave the same).
//!
//! When the hub node changes (it died, was partitioned or drained), each
//! edge closes the sockets it forwarded (`server.shutdown`, close 1001):
//! their links died with the old hub node, so the clients' `resume` is
//! refused and the SDKs rejoin their open session on the new hub node,
//! which re-opened every open session from the store with its meter's
//! last checkpoint (rule M9) before it was announced.
//!
//! The bus carries opaque payloads (this module's JSON [`Wire`]); the
//! server implements it over Redis streams, one per node.

pub(crate) mod ask;
pub(crate) mod edge;
pub(crate) mod remote;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use parley_domain::protocol::{ErrorCode, UserInfo};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::connection::Departure;
use crate::hub::{CLOSE_GOING_AWAY, Hub};

/// The close reason of a socket whose hub node changed.
const HUB_MOVED: &str = "the hub moved; reconnect";

/// Carries payloads between the nodes of a cluster.
///
/// Payloads one node queues for another arrive in the order queued. A
/// payload queued while the broker is unreachable may be lost: the hub
/// node is then re-elected or kept, and either way clients whose messages
/// went missing resume or rejoin (docs/rules.md C7).
pub trait Bus: Send + Sync + 'static {
    /// This node's id (the `from` of what it sends).
    fn node(&self) -> &str;

    /// Queues `payload` for node `to`; never blocks.
    fn send(&self, to: &str, payload: Vec<u8>);
}

/// One message between nodes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum Wire {
    /// Edge → hub: a client connected to edge `from` as connection `conn`.
    Open { from: String, conn: u64, user: UserInfo, premium: bool },
    /// Edge → hub: a text frame the client sent (within size and rate limits).
    Frame { from: String, conn: u64, text: String },
    /// Edge → hub: tell the client this error (rate limit, binary frame).
    Notice { from: String, conn: u64, code: ErrorCode, message: String },
    /// Edge → hub: the socket closed (`closed`: by the client, on purpose).
    Gone { from: String, conn: u64, closed: bool },
    /// Hub → edge: write these (numbered) messages to connection `conn`.
    Write { conn: u64, texts: Vec<String> },
    /// Hub → edge: close connection `conn` once its writes are done.
    Close { conn: u64, code: u16, reason: String },
    /// Any node → hub: a question of the server's (`ask::Ask`).
    Ask { from: String, req: u64, ask: ask::Ask },
    /// Hub → the asking node: its answer.
    Answer { req: u64, answer: ask::Answer },
}

impl Wire {
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("wire messages serialise")
    }
}

/// What the hub node sends an edge connection.
#[derive(Debug)]
pub(crate) enum Down {
    Write(Vec<String>),
    Close(u16, String),
}

/// What an edge sends the hub node's side of one of its connections.
#[derive(Debug)]
pub(crate) enum Up {
    Frame(String),
    Notice(ErrorCode, String),
    Gone(Departure),
}

/// A node's cluster state: the bus, the hub node, the connections it
/// forwards (as an edge) and serves for others (as the hub node), and the
/// questions it has asked.
pub(crate) struct Cluster {
    pub(crate) bus: Arc<dyn Bus>,
    hub_node: Mutex<Option<String>>,
    /// This node's sockets served by the hub node: edge connection id → queue.
    edges: Mutex<HashMap<u64, mpsc::UnboundedSender<Down>>>,
    /// Other nodes' connections this hub node serves: (edge, conn) → input.
    remotes: Mutex<HashMap<(String, u64), mpsc::UnboundedSender<Up>>>,
    asks: Mutex<HashMap<u64, oneshot::Sender<ask::Answer>>>,
    next_ask: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    fn new(bus: Arc<dyn Bus>) -> Cluster {
        Cluster {
            bus,
            hub_node: Mutex::new(None),
            edges: Mutex::new(HashMap::new()),
            remotes: Mutex::new(HashMap::new()),
            asks: Mutex::new(HashMap::new()),
            next_ask: AtomicU64::new(1),
        }
    }

    /// The hub node, if one is elected.
    pub(crate) fn hub_node(&self) -> Option<String> {
        lock(&self.hub_node).clone()
    }

    fn is_hub(&self) -> bool {
        lock(&self.hub_node).as_deref() == Some(self.bus.node())
    }

    /// Sends `wire` to the hub node; false if none is elected.
    pub(crate) fn to_hub(&self, wire: &Wire) -> bool {
        match self.hub_node() {
            Some(hub) => {
                self.bus.send(&hub, wire.encode());
                true
            }
            None => false,
        }
    }

    pub(crate) fn register_edge(&self, conn: u64, queue: mpsc::UnboundedSender<Down>) {
        lock(&self.edges).insert(conn, queue);
    }

    pub(crate) fn forget_edge(&self, conn: u64) {
        lock(&self.edges).remove(&conn);
    }

    pub(crate) fn forget_remote(&self, edge: &str, conn: u64) {
        lock(&self.remotes).remove(&(edge.to_owned(), conn));
    }
}

/// The hub node's way back to a connection whose socket is on edge
/// `edge`: messages are gathered by `feed` and sent as one [`Wire::Write`]
/// by `flush`.
pub(crate) struct RemoteOut {
    cluster: Arc<Cluster>,
    edge: String,
    conn: u64,
    batch: Vec<String>,
}

impl RemoteOut {
    pub(crate) fn new(cluster: Arc<Cluster>, edge: String, conn: u64) -> RemoteOut {
        RemoteOut { cluster, edge, conn, batch: Vec::new() }
    }

    pub(crate) fn feed(&mut self, text: &str) {
        self.batch.push(text.to_owned());
    }

    pub(crate) fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let texts = std::mem::take(&mut self.batch);
        self.cluster.bus.send(&self.edge, Wire::Write { conn: self.conn, texts }.encode());
    }

    pub(crate) fn close(&mut self, code: u16, reason: &str) {
        self.flush();
        self.cluster.bus.send(&self.edge, Wire::Close { conn: self.conn, code, reason: reason.to_owned() }.encode());
    }
}

/// What a node does when the hub node changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubChange {
    /// Nothing changed.
    Same,
    /// This node became the hub node: the server must re-open the open
    /// sessions (their meters and rooms) before clients come.
    Promoted,
    /// This node stopped being the hub node: its links, rooms and rings
    /// are gone; the server must stop metering (the new hub node meters).
    Demoted,
    /// Another node is the hub node now, or none is.
    Moved,
}

impl Hub {
    /// Makes this hub one node of a cluster whose nodes talk over `bus`.
    /// Until [`Hub::set_hub_node`] names the hub node, WebSockets are
    /// refused (503) and the server's questions get empty answers. Once,
    /// before clients connect; later calls are ignored.
    pub fn join_cluster(&self, bus: Arc<dyn Bus>) {
        let _ = self.cluster.set(Arc::new(Cluster::new(bus)));
    }

    /// Whether this node runs the hub core (alone, or elected in a cluster).
    pub fn is_hub_node(&self) -> bool {
        self.cluster.get().is_none_or(|c| c.is_hub())
    }

    /// The cluster, when the hub core runs on another node (or on none).
    pub(crate) fn remote_hub(&self) -> Option<Arc<Cluster>> {
        self.cluster.get().filter(|c| !c.is_hub()).cloned()
    }

    /// The node that runs the hub core now, in a cluster (`None`: a
    /// single node, or none is elected).
    pub fn hub_node(&self) -> Option<String> {
        self.cluster.get().and_then(|c| c.hub_node())
    }

    /// Whether this node is in a cluster with no hub node elected now.
    pub fn hub_unknown(&self) -> bool {
        self.cluster.get().is_some_and(|c| c.hub_node().is_none())
    }

    /// Records that `node` (None: nobody) runs the hub now. When it
    /// changed, every socket this node forwarded to the former hub node is
    /// closed (`server.shutdown`, 1001: their links are gone, the clients
    /// rejoin), and if this node was the hub node, its core starts afresh
    /// (its own clients are closed the same way).
    pub fn set_hub_node(&self, node: Option<String>) -> HubChange {
        let Some(cluster) = self.cluster.get() else { return HubChange::Same };
        let me = cluster.bus.node().to_owned();
        let before = std::mem::replace(&mut *lock(&cluster.hub_node), node.clone());
        if before == node {
            return HubChange::Same;
        }
        tracing::info!(node = %me, from = ?before, to = ?node, "the hub node changed");
        self.close_edges(CLOSE_GOING_AWAY, HUB_MOVED);
        if before.as_deref() == Some(me.as_str()) {
            self.reset_core();
            lock(&cluster.remotes).clear();
            return HubChange::Demoted;
        }
        if node.as_deref() == Some(me.as_str()) { HubChange::Promoted } else { HubChange::Moved }
    }

    /// Closes every socket of this node whose hub is another node (a
    /// drain: the clients reconnect elsewhere and resume there).
    pub(crate) fn close_edges(&self, code: u16, reason: &str) {
        let Some(cluster) = self.cluster.get() else { return };
        let edges: Vec<_> = lock(&cluster.edges).drain().collect();
        for (_, queue) in edges {
            let _ = queue.send(Down::Close(code, reason.to_owned()));
        }
    }

    /// Handles one payload another node sent this one over the bus.
    /// Unreadable payloads are logged and dropped.
    pub fn on_bus(self: &Arc<Self>, payload: &[u8]) {
        let Some(cluster) = self.cluster.get() else { return };
        let wire: Wire = match serde_json::from_slice(payload) {
            Ok(wire) => wire,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable message from another node");
                return;
            }
        };
        match wire {
            // An edge that has not yet learnt that this node lost the hub
            // role: serving its connection on a core that no longer runs
            // anything would strand the client, so it is closed at once and
            // reconnects once its node knows the hub node (docs/rules.md C7).
            Wire::Open { from, conn, .. } if !cluster.is_hub() => {
                cluster
                    .bus
                    .send(&from, Wire::Close { conn, code: CLOSE_GOING_AWAY, reason: HUB_MOVED.into() }.encode());
            }
            Wire::Open { from, conn, user, premium } => {
                let (tx, rx) = mpsc::unbounded_channel();
                lock(&cluster.remotes).insert((from.clone(), conn), tx);
                let task = remote::serve(self.clone(), cluster.clone(), from, conn, user, premium, rx);
                self.connections.spawn(task);
            }
            Wire::Frame { from, conn, text } => self.to_remote(cluster, from, conn, Up::Frame(text)),
            Wire::Notice { from, conn, code, message } => {
                self.to_remote(cluster, from, conn, Up::Notice(code, message))
            }
            Wire::Gone { from, conn, closed } => {
                let departure = if closed { Departure::Closed } else { Departure::Dropped };
                if let Some(tx) = lock(&cluster.remotes).remove(&(from, conn)) {
                    let _ = tx.send(Up::Gone(departure));
                }
            }
            Wire::Write { conn, texts } => {
                if let Some(queue) = lock(&cluster.edges).get(&conn) {
                    let _ = queue.send(Down::Write(texts));
                }
            }
            Wire::Close { conn, code, reason } => {
                if let Some(queue) = lock(&cluster.edges).remove(&conn) {
                    let _ = queue.send(Down::Close(code, reason));
                }
            }
            // Not the hub node (any more): the core here holds nothing, so
            // its answer would be wrong (a consultant offline, a session not
            // open) or, for a booked session's opening, harmful.
            Wire::Ask { from, req, .. } if !cluster.is_hub() => {
                if req != 0 {
                    cluster.bus.send(&from, Wire::Answer { req, answer: ask::Answer::NotHub }.encode());
                }
            }
            // A push goes to the core here at once, in the order the bus
            // brought it: a task each could swap two pushes of one booking
            // (docs/protocol.md §7.22).
            Wire::Ask { ask: ask::Ask::NotifyUser { user, msg }, .. } => self.notify_user_here(&user, &msg),
            Wire::Ask { from, req, ask } => {
                let hub = self.clone();
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    let answer = hub.answer(ask).await;
                    if req != 0 {
                        cluster.bus.send(&from, Wire::Answer { req, answer }.encode());
                    }
                });
            }
            Wire::Answer { req, answer } => {
                if let Some(tx) = lock(&cluster.asks).remove(&req) {
                    let _ = tx.send(answer);
                }
            }
        }
    }

    fn to_remote(&self, cluster: &Cluster, from: String, conn: u64, up: Up) {
        match lock(&cluster.remotes).get(&(from.clone(), conn)) {
            Some(tx) => {
                let _ = tx.send(up);
            }
            // Not served here (the hub moved, or it was closed): the edge
            // closes it.
            None => {
                cluster.bus.send(&from, Wire::Close { conn, code: CLOSE_GOING_AWAY, reason: HUB_MOVED.into() }.encode())
            }
        }
    }
}
