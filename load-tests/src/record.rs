//! `parley-load record`: how many recorded sessions one recorder holds, and
//! what each costs it (issue 6).
//!
//! Each session is a fresh pair: a premium seeker (the `premium` claim of a
//! minted token) and a consultant who allows recording. The seeker calls
//! with `record: true`, the consultant accepts, both join the room. The
//! server assigns the session to the recorder, which joins and offers each
//! participant a receive-only peer connection.
//!
//! **The clients are cheap on purpose.** A real participant runs two peer
//! connections: the call with the other participant and the send-only
//! *uplink* to the recorder ([`parley_sdk::session::SessionCall`]). Here each
//! participant runs the uplink only — the same SDK [`Call`] the SDK's uplink
//! is (an answerer sending Opus every 20 ms, and VP8 with `--video`) — and
//! the two participants never call each other: the recorder sees exactly
//! the traffic of a real recorded call, the generator does half the work.
//!
//! Phases: every session is set up (at most `--setup-concurrency` at a
//! time) until both uplinks are connected; after a short settling pause the
//! *steady window* of `--duration` begins, over which the CPU time of the
//! recorder (`--recorder-pid`, `/proc/<pid>/stat`), of the server
//! (`--server-pid`) and of this process are read; then every session closes
//! its uplinks, waits a moment for packets in flight, hangs up, and reads
//! the stored recording back (`GET /v1/sessions/{id}/recordings` as the
//! consultant, then the manifest through its signed link): a track file
//! per participant and kind, and the RTP packets the recorder received
//! against those the uplinks sent.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use parley_domain::protocol::rest::RecordingList;
use parley_domain::protocol::{Role, ServerMessage, SessionEndReason};
use parley_domain::{SessionId, UserId};
use parley_sdk::call::{Call, CallConfig, Signal, VIDEO_FRAME_DURATION, VP8_GREY_KEY_FRAME};
use parley_sdk::session::signal_message;
use parley_sdk::{ApiClient, Event, Events, SignalingClient};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::call::{CloseOnDrop, Task};
use crate::clock::ms;
use crate::procfs;
use crate::report::opt;
use crate::stats::Latencies;
use crate::target::Target;
use crate::tokens::{TokenSource, User};

/// Timeout of each signaling step (connect, request, event).
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the recorder may take to offer and the uplink to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one session's whole set-up may take once it has its turn.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Between the last set-up and the steady window (first packets, RTCP).
const SETTLE: Duration = Duration::from_secs(2);
/// The recorder's idle CPU is read over this long before any set-up.
const IDLE_SAMPLE: Duration = Duration::from_secs(1);
/// After closing the uplinks, before hanging up: packets in flight arrive.
const DRAIN: Duration = Duration::from_secs(1);
/// How long both sides may take to see `session.ended`.
const HANGUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the recorder may take to store a session's files after the end.
const STORE_TIMEOUT: Duration = Duration::from_secs(90);
/// A process is taken as saturated at this % of the cores it may use.
pub const SATURATED_PERCENT: f64 = 90.0;

/// What to run.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// The server.
    pub target: Target,
    /// Concurrent recorded sessions.
    pub sessions: usize,
    /// The steady window: how long every session records at once.
    pub duration: Duration,
    /// Send VP8 video too.
    pub video: bool,
    /// Video bitrate, kbit/s (see [`video_frame`]).
    pub video_kbps: u32,
    /// The recorder process (`parley recorder`, or the server with the
    /// embedded recorder), whose CPU is read.
    pub recorder_pid: Option<u32>,
    /// The server process, whose CPU is read (signaling only, normally).
    pub server_pid: Option<u32>,
    /// The server's JWT secret (required: only minted tokens carry `premium`).
    pub jwt_secret_file: Option<PathBuf>,
    /// Sessions being set up at once.
    pub setup_concurrency: usize,
    /// A session records fully when at most this % of its audio packets
    /// (and of its video frames) is missing.
    pub max_loss_percent: f64,
}

/// The VP8 frame every uplink sends every 100 ms for `kbps`: the SDK's
/// 64×48 grey key frame, padded with zeros to `kbps × 100 ms` (never
/// shorter than the frame itself). The recorder never decodes, so only the
/// size matters: webrtc-rs splits it into RTP packets of at most ~1200 bytes.
pub fn video_frame(kbps: u32) -> Bytes {
    let per_frame = u64::from(kbps) * 1000 / 8 * VIDEO_FRAME_DURATION.as_millis() as u64 / 1000;
    let len = (per_frame as usize).max(VP8_GREY_KEY_FRAME.len());
    let mut frame = VP8_GREY_KEY_FRAME.to_vec();
    frame.resize(len, 0);
    Bytes::from(frame)
}

/// `cpu_secs` used over `wall`, as % of one core.
pub fn cpu_percent(cpu_secs: f64, wall: Duration) -> Option<f64> {
    (wall > Duration::ZERO).then(|| cpu_secs * 100.0 / wall.as_secs_f64())
}

/// The recorder's CPU per live session (% of one core): its CPU in the
/// steady window less its idle CPU, over the sessions live in the window.
pub fn per_session_percent(window_percent: f64, idle_percent: f64, live: usize) -> Option<f64> {
    (live > 0).then(|| (window_percent - idle_percent).max(0.0) / live as f64)
}

/// Sessions one core would hold at `per_session` % each (100 / per session).
pub fn sessions_per_core(per_session: f64) -> Option<f64> {
    (per_session > 0.0).then(|| 100.0 / per_session)
}

/// % of `sent` packets that did not arrive (`received` may exceed `sent`
/// by duplicates; never negative). `None` when nothing was sent.
pub fn loss_percent(sent: u64, received: u64) -> Option<f64> {
    (sent > 0).then(|| sent.saturating_sub(received) as f64 * 100.0 / sent as f64)
}

/// A process's share of the machine in the steady window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuUse {
    /// Its CPU, % of one core.
    pub cpu: Option<f64>,
    /// The cores it may run on.
    pub cores: usize,
    /// How busy those cores were, every process on them, %.
    pub cores_busy: Option<f64>,
}

/// Saturated cores are put down to other processes when these took at
/// least this many percentage points of them.
pub const OTHERS_PERCENT: f64 = 10.0;

/// Below this % of the audio packets they should have sent, the uplinks
/// fell behind: the generator did not get the CPU it needed.
pub const MIN_SEND_RATE_PERCENT: f64 = 95.0;

/// What limited the run, or `none`: a process that used at least
/// [`SATURATED_PERCENT`] of the cores it may run on, or whose cores were
/// that busy (by other processes too, on a shared machine: named as such
/// when they took [`OTHERS_PERCENT`] or more); or a generator whose
/// uplinks sent less than [`MIN_SEND_RATE_PERCENT`] of their packets.
pub fn bottleneck(recorder: CpuUse, generator: CpuUse, send_rate_percent: Option<f64>) -> String {
    let limit = |name: &str, u: CpuUse| {
        let own = u.cpu.map(|c| c / u.cores.max(1) as f64);
        if own.is_some_and(|c| c >= SATURATED_PERCENT) {
            return Some(name.to_owned());
        }
        let busy = u.cores_busy.filter(|b| *b >= SATURATED_PERCENT)?;
        // Saturated cores: by this process, or with a good share taken by others.
        Some(if busy - own.unwrap_or(0.0) >= OTHERS_PERCENT {
            format!("{name}'s cores (busy with other processes)")
        } else {
            name.to_owned()
        })
    };
    let mut limits: Vec<String> = limit("recorder", recorder).into_iter().collect();
    match (limit("generator", generator), send_rate_percent) {
        (_, Some(rate)) if rate < MIN_SEND_RATE_PERCENT => {
            limits.push(format!("generator (sent {rate:.0} % of its audio)"))
        }
        (Some(g), _) => limits.push(g),
        _ => {}
    }
    if limits.is_empty() { "none".to_owned() } else { limits.join(" and ") }
}

/// % of the audio packets `uplinks` sending 50 packets/s should have sent
/// in `wall` that they did send.
pub fn send_rate_percent(sent: u64, uplinks: usize, wall: Duration) -> Option<f64> {
    let expected = uplinks as f64 * wall.as_secs_f64() / parley_sdk::call::AUDIO_FRAME_DURATION.as_secs_f64();
    (expected > 0.0).then(|| sent as f64 * 100.0 / expected)
}

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
    stage: &'static str,
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

/// Where the sessions are: setting up, then hanging up when told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Recording,
    HangUp,
}

/// Shared by every session task.
struct Ctx {
    tokens: TokenSource,
    target: Target,
    api: ApiClient,
    uplink: CallConfig,
    video: bool,
    max_loss_percent: f64,
    setups: Semaphore,
    /// Every connected uplink, for the packets sent in the window.
    uplinks: std::sync::Mutex<Vec<Arc<Call>>>,
}

impl Ctx {
    /// Audio packets every uplink sent so far, and how many uplinks there are.
    fn audio_sent(&self) -> (u64, usize) {
        let uplinks = self.uplinks.lock().unwrap_or_else(|e| e.into_inner());
        (uplinks.iter().map(|u| u.audio_packets_sent()).sum(), uplinks.len())
    }
}

/// Runs the scenario.
pub async fn run(opts: RecordOptions) -> anyhow::Result<RecordReport> {
    let tokens = TokenSource::resolve(&opts.target, opts.jwt_secret_file.as_deref()).await?;
    if tokens.is_dev_login() {
        bail!(
            "record needs --jwt-secret-file <data dir>/jwt-secret: premium seekers need the `premium` claim \
             of a minted token (dev login cannot make one)"
        );
    }
    if let Some(limit) = crate::limits::raise_nofile_limit()
        && let Some(w) = crate::limits::check("parley-load", limit, 8 * opts.sessions as u64)
    {
        eprintln!("parley-load: warning: {w}");
    }
    for (name, pid) in [("--recorder-pid", opts.recorder_pid), ("--server-pid", opts.server_pid)] {
        if let Some(pid) = pid {
            ensure!(procfs::cpu_secs(pid).is_some(), "{name} {pid}: cannot read /proc/{pid}/stat");
        }
    }
    if opts.recorder_pid.is_none() {
        eprintln!("parley-load: warning: no --recorder-pid: the recorder's CPU is not measured");
    }
    let run = crate::run_id();
    let describe = tokens.describe();
    eprintln!(
        "parley-load: {} recorded sessions{}, {:?} steady window ({describe})",
        opts.sessions,
        if opts.video { " with video" } else { "" },
        opts.duration
    );
    let uplink = CallConfig {
        offerer: false,
        data_channel: false,
        send_audio: true,
        receive_only: false,
        send_video: opts.video,
        video_payload: video_frame(opts.video_kbps),
        resolve_mdns_candidates: false,
        ..CallConfig::default()
    };
    let ctx = Arc::new(Ctx {
        api: ApiClient::new(&opts.target.base)?,
        tokens,
        target: opts.target.clone(),
        uplink,
        video: opts.video,
        max_loss_percent: opts.max_loss_percent,
        setups: Semaphore::new(opts.setup_concurrency.max(1)),
        uplinks: std::sync::Mutex::new(Vec::new()),
    });

    // The recorder at rest, before any session.
    let generator_cpus = procfs::allowed_cpus(std::process::id()).unwrap_or_default();
    let mut window =
        Window { generator_cores: std::thread::available_parallelism().map_or(1, usize::from), ..Window::default() };
    if let Some(pid) = opts.recorder_pid {
        window.recorder_cores = procfs::allowed_cpus(pid).unwrap_or_default();
        window.recorder_rss_kib[0] = procfs::rss_kib(pid).ok();
        let (c0, t0) = (procfs::cpu_secs(pid), Instant::now());
        tokio::time::sleep(IDLE_SAMPLE).await;
        if let (Some(c0), Some(c1)) = (c0, procfs::cpu_secs(pid)) {
            window.recorder_idle_cpu_percent = cpu_percent(c1 - c0, t0.elapsed());
        }
    }

    let (phase_tx, phase_rx) = watch::channel(Phase::Recording);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<bool>();
    let mut tasks = JoinSet::new();
    for id in 0..opts.sessions {
        let (ctx, run, phase, ready) = (ctx.clone(), run.clone(), phase_rx.clone(), ready_tx.clone());
        tasks.spawn(async move {
            let mut rec = SessionRecord::new(id, &run);
            if let Err(e) = drive(&ctx, &mut rec, ready.clone(), phase).await {
                rec.error = Some(format!("{}: {e:#}", rec.stage));
            }
            // A session that failed before it was ready must not hold the others up.
            if rec.setup_ms.is_none() {
                let _ = ready.send(false);
            }
            rec
        });
    }
    drop(ready_tx);

    // Set-up: every session reports once (ready or failed); later reports are ignored.
    let rounds = opts.sessions.div_ceil(opts.setup_concurrency.max(1)) as u32;
    let setup_deadline = Instant::now() + SETUP_TIMEOUT * (rounds + 1);
    let (mut reported, mut live) = (0, 0);
    while reported < opts.sessions {
        match tokio::time::timeout_at(setup_deadline, ready_rx.recv()).await {
            Ok(Some(ok)) => {
                reported += 1;
                live += usize::from(ok);
                if reported % 25 == 0 || reported == opts.sessions {
                    eprintln!("parley-load: {reported}/{} sessions set up or failed ({live} recording)", opts.sessions);
                }
            }
            Ok(None) => break,
            Err(_) => {
                eprintln!("parley-load: warning: set-up phase timed out with {live} sessions recording");
                break;
            }
        }
    }
    window.live_sessions = live;

    // The steady window.
    tokio::time::sleep(SETTLE).await;
    let t0 = Instant::now();
    let recorder0 = opts.recorder_pid.and_then(procfs::cpu_secs);
    let server0 = opts.server_pid.and_then(procfs::cpu_secs);
    let cores0 = procfs::cores_ticks(&window.recorder_cores);
    let own_cores0 = procfs::cores_ticks(&generator_cpus);
    let own0 = procfs::own_cpu_secs();
    let (sent0, uplinks) = ctx.audio_sent();
    tokio::time::sleep(opts.duration).await;
    let (sent1, _) = ctx.audio_sent();
    let wall = t0.elapsed();
    window.window_audio_packets_sent = sent1.saturating_sub(sent0);
    window.window_uplinks = uplinks;
    let delta = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => cpu_percent(b - a, wall),
        _ => None,
    };
    window.secs = wall.as_secs_f64();
    window.recorder_cpu_percent = delta(recorder0, opts.recorder_pid.and_then(procfs::cpu_secs));
    window.server_cpu_percent = delta(server0, opts.server_pid.and_then(procfs::cpu_secs));
    window.generator_cpu_percent = delta(own0, procfs::own_cpu_secs());
    window.recorder_cores_busy_percent = match (cores0, procfs::cores_ticks(&window.recorder_cores)) {
        (Some(a), Some(b)) if !window.recorder_cores.is_empty() => b.busy_percent_since(&a),
        _ => None,
    };
    window.generator_cores_busy_percent = match (own_cores0, procfs::cores_ticks(&generator_cpus)) {
        (Some(a), Some(b)) if !generator_cpus.is_empty() => b.busy_percent_since(&a),
        _ => None,
    };
    window.recorder_rss_kib[1] = opts.recorder_pid.and_then(|pid| procfs::rss_kib(pid).ok());
    eprintln!("parley-load: window over; hanging up and reading the recordings back");
    let _ = phase_tx.send(Phase::HangUp);

    let mut records = Vec::with_capacity(opts.sessions);
    let collect_by = Instant::now() + DRAIN + HANGUP_TIMEOUT + STORE_TIMEOUT + Duration::from_secs(30);
    while let Ok(Some(joined)) = tokio::time::timeout_at(collect_by, tasks.join_next()).await {
        match joined {
            Ok(record) => records.push(record),
            Err(e) => eprintln!("parley-load: a session task failed: {e}"),
        }
    }
    tasks.abort_all();
    for id in 0..opts.sessions {
        if !records.iter().any(|r| r.id == id) {
            let mut r = SessionRecord::new(id, &run);
            r.error = Some("the session task did not finish".into());
            records.push(r);
        }
    }
    Ok(RecordReport::new(records, &opts, window, describe))
}

/// How a participant's event pump ended.
#[derive(Debug, Default)]
struct PumpEnd {
    ended: Option<SessionEndReason>,
    notes: Vec<String>,
}

/// A participant in the room: its uplink to the recorder, if offered.
struct Participant {
    uplink: watch::Receiver<Option<Arc<Call>>>,
    pump: Task<PumpEnd>,
}

impl Participant {
    /// Starts answering the recorder for `client` in `session_id`.
    fn start(client: &SignalingClient, events: Events, session_id: &SessionId, config: CallConfig) -> Participant {
        let (tx, uplink) = watch::channel(None);
        let pump = Task::spawn(pump(events, client.clone(), session_id.clone(), config, tx));
        Participant { uplink, pump }
    }

    /// Waits for the recorder's offer and the uplink to connect.
    async fn connected(&self, who: &str) -> anyhow::Result<Arc<Call>> {
        let mut uplink = self.uplink.clone();
        let call = tokio::time::timeout(CONNECT_TIMEOUT, uplink.wait_for(Option::is_some))
            .await
            .with_context(|| format!("{who}: no offer from the recorder within {CONNECT_TIMEOUT:?}"))?
            .with_context(|| format!("{who}: the event pump stopped"))?
            .clone()
            .expect("waited for Some");
        call.wait_connected(CONNECT_TIMEOUT).await.with_context(|| format!("{who}: uplink to the recorder"))?;
        Ok(call)
    }

    /// Closes the current uplink; the audio packets it sent.
    async fn close_uplink(&self) -> u64 {
        let call = self.uplink.borrow().clone();
        match call {
            Some(call) => {
                let _ = call.close().await;
                call.audio_packets_sent()
            }
            None => 0,
        }
    }
}

/// Answers the recorder: each offer from it (`recording.started` names it)
/// gets a fresh send-only uplink [`Call`] (replacing the previous one), its
/// candidates go to that call, and the call's signals go back to it with
/// `to`. Ends at `session.ended` or when the connection closes.
async fn pump(
    mut events: Events,
    client: SignalingClient,
    session_id: SessionId,
    config: CallConfig,
    uplink: watch::Sender<Option<Arc<Call>>>,
) -> PumpEnd {
    let mut end = PumpEnd::default();
    let mut recorder: Option<UserId> = None;
    let mut inbound: Option<mpsc::UnboundedSender<Signal>> = None;
    let mut _forward: Option<Task<()>> = None;
    while let Some(event) = events.recv().await {
        let msg = match event {
            Event::Server(msg) => msg,
            Event::Closed { reason } => {
                end.notes.push(format!("signaling closed: {reason}"));
                break;
            }
            Event::Reconnecting => {
                end.notes.push("signaling connection dropped; reconnecting".into());
                continue;
            }
            Event::ResumeFailed { reason } => {
                end.notes.push(format!("resume failed: {reason}"));
                continue;
            }
            Event::Resumed { .. } => continue,
        };
        match msg {
            ServerMessage::RecordingStarted { session_id: s, recorder_id } if s == session_id => {
                recorder = Some(recorder_id);
            }
            ServerMessage::SdpOffer { session_id: s, from, sdp }
                if s == session_id && recorder.as_ref() == Some(&from) =>
            {
                if let Some(old) = uplink.send_replace(None) {
                    end.notes.push("the recorder offered again; uplink replaced".into());
                    tokio::spawn(async move {
                        let _ = old.close().await;
                    });
                }
                let (in_tx, in_rx) = mpsc::unbounded_channel();
                let _ = in_tx.send(Signal::Offer(sdp));
                let (out_tx, mut out_rx) = mpsc::unbounded_channel();
                match Call::start(config.clone(), out_tx, in_rx).await {
                    Ok(call) => {
                        let (client, sid) = (client.clone(), session_id.clone());
                        _forward = Some(Task::spawn(async move {
                            while let Some(signal) = out_rx.recv().await {
                                if client.send(signal_message(sid.clone(), signal, Some(from.clone()))).is_err() {
                                    return;
                                }
                            }
                        }));
                        inbound = Some(in_tx);
                        uplink.send_replace(Some(Arc::new(call)));
                    }
                    Err(e) => end.notes.push(format!("cannot answer the recorder: {e}")),
                }
            }
            ServerMessage::IceCandidate { session_id: s, from, candidate }
                if s == session_id && recorder.as_ref() == Some(&from) =>
            {
                if let Some(tx) = &inbound {
                    let _ = tx.send(Signal::Candidate(candidate));
                }
            }
            ServerMessage::SessionEnded { session_id: s, reason, .. } if s == session_id => {
                end.ended = Some(reason);
                break;
            }
            ServerMessage::Error { code, message, .. } => {
                end.notes.push(format!("server error {}: {message}", code.as_str()))
            }
            _ => {}
        }
    }
    if let Some(call) = uplink.send_replace(None) {
        let _ = call.close().await;
    }
    end
}

/// Connects `user` (seeker or consultant).
async fn connect(ctx: &Ctx, token: &str, who: &str) -> anyhow::Result<(SignalingClient, Events)> {
    tokio::time::timeout(STEP_TIMEOUT, SignalingClient::connect(&ctx.target.ws_url, token))
        .await
        .with_context(|| format!("{who}: connect timed out"))?
        .with_context(|| format!("{who}: connect"))
}

/// Runs one recorded session, filling `rec`; sends `true` on `ready` once
/// both uplinks are connected, then records until the phase is `HangUp`.
async fn drive(
    ctx: &Ctx,
    rec: &mut SessionRecord,
    ready: mpsc::UnboundedSender<bool>,
    mut phase: watch::Receiver<Phase>,
) -> anyhow::Result<()> {
    let permit = ctx.setups.acquire().await.context("set-up semaphore closed")?;
    let setup = tokio::time::timeout(SETUP_TIMEOUT, set_up(ctx, rec)).await;
    drop(permit);
    let (seeker, consultant, session_id, s, c, consultant_token) = match setup {
        Ok(r) => r?,
        Err(_) => bail!("set-up timed out after {SETUP_TIMEOUT:?}"),
    };
    let _guards = (CloseOnDrop(seeker.clone()), CloseOnDrop(consultant.clone()));
    rec.live_in_window = *phase.borrow() == Phase::Recording;
    let _ = ready.send(true);

    rec.stage = "recording";
    let _ = phase.wait_for(|p| *p == Phase::HangUp).await;

    rec.stage = "hangup";
    rec.audio_packets_sent = s.close_uplink().await + c.close_uplink().await;
    tokio::time::sleep(DRAIN).await;
    seeker.end_session(&session_id).await.context("seeker: session.end")?;
    let (mut s, mut c) = (s, c);
    let s_end = s.pump.join(HANGUP_TIMEOUT).await.unwrap_or_default();
    let c_end = c.pump.join(HANGUP_TIMEOUT).await.unwrap_or_default();
    rec.warnings.extend(s_end.notes.iter().map(|n| format!("seeker: {n}")));
    rec.warnings.extend(c_end.notes.iter().map(|n| format!("consultant: {n}")));
    if s_end.ended.is_none() || c_end.ended.is_none() {
        rec.warnings.push("session.ended not seen by both sides".into());
    }
    seeker.close();
    consultant.close();

    rec.stage = "stored";
    let list = stored(&ctx.api, &consultant_token, &session_id).await?;
    let manifest = list.recordings.iter().find(|f| f.kind == "manifest").expect("stored() waits for the manifest");
    let bytes = ctx.api.download(&manifest.url).await.context("downloading the manifest")?;
    let manifest: StoredManifest = serde_json::from_slice(&bytes).context("parsing the manifest")?;
    rec.apply_manifest(&manifest, ctx.video, ctx.max_loss_percent);

    rec.stage = "checks";
    if !rec.recorded {
        bail!(
            "the recording is incomplete: {} track files for {} expected",
            rec.tracks_stored,
            if ctx.video { 4 } else { 2 }
        );
    }
    Ok(())
}

type SetUp = (SignalingClient, SignalingClient, SessionId, Participant, Participant, String);

/// Tokens, consent, connections, the recorded call, both joins, both
/// uplinks connected.
async fn set_up(ctx: &Ctx, rec: &mut SessionRecord) -> anyhow::Result<SetUp> {
    rec.stage = "tokens";
    let consultant_token = ctx.tokens.token(&User::new(rec.consultant.clone(), Role::Consultant)).await?;
    let seeker_token = ctx.tokens.token(&User::premium_seeker(rec.seeker.clone())).await?;

    rec.stage = "connect";
    let (consultant, mut c_events) = connect(ctx, &consultant_token, "consultant").await?;
    ctx.api.set_recording_allowed(&consultant_token, true).await.context("consultant: allowing recording")?;
    consultant.set_available(true).await.context("consultant: presence.set")?;
    let (seeker, mut s_events) = connect(ctx, &seeker_token, "seeker").await?;

    rec.stage = "call";
    let t0 = Instant::now();
    let consultant_id = consultant.user().id.clone();
    let seeker_id = seeker.user().id.clone();
    let ringing = seeker
        .call_with(&consultant_id, Some(crate::PAYMENT_METHOD), true)
        .await
        .context("seeker: call.request with record")?;
    let session_id = ringing.session_id.clone();
    let (call_id, recorded) = c_events
        .wait_for(STEP_TIMEOUT, |m| match m {
            ServerMessage::CallIncoming { call_id, seeker: s, recording, .. } if s.id == seeker_id => {
                Some((call_id.clone(), *recording))
            }
            _ => None,
        })
        .await
        .context("consultant: waiting for call.incoming")?;
    ensure!(recorded, "call.incoming does not say the call is recorded");
    consultant.accept(&call_id).await.context("consultant: call.accept")?;
    let accepted = s_events
        .wait_for(STEP_TIMEOUT, |m| match m {
            ServerMessage::CallAccepted { session_id: s, .. } if *s == session_id => Some(Ok(())),
            ServerMessage::CallEnded { call_id, reason, .. } if *call_id == ringing.call_id => Some(Err(*reason)),
            _ => None,
        })
        .await
        .context("seeker: waiting for call.accepted")?;
    if let Err(reason) = accepted {
        bail!("seeker: the call ended unanswered ({})", reason.as_str());
    }

    rec.stage = "join";
    rec.session_id = Some(session_id.to_string());
    let c_room = consultant.join(&session_id).await.context("consultant: room.join")?;
    let c_config = CallConfig { ice_servers: c_room.ice_servers.clone(), ..ctx.uplink.clone() };
    let c = Participant::start(&consultant, c_events, &session_id, c_config);
    let s_room = seeker.join(&session_id).await.context("seeker: room.join")?;
    let s_config = CallConfig { ice_servers: s_room.ice_servers.clone(), ..ctx.uplink.clone() };
    let s = Participant::start(&seeker, s_events, &session_id, s_config);

    rec.stage = "uplinks";
    let (s_uplink, c_uplink) = tokio::try_join!(s.connected("seeker"), c.connected("consultant"))?;
    rec.setup_ms = Some(ms(t0.elapsed()));
    ctx.uplinks.lock().unwrap_or_else(|e| e.into_inner()).extend([s_uplink, c_uplink]);
    Ok((seeker, consultant, session_id, s, c, consultant_token))
}

/// The session's recording list once the manifest is stored (the server
/// registers it after every track file).
async fn stored(api: &ApiClient, token: &str, session_id: &SessionId) -> anyhow::Result<RecordingList> {
    let deadline = Instant::now() + STORE_TIMEOUT;
    loop {
        let list = api.recordings(token, session_id).await.context("GET /v1/sessions/{id}/recordings")?;
        if list.recordings.iter().any(|f| f.kind == "manifest") {
            return Ok(list);
        }
        if Instant::now() >= deadline {
            bail!("no recording stored within {STORE_TIMEOUT:?} of the end ({} files)", list.recordings.len());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
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
        let manifest =
            StoredManifest { tracks: vec![track(&s, "audio", 1000, 1000, 0), track(&c, "audio", 995, 995, 0)] };
        rec.apply_manifest(&manifest, false, 1.0);
        assert!(rec.recorded && rec.complete);
        assert_eq!((rec.audio_packets_recorded, rec.audio_gaps, rec.tracks_stored), (1995, 1, 2));
        assert_eq!(rec.audio_loss_percent, Some(0.25));

        // Too much loss: recorded, not complete.
        let mut lossy = SessionRecord { audio_packets_sent: 2000, ..SessionRecord::new(0, "r") };
        let manifest =
            StoredManifest { tracks: vec![track(&s, "audio", 1000, 1000, 0), track(&c, "audio", 900, 900, 0)] };
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
                let m = StoredManifest {
                    tracks: vec![track(&s, "audio", 1000, 1000, 0), track(&c, "audio", 1000, 1000, 0)],
                };
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
}
