//! Opus packet facts needed by the Ogg muxer: duration from the TOC byte, and synthesized
//! packet-loss-concealment (PLC) packets to fill gaps (RFC 6716 §3, RFC 7845 §4.1).

/// Opus' sample clock for Ogg granule positions and RTP timestamps (RFC 7587 §4.1, RFC 7845 §4): 48 kHz.
pub const OPUS_CLOCK_RATE: u32 = 48_000;

/// Largest duration of one Opus packet: 120 ms = 5760 samples at 48 kHz (RFC 6716 §3.2.5).
pub const MAX_PACKET_SAMPLES: u32 = 5_760;

/// Smallest Opus frame: 2.5 ms = 120 samples at 48 kHz. Gaps are filled in multiples of it (RFC 7845 §4.1).
pub const MIN_FRAME_SAMPLES: u32 = 120;

/// Samples per frame (48 kHz) of a TOC configuration number 0..=31 (RFC 6716 §3.1, Table 2).
pub fn frame_samples(config: u8) -> u32 {
    match config {
        // SILK-only NB/MB/WB: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        // Hybrid SWB/FB: 10, 20 ms.
        12..=15 => [480, 960][usize::from(config % 2)],
        // CELT-only NB/WB/SWB/FB: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    }
}

/// Duration of one Opus packet in 48 kHz samples, from its TOC byte (and frame count byte for
/// code 3), RFC 6716 §3.1–3.2. `None` for a packet that is not a valid Opus packet: empty, a code 3
/// packet without its frame count byte, zero frames, or more than 120 ms.
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let per_frame = frame_samples(toc >> 3);
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3F),
    };
    let total = per_frame * frames;
    (frames > 0 && total <= MAX_PACKET_SAMPLES).then_some(total)
}

/// Is the packet stereo (TOC `s` bit, RFC 6716 §3.1)? `false` for an empty packet.
pub fn is_stereo(packet: &[u8]) -> bool {
    packet.first().is_some_and(|toc| toc & 0x04 != 0)
}

/// CELT-only configuration with 2.5 ms frames in the audio bandwidth of `config` (RFC 6716 §3.1):
/// used for the part of a gap shorter than the previous packet's frame size (RFC 7845 §4.1).
/// CELT has no mediumband, so MB maps to WB.
fn celt_2_5ms_config(config: u8) -> u8 {
    match config {
        0..=3 | 16..=19 => 16,   // NB
        4..=11 | 20..=23 => 20,  // MB, WB
        12 | 13 | 24..=27 => 24, // SWB
        _ => 28,                 // FB
    }
}

/// Synthesize Opus packets that explicitly request PLC for `samples` (48 kHz) of missing audio,
/// as RFC 7845 §4.1 asks of a muxer capturing a real-time stream with lost or untransmitted packets.
///
/// Each packet is a code 3 packet (RFC 6716 §3.2.5): TOC byte with the previous packet's
/// configuration and channel count, then a frame-count byte (CBR, no padding) announcing up to
/// 120 ms of frames whose length is zero bytes — a zero-length frame tells the decoder the frame is
/// missing (RFC 6716 §3.2.1). The remainder below the previous frame size is covered with 2.5 ms
/// CELT frames of the same bandwidth. `samples` is rounded down to a multiple of 120 (2.5 ms): only
/// such gaps can be repaired. Returns `(packet, duration in 48 kHz samples)` pairs.
pub fn plc_packets(prev_toc: u8, samples: u64) -> Vec<([u8; 2], u32)> {
    let config = prev_toc >> 3;
    let stereo = prev_toc & 0x04;
    let mut out = Vec::new();
    let mut push_frames = |config: u8, frame: u32, mut count: u64| {
        let per_packet = u64::from(MAX_PACKET_SAMPLES / frame);
        while count > 0 {
            let m = count.min(per_packet);
            // m <= 48, and m * frame <= 5760 by construction.
            let m8 = u8::try_from(m).unwrap_or(48);
            out.push(([(config << 3) | stereo | 0x03, m8], u32::from(m8) * frame));
            count -= m;
        }
    };
    let frame = frame_samples(config);
    let samples = samples - samples % u64::from(MIN_FRAME_SAMPLES);
    push_frames(config, frame, samples / u64::from(frame));
    let rest = samples % u64::from(frame);
    push_frames(celt_2_5ms_config(config), MIN_FRAME_SAMPLES, rest / u64::from(MIN_FRAME_SAMPLES));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_the_toc() {
        // Config 15 (hybrid FB 20 ms), code 0: 960 samples.
        assert_eq!(packet_samples(&[15 << 3, 1, 2]), Some(960));
        // Config 27 (CELT SWB 20 ms) code 1: two frames.
        assert_eq!(packet_samples(&[(27 << 3) | 1, 1, 2]), Some(1920));
        // Config 3 (SILK NB 60 ms) code 3 with 2 frames: 120 ms.
        assert_eq!(packet_samples(&[(3 << 3) | 3, 2]), Some(5760));
        // ... 3 frames would be 180 ms: invalid.
        assert_eq!(packet_samples(&[(3 << 3) | 3, 3]), None);
        assert_eq!(packet_samples(&[(3 << 3) | 3]), None);
        assert_eq!(packet_samples(&[(16 << 3) | 3, 0]), None);
        assert_eq!(packet_samples(&[]), None);
        // libwebrtc's 3-byte silence frame 0xF8 0xFF 0xFE: config 31 (CELT FB 20 ms), code 0.
        assert_eq!(packet_samples(&[0xF8, 0xFF, 0xFE]), Some(960));
    }

    #[test]
    fn plc_packets_cover_the_gap_exactly_and_are_valid_opus() {
        for (toc, gap) in [(15u8 << 3, 96_000u64), ((15 << 3) | 4, 96_120), (1 << 3, 2_880 + 360), (31 << 3, 120)] {
            let packets = plc_packets(toc, gap);
            let total: u64 = packets.iter().map(|(_, d)| u64::from(*d)).sum();
            assert_eq!(total, gap, "toc {toc:#x}");
            for (p, d) in &packets {
                assert_eq!(packet_samples(p), Some(*d));
                assert_eq!(is_stereo(p), toc & 4 != 0);
            }
        }
        // Not a multiple of 2.5 ms: rounded down.
        let total: u32 = plc_packets(15 << 3, 1_000).iter().map(|(_, d)| d).sum();
        assert_eq!(total, 960);
        assert!(plc_packets(15 << 3, 0).is_empty());
    }
}
