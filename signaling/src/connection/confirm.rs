//! When a connection asks its client to confirm what it read: a ping
//! carrying the last `seq` written, whose pong frees the confirmed
//! messages from the replay buffer (docs/protocol.md §8.7).

use std::time::Duration;

use tokio::time::Instant;

use super::{CONFIRM_BYTES, CONFIRM_EVERY};

/// How long a connection's writes may pause, with at least
/// [`CONFIRM_QUIET_BYTES`] written since the last ping that asked, before
/// a ping asks for them: the end of a burst (a call's SDP and candidates)
/// is confirmed this long after it, not at the next keepalive. Each write
/// pushes it back, so a connection that keeps writing is asked by count
/// and bytes alone. Each pause asked about in a row, with no ask by count,
/// bytes or the keepalive between, doubles the next pause needed, up to
/// 2^[`CONFIRM_QUIET_DOUBLINGS`] times this: a connection written a few
/// messages a second is not asked after every few.
pub const CONFIRM_QUIET: Duration = Duration::from_millis(100);

/// Bytes written since the last ping that asked for a pause to be asked
/// about ([`CONFIRM_QUIET`]): fewer (acks, presence, a call being paired)
/// wait for the next ask or the keepalive, so a set-up whose small
/// messages come far apart is not answered with a ping after each.
pub const CONFIRM_QUIET_BYTES: usize = 1024;

/// A write (one flush) of at least this many bytes asks at once, when no
/// ping waits for its pong: what a call's set-up writes in one piece, an
/// SDP of a few KiB, leaves the replay buffer one round trip after it is
/// written, not after [`CONFIRM_BYTES`] more or a pause; so does a write
/// that carries many candidates at once (a relay with several in flight
/// per pair: 30 % more pings there, the CPU per message unchanged). One
/// candidate at a time, a few hundred bytes, is asked about by count and
/// bytes as before. Measured: the heap's peak while 5,000 calls are set
/// up, and the relay with 8 in flight, load-tests/README.md, twenty-fourth
/// run (a rule on the largest message alone, not the write, left 40 %
/// more in the replay buffers at that peak).
pub const CONFIRM_LARGE_WRITE: usize = 2 * 1024;

/// How many times the pause [`CONFIRM_QUIET`] needed doubles (1.6 s at most).
pub const CONFIRM_QUIET_DOUBLINGS: u32 = 4;

/// A connection's read confirmations: which ping asked for one last and
/// when to ask again. Pure: the connection sends the pings, hands in the
/// pongs and wakes at [`Confirm::deadline`].
#[derive(Debug, Default)]
pub(super) struct Confirm {
    /// The `seq` the newest ping asked the client to confirm (its payload).
    asked: u64,
    /// That ping's pong has not come yet (it is not charged to the rate
    /// limit, once).
    awaiting: bool,
    /// Bytes written since the newest ping that asked ([`CONFIRM_BYTES`]).
    written: usize,
    /// The last `seq` written.
    sent: u64,
    /// When to ask for the messages up to `sent` if nothing is written
    /// before ([`CONFIRM_QUIET`]); `None` when none waits to be asked or
    /// they are too few bytes ([`CONFIRM_QUIET_BYTES`]).
    quiet_at: Option<Instant>,
    /// Pauses asked about in a row ([`CONFIRM_QUIET_DOUBLINGS`]).
    quiet_asks: u32,
}

impl Confirm {
    /// A ping asking to confirm up to `sent` goes out now (by count or
    /// bytes, or the keepalive's); returns `sent`.
    pub(super) fn asking(&mut self, sent: u64) -> u64 {
        *self = Confirm { asked: sent, awaiting: true, written: 0, sent, quiet_at: None, quiet_asks: 0 };
        sent
    }

    /// The pause after which written messages are asked about.
    fn pause(&self) -> std::time::Duration {
        CONFIRM_QUIET * (1 << self.quiet_asks.min(CONFIRM_QUIET_DOUBLINGS))
    }

    /// The `seq` a pong with `payload_seq` confirms: only the pong to the
    /// newest ping, once. Messages written after that ping are asked
    /// about a pause ([`CONFIRM_QUIET`]) after `now` unless a write asks
    /// first.
    pub(super) fn pong(&mut self, payload_seq: Option<u64>, now: Instant) -> Option<u64> {
        (self.awaiting && payload_seq == Some(self.asked)).then(|| {
            self.awaiting = false;
            if self.sent > self.asked && self.written >= CONFIRM_QUIET_BYTES && self.quiet_at.is_none() {
                self.quiet_at = Some(now + self.pause());
            }
            self.asked
        })
    }

    /// Whether a write of `bytes` at `now`, up to `seq` `sent` with
    /// `unconfirmed` messages written and not yet confirmed, should end
    /// with a ping asking to confirm them (the `seq` to put in it): when
    /// [`CONFIRM_EVERY`] wait and as many were written since the last ask,
    /// or [`CONFIRM_BYTES`] were (or this write alone was
    /// [`CONFIRM_LARGE_WRITE`]) and no ping waits for its pong. Otherwise,
    /// once [`CONFIRM_QUIET_BYTES`] were written since the last ask, they
    /// are asked about a pause ([`CONFIRM_QUIET`]) after `now`, unless
    /// another write comes first.
    pub(super) fn after_write(&mut self, sent: u64, unconfirmed: u64, bytes: usize, now: Instant) -> Option<u64> {
        self.written += bytes;
        self.sent = self.sent.max(sent);
        let by_count = unconfirmed >= CONFIRM_EVERY && sent >= self.asked + CONFIRM_EVERY;
        let by_bytes =
            (self.written >= CONFIRM_BYTES || bytes >= CONFIRM_LARGE_WRITE) && sent > self.asked && !self.awaiting;
        if by_count || by_bytes {
            return Some(self.asking(sent));
        }
        if bytes > 0 && unconfirmed > 0 && sent > self.asked && self.written >= CONFIRM_QUIET_BYTES {
            self.quiet_at = Some(now + self.pause());
        }
        None
    }

    /// When [`Confirm::quiet`] has something to ask, if ever.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.quiet_at
    }

    /// At `now`, past [`Confirm::deadline`]: the `seq` a ping should ask
    /// to confirm, when messages were written since the last ask and no
    /// ping waits for its pong (that pong sets a new deadline). `None`
    /// before the deadline.
    pub(super) fn quiet(&mut self, now: Instant) -> Option<u64> {
        if self.quiet_at.is_none_or(|at| at > now) {
            return None;
        }
        self.quiet_at = None;
        if self.awaiting || self.sent == self.asked {
            return None;
        }
        let asks = self.quiet_asks.saturating_add(1);
        let seq = self.asking(self.sent);
        self.quiet_asks = asks;
        Some(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_is_asked_per_32_messages_or_per_8_kib_once_the_last_is_answered() {
        let mut c = Confirm::default();
        let t = Instant::now();
        // 31 small messages (in writes under CONFIRM_LARGE_WRITE): not yet.
        assert_eq!(c.after_write(30, 30, 30 * 60, t), None);
        assert_eq!(c.after_write(31, 31, 100, t), None);
        // The 32nd: asked, by count.
        assert_eq!(c.after_write(32, 32, 100, t), Some(32));
        // 8 KiB more before the pong: not by bytes while one waits...
        assert_eq!(c.after_write(33, 33, CONFIRM_BYTES, t), None);
        // ...but by count, 32 messages on.
        assert_eq!(c.after_write(64, 64, 100, t), Some(64));
        // Answered: now 8 KiB in five writes, each under CONFIRM_LARGE_WRITE,
        // are enough.
        assert_eq!(c.pong(Some(64), t), Some(64));
        let small = CONFIRM_LARGE_WRITE - 1;
        for sent in 65..69 {
            assert_eq!(c.after_write(sent, sent - 64, small, t), None);
        }
        assert!(5 * small >= CONFIRM_BYTES);
        assert_eq!(c.after_write(69, 5, small, t), Some(69));
    }

    #[test]
    fn a_large_write_asks_at_once_unless_a_ping_waits() {
        let mut c = Confirm::default();
        let t = Instant::now();
        // An ack and a presence update: small, not asked.
        assert_eq!(c.after_write(2, 2, 300, t), None);
        // An SDP, in one write: asked at once.
        assert_eq!(c.after_write(3, 3, CONFIRM_LARGE_WRITE, t), Some(3));
        // Another before the pong: not while that ping waits.
        assert_eq!(c.after_write(4, 4, CONFIRM_LARGE_WRITE, t), None);
        assert_eq!(c.pong(Some(3), t), Some(3));
        // Small writes after the pong add up as before: not asked until
        // CONFIRM_BYTES (or the count, or a pause)...
        assert_eq!(c.after_write(5, 2, CONFIRM_LARGE_WRITE - 1, t), None);
        // ...and a large one asks.
        assert_eq!(c.after_write(6, 3, CONFIRM_LARGE_WRITE + 1, t), Some(6));
    }

    #[test]
    fn only_the_pong_to_the_newest_ping_confirms_and_only_once() {
        let mut c = Confirm::default();
        let t = Instant::now();
        assert_eq!(c.pong(Some(0), t), None, "nothing asked yet");
        c.asking(10);
        c.asking(20);
        assert_eq!(c.pong(Some(10), t), None, "an older ping's pong");
        assert_eq!(c.pong(None, t), None, "not a confirming pong");
        assert_eq!(c.pong(Some(20), t), Some(20));
        assert_eq!(c.pong(Some(20), t), None, "once");
    }

    #[test]
    fn a_kib_left_unasked_is_asked_once_the_writes_have_been_quiet_for_a_while() {
        let mut c = Confirm::default();
        let t = Instant::now();
        assert_eq!(c.deadline(), None, "nothing written");
        // Small messages, under CONFIRM_QUIET_BYTES: no deadline.
        assert_eq!(c.after_write(3, 3, 3 * 200, t), None);
        assert_eq!(c.deadline(), None);
        // Three candidates more: too few to ask by count or bytes, enough
        // to ask about once the writes pause.
        assert_eq!(c.after_write(6, 6, 3 * 300, t), None);
        assert_eq!(c.deadline(), Some(t + CONFIRM_QUIET));
        // Another write pushes the deadline back.
        let t1 = t + CONFIRM_QUIET / 2;
        assert_eq!(c.after_write(7, 7, 300, t1), None);
        assert_eq!(c.quiet(t + CONFIRM_QUIET), None, "not quiet long enough");
        assert_eq!(c.deadline(), Some(t1 + CONFIRM_QUIET));
        // Quiet since: asked, once.
        assert_eq!(c.quiet(t1 + CONFIRM_QUIET), Some(7));
        assert_eq!(c.deadline(), None);
        assert_eq!(c.quiet(t1 + CONFIRM_QUIET * 2), None);
        // A wake with nothing written sets no deadline.
        assert_eq!(c.after_write(7, 7, 0, t1), None);
        assert_eq!(c.deadline(), None);
    }

    #[test]
    fn a_pause_while_a_ping_waits_is_asked_about_after_its_pong() {
        let mut c = Confirm::default();
        let t = Instant::now();
        assert_eq!(c.after_write(32, 32, 3200, t), Some(32));
        assert_eq!(c.deadline(), None, "all asked");
        // Two more before the pong: their deadline comes, but a ping waits.
        assert_eq!(c.after_write(34, 34, CONFIRM_QUIET_BYTES, t), None);
        assert_eq!(c.quiet(t + CONFIRM_QUIET), None);
        assert_eq!(c.deadline(), None);
        // Its pong confirms 32 and sets a deadline for 33 and 34.
        let t2 = t + CONFIRM_QUIET * 3;
        assert_eq!(c.pong(Some(32), t2), Some(32));
        assert_eq!(c.deadline(), Some(t2 + CONFIRM_QUIET));
        assert_eq!(c.quiet(t2 + CONFIRM_QUIET), Some(34));
        // Everything asked was answered: no deadline after that pong.
        assert_eq!(c.pong(Some(34), t2), Some(34));
        assert_eq!(c.deadline(), None);
    }

    #[test]
    fn a_write_that_asks_clears_the_deadline() {
        let mut c = Confirm::default();
        let t = Instant::now();
        assert_eq!(c.after_write(10, 10, CONFIRM_QUIET_BYTES, t), None);
        assert!(c.deadline().is_some());
        assert_eq!(c.after_write(11, 11, CONFIRM_BYTES, t), Some(11));
        assert_eq!(c.deadline(), None);
        assert_eq!(c.quiet(t + CONFIRM_QUIET), None);
    }

    #[test]
    fn pauses_asked_about_in_a_row_need_twice_as_long_each_until_a_write_asks() {
        let mut c = Confirm::default();
        let mut t = Instant::now();
        let mut sent = 0;
        // A candidate (300 B) every 150 ms: the first pause after 1 KiB
        // is asked about, then 200 ms are needed, more than these pauses.
        let mut asked = Vec::new();
        for _ in 0..10 {
            sent += 1;
            assert_eq!(c.after_write(sent, 1, 300, t), None);
            let next = t + Duration::from_millis(150);
            if let Some(at) = c.deadline().filter(|at| *at <= next) {
                asked.extend(c.quiet(at));
                assert_eq!(c.pong(Some(sent), at), Some(sent));
            }
            t = next;
        }
        assert_eq!(asked, [4], "one ask, then the pauses are too short");
        // Pauses of 1.6 s are always long enough.
        for _ in 0..6 {
            sent += 1;
            c.after_write(sent, 1, CONFIRM_QUIET_BYTES, t);
            assert!(c.deadline().unwrap() <= t + CONFIRM_QUIET * 16);
            assert_eq!(c.quiet(t + CONFIRM_QUIET * 16), Some(sent));
            c.pong(Some(sent), t);
            t += CONFIRM_QUIET * 16;
        }
        // An ask by bytes starts again from 100 ms.
        sent += 1;
        assert_eq!(c.after_write(sent, 1, CONFIRM_BYTES, t), Some(sent));
        c.pong(Some(sent), t);
        sent += 1;
        c.after_write(sent, 1, CONFIRM_QUIET_BYTES, t);
        assert_eq!(c.deadline(), Some(t + CONFIRM_QUIET));
    }
}
