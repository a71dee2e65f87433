//! Puts one track's RTP packets back in sequence-number order and tells streams (SSRCs) apart.
//!
//! Policy (RFC 3550 §A.1 in spirit, simplified):
//! - The first [`START_HOLD`] packets of a stream are held before its starting sequence number is
//!   fixed (the lowest of them), so swapped packets at the very start are not lost.
//! - Packets are held in a small reorder buffer keyed by the extended (u16-wraparound-unwrapped)
//!   sequence number and released in order. A missing sequence number is declared lost once more
//!   than `depth` later packets wait behind it; the next released packet is then flagged
//!   `after_loss` and one gap is counted per lost run.
//! - A packet older than the last released one (too late for the buffer) or a duplicate is
//!   discarded and counted, never written out of order.
//! - A packet more than [`MAX_MISORDER`] sequence numbers behind is taken as a sender that restarted
//!   its sequence numbers: the buffer is flushed and the stream continues from that packet.
//! - A packet with a new SSRC starts a new stream (the participant rejoined): the old stream's
//!   buffer is flushed first, and later stray packets of the old SSRC are discarded.

use std::collections::BTreeMap;
use std::time::Duration;

use rtc::rtp::Packet;

/// Sequence-number distance behind the last released packet beyond which a packet is treated as a
/// sequence restart rather than a late packet (RFC 3550 §A.1 uses 100 for `MAX_MISORDER`).
pub const MAX_MISORDER: i64 = 100;

/// Packets held at the start of a stream before its first sequence number is fixed, so that a
/// stream whose first packets arrive swapped still starts with its first packet.
pub const START_HOLD: usize = 3;

/// How many retired SSRCs are remembered, to discard their stray late packets.
const RETIRED_SSRCS: usize = 16;

/// One packet let out of the reorder buffer, in sequence order.
#[derive(Debug)]
pub struct Released {
    /// The RTP packet.
    pub packet: Packet,
    /// Its arrival time, since the recording started.
    pub arrival: Duration,
    /// First packet of a new RTP stream (new SSRC, including the very first one).
    pub new_stream: bool,
    /// One or more packets before this one (same stream) were lost.
    pub after_loss: bool,
}

struct Stream {
    ssrc: u32,
    /// Highest extended sequence number seen.
    highest: i64,
    /// Extended sequence number expected next out of the buffer.
    next: i64,
    buffer: BTreeMap<i64, (Packet, Duration)>,
    first_release: bool,
    /// `next` is known: the first packets were released (or [`START_HOLD`] exceeded).
    started: bool,
}

/// Reorder buffer plus stream (SSRC) tracking for one track.
pub struct Sequencer {
    depth: usize,
    current: Option<Stream>,
    retired: Vec<u32>,
    /// RTP streams seen (1 + reconnects).
    pub streams: u32,
    /// Lost runs detected by sequence number.
    pub gaps: u32,
    /// Packets dropped as duplicates, too late, or from a retired SSRC.
    pub discarded: u64,
}

impl Sequencer {
    /// A sequencer that holds at most `depth` packets behind a missing one.
    pub fn new(depth: usize) -> Self {
        Sequencer { depth, current: None, retired: Vec::new(), streams: 0, gaps: 0, discarded: 0 }
    }

    /// Accept one packet; append whatever can now be released, in order, to `out`.
    pub fn push(&mut self, packet: &Packet, arrival: Duration, out: &mut Vec<Released>) {
        let ssrc = packet.header.ssrc;
        let seq = packet.header.sequence_number;
        if self.current.as_ref().is_none_or(|s| s.ssrc != ssrc) {
            if self.retired.contains(&ssrc) {
                self.discarded += 1;
                return;
            }
            if let Some(mut old) = self.current.take() {
                self.retired.push(old.ssrc);
                if self.retired.len() > RETIRED_SSRCS {
                    self.retired.remove(0);
                }
                self.gaps += drain(&mut old, out);
            }
            self.streams += 1;
            self.current = Some(Stream {
                ssrc,
                highest: i64::from(seq),
                next: i64::from(seq),
                buffer: BTreeMap::new(),
                first_release: true,
                started: false,
            });
        }
        let Some(stream) = self.current.as_mut() else { return };
        let ext = unwrap_seq(stream.highest, seq);
        stream.highest = stream.highest.max(ext);
        if stream.started && ext < stream.next {
            if stream.next - ext > MAX_MISORDER {
                // Sequence restart: release what we hold, carry on from here.
                self.gaps += drain(stream, out);
                stream.highest = ext;
                stream.next = ext;
            } else {
                self.discarded += 1;
                return;
            }
        }
        if stream.buffer.contains_key(&ext) {
            self.discarded += 1;
            return;
        }
        stream.buffer.insert(ext, (packet.clone(), arrival));
        if !stream.started {
            if stream.buffer.len() <= START_HOLD.min(self.depth) {
                return;
            }
            stream.started = true;
            stream.next = stream.buffer.keys().next().copied().unwrap_or(ext);
        }
        while let Some(&key) = stream.buffer.keys().next() {
            let after_loss = key != stream.next;
            if after_loss && stream.buffer.len() <= self.depth {
                break;
            }
            let Some((packet, arrival)) = stream.buffer.remove(&key) else { break };
            if after_loss {
                self.gaps += 1;
            }
            let new_stream = std::mem::take(&mut stream.first_release);
            out.push(Released { packet, arrival, new_stream, after_loss });
            stream.next = key + 1;
        }
    }

    /// Release everything still buffered (at the end of the recording), in order.
    pub fn flush(&mut self, out: &mut Vec<Released>) {
        if let Some(stream) = self.current.as_mut() {
            self.gaps += drain(stream, out);
        }
    }
}

/// Release everything `stream` holds, in order; returns the number of lost runs found.
fn drain(stream: &mut Stream, out: &mut Vec<Released>) -> u32 {
    if !stream.started {
        stream.started = true;
        stream.next = stream.buffer.keys().next().copied().unwrap_or(stream.next);
    }
    let mut runs = 0;
    for (key, (packet, arrival)) in std::mem::take(&mut stream.buffer) {
        let after_loss = key != stream.next;
        runs += u32::from(after_loss);
        let new_stream = std::mem::take(&mut stream.first_release);
        out.push(Released { packet, arrival, new_stream, after_loss });
        stream.next = key + 1;
    }
    runs
}

/// Extend a 16-bit sequence number to the value closest to `reference` (u16 wraparound).
pub fn unwrap_seq(reference: i64, seq: u16) -> i64 {
    // Truncation to the low 16 bits is the point here.
    #[allow(clippy::cast_possible_truncation)]
    let delta = seq.wrapping_sub(reference as u16) as i16;
    reference + i64::from(delta)
}
