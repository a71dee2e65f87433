//! VP8 RTP → IVF: frames reassembled, timed, and never written corrupt.

use std::time::Duration;

use crate::common::*;
use parley_recorder::media::{TrackCodec, TrackWriter};
use rtc::rtp::Packet;

const SSRC: u32 = 0xCAFE;
/// 30 fps on the 90 kHz clock.
const TICKS: u32 = 3000;

/// Frame `i`: key frame every 10 frames, 2500 bytes (3 packets of ≤ 1000 bytes).
fn frame(i: u32) -> Vec<u8> {
    if i.is_multiple_of(10) { vp8_key_frame(i, 640, 480, 2500) } else { vp8_inter_frame(i, 2500) }
}

/// Packets of frames `range`, seq starting at `seq`, timestamps from `ts0`.
fn packets(range: std::ops::Range<u32>, ssrc: u32, seq: &mut u16, ts0: u32) -> Vec<Vec<Packet>> {
    range.map(|i| vp8_packets(&frame(i), 1000, i as u16, ssrc, seq, ts0.wrapping_add(i * TICKS))).collect()
}

fn push_all(w: &mut TrackWriter, frames: &[Vec<Packet>], first_frame: u32, start: Duration) {
    for (k, f) in frames.iter().enumerate() {
        for p in f {
            w.push(p, start + MS * 33 * (first_frame + k as u32)).unwrap();
        }
    }
}

#[test]
fn frames_split_over_packets_reassemble_with_rtp_timing_across_wraparound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.ivf");
    let mut w = TrackWriter::create(&path, TrackCodec::Vp8).unwrap();
    let mut seq = 65_500;
    let frames = packets(0..30, SSRC, &mut seq, u32::MAX - 5 * TICKS);
    assert_eq!(frames[0].len(), 3);
    push_all(&mut w, &frames, 0, MS * 100);
    assert!(!w.wants_key_frame());
    let s = w.finish().unwrap();

    let ivf = read_ivf(&path);
    assert_eq!(&ivf.fourcc, b"VP80");
    assert_eq!((ivf.width, ivf.height), (640, 480), "from the first key frame");
    assert_eq!((ivf.rate, ivf.scale), (90_000, 1), "timebase 1/90000 s");
    assert_eq!(ivf.frame_count, 30, "fixed up on finish");
    assert_eq!(ivf.frames.len(), 30);
    for (i, (pts, data)) in ivf.frames.iter().enumerate() {
        assert_eq!(*data, frame(i as u32), "frame {i} bytes");
        assert_eq!(*pts, i as u64 * u64::from(TICKS), "frame {i} pts");
    }
    assert_eq!((s.frames, s.dropped_frames, s.packets, s.discarded_packets), (30, 0, 90, 0));
    assert_eq!(s.duration_ms, 1000);
    assert_eq!((s.streams, s.gaps, s.start_ms, s.speech_ms), (1, 0, 100, 0));
    assert_eq!(s.bytes, std::fs::metadata(&path).unwrap().len());
}

#[test]
fn rtc_media_ivf_reader_reads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.ivf");
    let mut w = TrackWriter::create(&path, TrackCodec::Vp8).unwrap();
    let mut seq = 1;
    push_all(&mut w, &packets(0..5, SSRC, &mut seq, 0), 0, Duration::ZERO);
    w.finish().unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let (mut reader, header) = rtc::media::io::ivf_reader::IVFReader::new(file).unwrap();
    assert_eq!(&header.four_cc, b"VP80");
    assert_eq!(header.num_frames, 5);
    for i in 0..5u32 {
        let (data, fh) = reader.parse_next_frame().unwrap();
        assert_eq!(data.to_vec(), frame(i));
        assert_eq!(fh.timestamp, u64::from(i * TICKS));
    }
    assert!(reader.parse_next_frame().is_err(), "no more frames");
}

#[test]
fn a_frame_with_a_lost_packet_is_dropped_not_written_corrupt() {
    for lost in [0usize, 1, 2] {
        // First packet (start of partition), middle packet, last packet (marker) of frame 13.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.ivf");
        let mut w = TrackWriter::create(&path, TrackCodec::Vp8).unwrap();
        let mut seq = 500;
        let mut frames = packets(0..25, SSRC, &mut seq, 0);
        frames[13].remove(lost);
        // Frames 14..19 push the loss out of the reorder buffer (16 packets).
        push_all(&mut w, &frames[..20], 0, Duration::ZERO);
        assert!(w.wants_key_frame(), "a PLI would repair the picture");
        push_all(&mut w, &frames[20..], 20, Duration::ZERO);
        assert!(!w.wants_key_frame(), "key frame 20 repaired it");
        let s = w.finish().unwrap();
        let ivf = read_ivf(&path);
        let ids: Vec<u64> = ivf.frames.iter().map(|(pts, _)| pts / u64::from(TICKS)).collect();
        let expected: Vec<u64> = (0..25).filter(|&i| i != 13).collect();
        assert_eq!(ids, expected, "lost packet {lost}");
        for (pts, data) in &ivf.frames {
            assert_eq!(*data, frame((pts / u64::from(TICKS)) as u32));
        }
        assert_eq!(ivf.frame_count, 24);
        assert_eq!((s.frames, s.dropped_frames, s.gaps), (24, 1, 1), "lost packet {lost}");
    }
}

#[test]
fn reordered_packets_within_and_across_frames_reassemble() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.ivf");
    let mut w = TrackWriter::create(&path, TrackCodec::Vp8).unwrap();
    let mut seq = 65_530;
    let mut all: Vec<Packet> = packets(0..10, SSRC, &mut seq, 12_345).into_iter().flatten().collect();
    // Swap neighbours all along (crossing frame boundaries), and move one packet 5 places later.
    for i in (0..all.len() - 1).step_by(2) {
        all.swap(i, i + 1);
    }
    let p = all.remove(7);
    all.insert(12, p);
    for (k, p) in all.iter().enumerate() {
        w.push(p, MS * 11 * k as u32).unwrap();
    }
    let s = w.finish().unwrap();
    let ivf = read_ivf(&path);
    assert_eq!(ivf.frames.len(), 10);
    for (i, (pts, data)) in ivf.frames.iter().enumerate() {
        assert_eq!(*data, frame(i as u32));
        assert_eq!(*pts, i as u64 * u64::from(TICKS));
    }
    assert_eq!((s.dropped_frames, s.discarded_packets, s.gaps), (0, 0, 0));
}

#[test]
fn inter_frames_before_the_first_key_frame_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.ivf");
    let mut w = TrackWriter::create(&path, TrackCodec::Vp8).unwrap();
    let mut seq = 0;
    // Join mid-GOP: frames 5..25, first key frame is 10.
    push_all(&mut w, &packets(5..25, SSRC, &mut seq, 0), 5, Duration::ZERO);
    let s = w.finish().unwrap();
    let ivf = read_ivf(&path);
    assert_eq!(ivf.frames.len(), 15);
    assert_eq!(ivf.frames[0].1, frame(10));
    assert_eq!(ivf.frames[0].0, 5 * u64::from(TICKS), "media time 0 is the first packet's arrival");
    assert_eq!((ivf.width, ivf.height), (640, 480));
    assert_eq!((s.frames, s.dropped_frames), (15, 5));
}

#[test]
fn reconnect_with_new_ssrc_continues_after_the_wall_clock_gap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.ivf");
    let mut w = TrackWriter::create(&path, TrackCodec::Vp8).unwrap();
    let mut seq = 10;
    // Frames 0..30 (1 s) arriving from 0 s.
    push_all(&mut w, &packets(0..30, SSRC, &mut seq, 0), 0, Duration::ZERO);
    // New SSRC, random bases, first packet arrives at 6 s: two inter frames, then a key frame.
    let mut seq2 = 33_333;
    let ts2: u32 = 0x9ABC_DEF0;
    let second: Vec<Vec<Packet>> =
        [vp8_inter_frame(1000, 900), vp8_inter_frame(1001, 900), vp8_key_frame(1002, 320, 240, 900)]
            .iter()
            .enumerate()
            .map(|(k, f)| vp8_packets(f, 1000, 7, 0xD00D, &mut seq2, ts2.wrapping_add(k as u32 * TICKS)))
            .collect();
    for (k, f) in second.iter().enumerate() {
        for p in f {
            w.push(p, MS * (6_000 + 33 * k as u32)).unwrap();
        }
    }
    let s = w.finish().unwrap();
    let ivf = read_ivf(&path);
    assert_eq!(ivf.frames.len(), 31);
    let (pts, data) = ivf.frames.last().unwrap();
    assert_eq!(*data, vp8_key_frame(1002, 320, 240, 900));
    assert_eq!(*pts, 6 * 90_000 + 2 * u64::from(TICKS), "6 s after start, then its own timestamps");
    assert!(ivf.frames.windows(2).all(|w| w[0].0 < w[1].0), "monotonic pts");
    assert_eq!((ivf.width, ivf.height), (640, 480), "first key frame's size");
    assert_eq!((s.streams, s.dropped_frames, s.gaps), (2, 2, 0));
}
