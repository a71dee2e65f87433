//! Raw signaling connections for the `signal` scenario: tokio-tungstenite
//! with small buffers (thousands of idle connections), the bearer token in
//! the `Authorization` header, JSON frames of the domain protocol.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use parley_domain::protocol::{
    ClientEnvelope, ClientMessage, ErrorBody, ErrorCode, ServerEnvelope, ServerMessage, UserInfo,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::clock::now_ns;

pub mod raw;

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a connection could not be opened; `kind` is a short category for
/// the report's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenError {
    /// `connect`, `http_<status>`, `hello_timeout`, `hello` …
    pub kind: String,
    /// Details.
    pub message: String,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for OpenError {}

fn open_error(kind: impl Into<String>, message: impl Into<String>) -> OpenError {
    OpenError { kind: kind.into(), message: message.into() }
}

/// Small buffers: the default 128 KiB read buffer per connection would
/// dominate the client's memory with 10,000 connections.
fn config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(0)
}

/// Opens an authenticated connection and reads its `hello`, within `timeout`.
pub async fn open(ws_url: &str, token: &str, timeout: Duration) -> Result<(Ws, UserInfo), OpenError> {
    tokio::time::timeout(timeout, async {
        let mut request = ws_url.into_client_request().map_err(|e| open_error("request", e.to_string()))?;
        let bearer =
            format!("Bearer {token}").parse().map_err(|_| open_error("request", "token is not a header value"))?;
        request.headers_mut().insert("authorization", bearer);
        let mut ws = match tokio_tungstenite::connect_async_with_config(request, Some(config()), true).await {
            Ok((ws, _)) => ws,
            Err(tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp.body().as_deref().unwrap_or_default();
                let detail = serde_json::from_slice::<ErrorBody>(body)
                    .map(|b| format!("{}: {}", b.code.as_str(), b.message))
                    .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
                return Err(open_error(format!("http_{status}"), detail));
            }
            Err(e) => return Err(open_error("connect", e.to_string())),
        };
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let env: ServerEnvelope =
                        serde_json::from_str(&text).map_err(|e| open_error("hello", e.to_string()))?;
                    return match env.msg {
                        ServerMessage::Hello { user, .. } => Ok((ws, user)),
                        other => Err(open_error("hello", format!("expected hello, got {other:?}"))),
                    };
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(open_error("closed", format!("closed before hello: {frame:?}")));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(open_error("connect", e.to_string())),
                None => return Err(open_error("closed", "closed before hello")),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(open_error("timeout", format!("no hello within {timeout:?}"))))
}

/// `msg` with request id `id` as a text frame.
pub fn frame(id: Option<&str>, msg: ClientMessage) -> Message {
    let env = ClientEnvelope { id: id.map(str::to_owned), msg };
    Message::Text(serde_json::to_string(&env).expect("client messages serialise").into())
}

/// A server message as received, stamped with its arrival time.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// [`now_ns`] when the frame was read.
    pub at_ns: u64,
    /// The message.
    pub msg: ServerMessage,
}

static RATE_LIMIT_WARNED: AtomicBool = AtomicBool::new(false);

/// Printed (once) when the server drops messages for the rate limit.
pub const RATE_LIMIT_WARNING: &str = "parley-load: warning: the server is rate-limiting (error code rate_limited): \
     messages are being dropped and the figures understate it. For throughput runs start the server with \
     PARLEY_RATE_LIMIT_PER_SEC=1000000 PARLEY_RATE_LIMIT_BURST=1000000";

/// What a reader task saw besides what it forwarded.
#[derive(Debug, Default, Clone)]
pub struct ReaderEnd {
    /// `error` messages by code.
    pub errors: crate::report::Counts,
    /// Whether the server closed the connection (or it broke) before we
    /// stopped reading.
    pub closed_by_server: bool,
}

/// Reads `stream` until `stop` turns true, the connection ends, or
/// `deadline`: stamps each message on arrival and forwards it on `tx` (if
/// any), counts `error`s. Reading also answers the server's pings.
pub async fn read_loop(
    mut stream: SplitStream<Ws>,
    tx: Option<mpsc::UnboundedSender<Incoming>>,
    mut stop: watch::Receiver<bool>,
    deadline: Instant,
) -> ReaderEnd {
    let mut end = ReaderEnd::default();
    loop {
        tokio::select! {
            biased;
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let at_ns = now_ns();
                    let Ok(env) = serde_json::from_str::<ServerEnvelope>(&text) else {
                        crate::report::bump(&mut end.errors, "unparsable_server_message");
                        continue;
                    };
                    if let ServerMessage::Error { code, .. } = &env.msg {
                        crate::report::bump(&mut end.errors, code.as_str());
                        if *code == ErrorCode::RateLimited && !RATE_LIMIT_WARNED.swap(true, Ordering::Relaxed) {
                            eprintln!("{RATE_LIMIT_WARNING}");
                        }
                    }
                    if let Some(tx) = &tx {
                        let _ = tx.send(Incoming { at_ns, msg: env.msg });
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    end.closed_by_server = !*stop.borrow();
                    return end;
                }
                Some(Ok(_)) => {}
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return end;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return end,
        }
    }
}

/// What [`Peer::recv`] got.
#[derive(Debug)]
pub enum Recv {
    /// A message.
    Msg(Incoming),
    /// Nothing before the deadline.
    Timeout,
    /// The connection (its reader) has ended.
    Closed,
}

/// One side of a call in the `signal` scenario: the write half, and the
/// stamped messages its reader task forwards.
pub struct Peer {
    /// Who this is.
    pub user: UserInfo,
    sink: SplitSink<Ws, Message>,
    rx: mpsc::UnboundedReceiver<Incoming>,
    reader: tokio::task::JoinHandle<ReaderEnd>,
    next_id: u64,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("user", &self.user.id).finish()
    }
}

impl Peer {
    /// Opens a connection and starts its reader task, which runs until
    /// `stop`, the connection's end, or `deadline`.
    pub async fn open(
        ws_url: &str,
        token: &str,
        timeout: Duration,
        stop: watch::Receiver<bool>,
        deadline: Instant,
    ) -> Result<Peer, OpenError> {
        let (ws, user) = open(ws_url, token, timeout).await?;
        let (sink, stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(stream, Some(tx), stop, deadline));
        Ok(Peer { user, sink, rx, reader, next_id: 1 })
    }

    /// A fresh request id.
    pub fn next_id(&mut self) -> String {
        let id = format!("r{}", self.next_id);
        self.next_id += 1;
        id
    }

    /// Sends `msg` (with request id `id`) and flushes.
    pub async fn send(&mut self, id: Option<&str>, msg: ClientMessage) -> anyhow::Result<()> {
        self.sink.send(frame(id, msg)).await.map_err(|e| anyhow::anyhow!("{}: send failed: {e}", self.user.id))
    }

    /// Queues `msg` without flushing (see [`Peer::flush`]).
    pub async fn feed(&mut self, msg: ClientMessage) -> anyhow::Result<()> {
        self.sink.feed(frame(None, msg)).await.map_err(|e| anyhow::anyhow!("{}: send failed: {e}", self.user.id))
    }

    /// Flushes queued messages.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.sink.flush().await.map_err(|e| anyhow::anyhow!("{}: send failed: {e}", self.user.id))
    }

    /// The next message, waiting until `deadline`.
    pub async fn recv(&mut self, deadline: Instant) -> Recv {
        match tokio::time::timeout_at(deadline, self.rx.recv()).await {
            Err(_) => Recv::Timeout,
            Ok(None) => Recv::Closed,
            Ok(Some(m)) => Recv::Msg(m),
        }
    }

    /// The `error` answering request `id` among the messages already
    /// received, if any (skips the others).
    pub fn pending_error(&mut self, id: &str) -> Option<String> {
        while let Ok(m) = self.rx.try_recv() {
            if let ServerMessage::Error { id: Some(got), code, message } = &m.msg
                && got == id
            {
                return Some(format!("{}: {message}", code.as_str()));
            }
        }
        None
    }

    /// Waits until `deadline` for the first message `pick` accepts,
    /// skipping others. An `error` answering request `fail_on` fails at once.
    pub async fn recv_until<T>(
        &mut self,
        deadline: Instant,
        what: &str,
        fail_on: Option<&str>,
        mut pick: impl FnMut(&Incoming) -> Option<T>,
    ) -> anyhow::Result<T> {
        loop {
            let incoming = match self.recv(deadline).await {
                Recv::Timeout => anyhow::bail!("{}: timed out waiting for {what}", self.user.id),
                Recv::Closed => anyhow::bail!("{}: connection closed while waiting for {what}", self.user.id),
                Recv::Msg(m) => m,
            };
            if let (Some(want), ServerMessage::Error { id: Some(id), code, message }) = (fail_on, &incoming.msg)
                && id == want
            {
                anyhow::bail!("{}: {what} refused: {}: {message}", self.user.id, code.as_str());
            }
            if let Some(t) = pick(&incoming) {
                return Ok(t);
            }
        }
    }

    /// Waits for the `ack` of request `id` and returns its result.
    pub async fn ack(
        &mut self,
        id: &str,
        deadline: Instant,
        what: &str,
    ) -> anyhow::Result<Option<parley_domain::protocol::AckResult>> {
        Ok(self.ack_at(id, deadline, what).await?.0)
    }

    /// [`Peer::ack`], with when the ack was read ([`Incoming::at_ns`]).
    pub async fn ack_at(
        &mut self,
        id: &str,
        deadline: Instant,
        what: &str,
    ) -> anyhow::Result<(Option<parley_domain::protocol::AckResult>, u64)> {
        self.recv_until(deadline, what, Some(id), |m| match &m.msg {
            ServerMessage::Ack { id: got, result } if got == id => Some((result.clone(), m.at_ns)),
            _ => None,
        })
        .await
    }

    /// Sends a close frame (within `timeout`), waits up to `timeout` for
    /// the reader to see the connection end, and returns what it saw.
    pub async fn close(mut self, timeout: Duration) -> ReaderEnd {
        let _ = tokio::time::timeout(timeout, self.sink.send(Message::Close(None))).await;
        match tokio::time::timeout(timeout, &mut self.reader).await {
            Ok(Ok(mut end)) => {
                // The server answering our close is not the server closing.
                end.closed_by_server = false;
                end
            }
            _ => {
                self.reader.abort();
                ReaderEnd::default()
            }
        }
    }
}
