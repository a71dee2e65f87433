//! When a connection asks its client to confirm what it read: a ping
//! carrying the last `seq` written, whose pong frees the confirmed
//! messages from the replay buffer (docs/protocol.md §8.7).

use super::{CONFIRM_BYTES, CONFIRM_EVERY};

/// A connection's read confirmations: which ping asked for one last and
/// when to ask again. Pure: the connection sends the pings and hands in
/// the pongs.
#[derive(Debug, Default)]
pub(super) struct Confirm {
    /// The `seq` the newest ping asked the client to confirm (its payload).
    asked: u64,
    /// That ping's pong has not come yet (it is not charged to the rate
    /// limit, once).
    awaiting: bool,
    /// Bytes written since the newest ping that asked ([`CONFIRM_BYTES`]).
    written: usize,
}

impl Confirm {
    /// A ping asking to confirm up to `sent` goes out now; returns `sent`.
    pub(super) fn asking(&mut self, sent: u64) -> u64 {
        *self = Confirm { asked: sent, awaiting: true, written: 0 };
        sent
    }

    /// The `seq` a pong with `payload_seq` confirms: only the pong to the
    /// newest ping, once.
    pub(super) fn pong(&mut self, payload_seq: Option<u64>) -> Option<u64> {
        (self.awaiting && payload_seq == Some(self.asked)).then(|| {
            self.awaiting = false;
            self.asked
        })
    }

    /// Whether a write of `bytes`, up to `seq` `sent` with `unconfirmed`
    /// messages written and not yet confirmed, should end with a ping
    /// asking to confirm them (the `seq` to put in it): when
    /// [`CONFIRM_EVERY`] wait and as many were written since the last ask,
    /// or [`CONFIRM_BYTES`] were and no ping waits for its pong.
    pub(super) fn after_write(&mut self, sent: u64, unconfirmed: u64, bytes: usize) -> Option<u64> {
        self.written += bytes;
        let by_count = unconfirmed >= CONFIRM_EVERY && sent >= self.asked + CONFIRM_EVERY;
        let by_bytes = self.written >= CONFIRM_BYTES && sent > self.asked && !self.awaiting;
        (by_count || by_bytes).then(|| self.asking(sent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_is_asked_per_32_messages_or_per_8_kib_once_the_last_is_answered() {
        let mut c = Confirm::default();
        // 31 small messages: not yet.
        assert_eq!(c.after_write(31, 31, 31 * 100), None);
        // The 32nd: asked, by count.
        assert_eq!(c.after_write(32, 32, 100), Some(32));
        // 8 KiB more before the pong: not by bytes while one waits...
        assert_eq!(c.after_write(33, 33, CONFIRM_BYTES), None);
        // ...but by count, 32 messages on.
        assert_eq!(c.after_write(64, 64, 100), Some(64));
        // Answered: now 8 KiB in two messages are enough.
        assert_eq!(c.pong(Some(64)), Some(64));
        assert_eq!(c.after_write(65, 1, CONFIRM_BYTES / 2), None);
        assert_eq!(c.after_write(66, 2, CONFIRM_BYTES / 2), Some(66));
    }

    #[test]
    fn only_the_pong_to_the_newest_ping_confirms_and_only_once() {
        let mut c = Confirm::default();
        assert_eq!(c.pong(Some(0)), None, "nothing asked yet");
        c.asking(10);
        c.asking(20);
        assert_eq!(c.pong(Some(10)), None, "an older ping's pong");
        assert_eq!(c.pong(None), None, "not a confirming pong");
        assert_eq!(c.pong(Some(20)), Some(20));
        assert_eq!(c.pong(Some(20)), None, "once");
    }
}
