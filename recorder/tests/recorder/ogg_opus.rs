//! Opus RTP → Ogg Opus: what a listener of the file would notice.

use std::time::Duration;

use crate::common::*;
use parley_recorder::media::{TrackCodec, TrackWriter};

const SSRC: u32 = 0x1234_5678;

/// Push `n` consecutive 20 ms packets (ids `first_id..`) starting at `seq`/`ts`, arriving every
/// 20 ms from `arrival`.
fn push_run(w: &mut TrackWriter, ssrc: u32, first_id: u32, n: u32, seq: u16, ts: u32, arrival: Duration) {
    for i in 0..n {
        let p = rtp(ssrc, seq.wrapping_add(i as u16), ts.wrapping_add(960 * i), false, opus_payload(first_id + i, 40));
        w.push(&p, arrival + MS * 20 * i).unwrap();
    }
}

#[test]
fn clean_stream_with_seq_and_timestamp_wraparound_is_valid_ogg_opus() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.ogg");
    let mut w = TrackWriter::create(&path, TrackCodec::Opus).unwrap();
    // Sequence numbers wrap after 36 packets, timestamps after 11.
    push_run(&mut w, SSRC, 0, 150, 65_500, u32::MAX - 10 * 960, MS * 300);
    let s = w.finish().unwrap();

    let ogg = read_ogg_opus(&path);
    assert_eq!(ogg.channels, 1);
    assert_eq!(ogg.pre_skip, 0);
    assert_eq!(ogg.ids(), (0..150).collect::<Vec<_>>(), "every packet once, in order");
    assert_eq!(ogg.fillers().0, 0, "nothing lost, nothing filled");
    assert_eq!(ogg.final_granule, 150 * 960, "3 s of 48 kHz samples");
    assert!(ogg.pages.len() >= 2 + 3, "audio is spread over several pages (~1 s each)");

    assert_eq!(s.codec, TrackCodec::Opus);
    assert_eq!(s.start_ms, 300);
    assert_eq!((s.packets, s.frames, s.discarded_packets), (150, 150, 0));
    assert_eq!(s.duration_ms, 3000);
    assert_eq!((s.streams, s.gaps), (1, 0));
    assert_eq!(s.bytes, std::fs::metadata(&path).unwrap().len());
}

#[test]
fn two_seconds_lost_keep_their_place_in_time_and_nothing_is_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.ogg");
    let mut w = TrackWriter::create(&path, TrackCodec::Opus).unwrap();
    push_run(&mut w, SSRC, 0, 50, 1000, 7_000, Duration::ZERO);
    // Packets 50..150 (2 s) never arrive.
    push_run(&mut w, SSRC, 150, 50, 1150, 7_000 + 150 * 960, MS * 3000);
    let s = w.finish().unwrap();

    let ogg = read_ogg_opus(&path);
    let expected: Vec<u32> = (0..50).chain(150..200).collect();
    assert_eq!(ogg.ids(), expected);
    // The hole is filled with PLC requests (RFC 7845 §4.1) worth exactly the 2 s lost...
    let (count, samples) = ogg.fillers();
    assert_eq!(samples, 96_000);
    assert!(count >= 17, "2 s in packets of at most 120 ms");
    // ... so the audio after it plays at the right time: granule jumps by 96000 across the hole.
    assert_eq!(ogg.start_of(150) - ogg.start_of(49), 96_000 + 960);
    assert_eq!(ogg.start_of(150), 150 * 960);
    assert_eq!(ogg.final_granule, 200 * 960);
    assert_eq!(s.duration_ms, 4000);
    assert_eq!((s.frames, s.gaps, s.streams), (100, 1, 1));
}

#[test]
fn reconnect_with_new_ssrc_continues_after_the_wall_clock_gap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.ogg");
    let mut w = TrackWriter::create(&path, TrackCodec::Opus).unwrap();
    let t0 = MS * 2_000; // the participant's audio started 2 s into the recording
    push_run(&mut w, SSRC, 0, 50, 100, 1_000, t0);
    // Dropped at t0 + 1 s; rejoined 5 s later with a new SSRC and random seq/timestamp bases.
    push_run(&mut w, 0xBEEF, 50, 50, 40_000, 0x8765_4321, t0 + MS * 6_000);
    // A stray late packet of the old stream is not written.
    w.push(&rtp(SSRC, 150, 1_000 + 50 * 960, false, opus_payload(999, 40)), t0 + MS * 7_100).unwrap();
    let s = w.finish().unwrap();

    let ogg = read_ogg_opus(&path);
    assert_eq!(ogg.ids(), (0..100).collect::<Vec<_>>());
    assert_eq!(ogg.start_of(49), 49 * 960);
    assert_eq!(ogg.start_of(50), 6 * 48_000, "new stream placed at its arrival: 1 s of audio + 5 s gap");
    assert_eq!(ogg.start_of(99), 6 * 48_000 + 49 * 960, "then follows its own timestamps");
    assert_eq!(ogg.fillers().1, 5 * 48_000);
    assert_eq!(s.start_ms, 2_000);
    assert_eq!(s.duration_ms, 7_000);
    assert_eq!((s.streams, s.gaps, s.discarded_packets, s.packets), (2, 0, 1, 101));
}

#[test]
fn reconnect_that_arrives_early_never_goes_back_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.ogg");
    let mut w = TrackWriter::create(&path, TrackCodec::Opus).unwrap();
    push_run(&mut w, SSRC, 0, 50, 100, 1_000, Duration::ZERO);
    // New SSRC whose first packet "arrives" at 0.5 s (clock skew / buffered burst): placed at the end.
    push_run(&mut w, 0xBEEF, 50, 10, 9, 77, MS * 500);
    w.finish().unwrap();
    let ogg = read_ogg_opus(&path);
    assert_eq!(ogg.ids(), (0..60).collect::<Vec<_>>());
    assert_eq!(ogg.start_of(50), 50 * 960);
    assert_eq!(ogg.final_granule, 60 * 960);
}

#[test]
fn reordered_and_duplicated_packets_are_written_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.ogg");
    let mut w = TrackWriter::create(&path, TrackCodec::Opus).unwrap();
    // Arrival order: pairs swapped, packet 20 three places late, 30 duplicated, seq wraps at 65535.
    let mut order: Vec<u32> = Vec::new();
    for i in (0..60).step_by(2) {
        order.extend([i + 1, i]);
    }
    let pos20 = order.iter().position(|&i| i == 20).unwrap();
    let late = order.remove(pos20);
    order.insert(pos20 + 3, late);
    let pos30 = order.iter().position(|&i| i == 30).unwrap();
    order.insert(pos30 + 2, 30);
    for (k, &i) in order.iter().enumerate() {
        let p = rtp(SSRC, 65_530u16.wrapping_add(i as u16), 960 * i, false, opus_payload(i, 40));
        w.push(&p, MS * 20 * k as u32).unwrap();
    }
    let s = w.finish().unwrap();
    let ogg = read_ogg_opus(&path);
    assert_eq!(ogg.ids(), (0..60).collect::<Vec<_>>());
    assert_eq!(ogg.fillers().0, 0);
    assert_eq!(ogg.final_granule, 60 * 960);
    assert_eq!((s.packets, s.frames, s.discarded_packets, s.gaps), (61, 60, 1, 0));
}

#[test]
fn a_packet_later_than_the_reorder_buffer_is_dropped_and_its_slot_concealed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.ogg");
    let mut w = TrackWriter::create(&path, TrackCodec::Opus).unwrap();
    for k in 0..40u32 {
        if k == 10 {
            continue;
        }
        w.push(&rtp(SSRC, k as u16, 960 * k, false, opus_payload(k, 40)), MS * 20 * k).unwrap();
    }
    // Packet 10 shows up 29 packets late: the buffer (10 packets) gave up on it long ago.
    w.push(&rtp(SSRC, 10, 9_600, false, opus_payload(10, 40)), MS * 800).unwrap();
    let s = w.finish().unwrap();
    let ogg = read_ogg_opus(&path);
    let expected: Vec<u32> = (0..40).filter(|&i| i != 10).collect();
    assert_eq!(ogg.ids(), expected);
    assert_eq!(ogg.fillers().1, 960);
    assert_eq!(ogg.start_of(11), 11 * 960);
    assert_eq!((s.discarded_packets, s.gaps), (1, 1));
}

#[test]
fn loss_at_the_very_end_is_flushed_on_finish() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.ogg");
    let mut w = TrackWriter::create(&path, TrackCodec::Opus).unwrap();
    push_run(&mut w, SSRC, 0, 20, 0, 0, Duration::ZERO);
    // 3 packets lost, then 2 arrive: still in the reorder buffer when the call ends.
    push_run(&mut w, SSRC, 23, 2, 23, 23 * 960, MS * 460);
    let s = w.finish().unwrap();
    let ogg = read_ogg_opus(&path);
    let expected: Vec<u32> = (0..20).chain(23..25).collect();
    assert_eq!(ogg.ids(), expected);
    assert_eq!(ogg.final_granule, 25 * 960);
    assert_eq!(s.gaps, 1);
}

#[test]
fn dtx_timestamp_jumps_become_time_not_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.ogg");
    let mut w = TrackWriter::create(&path, TrackCodec::Opus).unwrap();
    // 10 speech packets, then DTX: one 1-byte packet every 400 ms (consecutive seq numbers).
    push_run(&mut w, SSRC, 0, 10, 0, 0, Duration::ZERO);
    for k in 0..5u32 {
        let ts = 10 * 960 + k * 19_200;
        w.push(&rtp(SSRC, 10 + k as u16, ts, false, vec![TOC_20MS]), MS * (200 + 400 * k)).unwrap();
    }
    let s = w.finish().unwrap();
    let ogg = read_ogg_opus(&path);
    assert_eq!(ogg.final_granule, 10 * 960 + 4 * 19_200 + 960);
    assert_eq!(s.gaps, 0, "DTX is not loss");
    assert_eq!(s.frames, 15);
}

#[test]
fn stereo_first_packet_gives_a_stereo_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.ogg");
    let mut w = TrackWriter::create(&path, TrackCodec::Opus).unwrap();
    let mut payload = opus_payload(0, 40);
    payload[0] |= 0x04;
    w.push(&rtp(SSRC, 0, 0, false, payload), Duration::ZERO).unwrap();
    w.finish().unwrap();
    let ogg = read_ogg_opus(&path);
    assert_eq!(ogg.channels, 2);
}

#[test]
fn no_packets_still_gives_a_closed_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.ogg");
    let w = TrackWriter::create(&path, TrackCodec::Opus).unwrap();
    let s = w.finish().unwrap();
    let ogg = read_ogg_opus(&path);
    assert!(ogg.audio.is_empty());
    assert_eq!(ogg.final_granule, 0);
    assert_eq!((s.streams, s.frames, s.duration_ms), (0, 0, 0));
}

#[test]
fn malformed_payloads_are_counted_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.ogg");
    let mut w = TrackWriter::create(&path, TrackCodec::Opus).unwrap();
    push_run(&mut w, SSRC, 0, 5, 0, 0, Duration::ZERO);
    // Empty payload; code 3 packet without its frame-count byte.
    w.push(&rtp(SSRC, 5, 5 * 960, false, vec![]), MS * 100).unwrap();
    w.push(&rtp(SSRC, 6, 6 * 960, false, vec![TOC_20MS | 3]), MS * 120).unwrap();
    push_run(&mut w, SSRC, 7, 3, 7, 7 * 960, MS * 140);
    let s = w.finish().unwrap();
    let ogg = read_ogg_opus(&path);
    let expected: Vec<u32> = (0..5).chain(7..10).collect();
    assert_eq!(ogg.ids(), expected);
    assert_eq!(ogg.final_granule, 10 * 960, "their time is concealed");
    assert_eq!(s.discarded_packets, 2);
}
