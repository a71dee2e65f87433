//! `parley-load`: the load generator for Parley.
//!
//! Four scenarios, each a subcommand of the `parley-load` binary, each an
//! external client of running Parley processes (it depends on the protocol
//! types and the SDK only):
//!
//! * [`call`]: real instant calls through the signaling server with the
//!   Rust SDK — webrtc-rs peer connections on loopback, Opus audio both ways
//!   and data-channel round trips.
//! * [`signal`]: signaling only, on raw WebSocket connections — many idle
//!   connections (accept rate, server memory per connection), call set-up
//!   with realistic SDP and trickled candidates, and relay latency and
//!   throughput.
//! * [`record`]: recorded sessions against a recorder process — premium
//!   seekers, consultants who allow recording, send-only uplinks to the
//!   recorder — measuring the recorder's CPU per session and checking what
//!   it stored.
//! * [`failover`]: live calls through a cluster's balancer while a node is
//!   killed and restarted, again and again — how long until both
//!   participants are back in the room, and the billable seconds lost.
//!
//! Each prints a readable summary and, as the last line of stdout, one JSON
//! object ([`report`]). The tool only talks to loopback addresses
//! ([`target`]) and every loop it runs is bounded in count and time.
//!
//! Beside them, [`bare`]: a bare tokio-tungstenite relay that speaks just
//! enough of the protocol for `signal` to run unchanged against it (the
//! `bare-relay` binary), the floor Parley's figures are set against.
//!
//! The meter's in-process capacity run (many live sessions on one `Meters`
//! driver with the real SQL store) is a benchmark beside the code it
//! measures: `cargo bench -p parley-server --bench meter`; it reuses
//! [`stats`], [`procfs`] and [`report`] from here.
//!
//! See `load-tests/README.md` for how to run it and what the figures mean.

pub mod bare;
pub mod call;
pub mod clock;
pub mod failover;
pub mod limits;
pub mod procfs;
pub mod record;
pub mod report;
pub mod sdp;
pub mod signal;
pub mod stats;
pub mod target;
pub mod tokens;
pub mod ws;

/// The payment method the synthetic seekers pay with (the Stripe test card;
/// the dev server's payment gate accepts anything).
pub const PAYMENT_METHOD: &str = "pm_card_visa";

/// A run identifier, unique enough to keep the synthetic user ids of two
/// runs apart (`load-s-<run>-<i>`): the Unix time in milliseconds, base 36.
pub fn run_id() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    base36(ms as u64)
}

/// `n` in base 36 (lower case).
pub fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_is_compact_and_valid_in_ids() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        let id = format!("load-s-{}-{}", run_id(), 9999);
        assert!(parley_domain::UserId::parse(&id).is_ok(), "{id}");
    }
}
