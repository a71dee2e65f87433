//! What a `record` run found: per session ([`SessionRecord`], with what the
//! recorder stored), the steady window's CPU readings ([`Window`]), and the
//! whole run ([`RecordReport`]: readable lines and the JSON line).

use super::*;

/// One track of the stored manifest (the recorder's `ManifestTrack`; only
/// the fields read here).
#[derive(Debug, Clone, Deserialize)]
pub struct StoredTrack {
    /// Whose track.
    pub participant_id: String,
    /// `audio` or `video`.
    pub kind: String,
    /// File size, bytes.
    pub bytes: u64,
    /// Media time covered, ms.
    pub duration_ms: u64,
    /// RTP packets the recorder received.
    pub packets: u64,
    /// Opus packets or video frames written.
    pub frames: u64,
    /// Video frames dropped (incomplete).
    #[serde(default)]
    pub dropped_frames: u64,
    /// Lost-packet runs.
    #[serde(default)]
    pub gaps: u32,
}

/// The stored manifest (the fields read here).
#[derive(Debug, Clone, Deserialize)]
pub struct StoredManifest {
    /// Its tracks.
    pub tracks: Vec<StoredTrack>,
}

/// How one recorded session went. Serialised in the report's `per_session`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionRecord {
    /// Index in this run (0-based).
    pub id: usize,
    /// The synthetic premium seeker.
    pub seeker: String,
    /// The synthetic consultant.
    pub consultant: String,
    /// The session.
    pub session_id: Option<String>,
    /// `call.request` sent → both uplinks to the recorder connected, ms.
    pub setup_ms: Option<f64>,
    /// Whether it was recording when the steady window began.
    pub live_in_window: bool,
    /// Opus packets both uplinks sent.
    pub audio_packets_sent: u64,
    /// Opus RTP packets the recorder received (manifest), both participants.
    pub audio_packets_recorded: u64,
    /// Lost-packet runs the recorder saw in the audio.
    pub audio_gaps: u32,
    /// % of sent audio packets the recorder did not receive.
    pub audio_loss_percent: Option<f64>,
    /// Audio media time stored, ms, per participant (seeker, consultant).
    pub audio_ms: [u64; 2],
    /// Video frames written (with `--video`).
    pub video_frames_recorded: u64,
    /// Video frames received incomplete and dropped.
    pub video_frames_dropped: u64,
    /// Track files stored (the manifest not counted).
    pub tracks_stored: usize,
    /// Bytes stored in track files.
    pub bytes_stored: u64,
    /// Every expected track (audio, and video with `--video`, of both
    /// participants) stored with packets in it.
    pub recorded: bool,
    /// Recorded, and audio loss / dropped video frames within
    /// `--max-loss-percent`.
    pub complete: bool,
    /// Why the session failed (`stage: error`); `None` if it did not.
    pub error: Option<String>,
    /// Non-fatal problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub(crate) stage: &'static str,
}

impl SessionRecord {
    /// A record for session `id` of run `run`, not yet started.
    pub fn new(id: usize, run: &str) -> SessionRecord {
        SessionRecord {
            id,
            seeker: format!("load-s-{run}-{id}"),
            consultant: format!("load-c-{run}-{id}"),
            stage: "start",
            ..SessionRecord::default()
        }
    }

    /// Fills the stored-recording figures from the manifest; `video`: VP8
    /// tracks are expected too.
    pub fn apply_manifest(&mut self, manifest: &StoredManifest, video: bool, max_loss_percent: f64) {
        let who = [self.seeker.as_str(), self.consultant.as_str()];
        let mut expected_present = true;
        let mut video_dropped_ok = true;
        self.tracks_stored = manifest.tracks.len();
        self.bytes_stored = manifest.tracks.iter().map(|t| t.bytes).sum();
        for (i, user) in who.iter().enumerate() {
            let track = |kind: &str| manifest.tracks.iter().find(|t| t.participant_id == *user && t.kind == kind);
            match track("audio") {
                Some(t) if t.packets > 0 => {
                    self.audio_packets_recorded += t.packets;
                    self.audio_gaps += t.gaps;
                    self.audio_ms[i] = t.duration_ms;
                }
                _ => expected_present = false,
            }
            if video {
                match track("video") {
                    Some(t) if t.frames > 0 => {
                        self.video_frames_recorded += t.frames;
                        self.video_frames_dropped += t.dropped_frames;
                        let dropped = loss_percent(t.frames + t.dropped_frames, t.frames).unwrap_or(100.0);
                        video_dropped_ok &= dropped <= max_loss_percent;
                    }
                    _ => expected_present = false,
                }
            }
        }
        self.audio_loss_percent = loss_percent(self.audio_packets_sent, self.audio_packets_recorded);
        self.recorded = expected_present;
        self.complete = expected_present
            && video_dropped_ok
            && self.audio_loss_percent.is_some_and(|loss| loss <= max_loss_percent);
    }
}

/// CPU and memory readings over the steady window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Window {
    /// Wall time of the window, seconds.
    pub secs: f64,
    /// Sessions recording when it began.
    pub live_sessions: usize,
    /// The recorder's CPU in the window, % of one core.
    pub recorder_cpu_percent: Option<f64>,
    /// The recorder's CPU before any session, % of one core.
    pub recorder_idle_cpu_percent: Option<f64>,
    /// The cores the recorder may run on.
    pub recorder_cores: Vec<usize>,
    /// How busy those cores were in the window (every process on them), %.
    pub recorder_cores_busy_percent: Option<f64>,
    /// The recorder's VmRSS before any session and at the window's end, KiB.
    pub recorder_rss_kib: [Option<u64>; 2],
    /// The server's CPU in the window, % of one core.
    pub server_cpu_percent: Option<f64>,
    /// This process's CPU in the window, % of one core.
    pub generator_cpu_percent: Option<f64>,
    /// The cores this process may run on.
    pub generator_cores: usize,
    /// How busy those cores were in the window (every process on them), %.
    pub generator_cores_busy_percent: Option<f64>,
    /// Audio packets the live uplinks sent in the window.
    pub window_audio_packets_sent: u64,
    /// Uplinks live in the window (2 per live session).
    pub window_uplinks: usize,
}

/// The result of a `record` run; serialised as the last line of stdout.
#[derive(Debug, Clone, Serialize)]
pub struct RecordReport {
    /// Sessions asked for.
    pub sessions: usize,
    /// Whether video was sent.
    pub video: bool,
    /// Video bitrate per participant, kbit/s (with `video`).
    pub video_kbps: Option<u32>,
    /// How tokens were obtained.
    pub token_source: String,
    /// Sessions whose uplinks both connected.
    pub set_up: usize,
    /// Sessions with an error.
    pub failed: usize,
    /// Sessions whose expected tracks were all stored.
    pub recorded: usize,
    /// Recorded sessions within the loss limit.
    pub complete: usize,
    /// The loss limit, %.
    pub max_loss_percent: f64,
    /// Set-up time (call.request → both uplinks connected), median, ms.
    pub setup_ms_p50: Option<f64>,
    /// Set-up time, 99th percentile, ms.
    pub setup_ms_p99: Option<f64>,
    /// Set-up time, slowest, ms.
    pub setup_ms_max: Option<f64>,
    /// The steady window.
    pub window_secs: f64,
    /// Sessions recording in the window.
    pub live_sessions: usize,
    /// The recorder's CPU in the window, % of one core.
    pub recorder_cpu_percent: Option<f64>,
    /// The recorder's idle CPU, % of one core.
    pub recorder_idle_cpu_percent: Option<f64>,
    /// (window − idle) / live sessions, % of one core.
    pub recorder_cpu_percent_per_session: Option<f64>,
    /// 100 / per session: sessions one core would hold.
    pub sessions_per_core: Option<f64>,
    /// The recorder's cores.
    pub recorder_cores: Vec<usize>,
    /// How busy the recorder's cores were (all processes), %.
    pub recorder_cores_busy_percent: Option<f64>,
    /// Recorder memory growth per live session, KiB.
    pub recorder_rss_kib_per_session: Option<f64>,
    /// The server's CPU in the window, % of one core.
    pub server_cpu_percent: Option<f64>,
    /// This process's CPU in the window, % of one core.
    pub generator_cpu_percent: Option<f64>,
    /// The cores this process may run on.
    pub generator_cores: usize,
    /// How busy this process's cores were (all processes), %.
    pub generator_cores_busy_percent: Option<f64>,
    /// Audio packets the uplinks sent in the window / 50 per second per
    /// uplink, %: below 95 the generator fell behind.
    pub send_rate_percent: Option<f64>,
    /// What limited the run (see [`bottleneck`]), or `none`.
    pub bottleneck: String,
    /// Opus packets sent, all uplinks.
    pub audio_packets_sent: u64,
    /// Opus packets the recorder received, all sessions.
    pub audio_packets_recorded: u64,
    /// % of sent audio packets not received (sessions that stored audio).
    pub audio_loss_percent: Option<f64>,
    /// Lost-packet runs in the stored audio.
    pub audio_gaps: u64,
    /// Video frames written.
    pub video_frames_recorded: u64,
    /// Video frames dropped (incomplete).
    pub video_frames_dropped: u64,
    /// Bytes stored, all track files.
    pub bytes_stored: u64,
    /// One entry per session, by id.
    pub per_session: Vec<SessionRecord>,
}

impl RecordReport {
    /// Builds the report from the per-session records and the window readings.
    pub fn new(mut per_session: Vec<SessionRecord>, opts: &RecordOptions, window: Window, tokens: String) -> Self {
        per_session.sort_by_key(|r| r.id);
        let mut setup = Latencies::new();
        for ms in per_session.iter().filter_map(|r| r.setup_ms) {
            setup.record(Duration::from_secs_f64(ms / 1000.0));
        }
        let live = window.live_sessions;
        let per_session_cpu = window
            .recorder_cpu_percent
            .and_then(|w| per_session_percent(w, window.recorder_idle_cpu_percent.unwrap_or(0.0), live));
        let rss_per_session = match window.recorder_rss_kib {
            [Some(before), Some(after)] if live > 0 => Some(after.saturating_sub(before) as f64 / live as f64),
            _ => None,
        };
        let send_rate = send_rate_percent(
            window.window_audio_packets_sent,
            window.window_uplinks,
            Duration::from_secs_f64(window.secs),
        );
        let stored: Vec<&SessionRecord> = per_session.iter().filter(|r| r.audio_packets_recorded > 0).collect();
        let sent_of_stored = stored.iter().map(|r| r.audio_packets_sent).sum();
        let recorded_of_stored = stored.iter().map(|r| r.audio_packets_recorded).sum();
        RecordReport {
            sessions: opts.sessions,
            video: opts.video,
            video_kbps: opts.video.then_some(opts.video_kbps),
            token_source: tokens,
            set_up: per_session.iter().filter(|r| r.setup_ms.is_some()).count(),
            failed: per_session.iter().filter(|r| r.error.is_some()).count(),
            recorded: per_session.iter().filter(|r| r.recorded).count(),
            complete: per_session.iter().filter(|r| r.complete).count(),
            max_loss_percent: opts.max_loss_percent,
            setup_ms_p50: setup.quantile_ms(0.5),
            setup_ms_p99: setup.quantile_ms(0.99),
            setup_ms_max: setup.quantile_ms(1.0),
            window_secs: window.secs,
            live_sessions: live,
            recorder_cpu_percent: window.recorder_cpu_percent,
            recorder_idle_cpu_percent: window.recorder_idle_cpu_percent,
            recorder_cpu_percent_per_session: per_session_cpu,
            sessions_per_core: per_session_cpu.and_then(sessions_per_core),
            recorder_cores_busy_percent: window.recorder_cores_busy_percent,
            recorder_rss_kib_per_session: rss_per_session,
            server_cpu_percent: window.server_cpu_percent,
            generator_cpu_percent: window.generator_cpu_percent,
            generator_cores: window.generator_cores,
            generator_cores_busy_percent: window.generator_cores_busy_percent,
            send_rate_percent: send_rate,
            bottleneck: bottleneck(
                CpuUse {
                    cpu: window.recorder_cpu_percent,
                    cores: window.recorder_cores.len(),
                    cores_busy: window.recorder_cores_busy_percent,
                },
                CpuUse {
                    cpu: window.generator_cpu_percent,
                    cores: window.generator_cores,
                    cores_busy: window.generator_cores_busy_percent,
                },
                send_rate,
            ),
            recorder_cores: window.recorder_cores,
            audio_packets_sent: per_session.iter().map(|r| r.audio_packets_sent).sum(),
            audio_packets_recorded: per_session.iter().map(|r| r.audio_packets_recorded).sum(),
            audio_loss_percent: loss_percent(sent_of_stored, recorded_of_stored),
            audio_gaps: per_session.iter().map(|r| u64::from(r.audio_gaps)).sum(),
            video_frames_recorded: per_session.iter().map(|r| r.video_frames_recorded).sum(),
            video_frames_dropped: per_session.iter().map(|r| r.video_frames_dropped).sum(),
            bytes_stored: per_session.iter().map(|r| r.bytes_stored).sum(),
            per_session,
        }
    }

    /// Whether every session recorded fully.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.complete == self.sessions
    }

    /// The readable summary: one line per session, then the figures.
    pub fn summary_lines(&self) -> Vec<String> {
        let media = match self.video_kbps {
            Some(kbps) => format!("audio + video ({kbps} kbit/s)"),
            None => "audio only".to_owned(),
        };
        let mut out = vec![
            format!(
                "record: {} sessions, {media}, {:.1} s steady window, tokens {}",
                self.sessions, self.window_secs, self.token_source
            ),
            format!(
                "{:>4}  {:>9}  {:>8}  {:>8}  {:>6}  {:>5}  {:>8}  {:<8}  error",
                "sess", "setup_ms", "sent", "recorded", "loss%", "gaps", "video", "complete"
            ),
        ];
        for r in &self.per_session {
            out.push(format!(
                "{:>4}  {:>9}  {:>8}  {:>8}  {:>6}  {:>5}  {:>8}  {:<8}  {}",
                r.id,
                opt(r.setup_ms),
                r.audio_packets_sent,
                r.audio_packets_recorded,
                r.audio_loss_percent.map_or_else(|| "-".to_owned(), |l| format!("{l:.2}")),
                r.audio_gaps,
                if self.video { format!("{}/{}", r.video_frames_recorded, r.video_frames_dropped) } else { "-".into() },
                if r.complete { "yes" } else { "no" },
                r.error.as_deref().unwrap_or("-")
            ));
            for w in &r.warnings {
                out.push(format!("      warning: {w}"));
            }
        }
        let pct = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{x:.1} %"));
        out.push(format!(
            "sessions  {} set up, {} recorded, {} complete (loss <= {} %), {} failed of {}",
            self.set_up, self.recorded, self.complete, self.max_loss_percent, self.failed, self.sessions
        ));
        out.push(format!(
            "setup     p50={} p99={} max={} ms (call.request -> both uplinks connected)",
            opt(self.setup_ms_p50),
            opt(self.setup_ms_p99),
            opt(self.setup_ms_max)
        ));
        out.push(format!(
            "recorder  {} of one core in the window ({} idle) with {} live sessions, cores {:?} busy {}",
            pct(self.recorder_cpu_percent),
            pct(self.recorder_idle_cpu_percent),
            self.live_sessions,
            self.recorder_cores,
            pct(self.recorder_cores_busy_percent),
        ));
        out.push(format!(
            "per sess  {} of one core -> {} sessions per core; {} KiB RSS per session",
            self.recorder_cpu_percent_per_session.map_or_else(|| "-".to_owned(), |x| format!("{x:.3} %")),
            self.sessions_per_core.map_or_else(|| "-".to_owned(), |x| format!("{x:.0}")),
            self.recorder_rss_kib_per_session.map_or_else(|| "-".to_owned(), |x| format!("{x:.0}"))
        ));
        out.push(format!(
            "others    server {}, generator {} of one core ({} cores allowed, busy {}), uplinks sent {} of \
             their audio; bottleneck: {}",
            pct(self.server_cpu_percent),
            pct(self.generator_cpu_percent),
            self.generator_cores,
            pct(self.generator_cores_busy_percent),
            pct(self.send_rate_percent),
            self.bottleneck
        ));
        out.push(format!(
            "audio     {} packets sent, {} recorded, loss {}, {} gaps",
            self.audio_packets_sent,
            self.audio_packets_recorded,
            self.audio_loss_percent.map_or_else(|| "-".to_owned(), |x| format!("{x:.3} %")),
            self.audio_gaps
        ));
        if self.video {
            out.push(format!(
                "video     {} frames written, {} dropped",
                self.video_frames_recorded, self.video_frames_dropped
            ));
        }
        out.push(format!("stored    {} bytes of track files", self.bytes_stored));
        out
    }
}
