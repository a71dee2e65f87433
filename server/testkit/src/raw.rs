//! [`Raw`]: a WebSocket client of the signaling socket without the SDK, for
//! malformed input, floods and exact frames.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parley_domain::protocol::{ErrorCode, ServerEnvelope, ServerMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::WAIT;

/// A raw WebSocket client.
pub struct Raw {
    /// The socket.
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// From the connection's `hello`.
    pub resume_token: String,
    /// The `seq` of the last message received.
    pub last_seq: u64,
}

impl Raw {
    /// Sends one text frame.
    pub async fn send(&mut self, text: impl Into<String>) {
        self.ws.send(Message::Text(text.into().into())).await.expect("send");
    }

    /// The next server message (skipping pings).
    pub async fn recv(&mut self) -> ServerEnvelope {
        loop {
            if let Message::Text(t) = self.next_frame("message").await {
                return self.read(&t);
            }
        }
    }

    /// The next frame within [`WAIT`] (`what` names it when it does not
    /// come); a close frame panics.
    async fn next_frame(&mut self, what: &str) -> Message {
        let timed = tokio::time::timeout(WAIT, self.ws.next()).await;
        match timed.unwrap_or_else(|_| panic!("{what} in time")).expect("open").expect("ok") {
            Message::Close(f) => panic!("closed: {f:?}"),
            frame => frame,
        }
    }

    /// A server message's text, its `seq` noted in `last_seq`.
    fn read(&mut self, text: &str) -> ServerEnvelope {
        let env: ServerEnvelope = serde_json::from_str(text).expect("server JSON");
        self.last_seq = env.seq;
        env
    }

    /// Skips messages until `pick` accepts one.
    pub async fn recv_until<T>(&mut self, mut pick: impl FnMut(&ServerMessage) -> Option<T>) -> T {
        loop {
            let env = self.recv().await;
            if let Some(t) = pick(&env.msg) {
                return t;
            }
        }
    }

    /// The next message, which must be an error: its id and code.
    pub async fn recv_error(&mut self) -> (Option<String>, ErrorCode, String) {
        match self.recv().await.msg {
            ServerMessage::Error { id, code, message } => (id, code, message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// The next server message within `wait` (skipping pings), or `None`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<ServerEnvelope> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()?;
            match msg.expect("open").expect("ok") {
                Message::Text(t) => return Some(self.read(&t)),
                Message::Close(f) => panic!("closed: {f:?}"),
                _ => {}
            }
        }
    }

    /// Reads until the server's next WebSocket ping and returns the `seq`
    /// it asks the client to confirm (its 8-byte payload,
    /// docs/protocol.md §8.7); messages read on the way count in
    /// `last_seq`. The pong is written before the next frame this client
    /// sends or with its next read.
    pub async fn recv_ping(&mut self) -> u64 {
        loop {
            match self.next_frame("ping").await {
                Message::Ping(payload) => return u64::from_be_bytes(payload[..].try_into().expect("an 8-byte seq")),
                Message::Text(t) => {
                    self.read(&t);
                }
                _ => {}
            }
        }
    }

    /// Reads until the server's close frame, within [`WAIT`], skipping
    /// whatever comes before it; returns its code (`None`: a close with no
    /// payload).
    pub async fn recv_close(&mut self) -> Option<u16> {
        let close = tokio::time::timeout(WAIT, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Close(frame))) => return frame,
                    Some(Ok(_)) => {}
                    other => panic!("expected a close frame, got {other:?}"),
                }
            }
        });
        close.await.expect("close frame in time").map(|f| u16::from(f.code))
    }

    /// Sends ping requests until one is acked: proof the connection works.
    /// A ping the rate limit dropped gets no answer (docs/protocol.md §8.8),
    /// so another is sent after 500 ms without one, for up to [`WAIT`].
    pub async fn assert_alive(&mut self, id: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        for attempt in 0.. {
            assert!(tokio::time::Instant::now() < deadline, "no ping acked within {WAIT:?}");
            self.send(format!(r#"{{"type":"ping","id":"{id}.{attempt}"}}"#)).await;
            while let Some(env) = self.recv_within(Duration::from_millis(500)).await {
                match env.msg {
                    ServerMessage::Ack { id: got, .. } if got.starts_with(&format!("{id}.")) => return,
                    ServerMessage::Error { id: None, code: ErrorCode::RateLimited, .. } => {}
                    other => panic!("expected the ping's ack, got {other:?}"),
                }
            }
        }
    }
}
