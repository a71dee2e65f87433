//! The hub node's side of a connection whose socket is on another node:
//! the same [`Conn`] a local socket gets (parsing, dispatch, acks, resume,
//! the link's numbered messages), fed by the edge's frames instead of a
//! socket and writing through [`RemoteOut`].

use std::sync::Arc;

use parley_domain::protocol::UserInfo;
use tokio::sync::{Notify, mpsc};

use super::{Cluster, RemoteOut, Up, Wire};
use crate::connection::{Conn, Departure, Flow, Out, send_error};
use crate::error::SignalError;
use crate::hub::{CLOSE_GOING_AWAY, CLOSE_RECORDER_CONNECTED, Hub, Refusal};

/// Serves edge `edge`'s connection `conn` of `user` until the edge says it
/// is gone or the hub closes it.
pub(crate) async fn serve(
    hub: Arc<Hub>,
    cluster: Arc<Cluster>,
    edge: String,
    conn: u64,
    user: UserInfo,
    premium: bool,
    mut input: mpsc::UnboundedReceiver<Up>,
) {
    let conn_id = hub.next_id();
    let wake = Arc::new(Notify::new());
    let link = match hub.connect(user, premium, conn_id, wake.clone()) {
        Ok(link) => link,
        Err(refusal) => {
            let (code, reason) = match refusal {
                Refusal::ShuttingDown => (CLOSE_GOING_AWAY, "server shutting down"),
                Refusal::RecorderConnected => (CLOSE_RECORDER_CONNECTED, "another connection of this recorder is live"),
            };
            cluster.forget_remote(&edge, conn);
            cluster.bus.send(&edge, Wire::Close { conn, code, reason: reason.into() }.encode());
            return;
        }
    };
    let out = Out::Remote(RemoteOut::new(cluster.clone(), edge.clone(), conn));
    let mut c = Conn::remote(hub, conn_id, link, wake, out);
    let departure = loop {
        tokio::select! {
            up = input.recv() => match up {
                Some(Up::Frame(text)) => c.on_text(&text).await,
                Some(Up::Notice(code, message)) => send_error(&c.link, None, SignalError::new(code, message)),
                Some(Up::Gone(departure)) => break departure,
                // The hub moved away from this node.
                None => break Departure::Dropped,
            },
            _ = c.wake.notified() => {
                if let Flow::Stop = c.write().await {
                    break Departure::Dropped;
                }
            }
        }
    };
    cluster.forget_remote(&edge, conn);
    c.hub.disconnect(&c.link, c.conn_id, departure);
}
