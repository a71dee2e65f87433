use parley_sdk::call::VP8_GREY_KEY_FRAME;

use super::*;

fn opts(sessions: usize, video: bool) -> RecordOptions {
    RecordOptions {
        target: crate::target::parse("http://127.0.0.1:8080").unwrap(),
        sessions,
        duration: Duration::from_secs(20),
        video,
        video_kbps: 500,
        recorder_pid: Some(42),
        server_pid: None,
        jwt_secret_file: None,
        setup_concurrency: 10,
        max_loss_percent: 1.0,
    }
}

fn track(who: &str, kind: &str, packets: u64, frames: u64, dropped: u64) -> StoredTrack {
    StoredTrack {
        participant_id: who.into(),
        kind: kind.into(),
        bytes: 1000,
        duration_ms: 20_000,
        packets,
        frames,
        dropped_frames: dropped,
        gaps: u32::from(packets < 1000),
    }
}

#[test]
fn cpu_maths() {
    assert_eq!(cpu_percent(5.0, Duration::from_secs(20)), Some(25.0));
    assert_eq!(cpu_percent(1.0, Duration::ZERO), None);
    // 42 % in the window, 2 % idle, 50 sessions: 0.8 % each, 125 per core.
    let per = per_session_percent(42.0, 2.0, 50).unwrap();
    assert!((per - 0.8).abs() < 1e-9);
    assert!((sessions_per_core(per).unwrap() - 125.0).abs() < 1e-6);
    assert_eq!(per_session_percent(42.0, 2.0, 0), None);
    assert_eq!(per_session_percent(1.0, 2.0, 10), Some(0.0), "never negative");
    assert_eq!(sessions_per_core(0.0), None);
}

#[test]
fn loss_and_bottleneck() {
    assert_eq!(loss_percent(1000, 990), Some(1.0));
    assert_eq!(loss_percent(1000, 1003), Some(0.0), "duplicates do not make negative loss");
    assert_eq!(loss_percent(0, 0), None);
    let u = |cpu: f64, cores: usize, busy: f64| CpuUse { cpu: Some(cpu), cores, cores_busy: Some(busy) };
    let calm = u(40.0, 1, 50.0);
    assert_eq!(bottleneck(u(95.0, 1, 96.0), calm, Some(100.0)), "recorder");
    assert_eq!(bottleneck(u(95.0, 2, 50.0), calm, Some(100.0)), "none", "95 % of two cores is not saturated");
    assert_eq!(bottleneck(u(50.0, 1, 50.0), u(99.0, 1, 99.0), Some(99.0)), "generator");
    assert_eq!(bottleneck(u(99.0, 1, 99.0), u(190.0, 2, 95.0), None), "recorder and generator");
    assert_eq!(bottleneck(CpuUse::default(), calm, None), "none");
    assert_eq!(
        bottleneck(u(30.0, 1, 99.0), calm, Some(100.0)),
        "recorder's cores (busy with other processes)",
        "a shared machine: the recorder was starved"
    );
    assert_eq!(bottleneck(calm, u(30.0, 1, 99.0), Some(60.0)), "generator (sent 60 % of its audio)");
    assert_eq!(bottleneck(u(88.0, 1, 91.0), calm, None), "recorder", "its own core, nearly all its own");
    assert_eq!(send_rate_percent(1000, 2, Duration::from_secs(10)), Some(100.0), "2 × 50/s × 10 s");
    assert_eq!(send_rate_percent(500, 2, Duration::from_secs(10)), Some(50.0));
    assert_eq!(send_rate_percent(0, 0, Duration::from_secs(10)), None);
}

#[test]
fn video_frames_are_sized_for_the_bitrate() {
    assert_eq!(video_frame(500).len(), 6250, "500 kbit/s at 10 frames/s");
    assert_eq!(video_frame(1).len(), VP8_GREY_KEY_FRAME.len(), "never shorter than the key frame");
    assert_eq!(&video_frame(800)[..VP8_GREY_KEY_FRAME.len()], &VP8_GREY_KEY_FRAME[..]);
}

#[test]
fn a_session_is_complete_only_with_every_track_and_little_loss() {
    let mut rec = SessionRecord::new(0, "r");
    rec.audio_packets_sent = 2000;
    let (s, c) = (rec.seeker.clone(), rec.consultant.clone());
    let manifest = StoredManifest { tracks: vec![track(&s, "audio", 1000, 1000, 0), track(&c, "audio", 995, 995, 0)] };
    rec.apply_manifest(&manifest, false, 1.0);
    assert!(rec.recorded && rec.complete);
    assert_eq!((rec.audio_packets_recorded, rec.audio_gaps, rec.tracks_stored), (1995, 1, 2));
    assert_eq!(rec.audio_loss_percent, Some(0.25));

    // Too much loss: recorded, not complete.
    let mut lossy = SessionRecord { audio_packets_sent: 2000, ..SessionRecord::new(0, "r") };
    let manifest = StoredManifest { tracks: vec![track(&s, "audio", 1000, 1000, 0), track(&c, "audio", 900, 900, 0)] };
    lossy.apply_manifest(&manifest, false, 1.0);
    assert!(lossy.recorded && !lossy.complete);

    // Video expected but one participant's is missing: not recorded.
    let mut rec = SessionRecord { audio_packets_sent: 2000, ..SessionRecord::new(0, "r") };
    let manifest = StoredManifest {
        tracks: vec![
            track(&s, "audio", 1000, 1000, 0),
            track(&c, "audio", 1000, 1000, 0),
            track(&s, "video", 1200, 200, 0),
        ],
    };
    rec.apply_manifest(&manifest, true, 1.0);
    assert!(!rec.recorded && !rec.complete);

    // Both videos, one with many dropped frames: recorded, not complete.
    let mut rec = SessionRecord { audio_packets_sent: 2000, ..SessionRecord::new(0, "r") };
    let mut tracks = manifest.tracks.clone();
    tracks.push(track(&c, "video", 1200, 180, 20));
    rec.apply_manifest(&StoredManifest { tracks }, true, 1.0);
    assert!(rec.recorded && !rec.complete);
    assert_eq!((rec.video_frames_recorded, rec.video_frames_dropped), (380, 20));
}

#[test]
fn the_report_derives_per_session_figures_and_ends_in_one_json_line() {
    let mut records: Vec<SessionRecord> = (0..4)
        .rev()
        .map(|id| {
            let mut r = SessionRecord::new(id, "r");
            r.setup_ms = Some(100.0 + id as f64);
            r.audio_packets_sent = 2000;
            let (s, c) = (r.seeker.clone(), r.consultant.clone());
            let m =
                StoredManifest { tracks: vec![track(&s, "audio", 1000, 1000, 0), track(&c, "audio", 1000, 1000, 0)] };
            r.apply_manifest(&m, false, 1.0);
            r
        })
        .collect();
    records[0].error = Some("stored: boom".into());
    let window = Window {
        secs: 20.0,
        live_sessions: 4,
        recorder_cpu_percent: Some(10.0),
        recorder_idle_cpu_percent: Some(2.0),
        recorder_cores: vec![1],
        recorder_rss_kib: [Some(10_000), Some(10_800)],
        generator_cpu_percent: Some(30.0),
        generator_cores: 1,
        window_audio_packets_sent: 8000,
        window_uplinks: 8,
        ..Window::default()
    };
    let report = RecordReport::new(records, &opts(4, false), window, "minted".into());
    assert_eq!(report.per_session.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!((report.set_up, report.recorded, report.complete, report.failed), (4, 4, 4, 1));
    assert!(!report.ok(), "a failed session fails the run");
    assert_eq!(report.recorder_cpu_percent_per_session, Some(2.0));
    assert_eq!(report.sessions_per_core, Some(50.0));
    assert_eq!(report.recorder_rss_kib_per_session, Some(200.0));
    assert_eq!(report.bottleneck, "none");
    assert_eq!(report.send_rate_percent, Some(100.0));
    assert_eq!(report.audio_loss_percent, Some(0.0));
    assert_eq!(report.video_kbps, None);

    let line = crate::report::json_line(&report);
    assert!(!line.contains('\n'));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    for key in [
        "sessions",
        "live_sessions",
        "recorder_cpu_percent",
        "recorder_cpu_percent_per_session",
        "sessions_per_core",
        "generator_cpu_percent",
        "bottleneck",
        "send_rate_percent",
        "audio_loss_percent",
        "complete",
        "per_session",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {line}");
    }
    assert!(v["per_session"][0].get("stage").is_none());
    let lines = report.summary_lines();
    assert!(lines.iter().any(|l| l.contains("50 sessions per core")), "{lines:#?}");
}
