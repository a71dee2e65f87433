//! One WebSocket connection: reads frames, enforces size and rate limits,
//! parses and dispatches requests to the [`Hub`], and writes what the link
//! queues. Malformed input is answered with an `error` and the connection
//! goes on (DESIGN.md §3).

use std::borrow::Cow;
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use crate::auth::Identity;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use governor::clock::QuantaClock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parley_domain::protocol::{AckResult, ClientEnvelope, ClientMessage, ErrorCode, MAX_FRAME_BYTES, ServerMessage};
use tokio::sync::Notify;

use crate::error::SignalError;
use crate::hub::{CLOSE_GOING_AWAY, Hub};
use crate::link::{Link, Take};
use crate::metrics;

/// Longest request id accepted, bytes.
const MAX_REQUEST_ID: usize = 64;
/// Messages written per flush, at most.
const WRITE_BATCH: usize = 64;
/// Close code for a message over [`crate::WS_MAX_MESSAGE_BYTES`] (RFC 6455 "message too big").
pub const CLOSE_TOO_BIG: u16 = 1009;
/// How long one batch of writes may wait on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code for a connection silent for three ping intervals.
pub const CLOSE_IDLE: u16 = 4001;

/// How a connection ended, as far as its user's state is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Departure {
    /// The client sent a close frame: it is gone on purpose (no resume).
    Closed,
    /// The connection was lost (or closed by the server): the link waits
    /// the grace period for `resume`.
    Dropped,
}

/// What the write side decided.
enum Flow {
    Continue,
    Stop,
}

/// One connection's state besides the read half.
struct Conn {
    hub: Arc<Hub>,
    conn_id: u64,
    link: Arc<Link>,
    /// Woken by the link when it has messages for this connection.
    wake: Arc<Notify>,
    sink: SplitSink<WebSocket, Message>,
    limiter: Option<DefaultDirectRateLimiter>,
    /// When the last id-less `rate_limited` error was sent.
    rate_limited_at: Option<Instant>,
    /// No message has been processed yet (`resume` is allowed).
    first: bool,
}

/// Serves one authenticated WebSocket until it closes.
pub(crate) async fn serve(socket: WebSocket, hub: Arc<Hub>, identity: Identity) {
    let conn_id = hub.next_id();
    let wake = Arc::new(Notify::new());
    let (mut sink, mut stream) = socket.split();
    let Some(link) = hub.connect(identity.user, identity.premium, conn_id, wake.clone()) else {
        let close = CloseFrame { code: CLOSE_GOING_AWAY, reason: "server shutting down".into() };
        let _ = sink.send(Message::Close(Some(close))).await;
        return;
    };
    metrics::connection_opened();
    // A recorder carries the signals of every session it records on its
    // one connection (offers and candidates for each participant), so the
    // per-client limit would drop them and lose recordings: recorders are
    // trusted services (their tokens come from the operator) and are not
    // limited.
    let limiter = (link.user.role != parley_domain::protocol::Role::Recorder)
        .then(|| limiter(hub.cfg.rate_limit_per_sec, hub.cfg.rate_limit_burst));
    let ping_every = hub.cfg.ping_interval;
    let mut conn = Conn { hub, conn_id, link, wake, sink, limiter, rate_limited_at: None, first: true };
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut last_heard = Instant::now();

    let departure = loop {
        tokio::select! {
            frame = stream.next() => {
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = Instant::now();
                        conn.on_text(&text).await;
                    }
                    Some(Ok(Message::Binary(_))) => {
                        last_heard = Instant::now();
                        let e = SignalError::new(ErrorCode::BinaryNotSupported, "binary frames are not part of the protocol; send JSON text");
                        send_error(&conn.link, None, e);
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => last_heard = Instant::now(),
                    Some(Ok(Message::Close(_))) => break Departure::Closed,
                    None => break Departure::Dropped,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket read failed");
                        if e.to_string().contains("Message too long") {
                            conn.close(CLOSE_TOO_BIG, "message over 1 MiB").await;
                        }
                        break Departure::Dropped;
                    }
                }
            }
            _ = conn.wake.notified() => {
                if let Flow::Stop = conn.write().await {
                    break Departure::Dropped;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > ping_every * 3 {
                    tracing::debug!(user = %conn.link.user.id, "no traffic for three ping intervals; closing");
                    conn.close(CLOSE_IDLE, "no traffic for three ping intervals").await;
                    break Departure::Dropped;
                }
                if conn.sink.send(Message::Ping(Default::default())).await.is_err() {
                    break Departure::Dropped;
                }
            }
        }
    };
    conn.hub.disconnect(&conn.link, conn.conn_id, departure);
    metrics::connection_closed();
}

impl Conn {
    /// Handles one text frame: limits, parsing, dispatch, reply.
    async fn on_text(&mut self, text: &str) {
        if text.len() > MAX_FRAME_BYTES {
            let message = format!("frame is {} bytes; at most {MAX_FRAME_BYTES} allowed", text.len());
            send_error(&self.link, None, SignalError::new(ErrorCode::FrameTooLarge, message));
            return;
        }
        if self.limiter.as_ref().is_some_and(|l| l.check().is_err()) {
            self.rate_limited(text);
            return;
        }
        let envelope = match parse(text) {
            Ok(env) => env,
            Err((id, e)) => return send_error(&self.link, id, e),
        };
        metrics::received(envelope.msg.type_name());
        if envelope.id.is_none() && needs_id(&envelope.msg) {
            let message = format!("`id` is required for {}: its ack carries the result", envelope.msg.type_name());
            return send_error(&self.link, None, SignalError::new(ErrorCode::MissingField, message));
        }
        let first = std::mem::replace(&mut self.first, false);
        if let ClientMessage::Resume { resume_token, last_seq } = envelope.msg {
            return self.resume(first, envelope.id, &resume_token, last_seq).await;
        }
        // Boxed: keeps the idle connection's future small.
        let mut id = envelope.id;
        match Box::pin(self.hub.handle(&self.link, &mut id, envelope.msg)).await {
            Ok(result) => {
                if let Some(id) = id {
                    self.link.send(&ServerMessage::Ack { id, result });
                }
            }
            Err(e) => send_error(&self.link, id, e),
        }
    }

    /// A message over the rate limit is dropped. One with an `id` is
    /// answered (every request gets exactly one reply); id-less ones get
    /// one error per second at most, so a flood is not echoed.
    fn rate_limited(&mut self, text: &str) {
        let id = serde_json::from_str::<IdOnly>(text)
            .ok()
            .and_then(|m| m.id)
            .filter(|id| id.len() <= MAX_REQUEST_ID)
            .map(Cow::into_owned);
        let now = Instant::now();
        if id.is_none() && self.rate_limited_at.is_some_and(|at| now.duration_since(at) < Duration::from_secs(1)) {
            return;
        }
        if id.is_none() {
            self.rate_limited_at = Some(now);
        }
        let cfg = &self.hub.cfg;
        let message = format!(
            "more than {} messages per second (burst {}); this message was dropped",
            cfg.rate_limit_per_sec, cfg.rate_limit_burst
        );
        send_error(&self.link, id, SignalError::new(ErrorCode::RateLimited, message));
    }

    /// `resume`: take over the dropped link named by the token.
    async fn resume(&mut self, first: bool, id: Option<String>, token: &str, last_seq: u64) {
        if !first {
            let e = SignalError::new(ErrorCode::ResumeNotFirst, "resume must be the first message on a connection");
            return send_error(&self.link, id, e);
        }
        // What the provisional link still holds (its hello) goes out first,
        // whichever link the connection writes afterwards.
        let mut pending = Vec::new();
        self.link.take(self.conn_id, &mut pending, usize::MAX);
        for text in pending {
            let _ = self.sink.feed(Message::Text(text)).await;
        }
        match self.hub.resume(&self.link, self.conn_id, self.wake.clone(), token, last_seq) {
            Ok((old, replayed)) => {
                self.link = old;
                if let Some(id) = id {
                    self.link.send(&ServerMessage::Ack { id, result: Some(AckResult::Resumed { replayed }) });
                }
            }
            Err(e) => send_error(&self.link, id, e),
        }
    }

    /// Writes what the link has for this connection (up to a batch; the
    /// link wakes it again for more), flushes, and closes when told to. A
    /// client that does not read for [`WRITE_TIMEOUT`] is dropped: its
    /// messages stay in the link for `resume`.
    async fn write(&mut self) -> Flow {
        let mut batch = Vec::new();
        let what = self.link.take(self.conn_id, &mut batch, WRITE_BATCH);
        metrics::sent(batch.len() as u64);
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            for text in batch {
                self.sink.feed(Message::Text(text)).await?;
            }
            self.sink.flush().await
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::debug!(user = %self.link.user.id, "write failed or timed out");
            return Flow::Stop;
        }
        match what {
            Take::Write => Flow::Continue,
            Take::Close(code, reason) => {
                self.close(code, reason).await;
                Flow::Stop
            }
        }
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let _ = self.sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
    }
}

/// Requests whose ack carries a result: without an `id` the client could
/// not receive it, so the id is required.
fn needs_id(msg: &ClientMessage) -> bool {
    matches!(
        msg,
        ClientMessage::CallRequest { .. }
            | ClientMessage::RoomJoin { .. }
            | ClientMessage::Resume { .. }
            | ClientMessage::Ping
    )
}

/// A connection's rate limiter. All share one clock: building a clock per
/// connection calibrates it with `cpuid` each time, which cost 13% of the
/// server's CPU while accepting connections (perf, parley-load signal).
fn limiter(per_sec: u32, burst: u32) -> DefaultDirectRateLimiter {
    static CLOCK: LazyLock<QuantaClock> = LazyLock::new(QuantaClock::default);
    let per_sec = NonZeroU32::new(per_sec.max(1)).expect("max(1)");
    let burst = NonZeroU32::new(burst.max(1)).expect("max(1)");
    RateLimiter::direct_with_clock(Quota::per_second(per_sec).allow_burst(burst), CLOCK.clone())
}

fn send_error(link: &Link, id: Option<String>, e: SignalError) {
    metrics::error(e.code);
    link.send(&ServerMessage::Error { id, code: e.code, message: e.message });
}

/// Parses a text frame; on failure says why with a stable code, and the
/// request id when one could be read.
///
/// Two passes — the message, then its `id` alone — cost less than one pass
/// through [`ClientEnvelope`], whose `flatten` makes serde buffer and clone
/// the whole message (measured on the relay path).
pub(crate) fn parse(text: &str) -> Result<ClientEnvelope, (Option<String>, SignalError)> {
    let msg = serde_json::from_str::<ClientMessage>(text).map_err(|e| classify(text, e))?;
    let id = serde_json::from_str::<IdOnly>(text).map_err(|e| classify(text, e))?.id.map(Cow::into_owned);
    if id.as_ref().is_some_and(|id| id.len() > MAX_REQUEST_ID) {
        let e = SignalError::new(ErrorCode::InvalidField, format!("id: at most {MAX_REQUEST_ID} bytes"));
        return Err((None, e));
    }
    Ok(ClientEnvelope { id, msg })
}

/// A frame's request id alone; every other field is skipped.
#[derive(serde::Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
}

/// Explains a parse failure (cold path: the frame is parsed again loosely).
fn classify(text: &str, e: serde_json::Error) -> (Option<String>, SignalError) {
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(text) else {
        return (None, SignalError::new(ErrorCode::MalformedJson, format!("not a JSON object: {e}")));
    };
    let id = obj.get("id").and_then(|v| v.as_str()).filter(|s| s.len() <= MAX_REQUEST_ID).map(str::to_owned);
    let err = match obj.get("type") {
        None => SignalError::new(ErrorCode::MissingField, "missing field `type`"),
        Some(serde_json::Value::String(t)) if !ClientMessage::TYPES.contains(&t.as_str()) => {
            SignalError::new(ErrorCode::UnknownType, format!("unknown message type {t:?}"))
        }
        Some(serde_json::Value::String(t)) => {
            let detail = e.to_string();
            let code =
                if detail.starts_with("missing field") { ErrorCode::MissingField } else { ErrorCode::InvalidField };
            SignalError::new(code, format!("{t}: {detail}"))
        }
        Some(_) => SignalError::new(ErrorCode::InvalidField, "`type` must be a string"),
    };
    (id, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> (Option<String>, ErrorCode) {
        let (id, e) = parse(text).unwrap_err();
        (id, e.code)
    }

    #[test]
    fn parse_errors_have_stable_codes_and_keep_the_request_id() {
        assert_eq!(code("{not json"), (None, ErrorCode::MalformedJson));
        assert_eq!(code("[1,2]"), (None, ErrorCode::MalformedJson));
        assert_eq!(code(r#"{"id":"a"}"#), (Some("a".into()), ErrorCode::MissingField));
        assert_eq!(code(r#"{"id":"b","type":"call.teleport"}"#), (Some("b".into()), ErrorCode::UnknownType));
        assert_eq!(code(r#"{"id":"c","type":"call.request"}"#), (Some("c".into()), ErrorCode::MissingField));
        assert_eq!(
            code(r#"{"id":"d","type":"call.request","consultant_id":"a b"}"#),
            (Some("d".into()), ErrorCode::InvalidField)
        );
        assert_eq!(
            code(r#"{"id":"e","type":"presence.set","status":"dancing"}"#),
            (Some("e".into()), ErrorCode::InvalidField)
        );
        assert_eq!(code(r#"{"type":7}"#), (None, ErrorCode::InvalidField));
        assert_eq!(code(r#"{"type":"ping","id":5}"#), (None, ErrorCode::InvalidField));
        let long = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(65));
        assert_eq!(code(&long), (None, ErrorCode::InvalidField));
    }

    #[test]
    fn a_valid_frame_parses() {
        let env = parse(r#"{"id":"1","type":"room.join","session_id":"ses_1"}"#).unwrap();
        assert_eq!(env.id.as_deref(), Some("1"));
        assert_eq!(env.msg.type_name(), "room.join");
        let env = parse(r#"{"type":"ping","id":"a\"b"}"#).unwrap();
        assert_eq!(env.id.as_deref(), Some("a\"b"), "escaped ids are read too");
    }
}
