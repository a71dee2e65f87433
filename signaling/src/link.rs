//! A link: one client's resumable signaling state. It outlives the
//! WebSocket that carries it by the grace period, so a client that drops can
//! `resume` on a new WebSocket and get every message it missed.
//!
//! Every server message goes through [`Link::send`], which numbers it
//! (`seq`), keeps it in a bounded replay buffer and queues it on the
//! attached connection, if any.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::ws::Utf8Bytes;
use parley_domain::protocol::{ServerMessage, UserInfo};
use tokio::sync::mpsc;

/// What a connection task is asked to write.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A serialised [`parley_domain::protocol::ServerEnvelope`].
    Text(Utf8Bytes),
    /// Close the WebSocket with this close code and reason.
    Close(u16, &'static str),
}

/// One client's resumable state.
#[derive(Debug)]
pub(crate) struct Link {
    /// Who the link belongs to.
    pub user: UserInfo,
    /// The secret that lets a new connection take this link over.
    pub resume_token: String,
    /// Whether a client message was processed on it (else it holds nothing
    /// worth resuming but its `hello`).
    used: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    next_seq: u64,
    buffer: VecDeque<(u64, Utf8Bytes)>,
    capacity: usize,
    /// The attached connection's id and queue.
    conn: Option<(u64, mpsc::Sender<Outbound>)>,
}

/// Replay is impossible: messages after `last_seq` are no longer buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplayGap {
    pub oldest_buffered: u64,
}

impl Link {
    pub fn new(user: UserInfo, resume_token: String, capacity: usize) -> Self {
        Link {
            user,
            resume_token,
            used: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                next_seq: 1,
                buffer: VecDeque::with_capacity(0),
                capacity: capacity.max(1),
                conn: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that a client message was processed on this link.
    pub fn mark_used(&self) {
        self.used.store(true, Ordering::Relaxed);
    }

    /// Whether a client message was processed on this link.
    pub fn is_used(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    /// Numbers, buffers and queues `msg`. When the attached connection's
    /// queue is full the client is too slow to keep up: the connection is
    /// detached (its task sees the queue close and ends); the message stays
    /// buffered for `resume`.
    pub fn send(&self, msg: &ServerMessage) {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        // `{"seq":N` then the message object with its `{` turned into `,`:
        // one buffer, no second copy.
        let mut buf = format!("{{\"seq\":{seq}").into_bytes();
        let start = buf.len();
        if let Err(e) = serde_json::to_writer(&mut buf, msg) {
            tracing::error!(error = %e, "cannot serialise server message");
            return;
        }
        buf[start] = b',';
        let text: Utf8Bytes = match String::from_utf8(buf) {
            Ok(s) => s.into(),
            Err(e) => {
                tracing::error!(error = %e, "server message is not UTF-8");
                return;
            }
        };
        inner.next_seq += 1;
        if inner.buffer.len() == inner.capacity {
            inner.buffer.pop_front();
        }
        inner.buffer.push_back((seq, text.clone()));
        if let Some((conn_id, tx)) = &inner.conn
            && tx.try_send(Outbound::Text(text)).is_err()
        {
            tracing::warn!(user = %self.user.id, conn_id, "client queue full or closed; detaching it");
            inner.conn = None;
        }
    }

    /// Attaches connection `conn_id` with queue `tx`, first queueing every
    /// buffered message after `last_seq` (when `Some`). Returns how many
    /// were replayed.
    pub fn attach(&self, conn_id: u64, tx: mpsc::Sender<Outbound>, last_seq: Option<u64>) -> Result<u64, ReplayGap> {
        let mut inner = self.lock();
        let mut replayed = 0;
        if let Some(last_seq) = last_seq {
            let oldest = inner.buffer.front().map_or(inner.next_seq, |(s, _)| *s);
            if last_seq + 1 < oldest || last_seq >= inner.next_seq {
                return Err(ReplayGap { oldest_buffered: oldest });
            }
            for (seq, text) in inner.buffer.iter().filter(|(s, _)| *s > last_seq) {
                if tx.try_send(Outbound::Text(text.clone())).is_err() {
                    tracing::warn!(seq, "replay overflowed the new queue");
                    return Err(ReplayGap { oldest_buffered: oldest });
                }
                replayed += 1;
            }
        }
        if let Some((_, old)) = inner.conn.replace((conn_id, tx)) {
            let _ = old.try_send(Outbound::Close(4000, "replaced by a newer connection"));
        }
        Ok(replayed)
    }

    /// Detaches connection `conn_id`, if it is the attached one. Returns
    /// whether it was.
    pub fn detach(&self, conn_id: u64) -> bool {
        let mut inner = self.lock();
        if inner.conn.as_ref().is_some_and(|(id, _)| *id == conn_id) {
            inner.conn = None;
            true
        } else {
            false
        }
    }

    /// Asks the attached connection, if any, to close, and detaches it.
    pub fn close(&self, code: u16, reason: &'static str) {
        if let Some((_, tx)) = self.lock().conn.take() {
            let _ = tx.try_send(Outbound::Close(code, reason));
        }
    }

    /// Whether a connection is attached.
    pub fn is_attached(&self) -> bool {
        self.lock().conn.is_some()
    }

    /// The `seq` of the last message sent (0 before any).
    #[cfg(test)]
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_domain::UserId;
    use parley_domain::protocol::{PresenceStatus, Role};

    fn link(capacity: usize) -> Link {
        let user = UserInfo { id: UserId::parse("u").unwrap(), name: "U".into(), role: Role::Seeker };
        Link::new(user, "tok".into(), capacity)
    }

    fn msg() -> ServerMessage {
        ServerMessage::PresenceUpdated { status: PresenceStatus::Busy }
    }

    fn text(o: Outbound) -> String {
        match o {
            Outbound::Text(t) => t.to_string(),
            Outbound::Close(..) => panic!("close"),
        }
    }

    #[test]
    fn messages_are_numbered_and_replayed_after_last_seq() {
        let l = link(8);
        for _ in 0..5 {
            l.send(&msg());
        }
        let (tx, mut rx) = mpsc::channel(16);
        assert_eq!(l.attach(7, tx, Some(3)), Ok(2));
        assert_eq!(text(rx.try_recv().unwrap()), r#"{"seq":4,"type":"presence.updated","status":"busy"}"#);
        assert!(text(rx.try_recv().unwrap()).starts_with(r#"{"seq":5,"#));
        l.send(&msg());
        assert!(text(rx.try_recv().unwrap()).starts_with(r#"{"seq":6,"#));
        assert_eq!(l.last_seq(), 6);
    }

    #[test]
    fn replay_fails_when_the_buffer_lost_messages_or_seq_is_from_the_future() {
        let l = link(2);
        for _ in 0..5 {
            l.send(&msg());
        }
        let (tx, _rx) = mpsc::channel(16);
        assert_eq!(l.attach(1, tx.clone(), Some(1)), Err(ReplayGap { oldest_buffered: 4 }));
        assert_eq!(l.attach(1, tx.clone(), Some(9)), Err(ReplayGap { oldest_buffered: 4 }));
        assert_eq!(l.attach(1, tx, Some(3)), Ok(2));
    }

    #[test]
    fn a_full_queue_detaches_the_slow_connection_but_keeps_the_message() {
        let l = link(8);
        let (tx, _rx) = mpsc::channel(1);
        l.attach(1, tx, None).unwrap();
        l.send(&msg());
        assert!(l.is_attached());
        l.send(&msg());
        assert!(!l.is_attached());
        let (tx, mut rx) = mpsc::channel(16);
        assert_eq!(l.attach(2, tx, Some(1)), Ok(1));
        assert!(text(rx.try_recv().unwrap()).starts_with(r#"{"seq":2,"#));
    }
}
