//! One WebSocket connection: reads frames, enforces size and rate limits,
//! parses and dispatches requests to the [`Hub`], and writes what the link
//! queues. Malformed input is answered with an `error` and the connection
//! goes on (DESIGN.md §3).
//!
//! Every frame a client sends (text, binary, ping or pong; valid or not)
//! passes the connection's rate limiter before any other work: a frame
//! over the limit is dropped unread and unanswered, except for one
//! `rate_limited` notice per second, and a connection that keeps sending
//! over the limit is closed (docs/protocol.md §8.8).

use std::borrow::Cow;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use crate::WebSocket;
use crate::auth::Identity;
use axum::extract::ws::{CloseFrame, Message};
use futures_util::{SinkExt, StreamExt};
use governor::clock::QuantaClock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parley_domain::protocol::{AckResult, ClientEnvelope, ClientMessage, ErrorCode, MAX_FRAME_BYTES, ServerMessage};
use tokio::sync::Notify;

use crate::error::SignalError;
use crate::hub::{CLOSE_GOING_AWAY, CLOSE_RECORDER_CONNECTED, Handled, Hub, LocalLink, Refusal};
use crate::link::{Link, Take};
use crate::metrics;
use crate::socket::SocketError;

mod confirm;
use confirm::Confirm;

/// Longest request id accepted, bytes.
pub(crate) const MAX_REQUEST_ID: usize = 64;
/// Messages written per flush, at most.
const WRITE_BATCH: usize = 64;
/// Bytes of messages queued per flush, at most (at least one message): the
/// link's messages are copied into the socket's queue without writing
/// any out (`Socket::queue_text`, unlike the socket's `Sink`, which writes
/// its queue out every 8 KiB), and past this the rest waits for the next
/// turn of the connection's loop (a whole replay to resume, say).
const FLUSH_BYTES: usize = 16 * 1024;
/// Close code for a message over [`crate::WS_MAX_MESSAGE_BYTES`] (RFC 6455 "message too big").
pub const CLOSE_TOO_BIG: u16 = 1009;
/// How long one batch of writes may wait on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code for a connection silent for three ping intervals.
pub const CLOSE_IDLE: u16 = 4001;
/// Close code for a connection that kept sending over its rate limit: its
/// dropped frames cost more than [`ABUSE_BURSTS`] bursts in one run of
/// drops (docs/protocol.md §8.8).
pub const CLOSE_RATE_LIMITED: u16 = 4002;
/// A frame costs one unit of the rate limit per started this many bytes
/// (at least one unit, at most the burst), so large frames count by size.
pub const RATE_LIMIT_UNIT_BYTES: usize = 4096;
/// How many bursts' worth of frames a connection may have dropped in one
/// run of drops (drops less than [`DROP_RUN_GAP`] apart) before it is closed
/// with [`CLOSE_RATE_LIMITED`].
pub const ABUSE_BURSTS: u32 = 10;
/// Drops further apart than this start a new run; it is also the least
/// time between two `rate_limited` notices.
const DROP_RUN_GAP: Duration = Duration::from_secs(1);
/// Once this many messages were written and not yet confirmed read, the
/// next write asks the client to confirm them with a ping (its pong frees
/// their room in the replay buffer: [`Link::confirm`]); one ping frame per
/// this many messages at most, besides the keepalive's.
pub const CONFIRM_EVERY: u64 = 32;
/// Once this many bytes were written since the last ping that asked, the
/// next write asks too, however few messages they were: a call's set-up
/// (an SDP of a few KiB and its candidates, about 10 KiB per client) is
/// confirmed right after it, not 15 s later by the keepalive. One ping
/// frame per this many bytes at most, and none while an earlier ping
/// waits for its pong (a pong to an older ping is charged to the rate
/// limit: docs/protocol.md §8.8).
pub const CONFIRM_BYTES: usize = 8 * 1024;

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
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// One connection's state besides the read half: what the hub needs to
/// serve a client, wherever its socket is ([`Out`]).
pub(crate) struct Conn {
    pub(crate) hub: Arc<Hub>,
    pub(crate) conn_id: u64,
    pub(crate) link: LocalLink,
    /// Woken by the link when it has messages for this connection.
    pub(crate) wake: Arc<Notify>,
    pub(crate) out: Out,
    /// `None` for recorders (see [`serve`]) and for sockets of another
    /// node (their node limits them).
    limiter: Option<Limiter>,
    /// No message has been processed yet (`resume` is allowed).
    first: bool,
    /// The read confirmations asked of the client (docs/protocol.md §8.7).
    confirm: Confirm,
}

/// Where a connection's messages are written: its WebSocket on this node,
/// or the node holding the socket (the cluster's bus, `crate::cluster`).
// The socket is kept inline: nearly every `Out` is one, and each lives in
// its connection's task, so boxing it would only add an allocation per
// connection and a pointer to follow per frame.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Out {
    /// The client's socket is here, whole: one task reads and writes it,
    /// so it is not split into halves that would share it through a lock
    /// on every frame (perf: the split's `BiLock` was 1.3 % of the relay).
    Socket(WebSocket),
    /// The client's socket is on another node.
    Remote(crate::cluster::RemoteOut),
}

impl Out {
    /// The next frame from the client's socket; never ready for a socket
    /// on another node (its frames come over the bus).
    async fn next(&mut self) -> Option<Result<Message, SocketError>> {
        match self {
            Out::Socket(socket) => socket.next().await,
            Out::Remote(_) => std::future::pending().await,
        }
    }

    /// Queues a message of the link's buffer to be written at the next
    /// flush: copied into the socket's write queue, or handed to the bus.
    fn queue(&mut self, text: &axum::extract::ws::Utf8Bytes) -> Result<(), SocketError> {
        match self {
            Out::Socket(socket) => socket.queue_text(text.as_str()),
            Out::Remote(remote) => {
                remote.feed(text.as_str());
                Ok(())
            }
        }
    }

    async fn flush(&mut self) -> Result<(), SocketError> {
        match self {
            Out::Socket(sink) => sink.flush().await,
            Out::Remote(remote) => {
                remote.flush();
                Ok(())
            }
        }
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        match self {
            Out::Socket(sink) => {
                let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
            }
            Out::Remote(remote) => remote.close(code, reason),
        }
    }
}

/// Serves one authenticated WebSocket until it closes: here, when this
/// node runs the hub, else through the node that does (`crate::cluster`).
///
/// Not an `async fn`, so that what a connection keeps while it waits stays
/// small (one future per connection: 1.3 KB, 2.9 KB as an `async fn`). The
/// connection is registered and its [`Conn`] built before the future,
/// which borrows it where it was captured; an `async fn` would keep its
/// arguments and what is built from them both, and the edge's loop (a
/// node that is not the hub node) beside this one.
pub(crate) fn serve(socket: WebSocket, hub: Arc<Hub>, identity: Identity) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    if let Some(cluster) = hub.remote_hub() {
        return Box::pin(crate::cluster::edge::serve(socket, hub, cluster, identity));
    }
    let conn_id = hub.next_id();
    let wake = Arc::new(Notify::new());
    let link = match hub.connect(identity.user, identity.premium, conn_id, wake.clone()) {
        Ok(link) => link,
        Err(refusal) => {
            let (code, reason) = match refusal {
                Refusal::ShuttingDown => (CLOSE_GOING_AWAY, "server shutting down"),
                Refusal::RecorderConnected => (CLOSE_RECORDER_CONNECTED, "another connection of this recorder is live"),
            };
            let mut socket = socket;
            return Box::pin(async move {
                let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
            });
        }
    };
    metrics::connection_opened();
    // A recorder carries the signals of every session it records on its
    // one connection (offers and candidates for each participant), so the
    // per-client limit would drop them and lose recordings: recorders are
    // trusted services (their tokens come from the operator) and are not
    // limited.
    let limiter = (link.user.role != parley_domain::protocol::Role::Recorder)
        .then(|| Limiter::new(hub.cfg.rate_limit_per_sec, hub.cfg.rate_limit_burst));
    let mut conn =
        Conn { hub, conn_id, link, wake, out: Out::Socket(socket), limiter, first: true, confirm: Confirm::default() };
    Box::pin(async move { serve_here(&mut conn).await })
}

/// The connection's loop on the hub node, until it closes.
async fn serve_here(conn: &mut Conn) {
    let ping_every = conn.hub.cfg.ping_interval;
    // One timer for the keepalive and the quiet confirmation
    // ([`Confirm::deadline`]), whichever is due first. A tick the loop
    // could not look at in time (the connection was busy) is one late
    // ping, not a burst of them: the next is a whole interval after it.
    let mut keepalive_at = tokio::time::Instant::now() + ping_every;
    let timer = tokio::time::sleep_until(keepalive_at);
    tokio::pin!(timer);
    // Tokio's clock (std's, unless a test pauses it), read once per frame
    // read and once per write.
    let mut last_heard = tokio::time::Instant::now();
    // One wait for messages to write, kept across the loop's turns: a new
    // one each turn (each frame read) would join and leave the `Notify`'s
    // waiters every time. A `notify_one` in between is kept as a permit.
    let wake = conn.wake.clone();
    let written = wake.notified();
    tokio::pin!(written);

    // Biased: what is ready is taken in this order, and the branches after
    // it are not polled that turn. Messages to write come first, so a
    // client that keeps sending cannot hold back what it is sent; the
    // timer, due once per ping interval (15 s by default) or once a pause
    // in the writes left messages unasked, is looked at only when neither
    // has anything.
    let departure = loop {
        tokio::select! {
            biased;
            _ = written.as_mut() => {
                written.set(wake.notified());
                // Not boxed (`resume` and `hub.handle` are): a box would
                // save 184 bytes per connection but cost an allocation per
                // write, once per relayed message at saturation.
                if let Flow::Stop = conn.write().await {
                    break Departure::Dropped;
                }
                // Pushed back by every write: an atomic store, not a
                // trip through the timer wheel, when it moves later.
                if let Some(at) = conn.confirm.deadline() {
                    timer.as_mut().reset(at.min(keepalive_at));
                }
            }
            frame = conn.out.next() => {
                let frame = match frame {
                    Some(Ok(Message::Close(_))) => break Departure::Closed,
                    Some(Ok(frame)) => frame,
                    None => break Departure::Dropped,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket read failed");
                        if let Some((code, reason)) = e.close() {
                            conn.close(code, reason).await;
                        }
                        break Departure::Dropped;
                    }
                };
                last_heard = tokio::time::Instant::now();
                // The pong to the newest ping is the server's own request:
                // it is not charged (docs/protocol.md §8.8), once.
                if let Some(seq) = conn.confirm.pong(pong_seq(&frame), last_heard) {
                    conn.link.confirm(conn.conn_id, seq);
                    if let Some(at) = conn.confirm.deadline() {
                        timer.as_mut().reset(at.min(keepalive_at));
                    }
                    continue;
                }
                // The limiter first: nothing else is done for a frame over it.
                if let Some(limiter) = &mut conn.limiter {
                    match limiter.admit(frame_len(&frame), last_heard.into_std()) {
                        Admit::Pass => {}
                        Admit::Drop { notify } => {
                            metrics::frame_dropped();
                            if notify {
                                let message = limiter.notice(&conn.hub.cfg);
                                send_error(&conn.link, None, SignalError::new(ErrorCode::RateLimited, message));
                            }
                            continue;
                        }
                        Admit::Close => {
                            metrics::error(ErrorCode::RateLimited);
                            tracing::info!(user = %conn.link.user.id, "closing a connection that kept sending over its rate limit");
                            conn.close(CLOSE_RATE_LIMITED, "over the rate limit for too long").await;
                            break Departure::Dropped;
                        }
                    }
                }
                match frame {
                    Message::Text(text) => conn.on_text(&text).await,
                    Message::Binary(_) => {
                        let e = SignalError::new(ErrorCode::BinaryNotSupported, "binary frames are not part of the protocol; send JSON text");
                        send_error(&conn.link, None, e);
                    }
                    // Another pong confirms what it names (a client may
                    // only confirm messages it was written).
                    Message::Pong(_) => {
                        if let Some(seq) = pong_seq(&frame) {
                            conn.link.confirm(conn.conn_id, seq);
                        }
                    }
                    Message::Ping(_) | Message::Close(_) => {}
                }
            }
            () = &mut timer => {
                let now = tokio::time::Instant::now();
                let (ask, reason) = if now >= keepalive_at {
                    keepalive_at = now + ping_every;
                    if now.duration_since(last_heard) > ping_every * 3 {
                        tracing::debug!(user = %conn.link.user.id, "no traffic for three ping intervals; closing");
                        conn.close(CLOSE_IDLE, "no traffic for three ping intervals").await;
                        break Departure::Dropped;
                    }
                    // The keepalive asks to confirm what was written too.
                    let sent = conn.link.unconfirmed(conn.conn_id).map_or(0, |(sent, _)| sent);
                    (Some(conn.confirm.asking(sent)), "keepalive")
                } else {
                    (conn.confirm.quiet(now), "quiet")
                };
                if let (Some(seq), Out::Socket(sink)) = (ask, &mut conn.out) {
                    metrics::confirm_ping(reason);
                    if sink.send(confirm_ping(seq)).await.is_err() {
                        break Departure::Dropped;
                    }
                }
                let next = conn.confirm.deadline().map_or(keepalive_at, |at| at.min(keepalive_at));
                timer.as_mut().reset(next);
            }
        }
    };
    conn.hub.disconnect(&conn.link, conn.conn_id, departure);
    metrics::connection_closed();
}

impl Conn {
    /// A connection of `link` whose socket is on another node.
    pub(crate) fn remote(hub: Arc<Hub>, conn_id: u64, link: LocalLink, wake: Arc<Notify>, out: Out) -> Conn {
        Conn { hub, conn_id, link, wake, out, limiter: None, first: true, confirm: Confirm::default() }
    }

    /// Handles one text frame: limits, parsing, dispatch, reply.
    pub(crate) async fn on_text(&mut self, text: &str) {
        if text.len() > MAX_FRAME_BYTES {
            let message = format!("frame is {} bytes; at most {MAX_FRAME_BYTES} allowed", text.len());
            send_error(&self.link, None, SignalError::new(ErrorCode::FrameTooLarge, message));
            return;
        }
        // Relayed SDP and ICE, most frames, skip the typed parse.
        if let Some(signal) = crate::relay::read(text) {
            metrics::received(signal.kind);
            self.first = false;
            let id = signal.id.as_deref().map(str::to_owned);
            return self.answer(id, self.hub.relay_signal(&self.link, &signal).map(|()| None));
        }
        // The envelope is taken apart in a block of its own: a local that
        // was borrowed keeps its room in this future until its scope ends,
        // even once moved out of, so inline it would be kept (136 bytes)
        // while a handler waits.
        let (mut id, msg, first) = {
            let envelope = match parse(text) {
                Ok(env) => env,
                Err((id, e)) => return send_error(&self.link, id, e),
            };
            metrics::received(envelope.msg.type_name());
            if envelope.id.is_none() && needs_id(&envelope.msg) {
                let message = format!("`id` is required for {}: its ack carries the result", envelope.msg.type_name());
                return send_error(&self.link, None, SignalError::new(ErrorCode::MissingField, message));
            }
            (envelope.id, envelope.msg, std::mem::replace(&mut self.first, false))
        };
        if let ClientMessage::Resume { resume_token, last_seq } = msg {
            return Box::pin(self.resume(first, id, &resume_token, last_seq)).await;
        }
        // A handler that waits is boxed on its own (`Hub::handle`): the
        // idle connection's future stays small.
        let outcome = match self.hub.handle(&self.link, &mut id, msg) {
            Handled::Now(outcome) => outcome,
            Handled::Later(handler) => handler.await,
        };
        self.answer(id, outcome);
    }

    /// Answers request `id`: an `ack` with the result (none without an
    /// `id`), or an `error`.
    fn answer(&self, id: Option<String>, outcome: Result<Option<AckResult>, SignalError>) {
        match outcome {
            Ok(result) => {
                if let Some(id) = id {
                    self.link.send(&ServerMessage::Ack { id, result });
                }
            }
            Err(e) => send_error(&self.link, id, e),
        }
    }

    /// `resume`: take over the dropped link named by the token.
    async fn resume(&mut self, first: bool, id: Option<String>, token: &str, last_seq: u64) {
        if !first {
            let e = SignalError::new(ErrorCode::ResumeNotFirst, "resume must be the first message on a connection");
            return send_error(&self.link, id, e);
        }
        // What the provisional link still holds (its hello) goes out first,
        // whichever link the connection writes afterwards.
        // Queued here, written with the connection's next flush.
        let out = &mut self.out;
        self.link.take_each(self.conn_id, usize::MAX, usize::MAX, |text| {
            let _ = out.queue(text);
        });
        match self.hub.resume(&self.link, self.conn_id, self.wake.clone(), token, last_seq).await {
            Ok((old, replayed, ice_servers)) => {
                self.link = old;
                self.confirm = Confirm::default();
                if let Some(id) = id {
                    let result = AckResult::Resumed { replayed, ice_servers };
                    self.link.send(&ServerMessage::Ack { id, result: Some(result) });
                }
            }
            Err(e) => send_error(&self.link, id, e),
        }
    }

    /// Writes what the link has for this connection (up to a batch; the
    /// link wakes it again for more), flushes, and closes when told to. A
    /// client that does not read for [`WRITE_TIMEOUT`] is dropped: its
    /// messages stay in the link for `resume`.
    pub(crate) async fn write(&mut self) -> Flow {
        // Copied where they lie in the link's buffer (`Link::take_each`),
        // up to a batch's worth of bytes; the link wakes the connection
        // again for the rest.
        let (mut count, mut bytes, mut queued) = (0, 0, Ok(()));
        let out = &mut self.out;
        let what = self.link.take_each(self.conn_id, WRITE_BATCH, FLUSH_BYTES, |text| {
            count += 1;
            bytes += text.len();
            if queued.is_ok() {
                queued = out.queue(text);
            }
        });
        metrics::sent(count);
        if queued.is_err() {
            tracing::debug!(user = %self.link.user.id, "write after the close frame");
            return Flow::Stop;
        }
        let now = tokio::time::Instant::now();
        let ask = match what {
            Take::Write { sent, unconfirmed } => self.ask(sent, unconfirmed, bytes, now),
            Take::Close(..) => None,
        };
        let written = tokio::time::timeout_at(now + WRITE_TIMEOUT, async {
            if let (Some(seq), Out::Socket(sink)) = (ask, &mut self.out) {
                metrics::confirm_ping("write");
                sink.feed(confirm_ping(seq)).await?;
            }
            self.out.flush().await
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::debug!(user = %self.link.user.id, "write failed or timed out");
            return Flow::Stop;
        }
        match what {
            Take::Write { .. } => Flow::Continue,
            Take::Close(code, reason) => {
                self.close(code, reason).await;
                Flow::Stop
            }
        }
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        self.out.close(code, reason).await;
    }

    /// [`Confirm::after_write`], only for sockets on this node (another
    /// node's socket answers pings there: its link keeps its last 256).
    fn ask(&mut self, sent: u64, unconfirmed: u64, bytes: usize, now: tokio::time::Instant) -> Option<u64> {
        let confirm = &mut self.confirm;
        matches!(self.out, Out::Socket(_)).then(|| confirm.after_write(sent, unconfirmed, bytes, now)).flatten()
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
            | ClientMessage::IceServers
    )
}

/// What the limiter decided about one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Within the limit: process the frame.
    Pass,
    /// Over the limit: drop it unread; `notify` when this drop is the one
    /// (at most one per [`DROP_RUN_GAP`]) answered with `rate_limited`.
    Drop { notify: bool },
    /// Over the limit for too long: close the connection.
    Close,
}

/// A connection's rate limit (docs/protocol.md §8.8): a token bucket of
/// `per_sec` units per second with a burst of `burst`, where a frame costs
/// one unit per started [`RATE_LIMIT_UNIT_BYTES`], plus the bookkeeping of
/// dropped frames (notices, closing after sustained abuse).
pub(crate) struct Limiter {
    bucket: DefaultDirectRateLimiter,
    burst: NonZeroU32,
    /// When the last `rate_limited` notice was sent.
    noticed_at: Option<Instant>,
    /// The last drop of the current run of drops.
    last_drop: Option<Instant>,
    /// Units dropped in the current run.
    dropped: u64,
}

impl Limiter {
    /// All limiters share one clock: building a clock per connection
    /// calibrates it with `cpuid` each time, which cost 13% of the server's
    /// CPU while accepting connections (perf, parley-load signal).
    pub(crate) fn new(per_sec: u32, burst: u32) -> Limiter {
        static CLOCK: LazyLock<QuantaClock> = LazyLock::new(QuantaClock::default);
        let per_sec = NonZeroU32::new(per_sec.max(1)).expect("max(1)");
        let burst = NonZeroU32::new(burst.max(1)).expect("max(1)");
        let bucket = RateLimiter::direct_with_clock(Quota::per_second(per_sec).allow_burst(burst), CLOCK.clone());
        Limiter { bucket, burst, noticed_at: None, last_drop: None, dropped: 0 }
    }

    /// What a frame of `len` bytes costs: one unit per started
    /// [`RATE_LIMIT_UNIT_BYTES`], at least one, at most the burst (so any
    /// frame can pass a full bucket).
    fn cost(&self, len: usize) -> NonZeroU32 {
        let units = u32::try_from(len.div_ceil(RATE_LIMIT_UNIT_BYTES)).unwrap_or(u32::MAX);
        NonZeroU32::new(units.clamp(1, self.burst.get())).expect("clamped to at least 1")
    }

    /// Charges a frame of `len` bytes received at `now`.
    pub(crate) fn admit(&mut self, len: usize, now: Instant) -> Admit {
        let cost = self.cost(len);
        if matches!(self.bucket.check_n(cost), Ok(Ok(()))) {
            return Admit::Pass;
        }
        if self.last_drop.is_none_or(|at| now.duration_since(at) >= DROP_RUN_GAP) {
            self.dropped = 0;
        }
        self.last_drop = Some(now);
        self.dropped += u64::from(cost.get());
        if self.dropped > u64::from(ABUSE_BURSTS) * u64::from(self.burst.get()) {
            return Admit::Close;
        }
        let notify = self.noticed_at.is_none_or(|at| now.duration_since(at) >= DROP_RUN_GAP);
        if notify {
            self.noticed_at = Some(now);
        }
        Admit::Drop { notify }
    }

    /// The text of the `rate_limited` notice.
    pub(crate) fn notice(&self, cfg: &crate::config::SignalingConfig) -> String {
        format!(
            "more than {} messages per second (burst {}; a message costs one per started {} KiB); \
             messages were dropped unread and get no other answer for a second",
            cfg.rate_limit_per_sec,
            cfg.rate_limit_burst,
            RATE_LIMIT_UNIT_BYTES / 1024
        )
    }
}

/// A ping asking the client to confirm every message up to `seq`: its
/// payload is `seq`, 8 bytes big-endian (docs/protocol.md §8.7), which the
/// pong echoes ([`pong_seq`]).
fn confirm_ping(seq: u64) -> Message {
    Message::Ping(seq.to_be_bytes().to_vec().into())
}

/// The `seq` a pong confirms: its payload, an echo of the server's ping
/// (8 bytes, big-endian; docs/protocol.md §8.7). `None` for other frames.
fn pong_seq(frame: &Message) -> Option<u64> {
    match frame {
        Message::Pong(payload) => <[u8; 8]>::try_from(&payload[..]).ok().map(u64::from_be_bytes),
        _ => None,
    }
}

/// A frame's payload size, bytes.
pub(crate) fn frame_len(frame: &Message) -> usize {
    match frame {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(_) => 0,
    }
}

pub(crate) fn send_error(link: &Link, id: Option<String>, e: SignalError) {
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
    fn frames_cost_one_unit_per_started_4_kib_up_to_the_burst() {
        let l = Limiter::new(1, 40);
        let cost = |len| l.cost(len).get();
        assert_eq!((cost(0), cost(1), cost(4096), cost(4097), cost(64 * 1024)), (1, 1, 1, 2, 16));
        assert_eq!(cost(900 * 1024), 40, "a frame larger than the burst costs the burst");
    }

    #[test]
    fn drops_get_one_notice_a_second_and_ten_bursts_of_drops_close() {
        // One unit a second: the bucket does not refill during the test.
        let mut l = Limiter::new(1, 4);
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(l.admit(10, t0), Admit::Pass);
        }
        assert_eq!(l.admit(10, t0), Admit::Drop { notify: true });
        assert_eq!(l.admit(10, t0 + Duration::from_millis(500)), Admit::Drop { notify: false });
        assert_eq!(l.admit(10, t0 + Duration::from_millis(1000)), Admit::Drop { notify: true });
        // A pause of a second starts a new run; its drops count afresh.
        let t1 = t0 + Duration::from_millis(2500);
        let mut dropped = 0;
        let closed_after = loop {
            match l.admit(4096, t1) {
                Admit::Close => break dropped,
                Admit::Drop { .. } => dropped += 1,
                Admit::Pass => {} // the bucket refilled a little meanwhile
            }
            assert!(dropped <= 40, "never closed");
        };
        assert_eq!(closed_after, 40, "ten bursts (4 units each) of drops, then close");
    }

    #[test]
    fn a_pong_confirms_the_seq_its_8_byte_payload_names() {
        assert_eq!(pong_seq(&Message::Pong(42u64.to_be_bytes().to_vec().into())), Some(42));
        assert_eq!(pong_seq(&Message::Pong(Default::default())), None, "a pong to no ping of ours");
        assert_eq!(pong_seq(&Message::Pong(vec![1, 2, 3].into())), None);
        assert_eq!(pong_seq(&Message::Ping(42u64.to_be_bytes().to_vec().into())), None);
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
