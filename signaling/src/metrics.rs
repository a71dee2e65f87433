//! Metric names (Prometheus, via the `metrics` facade; `server` installs
//! the exporter and serves `/metrics`).

use std::sync::LazyLock;

use metrics::{Counter, Gauge, counter, gauge};
use parley_domain::protocol::{ClientMessage, ErrorCode};

/// Open signaling WebSockets (gauge).
pub const CONNECTIONS: &str = "parley_signal_connections";
/// WebSockets accepted (counter).
pub const CONNECTIONS_TOTAL: &str = "parley_signal_connections_total";
/// Client messages received, by `type` (counter).
pub const MESSAGES_RECEIVED: &str = "parley_signal_messages_received_total";
/// Server messages sent (counter).
pub const MESSAGES_SENT: &str = "parley_signal_messages_sent_total";
/// Errors sent, by `code` (counter).
pub const ERRORS: &str = "parley_signal_errors_total";
/// Client frames dropped unread by the rate limit (counter).
pub const FRAMES_DROPPED: &str = "parley_signal_frames_dropped_total";
/// WebSocket pings asking the client to confirm what it read
/// (docs/protocol.md §8.7), by `reason`: `write` (32 messages or 8 KiB
/// written, or one write of 2 KiB), `quiet` (the writes paused) or
/// `keepalive` (counter).
pub const CONFIRM_PINGS: &str = "parley_signal_confirm_pings_total";
/// Instant calls by `outcome`: `accepted`, `hold_refused` or a
/// [`parley_domain::protocol::CallEndReason`] (counter).
pub const CALLS: &str = "parley_calls_total";

/// One metric's counters, one per value of its one label, each looked up
/// in the recorder once, at the first use of any, and kept: a lookup (the
/// name and labels hashed, compared and, for a new key, copied under the
/// registry's lock) cost about 1 % of the server's CPU at the relay's
/// saturation (perf), and 17 of the 600 allocations of a connection paired
/// into a call and hung up (a uprobe on `malloc`; load-tests/README.md,
/// twenty-third run). The recorder must therefore be installed before the
/// first use; the server installs it as it builds the app, before it
/// accepts anything. A value not among those listed is looked up each
/// time.
struct Labelled {
    name: &'static str,
    label: &'static str,
    counters: Vec<(&'static str, Counter)>,
}

impl Labelled {
    fn new(name: &'static str, label: &'static str, values: impl IntoIterator<Item = &'static str>) -> Labelled {
        let counters = values.into_iter().map(|value| (value, counter!(name, label => value))).collect();
        Labelled { name, label, counters }
    }

    fn increment(&self, value: &'static str) {
        match self.counters.iter().find(|(v, _)| *v == value) {
            Some((_, counter)) => counter.increment(1),
            None => counter!(self.name, self.label => value).increment(1),
        }
    }
}

/// [`CONNECTIONS`], kept as [`Labelled`]'s counters are.
static OPEN: LazyLock<Gauge> = LazyLock::new(|| gauge!(CONNECTIONS));

pub(crate) fn connection_opened() {
    static ACCEPTED: LazyLock<Counter> = LazyLock::new(|| counter!(CONNECTIONS_TOTAL));
    OPEN.increment(1.0);
    ACCEPTED.increment(1);
}

pub(crate) fn connection_closed() {
    OPEN.decrement(1.0);
}

/// The relayed types, first in [`received`]'s list: most messages are one.
const RELAYED: [&str; 3] = ["ice.candidate", "sdp.offer", "sdp.answer"];

/// Counts a client message of type `kind` ([`Labelled`]: every
/// [`ClientMessage::TYPES`], the relayed ones first).
pub(crate) fn received(kind: &'static str) {
    static COUNTERS: LazyLock<Labelled> = LazyLock::new(|| {
        let rest = ClientMessage::TYPES.iter().copied().filter(|t| !RELAYED.contains(t));
        Labelled::new(MESSAGES_RECEIVED, "type", RELAYED.into_iter().chain(rest))
    });
    COUNTERS.increment(kind);
}

/// Counts `n` server messages written (its counter kept as [`Labelled`]'s).
pub(crate) fn sent(n: u64) {
    static COUNTER: LazyLock<Counter> = LazyLock::new(|| counter!(MESSAGES_SENT));
    COUNTER.increment(n);
}

pub(crate) fn error(code: ErrorCode) {
    static COUNTERS: LazyLock<Labelled> =
        LazyLock::new(|| Labelled::new(ERRORS, "code", ErrorCode::ALL.iter().map(|c| c.as_str())));
    COUNTERS.increment(code.as_str());
}

pub(crate) fn frame_dropped() {
    static COUNTER: LazyLock<Counter> = LazyLock::new(|| counter!(FRAMES_DROPPED));
    COUNTER.increment(1);
}

pub(crate) fn confirm_ping(reason: &'static str) {
    static COUNTERS: LazyLock<Labelled> =
        LazyLock::new(|| Labelled::new(CONFIRM_PINGS, "reason", ["write", "quiet", "keepalive"]));
    COUNTERS.increment(reason);
}

pub(crate) fn call(outcome: &'static str) {
    // One of these per call; the ends of calls never accepted are looked up.
    static COUNTERS: LazyLock<Labelled> =
        LazyLock::new(|| Labelled::new(CALLS, "outcome", ["accepted", "hold_refused"]));
    COUNTERS.increment(outcome);
}
