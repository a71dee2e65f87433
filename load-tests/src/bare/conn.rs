//! One WebSocket connection: this task reads and handles the client's
//! frames; a writer task of its own drains the connection's queue.

use std::sync::Arc;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use parley_domain::protocol::{
    AckResult, ClientEnvelope, ClientMessage, ErrorCode, ServerEnvelope, ServerMessage, UserInfo,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::Shared;
use super::state::{Refused, Tx, unix_ms};

/// Messages written before a flush, at most.
const MAX_BATCH: usize = 64;

/// Serves `user`'s connection until it closes, then forgets it.
pub(super) async fn serve(ws: WebSocketStream<TcpStream>, user: UserInfo, shared: Arc<Shared>) {
    let (sink, mut stream) = ws.split();
    let (tx, rx) = mpsc::unbounded_channel();
    let conn = shared.state().connect(&user, tx.clone());
    let writer = tokio::spawn(write_loop(sink, rx));
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(Message::Text(text)) => handle(&shared, &user, &tx, &text),
            Ok(Message::Binary(_)) => {
                let message = "binary frames are not part of the protocol".to_owned();
                let _ = tx.send(ServerMessage::Error { id: None, code: ErrorCode::BinaryNotSupported, message });
            }
            // tungstenite answers pings itself; after a close frame the
            // next read sends the reply and ends the stream.
            Ok(_) => {}
            Err(_) => break,
        }
    }
    shared.state().disconnect(&user.id, conn);
    writer.abort();
}

/// Writes what is queued for the connection: each message with the next
/// `seq`, everything already queued (up to [`MAX_BATCH`]) before one flush.
async fn write_loop(
    mut sink: SplitSink<WebSocketStream<TcpStream>, Message>,
    mut rx: mpsc::UnboundedReceiver<ServerMessage>,
) {
    let mut seq = 0;
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(msg) = next {
            seq += 1;
            let text = serde_json::to_string(&ServerEnvelope { seq, msg }).expect("server messages serialise");
            if sink.feed(Message::Text(text.into())).await.is_err() {
                return;
            }
            written += 1;
            next = if written < MAX_BATCH { rx.try_recv().ok() } else { None };
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

/// Handles one text frame: a relay, a request (answered with `ack` when it
/// has an `id`), or an `error`.
fn handle(shared: &Shared, me: &UserInfo, tx: &Tx, text: &str) {
    let ClientEnvelope { id, msg } = match serde_json::from_str(text) {
        Ok(env) => env,
        Err(e) => {
            let _ = tx.send(ServerMessage::Error { id: None, code: ErrorCode::InvalidField, message: e.to_string() });
            return;
        }
    };
    let from = || me.id.clone();
    let outcome: Result<Option<AckResult>, Refused> = match msg {
        ClientMessage::IceCandidate { session_id, candidate, to: None } => {
            shared.state().relay(&me.id, ServerMessage::IceCandidate { session_id, from: from(), candidate }).map(none)
        }
        ClientMessage::SdpOffer { session_id, sdp, to: None } => {
            shared.state().relay(&me.id, ServerMessage::SdpOffer { session_id, from: from(), sdp }).map(none)
        }
        ClientMessage::SdpAnswer { session_id, sdp, to: None } => {
            shared.state().relay(&me.id, ServerMessage::SdpAnswer { session_id, from: from(), sdp }).map(none)
        }
        ClientMessage::IceCandidate { .. } | ClientMessage::SdpOffer { .. } | ClientMessage::SdpAnswer { .. } => {
            Err((ErrorCode::Forbidden, "the bare relay has no recorder to address with `to`"))
        }
        ClientMessage::PresenceSet { status } => shared.state().set_presence(me, status).map(none),
        ClientMessage::CallRequest { consultant_id, .. } => shared.state().request_call(me, &consultant_id).map(Some),
        ClientMessage::CallAccept { call_id } => shared.state().accept_call(me, &call_id).map(none),
        ClientMessage::RoomJoin { session_id } => shared.state().join(me, &session_id).map(Some),
        ClientMessage::SessionEnd { session_id } => shared.state().end_session(&me.id, &session_id).map(none),
        ClientMessage::Ping => Ok(Some(AckResult::Pong { server_time_ms: unix_ms() })),
        _ => Err((ErrorCode::UnknownType, "not supported by the bare relay")),
    };
    let reply = match (outcome, id) {
        (Ok(result), Some(id)) => ServerMessage::Ack { id, result },
        (Ok(_), None) => return,
        (Err((code, message)), id) => ServerMessage::Error { id, code, message: message.to_owned() },
    };
    let _ = tx.send(reply);
}

/// No ack result.
fn none(_: ()) -> Option<AckResult> {
    None
}
