//! Server time (DESIGN.md M1: only server time counts).
//!
//! A [`Timestamp`] is Unix time in milliseconds read from the server's
//! clock. Code that needs the time takes a [`Clock`] so tests control it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Unix time in milliseconds, from the server clock. Serialised as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The timestamp `ms` milliseconds after the Unix epoch.
    pub const fn from_unix_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch (rounded down).
    pub const fn unix_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// The time from `earlier` to `self`; zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A future that completes when a [`Clock`] reaches a deadline.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The server clock, injected wherever time matters.
///
/// The production clock reads the system time; tests use a manual clock they
/// advance by hand, so time-based rules (ring timeout, resume window) are
/// tested without waiting or racing.
pub trait Clock: Send + Sync + 'static {
    /// The current server time.
    fn now(&self) -> Timestamp;
    /// Completes once [`Clock::now`] is at or past `deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> Sleep;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_and_never_goes_negative() {
        let t = Timestamp::from_unix_millis(1_000);
        assert_eq!(t.plus(Duration::from_millis(500)).unix_millis(), 1_500);
        assert_eq!(t.since(Timestamp::from_unix_millis(1_500)), Duration::ZERO);
        assert_eq!(Timestamp::from_unix_millis(2_500).since(t), Duration::from_millis(1_500));
        assert_eq!(Timestamp::from_unix_millis(-1).unix_secs(), -1);
    }
}
