//! `parley-load failover`: how long a killed node interrupts live calls, and
//! what it costs them in billable time.
//!
//! Sets up `calls` priced calls (signaling and `room.join` only, no media)
//! with the Rust SDK, through the URL given (the cluster's balancer). Then,
//! `trials` times:
//!
//! 1. both participants of every call stay in the room for `hold` plus a
//!    random part of `hold_jitter` (so the kills land anywhere in the
//!    meter's 10 s checkpoint cycle);
//! 2. the `kill` command runs (`sh -c`, e.g. `scripts/cluster.sh kill-hub`);
//! 3. the clients reconnect by themselves and resume ([`Event::Resumed`]:
//!    the new hub node takes their links over from the journal the dead one
//!    kept in Redis); when `resume` is refused (e.g. Redis lost the journal)
//!    the SDK rejoins the room ([`Event::ResumeFailed`], then
//!    [`Event::Rejoined`]). The **failover time** of a
//!    call runs from the kill command's start until both participants are
//!    back and one of them sees the other present: the session is metered
//!    again (both present, rule M5);
//! 4. the `restart` command runs (e.g. `scripts/cluster.sh start-all`), then
//!    the URL's `/readyz` must answer 200 before the next trial.
//!
//! At the end every seeker hangs up and the session is read as a moderator
//! (`GET /v1/sessions/{id}`): its billable seconds against the wall-clock
//! time both participants were in the room (as the clients saw it) give the
//! **billable seconds lost** to the failovers (the meter loses what it had
//! not checkpointed: rule M9, at most 10 s per failover). A trial whose
//! calls rejoined also gets its own share, from the rejoined room's meter
//! (`room.join` ack: the billable seconds the new hub node restored); a
//! resume carries no meter, so then only the run's total is known.
//!
//! Every step is bounded: commands by `command_timeout`, a trial's wait by
//! `trial_timeout`, readiness by `ready_timeout`; a run always ends.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use parley_domain::protocol::rest::{ConsultantPrice, PriceModel, SessionDetails};
use parley_domain::protocol::{Role, ServerMessage};
use parley_domain::{Currency, Money, SessionId, UserId};
use parley_sdk::{ApiClient, Event, Events, SignalingClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::call::{CloseOnDrop, Task};
use crate::clock::ms;
use crate::sdp::Rng;
use crate::target::Target;
use crate::tokens::{TokenSource, User};

mod report;

pub use self::report::{CallOutcome, FailoverReport, TrialRecord};

/// Timeout of each signaling step while setting up a call.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the trial loop looks at the clients' state.
const POLL: Duration = Duration::from_millis(10);
/// How long hanging up may take (both sides see `session.ended`).
const HANGUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the ended session's settlement to be carried out.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often `/readyz` is asked while waiting for the cluster.
const READY_POLL: Duration = Duration::from_millis(250);
/// Consecutive `200`s from `/readyz` that count as ready (the balancer
/// round-robins, so this asks several nodes).
const READY_STREAK: u32 = 4;
/// Output kept from a failing command, bytes.
const OUTPUT_KEPT: usize = 2000;

/// What to run.
#[derive(Debug, Clone)]
pub struct FailoverOptions {
    /// The service (the balancer in front of the cluster).
    pub target: Target,
    /// Concurrent calls, each a fresh seeker/consultant pair.
    pub calls: usize,
    /// Kills (each followed by a restart).
    pub trials: usize,
    /// The kill command, run with `sh -c` in the current directory.
    pub kill: String,
    /// The restart command, run with `sh -c` after every trial.
    pub restart: String,
    /// How long both stay in the room before each kill (at least).
    pub hold: Duration,
    /// Up to this much more, at random, before each kill.
    pub hold_jitter: Duration,
    /// How long every call may take to be back after a kill.
    pub trial_timeout: Duration,
    /// How long `/readyz` may take to answer 200 after the restart.
    pub ready_timeout: Duration,
    /// How long the kill and restart commands may run.
    pub command_timeout: Duration,
    /// The server's JWT secret: tokens, and the moderator who reads the sessions.
    pub jwt_secret_file: PathBuf,
    /// Each consultant's fixed price in EUR cents; 0: free calls.
    pub price_minor: i64,
}

/// What a side's event pump has seen, shared with the trial loop.
#[derive(Debug, Default)]
struct SideState {
    /// When the side was last back in the room (rejoined or resumed).
    back_at: Option<Instant>,
    /// `rejoined` or `resumed`, for the last return.
    back_via: Option<&'static str>,
    /// The billable seconds in the last rejoin's `room.join` ack.
    rejoin_billable_secs: Option<u64>,
    /// Whether the other participant is present as this side last heard.
    other_present: bool,
    /// When the connection last dropped.
    dropped_at: Option<Instant>,
    /// Rejoins, resumes and refused resumes over the run.
    rejoins: u32,
    resumes: u32,
    resume_failures: u32,
    /// The session ended (seen as `session.ended`), and why.
    ended: Option<String>,
    /// The side is lost for good (closed, rejoin refused), and why.
    lost: Option<String>,
    /// Server errors and other notes.
    notes: Vec<String>,
}

type Shared = Arc<Mutex<SideState>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, SideState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Notes kept per side.
const MAX_NOTES: usize = 20;

fn note(st: &mut SideState, n: String) {
    if st.notes.len() < MAX_NOTES {
        st.notes.push(n);
    }
}

/// Records what `events` says about one side until the stream ends.
async fn pump(mut events: Events, session_id: SessionId, state: Shared) {
    while let Some(event) = events.recv().await {
        let now = Instant::now();
        let mut st = lock(&state);
        match event {
            Event::Server(ServerMessage::ParticipantJoined { session_id: s, .. }) if s == session_id => {
                st.other_present = true
            }
            Event::Server(ServerMessage::ParticipantLeft { session_id: s, .. }) if s == session_id => {
                st.other_present = false
            }
            Event::Server(ServerMessage::SessionEnded { session_id: s, reason, .. }) if s == session_id => {
                st.ended = Some(reason.as_str().to_owned())
            }
            Event::Server(ServerMessage::Error { code, message, .. }) => {
                note(&mut st, format!("server error {}: {message}", code.as_str()))
            }
            Event::Server(_) => {}
            Event::Reconnecting => st.dropped_at = Some(now),
            Event::Resumed { .. } => {
                st.resumes += 1;
                st.back_at = Some(now);
                st.back_via = Some("resumed");
            }
            Event::ResumeFailed { .. } => st.resume_failures += 1,
            Event::Rejoined { room } if room.session_id == session_id => {
                st.rejoins += 1;
                st.back_at = Some(now);
                st.back_via = Some("rejoined");
                st.rejoin_billable_secs = room.meter.map(|m| m.billable_secs);
                if !room.participants.is_empty() {
                    st.other_present = true;
                }
            }
            Event::Rejoined { .. } => {}
            Event::RejoinFailed { error, .. } => st.lost = Some(format!("rejoin refused: {error}")),
            Event::Closed { reason } => {
                if st.lost.is_none() {
                    st.lost = Some(format!("connection closed: {reason}"));
                }
            }
        }
    }
}

/// One call under test.
struct LiveCall {
    id: usize,
    seeker_id: String,
    consultant_id: String,
    session_id: SessionId,
    seeker: CloseOnDrop,
    _consultant: CloseOnDrop,
    sides: [Shared; 2],
    _pumps: [Task<()>; 2],
    /// Since when both are in the room (`None` while a kill interrupts).
    both_since: Option<Instant>,
    /// Wall-clock time both were in the room, before `both_since`.
    both_in_room: Duration,
    /// `both_in_room` at the last kill, minus the billable seconds the
    /// rejoined meter had then: what the failovers so far lost.
    lost_so_far: f64,
    /// Why the call was given up (`None` while it is live).
    error: Option<String>,
}

impl LiveCall {
    /// Both-in-room time so far, including the current stretch.
    fn both_in_room_at(&self, at: Instant) -> Duration {
        self.both_in_room + self.both_since.map_or(Duration::ZERO, |s| at.saturating_duration_since(s))
    }

    /// Why a side is lost or the session ended, if it is.
    fn broken(&self) -> Option<String> {
        for (who, side) in ["seeker", "consultant"].iter().zip(&self.sides) {
            let st = lock(side);
            if let Some(reason) = &st.ended {
                return Some(format!("{who}: the session ended ({reason})"));
            }
            if let Some(lost) = &st.lost {
                return Some(format!("{who}: {lost}"));
            }
        }
        None
    }

    /// When both were back after `t0` with one seeing the other: the later
    /// return, how (`rejoined` / `resumed`), and the rejoined meter's
    /// billable seconds. Once the trial gives up waiting (`give_up`), a side
    /// that never dropped after `t0` counts as back at `t0` if the other is
    /// (its connection survived the kill).
    fn back_after(&self, t0: Instant, give_up: bool) -> Option<(Instant, &'static str, Option<u64>)> {
        let s = lock(&self.sides[0]);
        let c = lock(&self.sides[1]);
        let back = |st: &SideState| st.back_at.filter(|&b| b > t0);
        let dropped = |st: &SideState| st.dropped_at.is_some_and(|d| d > t0);
        let (sb, cb) = (back(&s), back(&c));
        let (sb, cb) = match (sb, cb) {
            (Some(a), Some(b)) => (a, b),
            // The other side's connection survived: it never dropped.
            (Some(a), None) if !dropped(&c) && give_up => (a, t0),
            (None, Some(b)) if !dropped(&s) && give_up => (t0, b),
            _ => return None,
        };
        let via = if s.back_via == Some("rejoined") || c.back_via == Some("rejoined") { "rejoined" } else { "resumed" };
        // A rejoin is a new `room.join`: wait until one side sees the other
        // (the later joiner's ack, or `participant.joined`). A resumed link
        // never left the room.
        if via == "rejoined" && !(s.other_present || c.other_present) {
            return None;
        }
        let billable = match (s.rejoin_billable_secs, c.rejoin_billable_secs) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Some((sb.max(cb), via, billable))
    }
}

/// Runs the scenario.
pub async fn run(opts: FailoverOptions) -> anyhow::Result<FailoverReport> {
    let tokens = TokenSource::resolve(&opts.target, Some(&opts.jwt_secret_file)).await?;
    let run = crate::run_id();
    let moderator = tokens.token(&User::new(format!("load-m-{run}"), Role::Moderator)).await?;
    let api = ApiClient::new(&opts.target.base).map_err(|e| anyhow::anyhow!("REST client: {e}"))?;
    ensure!(
        ready(&opts.target).await == Some(200),
        "{}/readyz does not answer 200: is the cluster up?",
        opts.target.base
    );
    eprintln!(
        "parley-load: failover: {} call(s), {} trial(s), kill `{}`, restart `{}`",
        opts.calls, opts.trials, opts.kill, opts.restart
    );

    let mut set_up = Vec::new();
    for id in 0..opts.calls {
        set_up.push(set_up_call(&tokens, &api, &opts, &run, id));
    }
    let mut calls = Vec::new();
    let mut setup_failures = Vec::new();
    for (id, r) in futures_util::future::join_all(set_up).await.into_iter().enumerate() {
        match r {
            Ok(c) => calls.push(c),
            Err(e) => setup_failures.push(CallOutcome::failed(id, &run, format!("setup: {e:#}"))),
        }
    }
    if calls.is_empty() {
        bail!("no call could be set up: {}", setup_failures.first().and_then(|c| c.error.clone()).unwrap_or_default());
    }
    eprintln!("parley-load: {} call(s) in their rooms", calls.len());

    let mut rng = Rng::new(crate::clock::now_ns() ^ u64::from(std::process::id()));
    let mut trials = Vec::with_capacity(opts.trials);
    for k in 0..opts.trials {
        let jitter = if opts.hold_jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_millis(rng.next_u64() % opts.hold_jitter.as_millis().max(1) as u64)
        };
        tokio::time::sleep(opts.hold + jitter).await;
        let (trial, go_on) = run_trial(&opts, k, &mut calls).await;
        eprintln!("parley-load: {}", trial.line());
        trials.push(trial);
        if !go_on {
            break;
        }
        if calls.iter().all(|c| c.error.is_some()) {
            eprintln!("parley-load: every call is lost; stopping");
            break;
        }
    }

    let mut outcomes = setup_failures;
    for call in calls {
        outcomes.push(finish(&api, &moderator, call).await);
    }
    Ok(FailoverReport::new(&opts, tokens.describe(), trials, outcomes))
}

/// Sets up call `id`: price, connect, ring, accept, both join.
async fn set_up_call(
    tokens: &TokenSource,
    api: &ApiClient,
    opts: &FailoverOptions,
    run: &str,
    id: usize,
) -> anyhow::Result<LiveCall> {
    let seeker_id = format!("load-s-{run}-{id}");
    let consultant_id = format!("load-c-{run}-{id}");
    let consultant_token = tokens.token(&User::new(consultant_id.clone(), Role::Consultant)).await?;
    let seeker_token = tokens.token(&User::new(seeker_id.clone(), Role::Seeker)).await?;
    if opts.price_minor > 0 {
        let amount = Money::new(opts.price_minor, Currency::parse("EUR").expect("valid"));
        api.set_price(&consultant_token, &ConsultantPrice { model: PriceModel::Fixed, amount })
            .await
            .context("consultant: setting the price")?;
    }
    let ws_url = opts.target.ws_url.as_str();
    let (consultant, mut c_events) =
        tokio::time::timeout(STEP_TIMEOUT, SignalingClient::connect(ws_url, &consultant_token))
            .await
            .context("consultant: connect timed out")?
            .context("consultant: connect")?;
    let consultant_guard = CloseOnDrop(consultant.clone());
    consultant.set_available(true).await.context("consultant: presence.set")?;
    let (seeker, mut s_events) = tokio::time::timeout(STEP_TIMEOUT, SignalingClient::connect(ws_url, &seeker_token))
        .await
        .context("seeker: connect timed out")?
        .context("seeker: connect")?;
    let seeker_guard = CloseOnDrop(seeker.clone());

    let consultant_user: UserId = consultant.user().id.clone();
    let ringing = seeker.call(&consultant_user, Some(crate::PAYMENT_METHOD)).await.context("seeker: call.request")?;
    let session_id = ringing.session_id.clone();
    let call_id = c_events
        .wait_for(STEP_TIMEOUT, |m| match m {
            ServerMessage::CallIncoming { call_id, .. } if *call_id == ringing.call_id => Some(call_id.clone()),
            _ => None,
        })
        .await
        .context("consultant: waiting for call.incoming")?;
    consultant.accept(&call_id).await.context("consultant: call.accept")?;
    s_events
        .wait_for(STEP_TIMEOUT, |m| match m {
            ServerMessage::CallAccepted { session_id: s, .. } if *s == session_id => Some(()),
            _ => None,
        })
        .await
        .context("seeker: waiting for call.accepted")?;
    seeker.join(&session_id).await.context("seeker: room.join")?;
    let room = consultant.join(&session_id).await.context("consultant: room.join")?;
    ensure!(!room.participants.is_empty(), "consultant: the seeker is not in the room after joining");
    let both_since = Instant::now();

    let sides = [Shared::default(), Shared::default()];
    for side in &sides {
        lock(side).other_present = true;
    }
    let pumps = [
        Task::spawn(pump(s_events, session_id.clone(), sides[0].clone())),
        Task::spawn(pump(c_events, session_id.clone(), sides[1].clone())),
    ];
    Ok(LiveCall {
        id,
        seeker_id,
        consultant_id,
        session_id,
        seeker: seeker_guard,
        _consultant: consultant_guard,
        sides,
        _pumps: pumps,
        both_since: Some(both_since),
        both_in_room: Duration::ZERO,
        lost_so_far: 0.0,
        error: None,
    })
}

/// One kill, the wait for every live call to be back, the restart and the
/// wait for readiness. Returns the trial and whether to go on.
async fn run_trial(opts: &FailoverOptions, k: usize, calls: &mut [LiveCall]) -> (TrialRecord, bool) {
    let mut trial = TrialRecord::new(k, calls.len());
    for call in calls.iter_mut().filter(|c| c.error.is_none()) {
        if let Some(broken) = call.broken() {
            call.error = Some(format!("before trial {k}: {broken}"));
        }
    }
    let t0 = Instant::now();
    // Until the clients say otherwise, nobody is present with anybody.
    for call in calls.iter_mut().filter(|c| c.error.is_none()) {
        call.both_in_room = call.both_in_room_at(t0);
        call.both_since = None;
        for side in &call.sides {
            lock(side).other_present = false;
        }
    }
    let kill = command(&opts.kill, opts.command_timeout).await;
    trial.kill_cmd_ms = Some(ms(t0.elapsed()));
    if let Err(e) = kill {
        // Nothing was (knowingly) killed: the calls go on as they were.
        for call in calls.iter_mut().filter(|c| c.error.is_none()) {
            call.both_since = Some(t0);
            for side in &call.sides {
                lock(side).other_present = true;
            }
        }
        trial.error = Some(format!("kill command: {e:#}"));
        return (trial, false);
    }

    // Wait until every live call is back (or broken, or out of time).
    let deadline = t0 + opts.trial_timeout;
    loop {
        let give_up = Instant::now() >= deadline;
        let mut waiting = 0;
        for call in calls.iter_mut().filter(|c| c.error.is_none() && c.both_since.is_none()) {
            if let Some((at, via, billable)) = call.back_after(t0, give_up) {
                call.both_since = Some(at);
                let wall = call.both_in_room.as_secs_f64();
                let lost_now = billable.map(|b| wall - b as f64);
                trial.back(call.id, ms(at.saturating_duration_since(t0)), via, lost_now.map(|l| l - call.lost_so_far));
                if let Some(l) = lost_now {
                    call.lost_so_far = l;
                }
            } else if let Some(broken) = call.broken() {
                call.error = Some(format!("trial {k}: {broken}"));
                trial.lost(call.id, call.error.clone().unwrap_or_default());
            } else if give_up {
                call.error = Some(format!("trial {k}: not back within {:?}", opts.trial_timeout));
                trial.lost(call.id, call.error.clone().unwrap_or_default());
            } else {
                waiting += 1;
            }
        }
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(POLL).await;
    }

    let t1 = Instant::now();
    let restart = command(&opts.restart, opts.command_timeout).await;
    if let Err(e) = restart {
        trial.error = Some(format!("restart command: {e:#}"));
        return (trial, false);
    }
    let ready_by = Instant::now() + opts.ready_timeout;
    if let Err(e) = wait_ready(&opts.target, ready_by).await {
        trial.error = Some(format!("after the restart: {e:#}"));
        return (trial, false);
    }
    trial.restart_ms = Some(ms(t1.elapsed()));
    (trial, true)
}

/// Hangs up a call (if still live) and reads its session as a moderator.
async fn finish(api: &ApiClient, moderator: &str, mut call: LiveCall) -> CallOutcome {
    let now = Instant::now();
    let mut out = CallOutcome::failed(call.id, "", String::new());
    out.seeker = call.seeker_id.clone();
    out.consultant = call.consultant_id.clone();
    out.session_id = Some(call.session_id.to_string());
    out.error = call.error.take();
    if out.error.is_none() {
        if let Some(broken) = call.broken() {
            out.error = Some(format!("at the end: {broken}"));
        } else {
            out.both_in_room_secs = Some(call.both_in_room_at(now).as_secs_f64());
            match call.seeker.0.end_session(&call.session_id).await {
                Ok(()) => {
                    let until = Instant::now() + HANGUP_TIMEOUT;
                    while lock(&call.sides[1]).ended.is_none() && Instant::now() < until {
                        tokio::time::sleep(POLL).await;
                    }
                    if lock(&call.sides[1]).ended.is_none() {
                        out.warnings.push("consultant: no session.ended within 10 s of the hang-up".into());
                    }
                }
                Err(e) => out.error = Some(format!("hang-up: {e}")),
            }
        }
    }
    for (who, side) in ["seeker", "consultant"].iter().zip(&call.sides) {
        let st = lock(side);
        out.rejoins += st.rejoins;
        out.resumes += st.resumes;
        out.resume_failures += st.resume_failures;
        out.warnings.extend(st.notes.iter().map(|n| format!("{who}: {n}")));
    }
    match ended_session(api, moderator, &call.session_id).await {
        Ok(d) => {
            out.state = Some(d.state.clone());
            out.end_reason = d.end_reason.clone();
            out.billable_secs = Some(d.billable_secs);
            out.outcome = d.outcome.map(|o| o.as_str());
            out.settlement_status = d.settlement_status.clone();
            if let Some(wall) = out.both_in_room_secs {
                out.billable_secs_lost = Some(crate::stats::round3(wall - d.billable_secs as f64));
            }
            if d.state != "ended" && out.error.is_none() {
                out.error = Some(format!("the session is still {} after the hang-up", d.state));
            }
        }
        Err(e) => {
            if out.error.is_none() {
                out.error = Some(format!("GET /v1/sessions/{}: {e:#}", call.session_id));
            }
        }
    }
    out
}

/// The session once ended and settled (or as it is after [`SETTLE_TIMEOUT`]).
async fn ended_session(api: &ApiClient, token: &str, session_id: &SessionId) -> anyhow::Result<SessionDetails> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let d = api.session(token, session_id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let settled = d.outcome.is_none() || matches!(d.settlement_status.as_deref(), Some("done" | "failed"));
        if (d.state == "ended" && settled) || Instant::now() >= deadline {
            return Ok(d);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `cmd` with `sh -c`, its output copied to stderr, for at most
/// `timeout`. Errors: it could not start, timed out, or exited non-zero.
async fn command(cmd: &str, timeout: Duration) -> anyhow::Result<()> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run `{cmd}`"))?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .with_context(|| format!("`{cmd}` still running after {timeout:?}"))?
        .with_context(|| format!("`{cmd}`"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for line in text.lines() {
        eprintln!("    | {line}");
    }
    if !out.status.success() {
        let tail: String = text.chars().rev().take(OUTPUT_KEPT).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("`{cmd}` failed ({}): {}", out.status, tail.trim());
    }
    Ok(())
}

/// Waits until `/readyz` answers 200 [`READY_STREAK`] times in a row.
async fn wait_ready(target: &Target, by: Instant) -> anyhow::Result<()> {
    let mut streak = 0;
    let mut last = None;
    while Instant::now() < by {
        last = ready(target).await;
        streak = if last == Some(200) { streak + 1 } else { 0 };
        if streak >= READY_STREAK {
            return Ok(());
        }
        tokio::time::sleep(READY_POLL).await;
    }
    bail!("{}/readyz not ready in time (last answer: {})", target.base, last.map_or("none".into(), |s| s.to_string()))
}

/// `GET /readyz`'s status code, `None` when nothing answers within 2 s.
async fn ready(target: &Target) -> Option<u16> {
    let host = target.host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), target.port)).await.ok()?;
        let request =
            format!("GET /readyz HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n\r\n", target.host, target.port);
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head).await.ok()?;
        status_code(&head[..n])
    };
    tokio::time::timeout(Duration::from_secs(2), ask).await.ok().flatten()
}

/// The status code of an HTTP/1.x response's first bytes.
fn status_code(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    let mut parts = text.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests;
