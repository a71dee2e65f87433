//! `parley-load signal`: signaling only, on raw WebSocket connections.
//!
//! 1. **Idle**: opens `clients` authenticated connections (at most
//!    `connect_concurrency` handshakes in flight), reads each `hello`, and
//!    keeps them open — read in the background, so the server's pings are
//!    answered — until the end. Measures the accept rate and, given the
//!    server's pid, its resident memory per idle connection.
//! 2. **Setup**: `pairs` seeker/consultant pairs on their own connections
//!    go through presence → `call.request` → `call.accept` → `room.join`,
//!    then exchange a ~3.5 KB offer and answer and 10 ICE candidates each
//!    way, paced (one per 10 ms), then 10 more each way at once. Call set-up
//!    time runs from `call.request` sent to the answer received. With
//!    [`PairSetup::PairedOnly`] (`--paired-only`) each pair stops once both
//!    sides have joined the room (no offer, answer or candidates), and
//!    set-up time runs from `call.request` sent to the seeker's `room.join`
//!    ack received. The pairs start at once (or at `--call-rate`); each
//!    calls as soon as its own connections are open, unless
//!    `--calls-at-once`: then every pair opens its connections (and sets
//!    its consultant available) first, and the calls start together.
//! 3. **Relay**: for `relay_secs`, each pair ping-pongs bursts of
//!    `relay_window` ICE candidates (seeker → consultant → seeker …; with
//!    the default window of 1, one message in flight per pair).
//!
//! Every relayed message carries its send time; the receiving reader task
//! stamps its arrival, giving one-way relay latency (client → server →
//! client, loopback).
//!
//! Against another signaling server (the target's [`Protocol`]: matchbox
//! or PeerJS, `--protocol`), the pairs run the same scenario in that
//! server's protocol ([`peers`]); there is no idle phase, token or price,
//! nor a call to stop at ([`PairSetup::PairedOnly`] is refused).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use parley_domain::SessionId;
use parley_domain::protocol::{AckResult, ClientMessage, PresenceStatus, Role, ServerMessage};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::clock::{now_ns, since};
use crate::report::{Counts, add_counts, bump, opt};
use crate::sdp::{self, IceCredentials, Kind, Rng};
use crate::stats::{self, Latencies};
use crate::target::{Protocol, Target};
use crate::tokens::{TokenSource, User};
use crate::ws::{self, Incoming, Peer, Recv};
use crate::{limits, procfs};

mod matchbox;
mod pair;
mod peerjs;
mod peers;
mod report;

use self::pair::pair;
pub use self::report::{SignalReport, SignalStats};

/// How long one connection may take to open and say hello.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one pair's whole set-up may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a relay hop may take before it counts as lost.
const HOP_TIMEOUT: Duration = Duration::from_secs(2);
/// Interval of the paced candidates.
const PACE: Duration = Duration::from_millis(10);
/// Candidates per round, each way.
const CANDIDATES_PER_ROUND: u64 = 10;
/// How long hanging up and closing may take.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait after the idle connections are open before reading the server's RSS.
const SETTLE: Duration = Duration::from_secs(1);
/// Failure messages kept for the report.
const MAX_FAILURES_KEPT: usize = 10;

/// What to run.
#[derive(Debug, Clone)]
pub struct SignalOptions {
    /// The server, and the protocol it speaks (`target.protocol`): against
    /// matchbox or PeerJS, `clients`, `price_minor` and `jwt_secret_file`
    /// must be left at 0 / `None` ([`run`] refuses them).
    pub target: Target,
    /// Idle connections.
    pub clients: usize,
    /// Seeker/consultant pairs.
    pub pairs: usize,
    /// The server's pid, for its RSS and open-file limit.
    pub server_pid: Option<u32>,
    /// The database server's main pid (PostgreSQL's postmaster), for its
    /// CPU and its backends' over the set-up phase.
    pub db_pid: Option<u32>,
    /// Length of the relay phase.
    pub relay_secs: u64,
    /// Candidates sent back to back per relay hop (messages in flight per pair).
    pub relay_window: usize,
    /// Pair set-ups started per second (`None`: all at once).
    pub call_rate: Option<f64>,
    /// Every pair opens its connections (on Parley's protocol, and sets its
    /// consultant available) before any pair calls; the calls then start
    /// together and set-up times run from there (`--calls-at-once`). Without
    /// it each pair calls as soon as its own connections are open, so the
    /// server's accept rate spreads the calls out. Not with `call_rate`.
    pub calls_at_once: bool,
    /// Each consultant's fixed price in EUR cents (0: free calls, no hold).
    pub price_minor: i64,
    /// The server's JWT secret.
    pub jwt_secret_file: Option<PathBuf>,
    /// WebSocket handshakes in flight at once in the idle phase.
    pub connect_concurrency: usize,
    /// How far each pair's set-up goes (`--paired-only`).
    pub setup: PairSetup,
}

/// How far each pair's set-up goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairSetup {
    /// Paired into a call, then a ~3.5 KB offer and answer and 20 ICE
    /// candidates each way relayed (without `--paired-only`).
    Full,
    /// Stops once paired into a call (`--paired-only`): on Parley's
    /// protocol (Parley, the bare relay) once the seeker's `room.join` ack
    /// arrives, both sides joined, with Parley's hold and stored session in
    /// place. No offer, answer or candidates; needs `relay_secs` 0, and
    /// Parley's protocol (the peers have no call to be paired into).
    PairedOnly,
}

/// Keeps `f` among the first [`MAX_FAILURES_KEPT`] distinct failures.
fn keep_failure(failures: &mut Vec<String>, f: String) {
    if failures.len() < MAX_FAILURES_KEPT && !failures.contains(&f) {
        failures.push(f);
    }
}

/// Distributions shared by the pair tasks.
#[derive(Default)]
struct Shared {
    setup: Mutex<Latencies>,
    sdp_relay: Mutex<Latencies>,
    paced_relay: Mutex<Latencies>,
    burst_relay: Mutex<Latencies>,
    relay: Mutex<Latencies>,
}

fn record(into: &Mutex<Latencies>, d: Duration) {
    into.lock().unwrap_or_else(|p| p.into_inner()).record(d);
}

/// Where a pair waits, with [`SignalOptions::calls_at_once`], until every
/// pair has opened its connections: each pair holds a sender of one
/// channel and drops it on arrival (or when its task gives up), so the
/// channel closes once every pair has arrived or failed, and the run then
/// lets them all call. Without `calls_at_once` a pair does not wait.
pub(super) struct StartLine(Option<(mpsc::Sender<()>, watch::Receiver<bool>)>);

/// `n` start lines, each to be moved into its pair's task (lines that do
/// not wait unless `at_once`), and the future that resolves, and lets
/// every pair go, once each line's pair has arrived or given up (its
/// line dropped).
fn start_lines(n: usize, at_once: bool) -> (Vec<StartLine>, impl Future<Output = ()> + Send + 'static) {
    let (arrival_tx, mut arrival_rx) = mpsc::channel::<()>(1);
    let (start_tx, start_rx) = watch::channel(false);
    let lines = (0..n).map(|_| StartLine(at_once.then(|| (arrival_tx.clone(), start_rx.clone())))).collect();
    drop(arrival_tx);
    let all_arrived = async move {
        // Nothing is sent: `None` once every sender is gone.
        let _ = arrival_rx.recv().await;
        let _ = start_tx.send(true);
    };
    (lines, all_arrived)
}

impl StartLine {
    /// Arrives and waits for the common start (at once without
    /// `calls_at_once`, or when the run has stopped).
    pub(super) async fn line_up(&mut self) {
        if let Some((arrived, mut start)) = self.0.take() {
            drop(arrived);
            let _ = start.wait_for(|go| *go).await;
        }
    }
}

/// What the run shares with every pair task.
struct PairCtx {
    ws_url: String,
    /// `ws://host:port`, for the peers' URLs.
    ws_base: String,
    /// This run's id, in the peers' room names and ids.
    run: String,
    shared: Shared,
    stop: watch::Receiver<bool>,
    go: watch::Receiver<Option<Instant>>,
    relay: Duration,
    relay_window: usize,
    /// Where each pair's set-up stops.
    setup: PairSetup,
    deadline: Instant,
}

/// How one pair went.
#[derive(Debug, Default)]
struct PairResult {
    set_up: bool,
    /// Set-up stage and error, if set-up failed.
    failure: Option<(String, String)>,
    /// Why the relay phase broke off, if it did.
    relay_error: Option<String>,
    hops: u64,
    lost: u64,
    relay_finished: Option<Instant>,
    errors: Counts,
    client_errors: Counts,
}

/// Runs the scenario, each pair's set-up going as far as `opts.setup`
/// says, and returns its report and distributions. Errors before any
/// traffic when the options do not suit the target's protocol or the
/// set-up, or `opts.db_pid` is not running.
pub async fn run(opts: SignalOptions) -> anyhow::Result<(SignalReport, SignalStats)> {
    peers::check_options(&opts)?;
    if let Some(pid) = opts.db_pid {
        procfs::cpu_secs(pid).with_context(|| format!("--db-pid {pid}: no such process"))?;
    }
    let run = crate::run_id();
    let tokens = match opts.target.protocol {
        Protocol::Parley => Some(TokenSource::resolve(&opts.target, opts.jwt_secret_file.as_deref()).await?),
        Protocol::Matchbox | Protocol::PeerJs => None,
    };
    if let Some(tokens) = &tokens
        && tokens.is_dev_login()
        && opts.clients > 500
    {
        eprintln!(
            "parley-load: warning: fetching {} tokens by dev login, one request each; pass \
             --jwt-secret-file <server data dir>/jwt-secret to mint them locally",
            opts.clients + 2 * opts.pairs
        );
    }
    let connections = (opts.clients + 2 * opts.pairs) as u64;
    match limits::raise_nofile_limit() {
        Some(limit) => {
            if let Some(w) = limits::check("parley-load", limit, connections) {
                eprintln!("parley-load: warning: {w}");
            }
        }
        None => eprintln!("parley-load: warning: cannot read or raise the open-file limit"),
    }
    if let Some(pid) = opts.server_pid {
        if let Some(w) = procfs::max_open_files(pid).and_then(|l| limits::check("the server", l, connections)) {
            eprintln!("parley-load: warning: {w}");
        }
        procfs::rss_kib(pid)?; // fail early on a wrong pid
    }
    let Some(tokens) = tokens else {
        let none = format!("none ({}: no authentication)", opts.target.protocol);
        return run_pairs(opts, run, none, Vec::new(), Vec::new()).await;
    };

    let (idle_tokens, pair_tokens) = pair::prepare(&opts, &tokens, &run).await?;
    run_pairs(opts, run, tokens.describe(), idle_tokens, pair_tokens).await
}

/// The phases, once the tokens are ready (none for the peers, which take
/// none; `token_source` says where they came from). `run` is the run's id.
async fn run_pairs(
    opts: SignalOptions,
    run: String,
    token_source: String,
    idle_tokens: Vec<String>,
    pair_tokens: Vec<String>,
) -> anyhow::Result<(SignalReport, SignalStats)> {
    // Everything stops by this instant, whatever happens.
    let idle_budget = Duration::from_secs(30) + Duration::from_millis(20 * opts.clients as u64);
    let relay = Duration::from_secs(opts.relay_secs);
    let setup = opts.setup;
    // With --call-rate, pair `i` starts its set-up `i / rate` seconds in.
    let setup_spread = match opts.call_rate {
        Some(rate) if rate > 0.0 => Duration::from_secs_f64(opts.pairs as f64 / rate),
        _ => Duration::ZERO,
    };
    let deadline =
        Instant::now() + idle_budget + SETTLE + setup_spread + SETUP_TIMEOUT + relay + Duration::from_secs(60);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut errors = Counts::new();
    let mut client_errors = Counts::new();
    let mut failures: Vec<String> = Vec::new();

    // ----- phase 1: idle connections --------------------------------------
    let server_rss_before = opts.server_pid.map(procfs::rss_kib).transpose()?;
    let client_rss_before = procfs::own_rss_kib();
    eprintln!("parley-load: phase 1: opening {} idle connections", opts.clients);
    let server_cpu_at_start = opts.server_pid.and_then(procfs::cpu_secs);
    let client_cpu_at_start = procfs::own_cpu_secs();
    let started = Instant::now();
    let semaphore = Arc::new(Semaphore::new(opts.connect_concurrency.max(1)));
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel::<Result<(), ws::OpenError>>();
    let mut idle_tasks = JoinSet::new();
    for token in idle_tokens {
        let semaphore = semaphore.clone();
        let opened = opened_tx.clone();
        let url = opts.target.ws_url.clone();
        let stop = stop_rx.clone();
        idle_tasks.spawn(tokio::time::timeout_at(deadline, async move {
            let permit = semaphore.acquire_owned().await;
            let result = ws::open(&url, &token, CONNECT_TIMEOUT).await;
            drop(permit);
            match result {
                Err(e) => {
                    let _ = opened.send(Err(e));
                    ws::ReaderEnd::default()
                }
                Ok((socket, _)) => {
                    let _ = opened.send(Ok(()));
                    let (mut sink, stream) = socket.split();
                    let end = ws::read_loop(stream, None, stop, deadline).await;
                    if !end.closed_by_server {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(2),
                            sink.send(tokio_tungstenite::tungstenite::Message::Close(None)),
                        )
                        .await;
                    }
                    end
                }
            }
        }));
    }
    drop(opened_tx);
    let (mut idle_connected, mut idle_failed) = (0u64, 0u64);
    while idle_connected + idle_failed < opts.clients as u64 {
        match tokio::time::timeout_at(started + idle_budget, opened_rx.recv()).await {
            Ok(Some(Ok(()))) => idle_connected += 1,
            Ok(Some(Err(e))) => {
                idle_failed += 1;
                bump(&mut client_errors, &format!("idle_{}", e.kind));
                keep_failure(&mut failures, format!("idle connection: {e}"));
            }
            Ok(None) | Err(_) => break,
        }
    }
    let accept_elapsed = started.elapsed();
    let accept_wall = accept_elapsed.as_secs_f64();
    let server_cpu_percent_accept =
        cpu_percent(server_cpu_at_start, opts.server_pid.and_then(procfs::cpu_secs), accept_wall);
    let client_cpu_percent_accept = cpu_percent(client_cpu_at_start, procfs::own_cpu_secs(), accept_wall);
    let unreported = opts.clients as u64 - idle_connected - idle_failed;
    if unreported > 0 {
        idle_failed += unreported;
        *client_errors.entry("idle_phase_timeout".into()).or_default() += unreported;
        keep_failure(&mut failures, format!("{unreported} idle connections not open within {idle_budget:?}"));
    }
    let accept_rate = if accept_elapsed.is_zero() { 0.0 } else { idle_connected as f64 / accept_elapsed.as_secs_f64() };
    eprintln!(
        "parley-load: phase 1: {idle_connected} open, {idle_failed} failed in {:.3} s ({accept_rate:.0}/s)",
        accept_elapsed.as_secs_f64()
    );
    tokio::time::sleep(SETTLE).await;
    let server_rss_after = opts.server_pid.map(procfs::rss_kib).transpose()?;
    let client_rss_after = procfs::own_rss_kib();
    let per_conn = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) if idle_connected > 0 => Some(stats::round3((a as f64 - b as f64) / idle_connected as f64)),
        _ => None,
    };

    // ----- phases 2 and 3: pairs ------------------------------------------
    let (go_tx, go_rx) = watch::channel::<Option<Instant>>(None);
    let ctx = Arc::new(PairCtx {
        ws_url: opts.target.ws_url.clone(),
        ws_base: opts.target.ws_base(),
        run,
        shared: Shared::default(),
        stop: stop_rx.clone(),
        go: go_rx,
        relay,
        relay_window: opts.relay_window,
        setup,
        deadline,
    });
    let (setup_tx, mut setup_rx) = mpsc::unbounded_channel::<bool>();
    let mut pair_tasks = JoinSet::new();
    if opts.pairs > 0 {
        let depth = if setup == PairSetup::PairedOnly { " (paired only: no SDP, no candidates)" } else { "" };
        eprintln!("parley-load: phase 2: setting up {} pairs{depth}", opts.pairs);
    }
    let setup_started = Instant::now();
    let server_cpu_at_setup = opts.server_pid.and_then(procfs::cpu_secs);
    let client_cpu_at_setup = procfs::own_cpu_secs();
    let db_cpu_at_setup = opts.db_pid.and_then(procfs::tree_cpu_secs);
    // Every process on the server's cores: its own work, and whatever
    // shares them (a database unpinned, the kernel's network work).
    let server_cores = opts.server_pid.and_then(procfs::allowed_cpus).unwrap_or_default();
    let server_cores_at_setup = procfs::cores_ticks(&server_cores);
    let (lines, all_arrived) = start_lines(opts.pairs, opts.calls_at_once);
    // Every pair arrived at the start line (or gave up): the calls start.
    let connected = tokio::spawn(async move {
        all_arrived.await;
        setup_started.elapsed()
    });
    for (i, line) in lines.into_iter().enumerate() {
        // Parley's pairs have two tokens each; the peers' none.
        let tokens = pair_tokens.get(2 * i..2 * i + 2).map(|t| (t[0].clone(), t[1].clone()));
        let protocol = opts.target.protocol;
        let ctx = ctx.clone();
        let setup_tx = setup_tx.clone();
        let start_at = match opts.call_rate {
            Some(rate) if rate > 0.0 => setup_started + Duration::from_secs_f64(i as f64 / rate),
            _ => setup_started,
        };
        pair_tasks.spawn(async move {
            tokio::time::sleep_until(start_at).await;
            match (protocol, tokens) {
                (Protocol::Matchbox, _) => peers::pair::<matchbox::Matchbox>(i as u64, ctx, line, setup_tx).await,
                (Protocol::PeerJs, _) => peers::pair::<peerjs::PeerJs>(i as u64, ctx, line, setup_tx).await,
                (Protocol::Parley, Some((seeker, consultant))) => {
                    pair(i as u64, ctx, seeker, consultant, line, setup_tx).await
                }
                (Protocol::Parley, None) => unreachable!("two tokens per Parley pair"),
            }
        });
    }
    drop(setup_tx);
    let mut reported = 0;
    while reported < opts.pairs {
        let give_up = setup_started + setup_spread + SETUP_TIMEOUT + Duration::from_secs(5);
        match tokio::time::timeout_at(give_up, setup_rx.recv()).await {
            Ok(Some(_)) => reported += 1,
            Ok(None) | Err(_) => break,
        }
    }
    let go_at = Instant::now();
    // Finished unless a pair still hangs in its connect after the others gave up.
    let connected_secs = match futures_util::FutureExt::now_or_never(connected) {
        Some(Ok(took)) if opts.calls_at_once => Some(stats::round3(took.as_secs_f64())),
        _ => None,
    };
    if let Some(secs) = connected_secs {
        eprintln!("parley-load: phase 2: every pair connected in {secs:.3} s, then the calls started together");
    }
    if opts.pairs > 0 {
        eprintln!(
            "parley-load: phase 2: done in {:.3} s; phase 3: relaying for {} s",
            go_at.duration_since(setup_started).as_secs_f64(),
            opts.relay_secs
        );
    }
    let server_cpu_at_go = opts.server_pid.and_then(procfs::cpu_secs);
    let server_rss_calls = opts.server_pid.map(procfs::rss_kib).transpose()?;
    let setup_secs = if opts.pairs > 0 { go_at.duration_since(setup_started).as_secs_f64() } else { 0.0 };
    let client_cpu_at_go = procfs::own_cpu_secs();
    let server_cpu_percent_setup = cpu_percent(server_cpu_at_setup, server_cpu_at_go, setup_secs);
    let client_cpu_percent_setup = cpu_percent(client_cpu_at_setup, client_cpu_at_go, setup_secs);
    let db_cpu_percent_setup = cpu_percent(db_cpu_at_setup, opts.db_pid.and_then(procfs::tree_cpu_secs), setup_secs);
    let server_cores_busy_percent_setup = match (server_cores_at_setup, procfs::cores_ticks(&server_cores)) {
        (Some(before), Some(after)) if opts.pairs > 0 => after.busy_percent_since(&before).map(stats::round3),
        _ => None,
    };
    let _ = go_tx.send(Some(go_at));
    let mut pair_results = Vec::new();
    let collect_by = go_at + relay + HOP_TIMEOUT * 2 + TEARDOWN_TIMEOUT * 3;
    while !pair_tasks.is_empty() {
        match tokio::time::timeout_at(collect_by, pair_tasks.join_next()).await {
            Ok(Some(Ok(r))) => pair_results.push(r),
            Ok(Some(Err(e))) => {
                bump(&mut client_errors, "pair_task_panicked");
                keep_failure(&mut failures, format!("pair task: {e}"));
            }
            Ok(None) => break,
            Err(_) => {
                let left = pair_tasks.len();
                *client_errors.entry("pair_task_timeout".into()).or_default() += left as u64;
                keep_failure(&mut failures, format!("{left} pair tasks did not finish in time"));
                pair_tasks.abort_all();
                break;
            }
        }
    }

    // The pairs hang up right after relaying: CPU to here is the relay's.
    let relay_wall = if opts.pairs > 0 { go_at.elapsed().as_secs_f64() } else { 0.0 };
    let server_cpu_percent_relay =
        cpu_percent(server_cpu_at_go, opts.server_pid.and_then(procfs::cpu_secs), relay_wall);
    let client_cpu_percent_relay = cpu_percent(client_cpu_at_go, procfs::own_cpu_secs(), relay_wall);

    // ----- teardown of the idle connections ---------------------------------
    let _ = stop_tx.send(true);
    let mut idle_dropped = 0;
    let close_by = Instant::now() + Duration::from_secs(15);
    while let Ok(Some(joined)) = tokio::time::timeout_at(close_by, idle_tasks.join_next()).await {
        if let Ok(Ok(end)) = joined {
            add_counts(&mut errors, &end.errors);
            idle_dropped += u64::from(end.closed_by_server);
        }
    }
    idle_tasks.abort_all();

    // ----- report -----------------------------------------------------------
    let mut pairs_set_up = 0;
    let mut relay_hops = 0;
    let mut relay_lost = 0;
    let mut relay_end = go_at;
    for r in &pair_results {
        pairs_set_up += u64::from(r.set_up);
        relay_hops += r.hops;
        relay_lost += r.lost;
        if let Some(t) = r.relay_finished {
            relay_end = relay_end.max(t);
        }
        add_counts(&mut errors, &r.errors);
        add_counts(&mut client_errors, &r.client_errors);
        if let Some((stage, message)) = &r.failure {
            keep_failure(&mut failures, format!("pair set-up ({stage}): {message}"));
        }
        if let Some(e) = &r.relay_error {
            keep_failure(&mut failures, format!("pair relay: {e}"));
        }
    }
    let relay_secs = relay_end.duration_since(go_at).as_secs_f64();
    let stats = SignalStats {
        setup: ctx.shared.setup.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        sdp_relay: ctx.shared.sdp_relay.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        paced_relay: ctx.shared.paced_relay.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        burst_relay: ctx.shared.burst_relay.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        relay: ctx.shared.relay.lock().unwrap_or_else(|p| p.into_inner()).clone(),
    };
    let setup_relay = stats.setup_relay();
    let report = SignalReport {
        clients: opts.clients,
        pairs: opts.pairs,
        relay_window: opts.relay_window,
        call_rate: opts.call_rate,
        calls_at_once: opts.calls_at_once,
        connected_secs,
        paired_only: setup == PairSetup::PairedOnly,
        token_source,
        idle_connected,
        idle_failed,
        idle_dropped,
        accept_secs: stats::round3(accept_elapsed.as_secs_f64()),
        accept_rate_per_sec: stats::round3(accept_rate),
        server_rss_kib_before: server_rss_before,
        server_rss_kib_after: server_rss_after,
        rss_kib_per_idle_connection: per_conn(server_rss_before, server_rss_after),
        client_rss_kib_per_idle_connection: per_conn(client_rss_before, client_rss_after),
        pairs_set_up,
        pairs_failed: opts.pairs as u64 - pairs_set_up,
        setup_ms_p50: stats.setup.quantile_ms(0.5),
        setup_ms_p99: stats.setup.quantile_ms(0.99),
        setup_ms_max: stats.setup.quantile_ms(1.0),
        setup_secs: stats::round3(setup_secs),
        setup_connections_per_sec: (setup_secs > 0.0 && pairs_set_up > 0)
            .then(|| stats::round3(2.0 * pairs_set_up as f64 / setup_secs)),
        server_cpu_us_per_setup_connection: match (server_cpu_at_setup, server_cpu_at_go) {
            (Some(b), Some(a)) if pairs_set_up > 0 => Some(stats::round3((a - b) * 1e6 / (2.0 * pairs_set_up as f64))),
            _ => None,
        },
        server_cpu_percent_setup,
        client_cpu_percent_setup,
        server_cores_busy_percent_setup,
        db_cpu_percent_setup,
        server_rss_kib_calls: server_rss_calls,
        rss_kib_per_call_connection: match (server_rss_after, server_rss_calls) {
            (Some(b), Some(a)) if pairs_set_up > 0 => {
                Some(stats::round3((a as f64 - b as f64) / (2.0 * pairs_set_up as f64)))
            }
            _ => None,
        },
        setup_relay_messages: setup_relay.count(),
        setup_relay_ms_p50: setup_relay.quantile_ms(0.5),
        setup_relay_ms_p99: setup_relay.quantile_ms(0.99),
        sdp_relay_ms_p50: stats.sdp_relay.quantile_ms(0.5),
        sdp_relay_ms_p99: stats.sdp_relay.quantile_ms(0.99),
        candidate_paced_relay_ms_p50: stats.paced_relay.quantile_ms(0.5),
        candidate_paced_relay_ms_p99: stats.paced_relay.quantile_ms(0.99),
        candidate_burst_relay_ms_p50: stats.burst_relay.quantile_ms(0.5),
        candidate_burst_relay_ms_p99: stats.burst_relay.quantile_ms(0.99),
        relay_secs: stats::round3(relay_secs),
        relay_hops,
        relay_lost,
        relay_throughput_msgs_per_sec: if relay_secs > 0.0 {
            stats::round3(relay_hops as f64 / relay_secs)
        } else {
            0.0
        },
        server_cpu_percent_accept,
        client_cpu_percent_accept,
        server_cpu_percent_relay,
        client_cpu_percent_relay,
        relay_ms_p50: stats.relay.quantile_ms(0.5),
        relay_ms_p90: stats.relay.quantile_ms(0.9),
        relay_ms_p99: stats.relay.quantile_ms(0.99),
        relay_ms_max: stats.relay.quantile_ms(1.0),
        errors,
        client_errors,
        failures,
    };
    Ok((report, stats))
}

/// CPU used between two readings (seconds) over `wall` seconds, as percent
/// of one core; `None` without both readings or wall time.
fn cpu_percent(before: Option<f64>, after: Option<f64>, wall: f64) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if wall > 0.0 => Some(stats::round3((a - b) / wall * 100.0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
