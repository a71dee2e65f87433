//! A server-side WebSocket ([RFC 6455]) that keeps no buffer while it is
//! idle.
//!
//! tungstenite, under axum's `WebSocket`, gives each connection a read
//! buffer and a write buffer. Each grows to the largest frame the
//! connection has carried, and it keeps that size: heaptrack on 5,000
//! open calls found 4.3 KiB of read buffer and 3.5 KiB of write buffer
//! per connection (load-tests/README.md, seventeenth run). Most
//! connections of a signaling server are idle most of the time.
//!
//! Here, a read lands in a buffer of the worker thread (`SCRATCH`), and
//! the frames are parsed from it where they lie. Bytes are kept per
//! connection only for a frame that has not fully arrived, or for the
//! frames read in the same read after the message returned. Frames to
//! write are queued in a buffer that is given back once written, when it
//! grew past [`KEEP_WRITE`]. Frame headers are read and written by
//! tungstenite's [`FrameHeader`]; the rest of the framing is here.
//!
//! What a server must do (RFC 6455 §5): client frames are masked (§5.3),
//! reserved bits and opcodes are refused (§5.2), control frames are short
//! and whole (§5.5), fragments are joined (§5.4), text is UTF-8 (§5.6,
//! §8.1), a ping is answered with a pong (§5.5.2) and a close with a close
//! (§5.5.1). A frame that breaks these is a [`SocketError`], whose
//! [`SocketError::close`] the caller closes with (§7.4.1).
//!
//! [RFC 6455]: https://www.rfc-editor.org/rfc/rfc6455

use std::cell::RefCell;
use std::io::{self, Cursor};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use axum::http::{HeaderMap, Method, StatusCode, header};
use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

/// Bytes read per read call, into the worker thread's buffer: a burst of
/// a call's messages (an offer, an answer, 20 candidates: about 10 KB)
/// comes in one read.
const READ_CHUNK: usize = 16 * 1024;

/// Write buffer a connection keeps once its frames are written, bytes
/// (an ICE candidate with its envelope is about 300); a larger one (an
/// SDP, a batch) is given back.
const KEEP_WRITE: usize = 512;

/// Queued bytes past which a new frame waits for the queue to be
/// written: a batch of messages leaves in one write per this many bytes.
const WRITE_BATCH_BYTES: usize = 8 * 1024;

/// Longest control frame payload, bytes (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

thread_local! {
    /// The worker thread's read buffer (see the module's documentation).
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// Why a socket's stream ended in error.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The connection failed.
    #[error("websocket i/o: {0}")]
    Io(#[from] io::Error),
    /// The client broke the framing rules (RFC 6455 §5); close with 1002.
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    /// A text message or close reason that is not UTF-8 (§8.1); close with 1007.
    #[error("websocket text is not valid UTF-8")]
    InvalidUtf8,
    /// A frame or message over the socket's limit; close with 1009.
    #[error("websocket message of {size} bytes is over the limit of {max}")]
    TooBig {
        /// The frame's or the message's size so far, bytes.
        size: usize,
        /// The limit, bytes.
        max: usize,
    },
    /// A frame was sent after the close frame (§5.5.1).
    #[error("the websocket is closed")]
    Closed,
}

impl SocketError {
    /// The close code (RFC 6455 §7.4.1) and reason to end the connection
    /// with (docs/protocol.md §12); `None` when it failed under the socket
    /// (nothing can be written).
    pub fn close(&self) -> Option<(u16, &'static str)> {
        match self {
            SocketError::Io(_) | SocketError::Closed => None,
            SocketError::Protocol(_) => Some((1002, "websocket protocol error")),
            SocketError::InvalidUtf8 => Some((1007, "websocket protocol error")),
            SocketError::TooBig { .. } => Some((crate::CLOSE_TOO_BIG, "message over 1 MiB")),
        }
    }
}

/// A fragmented message being joined (RFC 6455 §5.4).
struct Fragments {
    text: bool,
    data: Vec<u8>,
}

/// The server's side of an upgraded connection: a [`Stream`] of the
/// client's messages and a [`Sink`] of the server's.
pub struct Socket<S> {
    io: S,
    /// Bytes read and not yet parsed, from `pending_at` on: a frame still
    /// arriving, or frames read with an earlier one. Empty and without
    /// room between frames.
    pending: Vec<u8>,
    pending_at: usize,
    fragments: Option<Fragments>,
    /// Frames queued to write, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    /// Largest message (and frame) read, bytes.
    max_message: usize,
    /// A close frame was queued (nothing is sent after it).
    close_sent: bool,
    /// The stream ended: the client's close was read, or the connection
    /// closed or failed.
    ended: bool,
}

/// What a read gave.
enum Read {
    /// The connection ended.
    Eof,
    /// The message the bytes completed, if any.
    Bytes(Option<Message>),
}

/// What parsing the next frame gave.
enum Parsed {
    /// A whole message, and the bytes the frame took.
    Message(Message, usize),
    /// A frame that completes no message (a fragment), and its bytes.
    Fragment(usize),
    /// The next frame has not fully arrived.
    Incomplete,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    /// A socket on `io`, an upgraded connection, reading messages of up
    /// to `max_message` bytes (a larger frame or message is
    /// [`SocketError::TooBig`]).
    pub fn new(io: S, max_message: usize) -> Socket<S> {
        Socket {
            io,
            pending: Vec::new(),
            pending_at: 0,
            fragments: None,
            out: Vec::new(),
            out_at: 0,
            max_message,
            close_sent: false,
            ended: false,
        }
    }

    /// Bytes this connection holds in its buffers now (the pending read,
    /// a message being joined, the write queue).
    #[cfg(test)]
    fn buffered_capacity(&self) -> usize {
        self.pending.capacity() + self.out.capacity() + self.fragments.as_ref().map_or(0, |f| f.data.capacity())
    }

    /// Queues a frame of `opcode` carrying `payload` (a server's frames
    /// are not masked, §5.1).
    fn queue(&mut self, opcode: OpCode, payload: &[u8]) {
        let header = FrameHeader { opcode, ..FrameHeader::default() };
        header.format(payload.len() as u64, &mut self.out).expect("writing to a Vec cannot fail");
        self.out.extend_from_slice(payload);
    }

    /// Queues a text message's frame, its bytes copied from `text` (the
    /// [`Sink`] takes the message itself). To be flushed
    /// ([`futures_util::SinkExt::flush`]); the queue does not write itself
    /// out as it grows, so the caller bounds what it queues between
    /// flushes.
    ///
    /// # Errors
    ///
    /// [`SocketError::Closed`] once a close frame was queued.
    pub(crate) fn queue_text(&mut self, text: &str) -> Result<(), SocketError> {
        if self.close_sent {
            return Err(SocketError::Closed);
        }
        self.queue(OpCode::Data(Data::Text), text.as_bytes());
        Ok(())
    }

    /// Queues `msg`'s frame.
    fn queue_message(&mut self, msg: &Message) -> Result<(), SocketError> {
        if self.close_sent {
            return Err(SocketError::Closed);
        }
        match msg {
            Message::Text(text) => self.queue(OpCode::Data(Data::Text), text.as_bytes()),
            Message::Binary(data) => self.queue(OpCode::Data(Data::Binary), data),
            Message::Ping(data) => self.queue(OpCode::Control(Control::Ping), control(data)),
            Message::Pong(data) => self.queue(OpCode::Control(Control::Pong), control(data)),
            Message::Close(frame) => {
                self.close_sent = true;
                let payload = frame.as_ref().map(close_payload).unwrap_or_default();
                self.queue(OpCode::Control(Control::Close), &payload);
            }
        }
        Ok(())
    }

    /// Writes the queue; gives back a grown buffer once it is empty.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_at < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.out_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_at += n;
        }
        self.out_at = 0;
        if self.out.capacity() > KEEP_WRITE {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        Poll::Ready(Ok(()))
    }

    /// Parses the frame at the start of `buf` (unmasking its payload in
    /// place); [`Parsed::Incomplete`] until all of it is there.
    fn parse(&mut self, buf: &mut [u8]) -> Result<Parsed, SocketError> {
        let mut cursor = Cursor::new(&*buf);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(Parsed::Incomplete),
            Err(_) => return Err(SocketError::Protocol("reserved opcode")),
        };
        let start = cursor.position() as usize;
        let joined = self.fragments.as_ref().map_or(0, |f| f.data.len());
        let size = usize::try_from(len).unwrap_or(usize::MAX).saturating_add(joined);
        if size > self.max_message {
            return Err(SocketError::TooBig { size, max: self.max_message });
        }
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(SocketError::Protocol("reserved bits set without an extension"));
        }
        let Some(mask) = header.mask else {
            return Err(SocketError::Protocol("a client's frame must be masked"));
        };
        let len = len as usize;
        if buf.len() - start < len {
            return Ok(Parsed::Incomplete);
        }
        let end = start + len;
        let payload = &mut buf[start..end];
        unmask(payload, mask);
        let message = match header.opcode {
            OpCode::Control(control) => {
                if !header.is_final || len > MAX_CONTROL_PAYLOAD {
                    return Err(SocketError::Protocol("a control frame must be whole and at most 125 bytes"));
                }
                match control {
                    Control::Ping => {
                        if !self.close_sent {
                            self.queue(OpCode::Control(Control::Pong), payload);
                        }
                        Message::Ping(Bytes::copy_from_slice(payload))
                    }
                    Control::Pong => Message::Pong(Bytes::copy_from_slice(payload)),
                    Control::Close => {
                        let frame = read_close(payload)?;
                        if !self.close_sent {
                            // Echo the status code (§5.5.1).
                            self.close_sent = true;
                            let reply = frame.as_ref().map(|f| f.code.to_be_bytes().to_vec()).unwrap_or_default();
                            self.queue(OpCode::Control(Control::Close), &reply);
                        }
                        Message::Close(frame)
                    }
                    Control::Reserved(_) => return Err(SocketError::Protocol("reserved opcode")),
                }
            }
            OpCode::Data(data) => {
                let text = match (data, &mut self.fragments) {
                    (Data::Continue, None) => {
                        return Err(SocketError::Protocol("a continuation frame with no message"));
                    }
                    (Data::Continue, Some(fragments)) => {
                        fragments.data.extend_from_slice(payload);
                        if !header.is_final {
                            return Ok(Parsed::Fragment(end));
                        }
                        let Fragments { text, data } = self.fragments.take().expect("checked above");
                        return Ok(Parsed::Message(message(text, data)?, end));
                    }
                    (Data::Text | Data::Binary, Some(_)) => {
                        return Err(SocketError::Protocol("a new message before the last one's final fragment"));
                    }
                    (Data::Text, None) => true,
                    (Data::Binary, None) => false,
                    (Data::Reserved(_), _) => return Err(SocketError::Protocol("reserved opcode")),
                };
                if !header.is_final {
                    self.fragments = Some(Fragments { text, data: payload.to_vec() });
                    return Ok(Parsed::Fragment(end));
                }
                message(text, payload.to_vec())?
            }
        };
        Ok(Parsed::Message(message, end))
    }

    /// The next message from the bytes kept, if they hold one.
    fn parse_pending(&mut self) -> Result<Option<Message>, SocketError> {
        loop {
            let mut pending = std::mem::take(&mut self.pending);
            let parsed = self.parse(&mut pending[self.pending_at..]);
            self.pending = pending;
            let step = match parsed? {
                Parsed::Message(msg, used) => Some((Some(msg), used)),
                Parsed::Fragment(used) => Some((None, used)),
                Parsed::Incomplete => None,
            };
            let Some((msg, used)) = step else {
                if self.pending_at > 0 {
                    self.pending.drain(..self.pending_at);
                    self.pending_at = 0;
                }
                return Ok(None);
            };
            self.pending_at += used;
            if self.pending_at == self.pending.len() {
                self.pending = Vec::new();
                self.pending_at = 0;
            }
            if msg.is_some() {
                return Ok(msg);
            }
        }
    }

    /// Parses what a read brought, `data` (the thread's buffer), where it
    /// lies; keeps what follows the message returned.
    fn parse_read(&mut self, data: &mut [u8]) -> Result<Option<Message>, SocketError> {
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(data);
            return self.parse_pending();
        }
        let mut at = 0;
        while at < data.len() {
            match self.parse(&mut data[at..])? {
                Parsed::Message(msg, used) => {
                    self.pending.extend_from_slice(&data[at + used..]);
                    return Ok(Some(msg));
                }
                Parsed::Fragment(used) => at += used,
                Parsed::Incomplete => break,
            }
        }
        self.pending.extend_from_slice(&data[at..]);
        Ok(None)
    }

    /// The next message: from the bytes kept, else from a read. A pong or
    /// close reply queued by a frame read (this one or, if the socket
    /// did not take it then, an earlier one) is written before the message
    /// is returned, if the socket takes it now; else with the next write.
    fn poll_read_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, SocketError>>> {
        let msg = loop {
            if !self.pending.is_empty() {
                // Messages read earlier take the task's budget as a read
                // would, so a client that sent many at once cannot keep
                // its worker from the other connections.
                let coop = ready!(tokio::task::coop::poll_proceed(cx));
                if let Some(msg) = self.parse_pending()? {
                    coop.made_progress();
                    break msg;
                }
            }
            let read = SCRATCH.with_borrow_mut(|scratch| -> Poll<Result<Read, SocketError>> {
                let mut buf = ReadBuf::new(scratch);
                ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
                let n = buf.filled().len();
                if n == 0 {
                    return Poll::Ready(Ok(Read::Eof));
                }
                Poll::Ready(self.parse_read(&mut scratch[..n]).map(Read::Bytes))
            });
            match ready!(read)? {
                Read::Eof => return Poll::Ready(None),
                Read::Bytes(Some(msg)) => break msg,
                Read::Bytes(None) => {}
            }
        };
        if self.out_at < self.out.len() {
            let _ = self.poll_write_out(cx)?;
        }
        Poll::Ready(Some(Ok(msg)))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for Socket<S> {
    type Item = Result<Message, SocketError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let next = ready!(this.poll_read_message(cx));
        // After the client's close nothing more is read (§5.5.1).
        if !matches!(next, Some(Ok(ref msg)) if !matches!(msg, Message::Close(_))) {
            this.ended = true;
        }
        Poll::Ready(next)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for Socket<S> {
    type Error = SocketError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        let this = self.get_mut();
        if this.out.len() - this.out_at >= WRITE_BATCH_BYTES {
            ready!(this.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, msg: Message) -> Result<(), SocketError> {
        self.get_mut().queue_message(&msg)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Poll::Ready(ready!(Pin::new(&mut this.io).poll_flush(cx)).map_err(SocketError::from))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Poll::Ready(ready!(Pin::new(&mut this.io).poll_shutdown(cx)).map_err(SocketError::from))
    }
}

/// Checks an opening handshake (RFC 6455 §4.2.1: `GET`, `Connection:
/// Upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13`, a key)
/// and returns the `Sec-WebSocket-Accept` value of the answer (§4.2.2);
/// else the status to refuse it with (405 for another method, 400) and
/// why.
pub(crate) fn accept_key(method: &Method, headers: &HeaderMap) -> Result<String, (StatusCode, &'static str)> {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .any(|value| value.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
    };
    if method != Method::GET {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "Request method must be `GET`"));
    }
    if !has(header::CONNECTION, "upgrade") {
        return Err((StatusCode::BAD_REQUEST, "Connection header did not include 'upgrade'"));
    }
    if !has(header::UPGRADE, "websocket") {
        return Err((StatusCode::BAD_REQUEST, "`Upgrade` header did not include 'websocket'"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        return Err((StatusCode::BAD_REQUEST, "`Sec-WebSocket-Version` header did not include '13'"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or((StatusCode::BAD_REQUEST, "`Sec-WebSocket-Key` header missing"))?;
    Ok(derive_accept_key(key.as_bytes()))
}

/// A control frame's payload, cut to what one may carry (§5.5).
fn control(data: &[u8]) -> &[u8] {
    &data[..data.len().min(MAX_CONTROL_PAYLOAD)]
}

/// A close frame's payload: the code, big-endian, then the reason, cut to
/// fit a control frame at a character boundary (§5.5.1).
fn close_payload(frame: &CloseFrame) -> Vec<u8> {
    let reason = frame.reason.as_str();
    let reason = &reason[..reason.floor_char_boundary(MAX_CONTROL_PAYLOAD - 2)];
    let mut payload = frame.code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// Reads a close frame's payload (§5.5.1, §7.4): none, or a code a peer
/// may send and a UTF-8 reason.
fn read_close(payload: &[u8]) -> Result<Option<CloseFrame>, SocketError> {
    match payload {
        [] => Ok(None),
        [_] => Err(SocketError::Protocol("a close frame's payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_allowed() {
                return Err(SocketError::Protocol("a close code a peer may not send"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| SocketError::InvalidUtf8)?;
            Ok(Some(CloseFrame { code, reason: Utf8Bytes::from(reason) }))
        }
    }
}

/// A whole message of `data`; text must be UTF-8.
fn message(text: bool, data: Vec<u8>) -> Result<Message, SocketError> {
    if text {
        Ok(Message::Text(Utf8Bytes::try_from(data).map_err(|_| SocketError::InvalidUtf8)?))
    } else {
        Ok(Message::Binary(data.into()))
    }
}

/// Unmasks a client's payload in place (§5.3).
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes(chunk.try_into().expect("4 bytes")) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (byte, m) in chunks.into_remainder().iter_mut().zip(mask) {
        *byte ^= m;
    }
}

#[cfg(test)]
mod tests;
