//! Delivery: "where is this client connected, get this message to it". The
//! core names clients by link handle; a [`Delivery`] carries the messages.
//! [`Local`] delivers to the links of this process; a cross-node
//! implementation (a handle naming a node, messages through a broker) can
//! sit behind the same core.

use std::sync::Arc;

use parley_domain::protocol::ServerMessage;

use super::core::LinkRef;
use crate::link::Link;

/// Carries the core's messages to clients.
pub(crate) trait Delivery {
    /// How the core names a client's link.
    type Link: LinkRef;
    /// Queues `msg` for `to` (never blocks, never awaits).
    fn send(&self, to: &Self::Link, msg: &ServerMessage);
    /// Queues the message `write` appends in JSON form (one object, a
    /// `ServerMessage`'s shape) for `to`: the relay's fast path.
    fn send_json(&self, to: &Self::Link, write: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>);
    /// Closes `to`'s connection with `code` once its queue is written.
    fn close(&self, to: &Self::Link, code: u16, reason: &'static str);
}

/// A link of this process. Equal when it is the same link.
#[derive(Debug, Clone)]
pub(crate) struct LocalLink(pub Arc<Link>);

impl PartialEq for LocalLink {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for LocalLink {
    type Target = Link;

    fn deref(&self) -> &Link {
        &self.0
    }
}

impl LinkRef for LocalLink {
    fn resume_token(&self) -> &str {
        &self.0.resume_token
    }

    fn is_used(&self) -> bool {
        self.0.is_used()
    }
}

/// In-process delivery: straight onto the link's queue.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Local;

impl Delivery for Local {
    type Link = LocalLink;

    fn send(&self, to: &LocalLink, msg: &ServerMessage) {
        to.0.send(msg);
    }

    fn send_json(&self, to: &LocalLink, write: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>) {
        to.0.send_json(write);
    }

    fn close(&self, to: &LocalLink, code: u16, reason: &'static str) {
        to.0.close(code, reason);
    }
}
