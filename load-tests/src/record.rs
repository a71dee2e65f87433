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
use parley_domain::protocol::rest::RecordingList;
use parley_domain::protocol::{Role, ServerMessage, SessionEndReason};
use parley_domain::{SessionId, UserId};
use parley_sdk::call::{Call, CallConfig, Signal};
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

mod figures;
mod report;
mod session;

pub use self::figures::{
    CpuUse, MIN_SEND_RATE_PERCENT, OTHERS_PERCENT, SATURATED_PERCENT, bottleneck, cpu_percent, loss_percent,
    per_session_percent, send_rate_percent, sessions_per_core, video_frame,
};
pub use self::report::{RecordReport, SessionRecord, StoredManifest, StoredTrack, Window};
use self::session::drive;

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

#[cfg(test)]
mod tests;
