//! End-to-end check with a real encoder and decoder: ffmpeg encodes Opus and VP8, the packets go
//! through the writers as RTP (with loss and a reconnect), and ffmpeg decodes the result.
//! Ignored by default (needs `ffmpeg`/`ffprobe` on PATH): `cargo test -p parley-recorder -- --ignored`.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use parley_recorder::media::{TrackCodec, TrackWriter};

fn ffmpeg(args: &[&str]) -> (String, String) {
    let out = Command::new("ffmpeg").args(["-hide_banner", "-nostdin", "-y"]).args(args).output().expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn ffprobe(path: &Path, entries: &str) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries", entries, "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
#[ignore = "needs ffmpeg"]
fn real_opus_with_loss_and_reconnect_decodes_to_the_right_length() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.ogg");
    let src_s = src.to_str().unwrap();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=4",
        "-c:a",
        "libopus",
        "-b:a",
        "32k",
        "-ac",
        "1",
        src_s,
    ]);
    let mut reader = ogg::PacketReader::new(std::fs::File::open(&src).unwrap());
    let mut packets = Vec::new();
    while let Some(p) = reader.read_packet().unwrap() {
        packets.push(p.data);
    }
    let audio = &packets[2..];
    assert!(audio.len() >= 190, "{} packets", audio.len());

    let out = dir.path().join("out.ogg");
    let mut w = TrackWriter::create(&out, TrackCodec::Opus).unwrap();
    let mut ts = 0u32;
    // Packets 0..100 on stream 1, with 50..75 (0.5 s) lost; then a rejoin 3 s after stream 1's
    // last packet, with the rest (other SSRC, other bases).
    for (i, p) in audio.iter().enumerate().take(100) {
        let d = opus_samples(p) as u32;
        if !(50..75).contains(&i) {
            w.push(&rtp(1, 60_000u16.wrapping_add(i as u16), ts, false, p.clone()), MS * 20 * i as u32).unwrap();
        }
        ts = ts.wrapping_add(d);
    }
    let mut ts = 123_456_789u32;
    let rest = &audio[100..];
    for (k, p) in rest.iter().enumerate() {
        w.push(&rtp(2, 7 + k as u16, ts, false, p.clone()), MS * (2_000 + 3_000 + 20 * k as u32)).unwrap();
        ts = ts.wrapping_add(opus_samples(p) as u32);
    }
    let s = w.finish().unwrap();
    let expected_ms = 5_000 + rest.len() as u64 * 20;
    assert_eq!(s.duration_ms, expected_ms);

    let duration: f64 = ffprobe(&out, "format=duration").parse().unwrap();
    assert!((duration * 1000.0 - expected_ms as f64).abs() < 1.0, "ffprobe duration {duration}");
    let pcm = dir.path().join("out.pcm");
    let (_, stderr) = ffmpeg(&[
        "-v",
        "error",
        "-i",
        out.to_str().unwrap(),
        "-f",
        "s16le",
        "-ac",
        "1",
        "-ar",
        "48000",
        pcm.to_str().unwrap(),
    ]);
    assert!(stderr.is_empty(), "decoder complained: {stderr}");
    let samples = std::fs::metadata(&pcm).unwrap().len() / 2;
    assert_eq!(samples, expected_ms * 48, "decoded length = media time incl. gaps");
}

#[test]
#[ignore = "needs ffmpeg"]
fn real_vp8_with_a_lost_packet_decodes_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.ivf");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30:duration=3",
        "-c:v",
        "libvpx",
        "-g",
        "30",
        "-b:v",
        "400k",
        src.to_str().unwrap(),
    ]);
    let ivf = read_ivf(&src);
    assert_eq!(ivf.frames.len(), 90);
    let out = dir.path().join("out.ivf");
    let mut w = TrackWriter::create(&out, TrackCodec::Vp8).unwrap();
    let mut seq = 65_000u16;
    let mut lost = 0;
    for (i, (_, frame)) in ivf.frames.iter().enumerate() {
        let ts = (i as u32) * 3000;
        let mut pkts = vp8_packets(frame, 300, i as u16, 9, &mut seq, ts);
        if i == 45 && pkts.len() > 1 {
            pkts.remove(1);
            lost = 1;
        }
        for p in pkts {
            w.push(&p, MS * 33 * i as u32).unwrap();
        }
    }
    let s = w.finish().unwrap();
    assert_eq!(lost, 1, "frame 45 spans several packets");
    assert_eq!((s.frames, s.dropped_frames), (89, 1));
    assert_eq!(ffprobe(&out, "stream=width,height,nb_read_frames"), "320,240,89");
    let (_, stderr) = ffmpeg(&["-v", "error", "-i", out.to_str().unwrap(), "-f", "null", "-"]);
    assert!(stderr.is_empty(), "decoder complained: {stderr}");
}
