//! One WebSocket connection, one task: it reads and handles the client's
//! frames and writes what is queued for the connection.

use std::sync::Arc;

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

/// Serves `user`'s connection until it closes, then forgets it: reads and
/// handles the client's frames and, in between, writes what other
/// connections queued for it.
pub(super) async fn serve(mut ws: WebSocketStream<TcpStream>, user: UserInfo, shared: Arc<Shared>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let conn = shared.state().connect(&user, tx.clone());
    let mut seq = 0;
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => handle(&shared, &user, &tx, &text),
                Some(Ok(Message::Binary(_))) => {
                    let message = "binary frames are not part of the protocol".to_owned();
                    let _ = tx.send(ServerMessage::Error { id: None, code: ErrorCode::BinaryNotSupported, message });
                }
                // tungstenite answers pings itself; after a close frame the
                // next read sends the reply and ends the stream.
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            Some(first) = rx.recv() => {
                if write(&mut ws, &mut rx, first, &mut seq).await.is_err() {
                    break;
                }
            }
        }
    }
    shared.state().disconnect(&user.id, conn);
}

/// Writes `first` and whatever else is queued (up to [`MAX_BATCH`]), each
/// with the connection's next `seq`, then flushes once.
async fn write(
    ws: &mut WebSocketStream<TcpStream>,
    rx: &mut mpsc::UnboundedReceiver<ServerMessage>,
    first: ServerMessage,
    seq: &mut u64,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let mut next = Some(first);
    let mut written = 0;
    while let Some(msg) = next {
        *seq += 1;
        let text = serde_json::to_string(&ServerEnvelope { seq: *seq, msg }).expect("server messages serialise");
        ws.feed(Message::Text(text.into())).await?;
        written += 1;
        next = if written < MAX_BATCH { rx.try_recv().ok() } else { None };
    }
    ws.flush().await
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
