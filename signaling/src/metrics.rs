//! Metric names (Prometheus, via the `metrics` facade; `server` installs
//! the exporter and serves `/metrics`).

use std::sync::LazyLock;

use metrics::{Counter, counter, gauge};
use parley_domain::protocol::ErrorCode;

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
/// written), `quiet` (the writes paused) or `keepalive` (counter).
pub const CONFIRM_PINGS: &str = "parley_signal_confirm_pings_total";
/// Instant calls by `outcome`: `accepted`, `hold_refused` or a
/// [`parley_domain::protocol::CallEndReason`] (counter).
pub const CALLS: &str = "parley_calls_total";

pub(crate) fn connection_opened() {
    gauge!(CONNECTIONS).increment(1.0);
    counter!(CONNECTIONS_TOTAL).increment(1);
}

pub(crate) fn connection_closed() {
    gauge!(CONNECTIONS).decrement(1.0);
}

/// The relayed types, whose counters are looked up once ([`received`]).
const RELAYED: [&str; 3] = ["ice.candidate", "sdp.offer", "sdp.answer"];

/// Counts a client message of type `kind`.
///
/// The relayed types' counters and [`sent`]'s are looked up in the
/// recorder once, at their first use, and kept: a lookup per message (the
/// name and labels hashed and compared under the registry's lock) cost
/// about 1 % of the server's CPU at the relay's saturation (perf). The
/// recorder must therefore be installed before the first message; the
/// server installs it as it builds the app, before it accepts anything.
pub(crate) fn received(kind: &'static str) {
    static COUNTERS: LazyLock<[Counter; 3]> =
        LazyLock::new(|| RELAYED.map(|kind| counter!(MESSAGES_RECEIVED, "type" => kind)));
    match RELAYED.iter().position(|relayed| *relayed == kind) {
        Some(i) => COUNTERS[i].increment(1),
        None => counter!(MESSAGES_RECEIVED, "type" => kind).increment(1),
    }
}

/// Counts `n` server messages written (its counter kept as [`received`]'s).
pub(crate) fn sent(n: u64) {
    static COUNTER: LazyLock<Counter> = LazyLock::new(|| counter!(MESSAGES_SENT));
    COUNTER.increment(n);
}

pub(crate) fn error(code: ErrorCode) {
    counter!(ERRORS, "code" => code.as_str()).increment(1);
}

pub(crate) fn frame_dropped() {
    counter!(FRAMES_DROPPED).increment(1);
}

pub(crate) fn confirm_ping(reason: &'static str) {
    counter!(CONFIRM_PINGS, "reason" => reason).increment(1);
}

pub(crate) fn call(outcome: &'static str) {
    counter!(CALLS, "outcome" => outcome).increment(1);
}
