//! A process-wide monotonic clock for one-way latency: senders embed
//! [`now_ns`] in relayed messages, receivers subtract it from their own
//! [`now_ns`] on arrival. Both ends live in this process, so the clocks agree.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static BASE: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process (monotonic).
pub fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The time from `sent_ns` to `at_ns`, both from [`now_ns`]; zero if the
/// stamps are out of order.
pub fn since(sent_ns: u64, at_ns: u64) -> Duration {
    Duration::from_nanos(at_ns.saturating_sub(sent_ns))
}

/// `d` in milliseconds, rounded to microseconds.
pub fn ms(d: Duration) -> f64 {
    crate::stats::round3(d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_monotonic_and_differences_saturate() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        assert_eq!(since(10, 5), Duration::ZERO);
        assert_eq!(since(5, 1_000_005), Duration::from_millis(1));
        assert_eq!(ms(Duration::from_micros(1500)), 1.5);
    }
}
