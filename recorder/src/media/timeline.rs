//! Maps RTP timestamps of successive streams onto one monotonic media clock for a file.
//!
//! Media time 0 is the arrival of the track's first packet. Within one RTP stream (SSRC), media time
//! follows the RTP timestamps (u32 wraparound unwrapped), so lost packets leave a hole of the right
//! length. A new stream (reconnect) starts at its arrival time, so a wall-clock absence becomes a
//! media-time gap of the same length. A timestamp jump that wall-clock arrival cannot explain (more
//! than [`MAX_BACKWARD`] back, or more than [`MAX_AHEAD`] beyond the arrival delta) re-anchors
//! the stream at its arrival time, as a new stream would be. Callers clamp positions to what they
//! have already written, so media time never goes backwards.

use std::time::Duration;

/// Backward RTP timestamp jump within a stream, beyond which the stream is re-anchored: 1 s.
pub const MAX_BACKWARD: Duration = Duration::from_secs(1);

/// Forward RTP timestamp jump in excess of the arrival-time delta beyond which the stream is
/// re-anchored: 10 s. Generous enough for DTX and muted video (whose timestamps keep following
/// the wall clock) and for bursts after a network stall.
pub const MAX_AHEAD: Duration = Duration::from_secs(10);

struct Anchor {
    /// Extended RTP timestamp that maps to `base_pos`.
    base_ts: i64,
    /// Media position (clock units) of `base_ts`.
    base_pos: u64,
    last_ts: i64,
    last_arrival: Duration,
}

/// RTP → media clock mapping of one track.
pub struct Timeline {
    clock_rate: u32,
    origin: Option<Duration>,
    anchor: Option<Anchor>,
    /// Times a stream was re-anchored on an implausible timestamp jump.
    pub resyncs: u32,
}

impl Timeline {
    /// A timeline counting in `clock_rate` units per second (48000 for Opus, 90000 for VP8).
    pub fn new(clock_rate: u32) -> Self {
        Timeline { clock_rate, origin: None, anchor: None, resyncs: 0 }
    }

    /// Arrival of the first packet since the recording started: where media time 0 sits.
    pub fn origin(&self) -> Option<Duration> {
        self.origin
    }

    /// Media position (clock units since media time 0) of a packet with RTP timestamp `ts`.
    /// `new_stream` marks the first packet of a new SSRC; `end` is the position up to which the
    /// caller has written media (a new anchor is never placed before it).
    pub fn place(&mut self, ts: u32, arrival: Duration, new_stream: bool, end: u64) -> u64 {
        let rate = self.clock_rate;
        let origin = *self.origin.get_or_insert(arrival);
        let arrival_pos = ticks(rate, arrival.saturating_sub(origin));
        let fresh = Anchor {
            base_ts: i64::from(ts),
            base_pos: end.max(arrival_pos),
            last_ts: i64::from(ts),
            last_arrival: arrival,
        };
        let anchor = match self.anchor.take() {
            Some(mut anchor) if !new_stream => {
                let ext = unwrap_ts(anchor.last_ts, ts);
                let delta = ext - anchor.last_ts;
                let arrived_after =
                    i64::try_from(ticks(rate, arrival.saturating_sub(anchor.last_arrival))).unwrap_or(i64::MAX);
                if delta < -duration_ticks(MAX_BACKWARD, rate)
                    || delta > arrived_after.saturating_add(duration_ticks(MAX_AHEAD, rate))
                {
                    self.resyncs += 1;
                    Anchor { base_ts: ext, last_ts: ext, ..fresh }
                } else {
                    anchor.last_ts = ext;
                    anchor.last_arrival = arrival;
                    anchor
                }
            }
            _ => fresh,
        };
        let offset = anchor.last_ts - anchor.base_ts;
        let pos = if offset >= 0 {
            anchor.base_pos.saturating_add(offset.unsigned_abs())
        } else {
            anchor.base_pos.saturating_sub(offset.unsigned_abs())
        };
        self.anchor = Some(anchor);
        pos
    }
}

fn ticks(rate: u32, d: Duration) -> u64 {
    u64::try_from(d.as_nanos() * u128::from(rate) / 1_000_000_000).unwrap_or(u64::MAX)
}

fn duration_ticks(d: Duration, rate: u32) -> i64 {
    i64::try_from(ticks(rate, d)).unwrap_or(i64::MAX)
}

/// Extend a 32-bit RTP timestamp to the value closest to `reference` (u32 wraparound).
pub fn unwrap_ts(reference: i64, ts: u32) -> i64 {
    // Truncation to the low 32 bits is the point here.
    #[allow(clippy::cast_possible_truncation)]
    let delta = ts.wrapping_sub(reference as u32) as i32;
    reference + i64::from(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn follows_rtp_across_wraparound() {
        let mut t = Timeline::new(48_000);
        let start = u32::MAX - 959;
        assert_eq!(t.place(start, MS * 100, true, 0), 0);
        assert_eq!(t.place(start.wrapping_add(960), MS * 120, false, 960), 960);
        assert_eq!(t.place(start.wrapping_add(1920), MS * 140, false, 1920), 1920);
        // 2 s lost: position jumps by 96000 + 960.
        assert_eq!(t.place(start.wrapping_add(1920 + 960 + 96_000), MS * 2160, false, 2880), 98_880);
        assert_eq!(t.origin(), Some(MS * 100));
    }

    #[test]
    fn new_stream_starts_at_its_arrival_and_never_before_end() {
        let mut t = Timeline::new(90_000);
        assert_eq!(t.place(1000, Duration::from_secs(1), true, 0), 0);
        assert_eq!(t.place(1000 + 90_000, Duration::from_secs(2), false, 0), 90_000);
        // Rejoin 5 s after the last packet: placed at 6 s - 1 s (origin) = 5 s.
        assert_eq!(t.place(77, Duration::from_secs(6), true, 90_001), 450_000);
        // A new stream arriving "before" what was written is placed at the end.
        assert_eq!(t.place(5, Duration::from_secs(6), true, 500_000), 500_000);
    }

    #[test]
    fn implausible_jump_re_anchors() {
        let mut t = Timeline::new(48_000);
        t.place(0, Duration::ZERO, true, 0);
        // +1 hour of RTP time 20 ms later: re-anchored at arrival (20 ms = 960).
        assert_eq!(t.place(48_000 * 3600, MS * 20, false, 960), 960);
        assert_eq!(t.resyncs, 1);
        assert_eq!(t.place(48_000 * 3600 + 960, MS * 40, false, 1920), 1920);
    }
}
