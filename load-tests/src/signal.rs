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
//!    time runs from `call.request` sent to the answer received.
//! 3. **Relay**: for `relay_secs`, each pair ping-pongs bursts of
//!    `relay_window` ICE candidates (seeker → consultant → seeker …; with
//!    the default window of 1, one message in flight per pair).
//!
//! Every relayed message carries its send time; the receiving reader task
//! stamps its arrival, giving one-way relay latency (client → server →
//! client, loopback).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
use crate::target::Target;
use crate::tokens::{TokenSource, User};
use crate::ws::{self, Incoming, Peer, Recv};
use crate::{limits, procfs};

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
    /// The server.
    pub target: Target,
    /// Idle connections.
    pub clients: usize,
    /// Seeker/consultant pairs.
    pub pairs: usize,
    /// The server's pid, for its RSS and open-file limit.
    pub server_pid: Option<u32>,
    /// Length of the relay phase.
    pub relay_secs: u64,
    /// Candidates sent back to back per relay hop (messages in flight per pair).
    pub relay_window: usize,
    /// Pair set-ups started per second (`None`: all at once).
    pub call_rate: Option<f64>,
    /// The server's JWT secret.
    pub jwt_secret_file: Option<PathBuf>,
    /// WebSocket handshakes in flight at once in the idle phase.
    pub connect_concurrency: usize,
}

/// The result of a `signal` run; serialised as the last line of stdout.
/// Latencies are in milliseconds (microsecond precision); `null` when there
/// were no samples.
#[derive(Debug, Clone, Serialize)]
pub struct SignalReport {
    /// Idle connections asked for.
    pub clients: usize,
    /// Pairs asked for.
    pub pairs: usize,
    /// Relay messages in flight per pair in the relay phase.
    pub relay_window: usize,
    /// Pair set-ups started per second (null: all at once).
    pub call_rate: Option<f64>,
    /// How tokens were obtained.
    pub token_source: String,
    /// Idle connections that opened (hello received).
    pub idle_connected: u64,
    /// Idle connections that failed to open.
    pub idle_failed: u64,
    /// Idle connections the server closed before the end of the run.
    pub idle_dropped: u64,
    /// Wall time of the idle phase, seconds.
    pub accept_secs: f64,
    /// Idle connections opened per second of the idle phase.
    pub accept_rate_per_sec: f64,
    /// Server VmRSS before the idle phase, KiB.
    pub server_rss_kib_before: Option<u64>,
    /// Server VmRSS with every idle connection open, KiB.
    pub server_rss_kib_after: Option<u64>,
    /// (after − before) / idle connections opened, KiB.
    pub rss_kib_per_idle_connection: Option<f64>,
    /// The same for this process (the client side).
    pub client_rss_kib_per_idle_connection: Option<f64>,
    /// Pairs that completed set-up.
    pub pairs_set_up: u64,
    /// Pairs that failed set-up.
    pub pairs_failed: u64,
    /// Call set-up (`call.request` sent → answer received), median.
    pub setup_ms_p50: Option<f64>,
    /// Call set-up, 99th percentile.
    pub setup_ms_p99: Option<f64>,
    /// Call set-up, slowest.
    pub setup_ms_max: Option<f64>,
    /// Relayed messages measured during set-up (SDP and candidates).
    pub setup_relay_messages: u64,
    /// Relay latency during set-up, median.
    pub setup_relay_ms_p50: Option<f64>,
    /// Relay latency during set-up, 99th percentile.
    pub setup_relay_ms_p99: Option<f64>,
    /// Relay latency of the offers and answers, median.
    pub sdp_relay_ms_p50: Option<f64>,
    /// Relay latency of the offers and answers, 99th percentile.
    pub sdp_relay_ms_p99: Option<f64>,
    /// Relay latency of the paced candidates (one per 10 ms), median.
    pub candidate_paced_relay_ms_p50: Option<f64>,
    /// Relay latency of the paced candidates, 99th percentile.
    pub candidate_paced_relay_ms_p99: Option<f64>,
    /// Relay latency of the candidates sent all at once, median.
    pub candidate_burst_relay_ms_p50: Option<f64>,
    /// Relay latency of the candidates sent all at once, 99th percentile.
    pub candidate_burst_relay_ms_p99: Option<f64>,
    /// Wall time of the relay phase, seconds.
    pub relay_secs: f64,
    /// Relay hops completed in the relay phase.
    pub relay_hops: u64,
    /// Relay hops not answered within 2 s (dropped, e.g. rate-limited).
    pub relay_lost: u64,
    /// `relay_hops / relay_secs`.
    pub relay_throughput_msgs_per_sec: f64,
    /// Server CPU during the relay phase, percent of one core (with
    /// `--server-pid`). Near 100 with a one-core server: the server is the
    /// bottleneck.
    pub server_cpu_percent_relay: Option<f64>,
    /// Server CPU while the idle connections were opened, percent of one
    /// core (near 100: the accept rate is the server's limit).
    pub server_cpu_percent_accept: Option<f64>,
    /// This process's CPU while opening the idle connections, percent of one core.
    pub client_cpu_percent_accept: Option<f64>,
    /// This process's CPU during the relay phase, percent of one core. Near
    /// 100 × its cores: the load generator is the bottleneck.
    pub client_cpu_percent_relay: Option<f64>,
    /// Relay latency in the relay phase, median.
    pub relay_ms_p50: Option<f64>,
    /// Relay latency, 90th percentile.
    pub relay_ms_p90: Option<f64>,
    /// Relay latency, 99th percentile.
    pub relay_ms_p99: Option<f64>,
    /// Relay latency, slowest.
    pub relay_ms_max: Option<f64>,
    /// `error` messages received from the server, by code.
    pub errors: Counts,
    /// Client-side failures by kind (connect, set-up stage, teardown …).
    pub client_errors: Counts,
    /// The first few failure messages.
    pub failures: Vec<String>,
}

impl SignalReport {
    /// Whether every idle connection opened and every pair was set up.
    pub fn ok(&self) -> bool {
        self.pairs_failed == 0 && self.idle_failed == 0
    }

    /// The readable summary lines.
    pub fn summary_lines(&self, stats: &SignalStats) -> Vec<String> {
        let mut out = vec![
            format!("signal: {} idle clients, {} pairs, tokens {}", self.clients, self.pairs, self.token_source),
            format!(
                "idle      {} open, {} failed, {} dropped by the server; {:.0} connections/s ({:.3} s)",
                self.idle_connected, self.idle_failed, self.idle_dropped, self.accept_rate_per_sec, self.accept_secs
            ),
        ];
        match (self.server_rss_kib_before, self.server_rss_kib_after) {
            (Some(before), Some(after)) => out.push(format!(
                "memory    server RSS {before} KiB -> {after} KiB: {} KiB per idle connection (client: {} KiB)",
                opt(self.rss_kib_per_idle_connection),
                opt(self.client_rss_kib_per_idle_connection)
            )),
            _ => out.push("memory    server RSS not measured (pass --server-pid)".to_owned()),
        }
        out.push(format!("pairs     {} set up, {} failed", self.pairs_set_up, self.pairs_failed));
        out.push(format!("setup     {}", stats::line(stats.setup.summary())));
        out.push("relay of set-up messages:".to_owned());
        out.push(format!("  sdp     {}", stats::line(stats.sdp_relay.summary())));
        out.push(format!("  paced   {}", stats::line(stats.paced_relay.summary())));
        out.push(format!("  burst   {}", stats::line(stats.burst_relay.summary())));
        out.push(format!("  all     {}", stats::line(stats.setup_relay().summary())));
        out.push(format!(
            "relay     {}  | {} hops in {:.3} s = {:.0} msg/s, {} lost",
            stats::line(stats.relay.summary()),
            self.relay_hops,
            self.relay_secs,
            self.relay_throughput_msgs_per_sec,
            self.relay_lost
        ));
        if let (Some(server), Some(client)) = (self.server_cpu_percent_relay, self.client_cpu_percent_relay) {
            out.push(format!("cpu       during relay: server {server:.0} %, parley-load {client:.0} % of one core"));
        }
        if !self.errors.is_empty() {
            out.push(format!("errors    {}", counts_line(&self.errors)));
        }
        if !self.client_errors.is_empty() {
            out.push(format!("failures  {}", counts_line(&self.client_errors)));
        }
        for f in &self.failures {
            out.push(format!("  {f}"));
        }
        out
    }
}

/// Keeps `f` among the first [`MAX_FAILURES_KEPT`] distinct failures.
fn keep_failure(failures: &mut Vec<String>, f: String) {
    if failures.len() < MAX_FAILURES_KEPT && !failures.contains(&f) {
        failures.push(f);
    }
}

fn counts_line(counts: &Counts) -> String {
    counts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// The distributions of a run, for the readable summary.
#[derive(Debug, Default)]
pub struct SignalStats {
    /// Call set-up times.
    pub setup: Latencies,
    /// Relay latency of offers and answers.
    pub sdp_relay: Latencies,
    /// Relay latency of paced candidates.
    pub paced_relay: Latencies,
    /// Relay latency of candidates sent at once.
    pub burst_relay: Latencies,
    /// Relay latency of the relay phase.
    pub relay: Latencies,
}

impl SignalStats {
    /// Relay latency of every set-up message.
    pub fn setup_relay(&self) -> Latencies {
        let mut all = self.sdp_relay.clone();
        all.merge(&self.paced_relay);
        all.merge(&self.burst_relay);
        all
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

/// What the run shares with every pair task.
struct PairCtx {
    ws_url: String,
    shared: Shared,
    stop: watch::Receiver<bool>,
    go: watch::Receiver<Option<Instant>>,
    relay: Duration,
    relay_window: usize,
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

/// Runs the scenario and returns its report and distributions.
pub async fn run(opts: SignalOptions) -> anyhow::Result<(SignalReport, SignalStats)> {
    let run = crate::run_id();
    let tokens = TokenSource::resolve(&opts.target, opts.jwt_secret_file.as_deref()).await?;
    if tokens.is_dev_login() && opts.clients > 500 {
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

    let idle_users: Vec<User> =
        (0..opts.clients).map(|i| User::new(format!("load-i-{run}-{i}"), Role::Seeker)).collect();
    let pair_users: Vec<User> = (0..opts.pairs)
        .flat_map(|i| {
            [
                User::new(format!("load-s-{run}-{i}"), Role::Seeker),
                User::new(format!("load-c-{run}-{i}"), Role::Consultant),
            ]
        })
        .collect();
    eprintln!("parley-load: preparing {} tokens ({})", idle_users.len() + pair_users.len(), tokens.describe());
    let idle_tokens = tokens.tokens(&idle_users).await?;
    let pair_tokens = tokens.tokens(&pair_users).await?;

    // Everything stops by this instant, whatever happens.
    let idle_budget = Duration::from_secs(30) + Duration::from_millis(20 * opts.clients as u64);
    let relay = Duration::from_secs(opts.relay_secs);
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
        shared: Shared::default(),
        stop: stop_rx.clone(),
        go: go_rx,
        relay,
        relay_window: opts.relay_window,
        deadline,
    });
    let (setup_tx, mut setup_rx) = mpsc::unbounded_channel::<bool>();
    let mut pair_tasks = JoinSet::new();
    if opts.pairs > 0 {
        eprintln!("parley-load: phase 2: setting up {} pairs", opts.pairs);
    }
    let setup_started = Instant::now();
    for (i, tokens) in pair_tokens.chunks_exact(2).enumerate() {
        let (seeker, consultant) = (tokens[0].clone(), tokens[1].clone());
        let ctx = ctx.clone();
        let setup_tx = setup_tx.clone();
        let start_at = match opts.call_rate {
            Some(rate) if rate > 0.0 => setup_started + Duration::from_secs_f64(i as f64 / rate),
            _ => setup_started,
        };
        pair_tasks.spawn(async move {
            tokio::time::sleep_until(start_at).await;
            pair(i as u64, ctx, seeker, consultant, setup_tx).await
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
    if opts.pairs > 0 {
        eprintln!(
            "parley-load: phase 2: done in {:.3} s; phase 3: relaying for {} s",
            go_at.duration_since(setup_started).as_secs_f64(),
            opts.relay_secs
        );
    }
    let server_cpu_at_go = opts.server_pid.and_then(procfs::cpu_secs);
    let client_cpu_at_go = procfs::own_cpu_secs();
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
        token_source: tokens.describe(),
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

/// The session a pair set up, with both sides.
struct Call {
    seeker: Peer,
    consultant: Peer,
    session_id: SessionId,
    seeker_ice: IceCredentials,
    consultant_ice: IceCredentials,
    rng: Rng,
}

/// One pair, start to end: set-up (reported on `setup_tx`), the relay phase
/// once `go` is given, hang-up and close.
async fn pair(
    i: u64,
    ctx: Arc<PairCtx>,
    seeker: String,
    consultant: String,
    setup_tx: mpsc::UnboundedSender<bool>,
) -> PairResult {
    let mut result = PairResult::default();
    let mut stage = "connect";
    // A little longer than the steps' own deadline, so that they name what timed out.
    let set_up =
        tokio::time::timeout(SETUP_TIMEOUT + Duration::from_secs(2), set_up(i, &ctx, &seeker, &consultant, &mut stage))
            .await;
    let mut call = match set_up {
        Ok(Ok(call)) => call,
        Ok(Err(e)) => {
            bump(&mut result.client_errors, &format!("setup_{}", stage.replace([' ', '/', '.'], "_")));
            result.failure = Some((stage.to_owned(), format!("{e:#}")));
            let _ = setup_tx.send(false);
            return result;
        }
        Err(_) => {
            bump(&mut result.client_errors, &format!("setup_{}_timeout", stage.replace([' ', '/', '.'], "_")));
            result.failure = Some((stage.to_owned(), format!("timed out after {SETUP_TIMEOUT:?}")));
            let _ = setup_tx.send(false);
            return result;
        }
    };
    result.set_up = true;
    let _ = setup_tx.send(true);

    // Phase 3: wait for the common start, then ping-pong.
    let mut go = ctx.go.clone();
    let go_at = match tokio::time::timeout_at(ctx.deadline, go.wait_for(Option::is_some)).await {
        Ok(Ok(at)) => *at,
        _ => None,
    };
    let Some(go_at) = go_at else {
        bump(&mut result.client_errors, "relay_never_started");
        return finish(call, result).await;
    };
    let relay_until = go_at + ctx.relay;
    let window = ctx.relay_window.max(1) as u64;
    let mut seq = 1_000;
    while Instant::now() < relay_until {
        seq += window;
        match hop(&mut call, true, seq, &ctx).await {
            Hop::Done => result.hops += window,
            Hop::Lost => {
                result.lost += 1;
                continue;
            }
            Hop::Broken(e) => {
                bump(&mut result.client_errors, "relay_connection_lost");
                result.relay_error = Some(e);
                break;
            }
        }
        match hop(&mut call, false, seq, &ctx).await {
            Hop::Done => result.hops += window,
            Hop::Lost => result.lost += 1,
            Hop::Broken(e) => {
                bump(&mut result.client_errors, "relay_connection_lost");
                result.relay_error = Some(e);
                break;
            }
        }
    }
    result.relay_finished = Some(Instant::now());
    finish(call, result).await
}

/// Sets up one pair: connect, presence, call, accept, join, offer/answer,
/// candidates. `stage` names the step under way.
async fn set_up(
    i: u64,
    ctx: &PairCtx,
    seeker_token: &str,
    consultant_token: &str,
    stage: &mut &'static str,
) -> anyhow::Result<Call> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let open = |token: &str| {
        let (url, token, stop) = (ctx.ws_url.clone(), token.to_owned(), ctx.stop.clone());
        async move { Peer::open(&url, &token, CONNECT_TIMEOUT, stop, ctx.deadline).await }
    };
    *stage = "connect";
    let mut consultant = open(consultant_token).await?;
    let mut seeker = open(seeker_token).await?;

    *stage = "presence";
    consultant.send(Some("presence"), ClientMessage::PresenceSet { status: PresenceStatus::Available }).await?;
    consultant.ack("presence", deadline, "presence.set ack").await?;

    *stage = "call.request";
    let t0 = now_ns();
    let request = ClientMessage::CallRequest {
        consultant_id: consultant.user.id.clone(),
        payment_method: Some(crate::PAYMENT_METHOD.to_owned()),
        record: false,
    };
    seeker.send(Some("call"), request).await?;
    let seeker_id = seeker.user.id.clone();
    let incoming = consultant
        .recv_until(deadline, "call.incoming", None, |m| match &m.msg {
            ServerMessage::CallIncoming { call_id, session_id, seeker, .. } if seeker.id == seeker_id => {
                Some((call_id.clone(), session_id.clone()))
            }
            _ => None,
        })
        .await;
    let (call_id, session_id) = match incoming {
        Ok(x) => x,
        Err(e) => match seeker.pending_error("call") {
            Some(refusal) => anyhow::bail!("call.request refused: {refusal}"),
            None => return Err(e),
        },
    };

    *stage = "call.accept";
    consultant.send(Some("accept"), ClientMessage::CallAccept { call_id }).await?;
    consultant.send(Some("join"), ClientMessage::RoomJoin { session_id: session_id.clone() }).await?;
    consultant.ack("accept", deadline, "call.accept ack").await?;
    *stage = "consultant room.join";
    match consultant.ack("join", deadline, "room.join ack").await? {
        Some(AckResult::Room { offerer: false, .. }) => {}
        other => anyhow::bail!("consultant room.join answered with {other:?}"),
    }

    *stage = "seeker room.join";
    let (mut acked, mut accepted) = (false, false);
    seeker
        .recv_until(deadline, "call.request ack and call.accepted", Some("call"), |m| {
            match &m.msg {
                ServerMessage::Ack { id, .. } if id == "call" => acked = true,
                ServerMessage::CallAccepted { session_id: s, .. } if *s == session_id => accepted = true,
                _ => {}
            }
            (acked && accepted).then_some(())
        })
        .await?;
    seeker.send(Some("join"), ClientMessage::RoomJoin { session_id: session_id.clone() }).await?;
    match seeker.ack("join", deadline, "room.join ack").await? {
        Some(AckResult::Room { offerer: true, participants, .. }) if !participants.is_empty() => {}
        other => anyhow::bail!("seeker room.join answered with {other:?}"),
    }

    *stage = "sdp";
    let mut rng = Rng::new(i.wrapping_mul(0x9E37_79B9) ^ now_ns());
    let seeker_ice = IceCredentials::new(&mut rng);
    let consultant_ice = IceCredentials::new(&mut rng);
    let offer = sdp::description(Kind::Offer, &mut rng, &seeker_ice, now_ns());
    seeker.send(None, ClientMessage::SdpOffer { session_id: session_id.clone(), sdp: offer, to: None }).await?;
    let latency = consultant
        .recv_until(deadline, "sdp.offer", None, |m| match &m.msg {
            ServerMessage::SdpOffer { sdp, .. } => sdp::sdp_ts(sdp).map(|ts| since(ts, m.at_ns)),
            _ => None,
        })
        .await?;
    record(&ctx.shared.sdp_relay, latency);
    let answer = sdp::description(Kind::Answer, &mut rng, &consultant_ice, now_ns());
    consultant.send(None, ClientMessage::SdpAnswer { session_id: session_id.clone(), sdp: answer, to: None }).await?;
    let (latency, at_ns) = seeker
        .recv_until(deadline, "sdp.answer", None, |m| match &m.msg {
            ServerMessage::SdpAnswer { sdp, .. } => sdp::sdp_ts(sdp).map(|ts| (since(ts, m.at_ns), m.at_ns)),
            _ => None,
        })
        .await?;
    record(&ctx.shared.sdp_relay, latency);
    record(&ctx.shared.setup, since(t0, at_ns));

    let mut call = Call { seeker, consultant, session_id, seeker_ice, consultant_ice, rng };
    *stage = "candidates paced";
    for seq in 0..CANDIDATES_PER_ROUND {
        let (s, c) = call.candidates(seq);
        call.seeker.send(None, s).await?;
        call.consultant.send(None, c).await?;
        tokio::time::sleep(PACE).await;
    }
    call.collect_candidates(deadline, &ctx.shared.paced_relay).await?;
    *stage = "candidates burst";
    for seq in CANDIDATES_PER_ROUND..2 * CANDIDATES_PER_ROUND {
        let (s, c) = call.candidates(seq);
        call.seeker.feed(s).await?;
        call.consultant.feed(c).await?;
    }
    call.seeker.flush().await?;
    call.consultant.flush().await?;
    call.collect_candidates(deadline, &ctx.shared.burst_relay).await?;
    Ok(call)
}

impl Call {
    /// Candidate `seq` of each side, stamped now.
    fn candidates(&mut self, seq: u64) -> (ClientMessage, ClientMessage) {
        let s = sdp::candidate(&mut self.rng, &self.seeker_ice, seq, now_ns());
        let c = sdp::candidate(&mut self.rng, &self.consultant_ice, seq, now_ns());
        (
            ClientMessage::IceCandidate { session_id: self.session_id.clone(), candidate: s, to: None },
            ClientMessage::IceCandidate { session_id: self.session_id.clone(), candidate: c, to: None },
        )
    }

    /// Receives one round of candidates on each side, recording latencies.
    async fn collect_candidates(&mut self, deadline: Instant, into: &Mutex<Latencies>) -> anyhow::Result<()> {
        for peer in [&mut self.consultant, &mut self.seeker] {
            for _ in 0..CANDIDATES_PER_ROUND {
                let latency = peer.recv_until(deadline, "ice.candidate", None, candidate_latency).await?;
                record(into, latency);
            }
        }
        Ok(())
    }
}

/// The relay latency of a relayed candidate.
fn candidate_latency(m: &Incoming) -> Option<Duration> {
    match &m.msg {
        ServerMessage::IceCandidate { candidate, .. } => {
            sdp::candidate_ts(&candidate.candidate).map(|ts| since(ts, m.at_ns))
        }
        _ => None,
    }
}

enum Hop {
    Done,
    Lost,
    Broken(String),
}

/// One relay hop: the relay window's candidates, numbered up to `last`,
/// sent back to back from the seeker to the consultant (`forward`) or back,
/// all received within [`HOP_TIMEOUT`].
async fn hop(call: &mut Call, forward: bool, last: u64, ctx: &PairCtx) -> Hop {
    let window = ctx.relay_window.max(1) as u64;
    let first = last + 1 - window;
    let (from, to) =
        if forward { (&mut call.seeker, &mut call.consultant) } else { (&mut call.consultant, &mut call.seeker) };
    let ice = if forward { &call.seeker_ice } else { &call.consultant_ice };
    for seq in first..=last {
        let candidate = sdp::candidate(&mut call.rng, ice, seq, now_ns());
        let msg = ClientMessage::IceCandidate { session_id: call.session_id.clone(), candidate, to: None };
        if let Err(e) = from.send(None, msg).await {
            return Hop::Broken(format!("{e:#}"));
        }
    }
    let until = Instant::now() + HOP_TIMEOUT;
    let mut missing = window;
    loop {
        match to.recv(until).await {
            Recv::Msg(m) => {
                if let ServerMessage::IceCandidate { candidate, .. } = &m.msg
                    && sdp::candidate_seq(&candidate.candidate).is_some_and(|s| (first..=last).contains(&s))
                    && let Some(latency) = candidate_latency(&m)
                {
                    record(&ctx.shared.relay, latency);
                    missing -= 1;
                    if missing == 0 {
                        return Hop::Done;
                    }
                }
            }
            Recv::Timeout => return Hop::Lost,
            Recv::Closed => return Hop::Broken(format!("{}: connection closed", to.user.id)),
        }
    }
}

/// Hangs up (the seeker ends the session; both should see
/// `session.ended`), closes both connections and collects their counts.
async fn finish(mut call: Call, mut result: PairResult) -> PairResult {
    let until = Instant::now() + TEARDOWN_TIMEOUT;
    let session_id = call.session_id.clone();
    let ended = |m: &Incoming| match &m.msg {
        ServerMessage::SessionEnded { session_id: s, .. } if *s == session_id => Some(()),
        _ => None,
    };
    let hung_up = async {
        call.seeker.send(Some("end"), ClientMessage::SessionEnd { session_id: session_id.clone() }).await?;
        call.seeker.recv_until(until, "session.ended", Some("end"), ended).await?;
        call.consultant.recv_until(until, "session.ended", None, ended).await
    }
    .await;
    if hung_up.is_err() {
        bump(&mut result.client_errors, "teardown");
    }
    for peer in [call.seeker, call.consultant] {
        let end = peer.close(Duration::from_secs(1)).await;
        add_counts(&mut result.errors, &end.errors);
    }
    result
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
mod tests {
    use super::*;

    fn report() -> SignalReport {
        SignalReport {
            clients: 2000,
            pairs: 100,
            relay_window: 1,
            call_rate: None,
            token_source: "minted with data/jwt-secret".into(),
            idle_connected: 2000,
            idle_failed: 0,
            idle_dropped: 0,
            accept_secs: 0.5,
            accept_rate_per_sec: 4000.0,
            server_rss_kib_before: Some(10_000),
            server_rss_kib_after: Some(30_000),
            rss_kib_per_idle_connection: Some(10.0),
            client_rss_kib_per_idle_connection: Some(12.5),
            pairs_set_up: 100,
            pairs_failed: 0,
            setup_ms_p50: Some(3.2),
            setup_ms_p99: Some(9.1),
            setup_ms_max: Some(9.5),
            setup_relay_messages: 4200,
            setup_relay_ms_p50: Some(0.2),
            setup_relay_ms_p99: Some(1.0),
            sdp_relay_ms_p50: Some(0.3),
            sdp_relay_ms_p99: Some(0.9),
            candidate_paced_relay_ms_p50: Some(0.2),
            candidate_paced_relay_ms_p99: Some(0.8),
            candidate_burst_relay_ms_p50: Some(0.4),
            candidate_burst_relay_ms_p99: Some(1.0),
            relay_secs: 10.001,
            relay_hops: 200_000,
            relay_lost: 0,
            relay_throughput_msgs_per_sec: 19_998.0,
            server_cpu_percent_relay: Some(99.0),
            server_cpu_percent_accept: Some(90.0),
            client_cpu_percent_accept: Some(60.0),
            client_cpu_percent_relay: Some(80.0),
            relay_ms_p50: Some(0.3),
            relay_ms_p90: Some(0.5),
            relay_ms_p99: Some(0.9),
            relay_ms_max: Some(4.0),
            errors: Counts::from([("rate_limited".to_owned(), 2)]),
            client_errors: Counts::new(),
            failures: vec![],
        }
    }

    #[test]
    fn the_json_line_has_the_documented_fields() {
        let line = crate::report::json_line(&report());
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for key in [
            "clients",
            "pairs",
            "accept_rate_per_sec",
            "rss_kib_per_idle_connection",
            "relay_ms_p50",
            "relay_ms_p99",
            "setup_ms_p50",
            "setup_ms_p99",
            "relay_throughput_msgs_per_sec",
            "errors",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {line}");
        }
        assert_eq!(v["errors"]["rate_limited"], 2);
        let mut without_pid = report();
        without_pid.rss_kib_per_idle_connection = None;
        let v: serde_json::Value = serde_json::from_str(&crate::report::json_line(&without_pid)).unwrap();
        assert!(v["rss_kib_per_idle_connection"].is_null());
    }

    #[test]
    fn failures_make_the_run_fail() {
        let mut r = report();
        assert!(r.ok());
        r.pairs_failed = 1;
        assert!(!r.ok());
        let mut r = report();
        r.idle_failed = 3;
        assert!(!r.ok());
    }

    #[test]
    fn the_summary_names_every_phase() {
        let lines = report().summary_lines(&SignalStats::default());
        let text = lines.join("\n");
        for word in ["idle", "memory", "pairs", "setup", "relay", "errors    rate_limited=2"] {
            assert!(text.contains(word), "{word}: {text}");
        }
    }
}
