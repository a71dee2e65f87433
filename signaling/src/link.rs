//! A link: one client's resumable signaling state. It outlives the
//! WebSocket that carries it by the grace period, so a client that drops can
//! `resume` on a new WebSocket and get every message it missed.
//!
//! Every server message goes through [`Link::send`], which numbers it
//! (`seq`) and appends it to a bounded replay buffer. The buffer is also
//! the attached connection's outgoing queue: the link remembers the last
//! `seq` handed to that connection and wakes it; the connection takes what
//! follows ([`Link::take`]). One queue per client, not two.
//!
//! Messages the client is known to have read leave the buffer: the
//! connection asks with a WebSocket ping carrying the last `seq` written
//! before it, and the pong that echoes it ([RFC 6455 §5.5.3]) confirms
//! everything up to there ([`Link::confirm`]). So the buffer holds what
//! the client may have missed, not the last 256 of a long call.
//!
//! [RFC 6455 §5.5.3]: https://www.rfc-editor.org/rfc/rfc6455#section-5.5.3

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use parley_domain::protocol::{ServerMessage, UserInfo};
use tokio::sync::Notify;

use crate::journal::{JournaledLink, LinkJournal};

/// Largest serialising buffer a worker thread keeps between messages,
/// bytes ([`SCRATCH`]); a larger one (a message near the frame limit) is
/// given back.
const KEEP_SCRATCH: usize = 64 * 1024;

thread_local! {
    /// Where [`Link::send_json`] serialises a message before copying it
    /// into a buffer of its exact length.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Close code for a connection replaced by a newer one of the same user.
pub const CLOSE_REPLACED: u16 = 4000;
/// Close code for a client too slow to read its messages (RFC 6455 policy violation).
pub const CLOSE_TOO_SLOW: u16 = 1008;

/// What [`Link::take`] tells the connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// Write the messages appended to the batch (maybe none). `sent` is
    /// the last `seq` handed to the connection; `unconfirmed`, how many of
    /// the messages up to it are still buffered (written, not yet
    /// confirmed read: [`Link::confirm`]).
    Write { sent: u64, unconfirmed: u64 },
    /// Write the batch, then close the WebSocket with this code and reason.
    Close(u16, &'static str),
}

/// One client's resumable state.
#[derive(Debug)]
pub(crate) struct Link {
    /// Who the link belongs to.
    pub user: UserInfo,
    /// The token's `premium` claim.
    pub premium: bool,
    /// The secret that lets a new connection take this link over.
    pub resume_token: String,
    /// Whether a client message was processed on it (else it holds nothing
    /// worth resuming but its `hello`).
    used: AtomicBool,
    /// Where every numbered message is copied, in a cluster, and the key
    /// the link has there.
    journal: Option<(Arc<dyn LinkJournal>, Arc<str>)>,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    next_seq: u64,
    buffer: VecDeque<(u64, Utf8Bytes)>,
    capacity: usize,
    /// The connection writing this link's messages.
    conn: Option<Attached>,
    /// A connection told to close that has not yet taken its close.
    farewell: Option<Farewell>,
}

#[derive(Debug)]
struct Attached {
    id: u64,
    wake: Arc<Notify>,
    /// The last `seq` handed to the connection.
    sent: u64,
    /// Close once everything up to here is written.
    closing: Option<(u16, &'static str)>,
}

#[derive(Debug)]
struct Farewell {
    conn: u64,
    code: u16,
    reason: &'static str,
}

impl Inner {
    /// The `seq` of the oldest buffered message (the next one when none is).
    fn oldest(&self) -> u64 {
        self.buffer.front().map_or(self.next_seq, |(s, _)| *s)
    }

    /// How many of the messages up to `sent` are still buffered: written
    /// and not yet confirmed read.
    fn unconfirmed(&self, sent: u64) -> u64 {
        (sent + 1).saturating_sub(self.oldest())
    }
}

/// Replay is impossible: messages after `last_seq` are no longer buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplayGap {
    pub oldest_buffered: u64,
}

impl Link {
    /// A new link whose messages start at `seq` 1, keeping the newest
    /// `capacity` for replay, copied to `journal` if given.
    pub fn new(
        user: UserInfo,
        premium: bool,
        resume_token: String,
        capacity: usize,
        journal: Option<Arc<dyn LinkJournal>>,
    ) -> Self {
        let journal = journal.map(|journal| {
            let key = journal.key(&resume_token);
            (journal, key)
        });
        Link {
            user,
            premium,
            resume_token,
            used: AtomicBool::new(false),
            journal,
            inner: Mutex::new(Inner {
                next_seq: 1,
                buffer: VecDeque::with_capacity(0),
                capacity: capacity.max(1),
                conn: None,
                farewell: None,
            }),
        }
    }

    /// The link a former hub node journaled under `resume_token`, for a
    /// client whose last message was `last_seq`: its messages after
    /// `last_seq` are buffered for replay and numbering goes on after the
    /// newest the client or the journal knows (a client ahead of the
    /// journal got messages it did not record: nothing to replay).
    pub fn restored(
        journaled: JournaledLink,
        resume_token: String,
        last_seq: u64,
        capacity: usize,
        journal: Option<Arc<dyn LinkJournal>>,
    ) -> Self {
        let capacity = capacity.max(1);
        let newest = journaled.messages.last().map_or(0, |(seq, _)| *seq);
        let link = Link::new(journaled.user, journaled.premium, resume_token, capacity, journal);
        link.used.store(true, Ordering::Relaxed);
        {
            let mut inner = link.lock();
            inner.next_seq = newest.max(last_seq) + 1;
            if last_seq < newest {
                let skip = journaled.messages.len().saturating_sub(capacity);
                inner.buffer = journaled.messages.into_iter().skip(skip).map(|(seq, t)| (seq, t.into())).collect();
            }
        }
        link
    }

    /// The journal this link is copied to and its key there, if any.
    pub fn journal(&self) -> Option<(&Arc<dyn LinkJournal>, &Arc<str>)> {
        self.journal.as_ref().map(|(journal, key)| (journal, key))
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

    /// Numbers and buffers `msg` and wakes the attached connection. A
    /// connection so far behind that its next message was pushed out of
    /// the buffer is closed as too slow (its user may resume while the
    /// buffer still holds what they missed).
    pub fn send(&self, msg: &ServerMessage) {
        self.send_json(|buf| serde_json::to_writer(buf, msg));
    }

    /// [`Link::send`] for a message already in JSON form: `write` appends
    /// one JSON object (`{...}`, a `ServerMessage`'s shape) to the buffer
    /// it is given. The relay's fast path writes this way (`crate::relay`).
    ///
    /// The message is serialised into the worker thread's buffer and
    /// copied into one of its exact length, which the replay buffer keeps
    /// until the client confirms it: a buffer that grew by doubling would
    /// keep up to twice its text alive (heaptrack: 73 of the 157 MiB live
    /// with 4,000 connections just set up into calls), and cutting one to
    /// its length afterwards (a `realloc` splitting the block) cost glibc's
    /// allocator more than the copy (perf, the relay at saturation).
    pub fn send_json(&self, write: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>) {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        let text = SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            // `{"seq":N` then the message object with its `{` turned into `,`.
            let _ = write!(buf, "{{\"seq\":{seq}"); // writing to a Vec cannot fail
            let start = buf.len();
            let written = write(buf);
            let text = match written {
                Err(e) => Err(format!("cannot serialise server message: {e}")),
                Ok(()) if buf.get(start) != Some(&b'{') => Err("server message is not a JSON object".to_owned()),
                Ok(()) => {
                    buf[start] = b',';
                    std::str::from_utf8(buf)
                        .map(|text| Utf8Bytes::from(text.to_owned()))
                        .map_err(|e| format!("server message is not UTF-8: {e}"))
                }
            };
            if buf.capacity() > KEEP_SCRATCH {
                *buf = Vec::new();
            }
            text
        });
        let text = match text {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(error = %e, "server message not sent");
                return;
            }
        };
        inner.next_seq += 1;
        if let Some((journal, key)) = &self.journal {
            journal.appended(key, seq, &text);
        }
        if inner.buffer.len() == inner.capacity {
            inner.buffer.pop_front();
        }
        inner.buffer.push_back((seq, text));
        if let Some(conn) = &inner.conn {
            conn.wake.notify_one();
        }
    }

    /// Attaches connection `conn` (woken through `wake`) to write this
    /// link's messages from `last_seq + 1` on (`None`: only new ones).
    /// Returns how many buffered messages it will replay. A connection
    /// attached before is told to close (replaced).
    pub fn attach(&self, conn: u64, wake: Arc<Notify>, last_seq: Option<u64>) -> Result<u64, ReplayGap> {
        let mut inner = self.lock();
        let newest = inner.next_seq - 1;
        let sent = match last_seq {
            Some(last_seq) => {
                let oldest = inner.oldest();
                if last_seq + 1 < oldest || last_seq > newest {
                    return Err(ReplayGap { oldest_buffered: oldest });
                }
                last_seq
            }
            None => newest,
        };
        if let Some(old) = inner.conn.take()
            && old.id != conn
        {
            old.wake.notify_one();
            inner.farewell =
                Some(Farewell { conn: old.id, code: CLOSE_REPLACED, reason: "replaced by a newer connection" });
        }
        wake.notify_one();
        inner.conn = Some(Attached { id: conn, wake, sent, closing: None });
        Ok(newest - sent)
    }

    /// Appends to `batch` up to `max` messages not yet handed to connection
    /// `conn`, and says whether it should close after writing them.
    #[cfg(test)]
    pub fn take(&self, conn: u64, batch: &mut Vec<Utf8Bytes>, max: usize) -> Take {
        self.take_each(conn, max, usize::MAX, |text| batch.push(text.clone()))
    }

    /// [`Link::take`], handing each message to `each` where it lies in the
    /// replay buffer (under the link's lock: `each` must not send on this
    /// link), up to `max` messages or until they add up to `max_bytes` (at
    /// least one message). A connection copies them into its socket's
    /// write queue this way, with no handle of its own to each message
    /// (cloning one cost an allocation and its release per message: perf,
    /// the relay at saturation).
    pub fn take_each(&self, conn: u64, max: usize, max_bytes: usize, mut each: impl FnMut(&Utf8Bytes)) -> Take {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let oldest = inner.oldest();
        let Some(attached) = inner.conn.as_mut().filter(|a| a.id == conn) else {
            return match inner.farewell.take() {
                Some(f) if f.conn == conn => Take::Close(f.code, f.reason),
                other => {
                    inner.farewell = other;
                    Take::Close(CLOSE_TOO_SLOW, "detached")
                }
            };
        };
        if attached.sent + 1 < oldest {
            tracing::warn!(user = %self.user.id, conn, "client too slow: unsent messages left the buffer");
            inner.conn = None;
            return Take::Close(CLOSE_TOO_SLOW, "too slow to read messages; resume to catch up");
        }
        let skip = (attached.sent + 1 - oldest) as usize;
        let mut bytes = 0;
        for (seq, text) in inner.buffer.iter().skip(skip).take(max) {
            if bytes >= max_bytes {
                break;
            }
            bytes += text.len();
            each(text);
            attached.sent = *seq;
        }
        if attached.sent + 1 == inner.next_seq
            && let Some((code, reason)) = attached.closing
        {
            inner.conn = None;
            return Take::Close(code, reason);
        }
        if attached.sent + 1 < inner.next_seq {
            attached.wake.notify_one(); // more than `max` or `max_bytes`: come back
        }
        let sent = attached.sent;
        Take::Write { sent, unconfirmed: inner.unconfirmed(sent) }
    }

    /// Connection `conn` read every message up to `seq` (its pong answered
    /// a ping sent after them: [`crate::connection`]), so they can no
    /// longer be missed and leave the replay buffer. Only messages handed
    /// to `conn` are dropped; a stale `conn` or a `seq` ahead of them
    /// drops no more. Returns how many left.
    pub fn confirm(&self, conn: u64, seq: u64) -> usize {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(sent) = inner.conn.as_ref().filter(|a| a.id == conn).map(|a| a.sent) else { return 0 };
        let upto = seq.min(sent);
        let before = inner.buffer.len();
        while inner.buffer.front().is_some_and(|(s, _)| *s <= upto) {
            inner.buffer.pop_front();
        }
        // A burst grew the buffer; what is left is small again. An open
        // call's confirmed link keeps no room at all (a call's set-up grew
        // it to 32 entries, 1.3 KiB); the next message allocates anew.
        if inner.buffer.capacity() > 4 && inner.buffer.len() * 4 < inner.buffer.capacity() {
            let keep = inner.buffer.len() * 2;
            inner.buffer.shrink_to(keep);
        }
        before - inner.buffer.len()
    }

    /// For connection `conn`, if attached: the last `seq` handed to it and
    /// how many of the messages up to there are still buffered (written,
    /// not yet confirmed read).
    pub fn unconfirmed(&self, conn: u64) -> Option<(u64, u64)> {
        let inner = self.lock();
        let sent = inner.conn.as_ref().filter(|a| a.id == conn)?.sent;
        Some((sent, inner.unconfirmed(sent)))
    }

    /// Messages in the replay buffer.
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.lock().buffer.len()
    }

    /// Detaches connection `conn`, if it is the attached one.
    pub fn detach(&self, conn: u64) {
        let mut inner = self.lock();
        if inner.conn.as_ref().is_some_and(|a| a.id == conn) {
            inner.conn = None;
        }
    }

    /// Asks the attached connection, if any, to write what it has not yet
    /// written and then close with `code`.
    pub fn close(&self, code: u16, reason: &'static str) {
        let mut inner = self.lock();
        if let Some(conn) = inner.conn.as_mut() {
            conn.closing = Some((code, reason));
            conn.wake.notify_one();
        }
    }

    /// Whether a connection is attached (and not closing).
    pub fn is_attached(&self) -> bool {
        self.lock().conn.as_ref().is_some_and(|a| a.closing.is_none())
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
        Link::new(user, false, "tok".into(), capacity, None)
    }

    fn msg() -> ServerMessage {
        ServerMessage::PresenceUpdated { status: PresenceStatus::Busy }
    }

    fn take(l: &Link, conn: u64, max: usize) -> (Take, Vec<String>) {
        let mut batch = Vec::new();
        let what = l.take(conn, &mut batch, max);
        (what, batch.iter().map(|t| t.to_string()).collect())
    }

    fn seqs(texts: &[String]) -> Vec<u64> {
        texts.iter().map(|t| serde_json::from_str::<serde_json::Value>(t).unwrap()["seq"].as_u64().unwrap()).collect()
    }

    #[test]
    fn messages_are_numbered_and_replayed_after_last_seq() {
        let l = link(8);
        for _ in 0..5 {
            l.send(&msg());
        }
        assert_eq!(l.attach(7, Arc::new(Notify::new()), Some(3)), Ok(2));
        let (what, texts) = take(&l, 7, 64);
        assert_eq!(what, Take::Write { sent: 5, unconfirmed: 5 });
        assert_eq!(texts[0], r#"{"seq":4,"type":"presence.updated","status":"busy"}"#);
        assert_eq!(seqs(&texts), [4, 5]);
        l.send(&msg());
        assert_eq!(seqs(&take(&l, 7, 64).1), [6]);
        assert!(take(&l, 7, 64).1.is_empty(), "nothing is handed out twice");
        assert_eq!(l.last_seq(), 6);
    }

    #[tokio::test]
    async fn sending_wakes_the_attached_connection() {
        let l = link(8);
        let wake = Arc::new(Notify::new());
        l.attach(1, wake.clone(), None).unwrap();
        wake.notified().await; // attaching wakes it once
        l.send(&msg());
        tokio::time::timeout(std::time::Duration::from_secs(1), wake.notified()).await.expect("woken");
    }

    #[test]
    fn replay_fails_when_the_buffer_lost_messages_or_seq_is_from_the_future() {
        let l = link(2);
        for _ in 0..5 {
            l.send(&msg());
        }
        let wake = Arc::new(Notify::new());
        assert_eq!(l.attach(1, wake.clone(), Some(1)), Err(ReplayGap { oldest_buffered: 4 }));
        assert_eq!(l.attach(1, wake.clone(), Some(9)), Err(ReplayGap { oldest_buffered: 4 }));
        assert_eq!(l.attach(1, wake, Some(3)), Ok(2));
    }

    #[test]
    fn a_connection_that_falls_out_of_the_buffer_is_closed_and_can_resume() {
        let l = link(2);
        l.attach(1, Arc::new(Notify::new()), None).unwrap();
        for _ in 0..3 {
            l.send(&msg());
        }
        assert_eq!(take(&l, 1, 64).0, Take::Close(CLOSE_TOO_SLOW, "too slow to read messages; resume to catch up"));
        assert!(!l.is_attached());
        // What is still buffered can be resumed.
        assert_eq!(l.attach(2, Arc::new(Notify::new()), Some(1)), Ok(2));
        assert_eq!(seqs(&take(&l, 2, 64).1), [2, 3]);
    }

    /// What a hub node journaled of `l` (every message it still buffers).
    fn journaled(l: &Link) -> JournaledLink {
        let messages = l.lock().buffer.iter().map(|(seq, t)| (*seq, t.to_string())).collect();
        JournaledLink { user: l.user.clone(), term: "core-1".into(), premium: false, available: false, messages }
    }

    #[test]
    fn a_restored_link_replays_what_the_client_missed_and_numbers_on() {
        let old = link(8);
        for _ in 0..5 {
            old.send(&msg());
        }
        // The client had seq 3: 4 and 5 are replayed, the next is 6.
        let l = Link::restored(journaled(&old), "tok".into(), 3, 8, None);
        assert_eq!(l.attach(1, Arc::new(Notify::new()), Some(3)), Ok(2));
        assert_eq!(take(&l, 1, 64).1, journaled(&old).messages[3..].iter().map(|m| m.1.clone()).collect::<Vec<_>>());
        l.send(&msg());
        assert_eq!(seqs(&take(&l, 1, 64).1), [6]);
        assert!(l.is_used(), "a restored link is worth resuming again");
    }

    #[test]
    fn a_client_ahead_of_the_journal_gets_nothing_twice_and_no_number_again() {
        let old = link(8);
        for _ in 0..3 {
            old.send(&msg());
        }
        // The client got 4 and 5, which the journal never recorded.
        let l = Link::restored(journaled(&old), "tok".into(), 5, 8, None);
        assert_eq!(l.attach(1, Arc::new(Notify::new()), Some(5)), Ok(0));
        l.send(&msg());
        assert_eq!(seqs(&take(&l, 1, 64).1), [6]);
    }

    #[test]
    fn a_client_whose_missed_messages_left_the_journal_cannot_resume() {
        let old = link(2);
        for _ in 0..5 {
            old.send(&msg());
        }
        let l = Link::restored(journaled(&old), "tok".into(), 1, 2, None);
        assert_eq!(l.attach(1, Arc::new(Notify::new()), Some(1)), Err(ReplayGap { oldest_buffered: 4 }));
    }

    #[test]
    fn confirmed_messages_leave_the_buffer_and_resume_goes_on_from_there() {
        let l = link(256);
        l.attach(1, Arc::new(Notify::new()), None).unwrap();
        for _ in 0..200 {
            l.send(&msg());
        }
        let (what, texts) = take(&l, 1, 150);
        assert_eq!((what, texts.len()), (Take::Write { sent: 150, unconfirmed: 150 }, 150));
        assert_eq!(l.unconfirmed(1), Some((150, 150)));
        assert_eq!(l.confirm(2, 150), 0, "another connection confirms nothing");
        assert_eq!(l.confirm(1, 500), 150, "only what was written leaves, whatever the pong says");
        assert_eq!((l.buffered(), l.unconfirmed(1)), (50, Some((150, 0))));
        assert!(l.lock().buffer.capacity() < 256, "the burst's room is given back");
        // The client dropped after reading 150: it resumes from there.
        l.detach(1);
        assert_eq!(l.attach(2, Arc::new(Notify::new()), Some(150)), Ok(50));
        assert_eq!(seqs(&take(&l, 2, 64).1)[0], 151);
        // A client claiming to have read less than it confirmed cannot.
        assert_eq!(l.attach(3, Arc::new(Notify::new()), Some(100)), Err(ReplayGap { oldest_buffered: 151 }));
    }

    #[test]
    fn a_connection_that_confirmed_everything_resumes_with_nothing_to_replay() {
        let l = link(64);
        l.attach(1, Arc::new(Notify::new()), None).unwrap();
        for _ in 0..30 {
            l.send(&msg());
        }
        take(&l, 1, 64);
        l.confirm(1, 30);
        assert_eq!(l.buffered(), 0);
        assert_eq!(l.lock().buffer.capacity(), 0, "an idle confirmed link keeps no room");
        l.detach(1);
        assert_eq!(l.attach(2, Arc::new(Notify::new()), Some(30)), Ok(0));
        l.send(&msg());
        assert_eq!(seqs(&take(&l, 2, 64).1), [31]);
    }

    #[test]
    fn a_take_stops_at_its_bytes_and_wakes_the_connection_for_the_rest() {
        use futures_util::FutureExt;
        let l = link(8);
        let wake = Arc::new(Notify::new());
        l.attach(1, wake.clone(), None).unwrap();
        for _ in 0..5 {
            l.send(&msg());
        }
        let len = l.lock().buffer[0].1.len();
        let mut taken = Vec::new();
        let mut batches = Vec::new();
        loop {
            // The attach and each take that left messages behind wake the connection.
            assert!(wake.notified().now_or_never().is_some(), "woken for what is left after {taken:?}");
            let mut batch = Vec::new();
            let what = l.take_each(1, 64, 2 * len - 1, |text| batch.push(text.to_string()));
            batches.push(batch.len());
            taken.extend(seqs(&batch));
            if what == (Take::Write { sent: 5, unconfirmed: 5 }) {
                break;
            }
        }
        assert_eq!(taken, [1, 2, 3, 4, 5], "every message once, in order");
        assert_eq!(batches, [2, 2, 1], "two messages reach the bytes; the last batch is what was left");
        assert!(wake.notified().now_or_never().is_none(), "nothing left: no wake");
        // A message larger than the bytes still goes, alone.
        l.send(&msg());
        l.send(&msg());
        let mut batch = Vec::new();
        l.take_each(1, 64, 1, |text| batch.push(text.to_string()));
        assert_eq!(seqs(&batch), [6]);
    }

    #[test]
    fn a_replaced_connection_is_told_to_close() {
        let l = link(8);
        l.attach(1, Arc::new(Notify::new()), None).unwrap();
        l.attach(2, Arc::new(Notify::new()), None).unwrap();
        assert_eq!(take(&l, 1, 64).0, Take::Close(CLOSE_REPLACED, "replaced by a newer connection"));
        assert_eq!(take(&l, 2, 64).0, Take::Write { sent: 0, unconfirmed: 0 });
    }

    #[test]
    fn close_comes_after_everything_queued_before_it() {
        let l = link(8);
        l.attach(1, Arc::new(Notify::new()), None).unwrap();
        l.send(&msg());
        l.send(&msg());
        l.close(1001, "bye");
        assert!(!l.is_attached());
        let (what, texts) = take(&l, 1, 1);
        assert_eq!((what, seqs(&texts)), (Take::Write { sent: 1, unconfirmed: 1 }, vec![1]));
        let (what, texts) = take(&l, 1, 1);
        assert_eq!((what, seqs(&texts)), (Take::Close(1001, "bye"), vec![2]));
    }
}
