//! Plain WebSocket peers for the other signaling servers `parley-load
//! signal` is set against (`--protocol matchbox|peerjs`): no token, text
//! frames of the server's own JSON, decoded by an [`Event`] type.
//!
//! Like [`super::Peer`], each connection has a reader task that stamps a
//! frame's arrival ([`now_ns`]) as soon as it is read, before decoding, and
//! forwards it; the small buffers of [`super::config`] and `TCP_NODELAY`
//! are the same. The reader can also send a keep-alive frame on a timer,
//! as the PeerJS client sends its `HEARTBEAT`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::{self, Message};

use super::{OpenError, ReaderEnd, Ws, config, open_error};
use crate::clock::now_ns;
use crate::report::bump;

/// A message a server sends, decoded from one text frame.
pub trait Event: Sized + Send + 'static {
    /// Decodes a frame; the error says what is wrong (the reader counts it
    /// as `unparsable_server_message`).
    fn decode(text: &str) -> Result<Self, String>;

    /// The key under which the reader counts this message in `errors`, if
    /// it reports an error (PeerJS's `ERROR`, `ID-TAKEN`, `EXPIRE`).
    fn error_key(&self) -> Option<&'static str> {
        None
    }
}

/// An event as received, stamped with its arrival time.
#[derive(Debug, Clone)]
pub struct Stamped<E> {
    /// [`now_ns`] when the frame was read (before decoding).
    pub at_ns: u64,
    /// The event.
    pub event: E,
}

/// What [`RawPeer::recv`] got.
#[derive(Debug)]
pub enum Got<E> {
    /// An event.
    Msg(Stamped<E>),
    /// Nothing before the deadline.
    Timeout,
    /// The connection (its reader) has ended.
    Closed,
}

/// A frame a client sends on a timer to stay registered.
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    /// Interval; the first is sent one interval after the connection opens.
    pub every: Duration,
    /// The text frame.
    pub frame: &'static str,
}

type Sink = Arc<Mutex<SplitSink<Ws, Message>>>;

/// One plain WebSocket connection: the write half (shared with the reader
/// for keep-alives) and the stamped events its reader task forwards.
/// Dropping it (a pair that failed) stops its reader and so closes the
/// connection without a close frame.
pub struct RawPeer<E> {
    /// Who this is, for error messages (`seeker 12`, …).
    pub name: String,
    sink: Sink,
    rx: mpsc::UnboundedReceiver<Stamped<E>>,
    reader: tokio::task::JoinHandle<ReaderEnd>,
    /// Set once our close frame is on its way: no keep-alive after it.
    closing: Arc<AtomicBool>,
}

impl<E> Drop for RawPeer<E> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl<E> std::fmt::Debug for RawPeer<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPeer").field("name", &self.name).finish()
    }
}

/// Opens a WebSocket to `url` (no authentication) within `timeout`; the
/// error's kind is `connect`, `http_<status>`, `request` or `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> Result<Ws, OpenError> {
    let connected = tokio::time::timeout(timeout, async {
        match tokio_tungstenite::connect_async_with_config(url, Some(config()), true).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp.body().as_deref().unwrap_or_default();
                Err(open_error(format!("http_{status}"), String::from_utf8_lossy(body).into_owned()))
            }
            Err(tungstenite::Error::Url(e)) => Err(open_error("request", e.to_string())),
            Err(e) => Err(open_error("connect", e.to_string())),
        }
    })
    .await;
    connected.unwrap_or_else(|_| Err(open_error("timeout", format!("not open within {timeout:?}"))))
}

impl<E: Event> RawPeer<E> {
    /// Opens `url` and starts the reader task, which runs until `stop`,
    /// the connection's end or `deadline`, sending `keepalive` if given.
    pub async fn open(
        name: String,
        url: &str,
        timeout: Duration,
        keepalive: Option<Keepalive>,
        stop: watch::Receiver<bool>,
        deadline: Instant,
    ) -> Result<RawPeer<E>, OpenError> {
        let ws = connect(url, timeout).await?;
        let (sink, stream) = ws.split();
        let sink = Arc::new(Mutex::new(sink));
        let (tx, rx) = mpsc::unbounded_channel();
        let closing = Arc::new(AtomicBool::new(false));
        let writer = Writer { sink: sink.clone(), keepalive, closing: closing.clone() };
        let reader = tokio::spawn(read_loop(stream, tx, writer, stop, deadline));
        Ok(RawPeer { name, sink, rx, reader, closing })
    }

    /// Sends a text frame and flushes.
    pub async fn send(&mut self, text: String) -> anyhow::Result<()> {
        let sent = self.sink.lock().await.send(Message::Text(text.into())).await;
        sent.map_err(|e| anyhow::anyhow!("{}: send failed: {e}", self.name))
    }

    /// Queues a text frame without flushing (see [`RawPeer::flush`]).
    pub async fn feed(&mut self, text: String) -> anyhow::Result<()> {
        let fed = self.sink.lock().await.feed(Message::Text(text.into())).await;
        fed.map_err(|e| anyhow::anyhow!("{}: send failed: {e}", self.name))
    }

    /// Flushes queued frames.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        let flushed = self.sink.lock().await.flush().await;
        flushed.map_err(|e| anyhow::anyhow!("{}: send failed: {e}", self.name))
    }

    /// The next event, waiting until `deadline`.
    pub async fn recv(&mut self, deadline: Instant) -> Got<E> {
        match tokio::time::timeout_at(deadline, self.rx.recv()).await {
            Err(_) => Got::Timeout,
            Ok(None) => Got::Closed,
            Ok(Some(m)) => Got::Msg(m),
        }
    }

    /// Waits until `deadline` for the first event `pick` answers, skipping
    /// those it answers `None` to; `Some(Err(reason))` fails at once.
    pub async fn recv_until<T>(
        &mut self,
        deadline: Instant,
        what: &str,
        mut pick: impl FnMut(&Stamped<E>) -> Option<Result<T, String>>,
    ) -> anyhow::Result<T> {
        loop {
            let stamped = match self.recv(deadline).await {
                Got::Timeout => anyhow::bail!("{}: timed out waiting for {what}", self.name),
                Got::Closed => anyhow::bail!("{}: connection closed while waiting for {what}", self.name),
                Got::Msg(m) => m,
            };
            match pick(&stamped) {
                None => {}
                Some(Ok(t)) => return Ok(t),
                Some(Err(reason)) => anyhow::bail!("{}: waiting for {what}: {reason}", self.name),
            }
        }
    }

    /// Sends a close frame (within `timeout`), waits up to `timeout` for
    /// the reader to see the connection end, and returns what it saw.
    pub async fn close(mut self, timeout: Duration) -> ReaderEnd {
        self.closing.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(timeout, async { self.sink.lock().await.send(Message::Close(None)).await }).await;
        match tokio::time::timeout(timeout, &mut self.reader).await {
            Ok(Ok(mut end)) => {
                // The server answering our close is not the server closing.
                end.closed_by_server = false;
                end
            }
            _ => ReaderEnd::default(), // the reader is aborted on drop
        }
    }
}

/// What the reader needs to send keep-alives.
struct Writer {
    sink: Sink,
    keepalive: Option<Keepalive>,
    closing: Arc<AtomicBool>,
}

/// Reads `stream` until `stop` turns true, the connection ends, or
/// `deadline`: stamps each text frame on arrival, decodes and forwards it,
/// counts undecodable frames and [`Event::error_key`]s; sends the
/// keep-alive on its timer when the write half is free (else retries 50 ms
/// later), until the peer starts closing.
async fn read_loop<E: Event>(
    mut stream: SplitStream<Ws>,
    tx: mpsc::UnboundedSender<Stamped<E>>,
    writer: Writer,
    mut stop: watch::Receiver<bool>,
    deadline: Instant,
) -> ReaderEnd {
    let Writer { sink, keepalive, closing } = writer;
    let mut end = ReaderEnd::default();
    // Without a keep-alive the timer never fires before the deadline.
    let every = keepalive.map_or(Duration::from_secs(86_400), |k| k.every);
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut retry_at: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let at_ns = now_ns();
                    match E::decode(&text) {
                        Ok(event) => {
                            if let Some(key) = event.error_key() {
                                bump(&mut end.errors, key);
                            }
                            let _ = tx.send(Stamped { at_ns, event });
                        }
                        Err(_) => bump(&mut end.errors, "unparsable_server_message"),
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
            _ = ticks.tick(), if keepalive.is_some() && retry_at.is_none() => {
                retry_at = Some(Instant::now());
            }
            _ = tokio::time::sleep_until(retry_at.unwrap_or(deadline)), if retry_at.is_some() => {
                // Never wait for the writer here: it may be waiting for the
                // server, which may be waiting for this reader.
                let frame = keepalive.map(|k| k.frame).unwrap_or_default();
                match sink.try_lock() {
                    Ok(_) if closing.load(Ordering::Relaxed) => retry_at = None,
                    Ok(mut sink) => {
                        retry_at = None;
                        if sink.send(Message::Text(frame.into())).await.is_err() {
                            bump(&mut end.errors, "keepalive_failed");
                        }
                    }
                    Err(_) => retry_at = Some(Instant::now() + Duration::from_millis(50)),
                }
            }
            _ = tokio::time::sleep_until(deadline) => return end,
        }
    }
}
