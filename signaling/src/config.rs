//! Signaling's typed configuration (only `server` reads files and
//! environment variables; it builds this struct).

use std::time::Duration;

use crate::turn::IceConfig;

/// Tunables of the signaling service. [`SignalingConfig::default`] gives the
/// documented defaults (DESIGN.md §3–4).
#[derive(Debug, Clone)]
pub struct SignalingConfig {
    /// How long a consultant rings before the call times out (30 s).
    pub ring_timeout: Duration,
    /// Grace period `G` (DESIGN.md M3, 30 s): how long a dropped connection's
    /// state is kept for `resume`, and how long a participant may be absent
    /// from a room before the session ends.
    pub grace: Duration,
    /// Interval of server WebSocket pings (15 s). A connection silent for
    /// three intervals is closed.
    pub ping_interval: Duration,
    /// Sustained messages per second allowed per connection.
    pub rate_limit_per_sec: u32,
    /// Burst of messages allowed per connection above the sustained rate.
    pub rate_limit_burst: u32,
    /// Server messages kept per client: the connection's outgoing queue and
    /// what `resume` can replay. A client that falls this far behind is
    /// closed as too slow.
    pub replay_buffer: usize,
    /// STUN/TURN servers.
    pub ice: IceConfig,
}

impl Default for SignalingConfig {
    fn default() -> Self {
        SignalingConfig {
            ring_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(30),
            ping_interval: Duration::from_secs(15),
            rate_limit_per_sec: 50,
            rate_limit_burst: 100,
            replay_buffer: 256,
            ice: IceConfig { turn_ttl: Duration::from_secs(3600), ..IceConfig::default() },
        }
    }
}
