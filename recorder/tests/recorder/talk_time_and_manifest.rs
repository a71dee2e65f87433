//! Talk time (speech_ms) and the recording manifest.

use crate::common::*;
use parley_recorder::media::{Manifest, ManifestTrack, TrackCodec, TrackWriter};

const SSRC: u32 = 42;

/// Push 20 ms packets built by `make(i)` with consecutive seq/ts.
fn push_each(w: &mut TrackWriter, n: u32, offset: u32, make: impl Fn(u32) -> rtc::rtp::Packet) {
    for i in 0..n {
        w.push(&make(offset + i), MS * 20 * (offset + i)).unwrap();
    }
}

#[test]
fn talk_time_from_the_audio_level_extension() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.ogg");
    let mut w = TrackWriter::create(&path, TrackCodec::Opus).unwrap();
    w.set_audio_level_extension_id(Some(3));
    let pkt = |i: u32| rtp(SSRC, i as u16, 960 * i, false, opus_payload(i, 60));
    // 1 s with V set (speech), 1 s of digital silence (127), 0.5 s loud without V (level 40:
    // speech), 0.5 s quiet without V (level 90: silence), all full-size packets.
    push_each(&mut w, 50, 0, |i| with_audio_level(pkt(i), 3, true, 30));
    push_each(&mut w, 50, 50, |i| with_audio_level(pkt(i), 3, false, 127));
    push_each(&mut w, 25, 100, |i| with_audio_level(pkt(i), 3, false, 40));
    push_each(&mut w, 25, 125, |i| with_audio_level(pkt(i), 3, false, 90));
    let s = w.finish().unwrap();
    assert_eq!(s.duration_ms, 3000);
    assert_eq!(s.speech_ms, 1500);
}

#[test]
fn talk_time_falls_back_to_opus_packet_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.ogg");
    let mut w = TrackWriter::create(&path, TrackCodec::Opus).unwrap();
    // No extension id negotiated: 0.4 s of real packets, 0.6 s of 3-byte silence frames (F8 FF FE),
    // 0.2 s of 1-byte DTX frames.
    push_each(&mut w, 20, 0, |i| rtp(SSRC, i as u16, 960 * i, false, opus_payload(i, 50)));
    push_each(&mut w, 30, 20, |i| rtp(SSRC, i as u16, 960 * i, false, vec![0xF8, 0xFF, 0xFE]));
    push_each(&mut w, 10, 50, |i| rtp(SSRC, i as u16, 960 * i, false, vec![TOC_20MS]));
    let s = w.finish().unwrap();
    assert_eq!(s.duration_ms, 1200);
    assert_eq!(s.speech_ms, 400);
}

#[test]
fn an_extension_under_another_id_is_not_read_as_audio_level() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.ogg");
    let mut w = TrackWriter::create(&path, TrackCodec::Opus).unwrap();
    w.set_audio_level_extension_id(Some(1));
    // Id 5 carries something else (whose byte would read as "loud voice"); packets are 3-byte silence.
    push_each(&mut w, 25, 0, |i| {
        with_audio_level(rtp(SSRC, i as u16, 960 * i, false, vec![0xF8, 0xFF, 0xFE]), 5, true, 0)
    });
    let s = w.finish().unwrap();
    assert_eq!(s.speech_ms, 0);
}

#[test]
fn manifest_round_trips_as_snake_case_json() {
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("p1-audio.ogg");
    let mut w = TrackWriter::create(&audio, TrackCodec::Opus).unwrap();
    push_each(&mut w, 10, 0, |i| rtp(SSRC, i as u16, 960 * i, false, opus_payload(i, 50)));
    let summary = w.finish().unwrap();
    let manifest = Manifest {
        session_id: "sess-1".into(),
        started_at_ms: 1_790_000_000_000,
        ended_at_ms: 1_790_000_060_000,
        tracks: vec![ManifestTrack::from_summary("p1", "p1-audio.ogg", &summary)],
    };
    let path = dir.path().join("manifest.json");
    manifest.write_json(&path).unwrap();
    assert_eq!(Manifest::read_json(&path).unwrap(), manifest);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let t = &json["tracks"][0];
    assert_eq!(json["session_id"], "sess-1");
    assert_eq!(json["started_at_ms"], 1_790_000_000_000i64);
    assert_eq!(t["participant_id"], "p1");
    assert_eq!(t["kind"], "audio");
    assert_eq!(t["codec"], "opus");
    assert_eq!(t["file"], "p1-audio.ogg");
    assert_eq!(t["duration_ms"], 200);
    assert_eq!(t["speech_ms"], 200);
    assert_eq!(t["bytes"], std::fs::metadata(&audio).unwrap().len());
    assert_eq!(t["packets"], 10);
    assert_eq!(t["frames"], 10);
    assert_eq!(t["streams"], 1);
    assert_eq!(t["gaps"], 0);
    assert!(!dir.path().join("manifest.json.tmp").exists());
}
