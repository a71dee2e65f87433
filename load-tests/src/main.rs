//! `parley-load`: the load generator for Parley. See `load-tests/README.md`.
//!
//! ```text
//! parley-load call   [--url URL] [--duration 5s] [--calls N] [--jwt-secret-file PATH]
//! parley-load signal [--url URL] --clients N --pairs P [--server-pid PID] [--relay-secs 10]
//!                    [--jwt-secret-file PATH] [--connect-concurrency 256] [--protocol parley|matchbox|peerjs]
//!                    [--paired-only] [--db-pid PID]
//! parley-load record [--url URL] [--sessions 10] [--duration 20s] [--video] [--video-kbps 500]
//!                    [--recorder-pid PID] [--server-pid PID] --jwt-secret-file PATH
//! parley-load failover --url URL --jwt-secret-file PATH --kill CMD --restart CMD [--trials 20] [--calls 1]
//!                    [--hold 12s] [--hold-jitter 10s] [--trial-timeout 45s] [--ready-timeout 2m]
//! ```
//!
//! Readable figures go to stdout, followed by one JSON object as the last
//! line; progress and warnings go to stderr. Exit status: 0 when every
//! call / connection / pair / session succeeded, 1 when some failed, 2 when the run
//! could not start (bad arguments, non-loopback URL, server unreachable).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use parley_load::call::{self, CallOptions};
use parley_load::failover::{self, FailoverOptions};
use parley_load::record::{self, RecordOptions};
use parley_load::signal::{self, PairSetup, SignalOptions};
use parley_load::target::Protocol;
use parley_load::{report, target};

/// The default server: a dev `parley` on this machine.
const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// The longest `--duration` accepted.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Load generator for Parley (loopback servers only).
#[derive(Debug, Parser)]
#[command(name = "parley-load", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Real calls: SDK clients, webrtc-rs peer connections, Opus audio both
    /// ways, data-channel round trips, hang-up.
    Call(CallArgs),
    /// Signaling only on raw WebSockets: idle connections, call set-up with
    /// SDP and candidates, relay latency and throughput.
    Signal(SignalArgs),
    /// Recorded sessions against a recorder: premium seekers, consultants
    /// who allow recording, send-only uplinks to the recorder; the
    /// recorder's CPU per session and what it stored.
    Record(RecordArgs),
    /// Live calls through a cluster's balancer while a node is killed and
    /// restarted, trial after trial: the time until both participants are
    /// back in the room, and the billable seconds lost.
    Failover(FailoverArgs),
}

#[derive(Debug, Args)]
struct CallArgs {
    /// The server's base URL; must be a loopback address.
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// How long audio flows in each call once connected (e.g. `5s`, `1m`).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Concurrent calls, each between a fresh seeker and consultant.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    calls: u16,
    /// The server's JWT secret (`<data dir>/jwt-secret`), to mint tokens
    /// locally. Default: `./data/jwt-secret` if the server accepts it, else
    /// dev login.
    #[arg(long)]
    jwt_secret_file: Option<PathBuf>,
    /// Each synthetic consultant's fixed price, EUR cents (a payment hold
    /// is placed with `pm_card_visa`); 0: free calls, no hold.
    #[arg(long, default_value_t = 3000)]
    price_minor: i64,
}

#[derive(Debug, Args)]
struct SignalArgs {
    /// The server's base URL; must be a loopback address.
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// Idle connections to open and hold.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    clients: u32,
    /// Seeker/consultant pairs that set up a call and relay.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pairs: u32,
    /// The server's process id, to measure its memory per idle connection.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The database server's main process id (PostgreSQL's postmaster), to
    /// measure its CPU and its backends' over the set-up.
    #[arg(long)]
    db_pid: Option<u32>,
    /// Length of the relay phase, seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    relay_secs: u64,
    /// Candidates sent back to back per relay hop: messages in flight per
    /// pair (1: strict ping-pong, for latency; more: bursts, for throughput).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    relay_window: u64,
    /// Start pair set-ups at this many calls per second (default: all at
    /// once), to measure relay latency under a steady call rate.
    #[arg(long)]
    call_rate: Option<f64>,
    /// Open every pair's connections first (on Parley's protocol, with
    /// each consultant set available), then start every call together:
    /// set-up times run from that common start, so a server's accept rate
    /// does not spread the calls out. Not with --call-rate.
    #[arg(long, conflicts_with = "call_rate")]
    calls_at_once: bool,
    /// Each consultant's fixed price in EUR cents, set over REST before the
    /// pairs start (not timed): every call then places a hold (sandbox
    /// payments). 0: free calls, no hold (and no REST: the bare relay).
    #[arg(long, default_value_t = 0)]
    price_minor: i64,
    /// The server's JWT secret (`<data dir>/jwt-secret`), to mint tokens
    /// locally (needed for large --clients). Default: `./data/jwt-secret`
    /// if the server accepts it, else dev login.
    #[arg(long)]
    jwt_secret_file: Option<PathBuf>,
    /// WebSocket handshakes in flight at once while opening idle connections.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connect_concurrency: u32,
    /// The server's signaling protocol: `parley` (Parley, the bare relay),
    /// `matchbox` (matchbox_server 0.15) or `peerjs` (PeerJS server 1.0,
    /// path `/`, key `peerjs`). The peers run pairs only: `--clients 0`, no
    /// `--price-minor`, no `--jwt-secret-file`.
    #[arg(long, default_value = "parley", value_parser = parse_protocol)]
    protocol: Protocol,
    /// Stop each pair's set-up once it is paired into a call (both sides
    /// joined the room: on Parley, with its hold and stored session): no
    /// offer, answer or candidates. Set-up time then runs from
    /// `call.request` sent to the seeker's `room.join` ack. Needs
    /// `--relay-secs 0`; Parley's protocol only (not matchbox or peerjs).
    #[arg(long)]
    paired_only: bool,
}

#[derive(Debug, Args)]
struct RecordArgs {
    /// The server's base URL; must be a loopback address.
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// Concurrent recorded sessions, each a fresh premium seeker and
    /// consultant.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=2000))]
    sessions: u16,
    /// The steady window: how long every session records at once, CPU
    /// measured (e.g. `20s`, `1m`).
    #[arg(long, default_value = "20s", value_parser = parse_window)]
    duration: Duration,
    /// Each participant sends VP8 video as well as Opus audio.
    #[arg(long)]
    video: bool,
    /// Video bitrate per participant with --video, kbit/s (10 frames/s of a
    /// padded key frame).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(3..=20_000))]
    video_kbps: u32,
    /// The recorder's process id (`parley recorder`, or the server when
    /// the recorder is embedded), whose CPU is read from /proc.
    #[arg(long)]
    recorder_pid: Option<u32>,
    /// The server's process id, whose CPU is read from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's JWT secret (`<data dir>/jwt-secret`): premium seekers
    /// need minted tokens. Default: `./data/jwt-secret` if the server accepts it.
    #[arg(long)]
    jwt_secret_file: Option<PathBuf>,
    /// Sessions set up at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    setup_concurrency: u16,
    /// A session counts as recorded fully when at most this % of its audio
    /// packets (and video frames) is missing.
    #[arg(long, default_value_t = 1.0, value_parser = parse_percent)]
    max_loss_percent: f64,
}

#[derive(Debug, Args)]
struct FailoverArgs {
    /// The service's base URL (the cluster's balancer); must be a loopback address.
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// The cluster's JWT secret (`.cluster/jwt-secret`): the users' tokens
    /// and the moderator's who reads the sessions at the end.
    #[arg(long)]
    jwt_secret_file: PathBuf,
    /// The kill, run with `sh -c` in the current directory at each trial
    /// (e.g. `scripts/cluster.sh kill-hub`); must exit 0.
    #[arg(long, value_parser = parse_command)]
    kill: String,
    /// Brings the cluster back after each trial, run with `sh -c` (e.g.
    /// `scripts/cluster.sh start-all`); must exit 0. The next trial waits
    /// for `/readyz` 200 at --url too.
    #[arg(long, value_parser = parse_command)]
    restart: String,
    /// Kills (each followed by a restart).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    trials: u16,
    /// Concurrent calls, each between a fresh seeker and consultant.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=200))]
    calls: u16,
    /// How long both participants stay in the room before each kill, at least.
    #[arg(long, default_value = "12s", value_parser = parse_duration)]
    hold: Duration,
    /// Up to this much more hold, at random, so that kills fall anywhere in
    /// the meter's 10 s checkpoint cycle (`0s`: none).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    hold_jitter: Duration,
    /// How long every call may take to be back in its room after a kill.
    #[arg(long, default_value = "45s", value_parser = parse_window)]
    trial_timeout: Duration,
    /// How long the cluster may take to be ready after the restart command.
    #[arg(long, default_value = "2m", value_parser = parse_window)]
    ready_timeout: Duration,
    /// How long the kill and restart commands may each run.
    #[arg(long, default_value = "2m", value_parser = parse_window)]
    command_timeout: Duration,
    /// Each consultant's fixed price, EUR cents (a hold is placed with
    /// `pm_card_visa`); 0: free calls.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(i64).range(0..=10_000_000))]
    price_minor: i64,
}

/// A `--protocol` name.
fn parse_protocol(s: &str) -> Result<Protocol, String> {
    s.parse()
}

/// A shell command: not empty.
fn parse_command(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("an empty command".into());
    }
    Ok(s.to_owned())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 5s, 500ms, 2m)"))?;
    if d > MAX_DURATION {
        return Err(format!("{s:?}: at most {}", humantime::format_duration(MAX_DURATION)));
    }
    Ok(d)
}

/// A steady window: at least one second (CPU time is read in 10 ms ticks).
fn parse_window(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err(format!("{s:?}: at least 1s"));
    }
    Ok(d)
}

/// A percentage, 0 to 100.
fn parse_percent(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if !(0.0..=100.0).contains(&p) {
        return Err(format!("{s:?}: a percentage from 0 to 100"));
    }
    Ok(p)
}

/// Runs the command; `Ok(false)` when some part of the load failed.
async fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Call(args) => {
            let target = checked_target(&args.url).await?;
            let report = call::run(CallOptions {
                target,
                calls: usize::from(args.calls),
                duration: args.duration,
                jwt_secret_file: args.jwt_secret_file,
                price_minor: args.price_minor,
            })
            .await?;
            Ok(finish(report.summary_lines(), &report, report.ok()))
        }
        Command::Signal(args) => {
            let target = checked_target(&args.url).await?.with_protocol(args.protocol);
            let options = SignalOptions {
                target,
                clients: args.clients as usize,
                pairs: args.pairs as usize,
                server_pid: args.server_pid,
                db_pid: args.db_pid,
                relay_secs: args.relay_secs,
                relay_window: args.relay_window as usize,
                call_rate: args.call_rate,
                calls_at_once: args.calls_at_once,
                price_minor: args.price_minor,
                jwt_secret_file: args.jwt_secret_file,
                connect_concurrency: args.connect_concurrency as usize,
                setup: if args.paired_only { PairSetup::PairedOnly } else { PairSetup::Full },
            };
            let (report, stats) = signal::run(options).await?;
            Ok(finish(report.summary_lines(&stats), &report, report.ok()))
        }
        Command::Record(args) => {
            let target = checked_target(&args.url).await?;
            let report = record::run(RecordOptions {
                target,
                sessions: usize::from(args.sessions),
                duration: args.duration,
                video: args.video,
                video_kbps: args.video_kbps,
                recorder_pid: args.recorder_pid,
                server_pid: args.server_pid,
                jwt_secret_file: args.jwt_secret_file,
                setup_concurrency: usize::from(args.setup_concurrency),
                max_loss_percent: args.max_loss_percent,
            })
            .await?;
            Ok(finish(report.summary_lines(), &report, report.ok()))
        }
        Command::Failover(args) => {
            let target = checked_target(&args.url).await?;
            let report = failover::run(FailoverOptions {
                target,
                calls: usize::from(args.calls),
                trials: usize::from(args.trials),
                kill: args.kill,
                restart: args.restart,
                hold: args.hold,
                hold_jitter: args.hold_jitter,
                trial_timeout: args.trial_timeout,
                ready_timeout: args.ready_timeout,
                command_timeout: args.command_timeout,
                jwt_secret_file: args.jwt_secret_file,
                price_minor: args.price_minor,
            })
            .await?;
            Ok(finish(report.summary_lines(), &report, report.ok()))
        }
    }
}

/// The loopback target `url` names, checked before any traffic is sent.
async fn checked_target(url: &str) -> anyhow::Result<target::Target> {
    let target = target::parse(url)?;
    target.check_resolution().await?;
    Ok(target)
}

/// Prints a run's readable `lines`, then `report` as the last line of
/// stdout (one JSON object); returns `ok`.
fn finish(lines: Vec<String>, report: &impl serde::Serialize, ok: bool) -> bool {
    for line in lines {
        println!("{line}");
    }
    report::print_json_line(report);
    ok
}

/// The scheduler a run gets. `signal` on one core (the way the benches
/// pin it: `taskset -c 1`) runs on a current-thread scheduler: the
/// multi-thread one, with its single worker saturated, spills the tasks
/// its readiness events wake beyond its 256-slot local queue into the
/// global queue, which it then serves one task per ~200 µs while local
/// work lasts, so a few pairs wait hundreds of milliseconds while the
/// others ping-pong (the bare relay's relay p99 300 ms at p50 1 ms; 18 to
/// 27 ms on one thread, which serves its ready tasks in the order they
/// woke). Everything else, and `signal` given more cores, keeps the
/// multi-thread scheduler (webrtc-rs, for one, is only tested on it).
fn runtime_for(command: &Command) -> tokio::runtime::Builder {
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    match command {
        Command::Signal(_) if one_core => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
}

fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let cli = Cli::parse();
    let runtime = match runtime_for(&cli.command).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parley-load: error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(run(cli));
    // Whatever is still running (closing connections) gets a moment, no more.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("parley-load: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_required_flags() {
        let cli = Cli::try_parse_from(["parley-load", "call"]).unwrap();
        let Command::Call(args) = cli.command else { panic!() };
        assert_eq!((args.url.as_str(), args.duration, args.calls), (DEFAULT_URL, Duration::from_secs(5), 1));
        assert!(Cli::try_parse_from(["parley-load", "signal", "--clients", "10"]).is_err());
        let cli = Cli::try_parse_from(["parley-load", "signal", "--clients", "10", "--pairs", "2"]).unwrap();
        let Command::Signal(args) = cli.command else { panic!() };
        assert_eq!((args.relay_secs, args.connect_concurrency, args.server_pid), (10, 256, None));
        assert_eq!(args.protocol, Protocol::Parley);
        assert!(!args.paired_only);
        let argv = ["parley-load", "signal", "--clients", "0", "--pairs", "2", "--relay-secs", "0", "--paired-only"];
        let Command::Signal(args) = Cli::try_parse_from(argv).unwrap().command else { panic!() };
        assert!(args.paired_only && args.relay_secs == 0);
        assert!(!args.calls_at_once);
        let argv = ["parley-load", "signal", "--clients", "0", "--pairs", "2", "--calls-at-once"];
        let Command::Signal(args) = Cli::try_parse_from(argv).unwrap().command else { panic!() };
        assert!(args.calls_at_once);
        let argv = ["parley-load", "signal", "--pairs", "2", "--calls-at-once", "--call-rate", "200"];
        assert!(Cli::try_parse_from(argv).is_err());
        let peer = ["parley-load", "signal", "--clients", "0", "--pairs", "2", "--protocol"];
        for (name, protocol) in
            [("matchbox", Protocol::Matchbox), ("peerjs", Protocol::PeerJs), ("parley", Protocol::Parley)]
        {
            let argv = peer.iter().copied().chain([name]).collect::<Vec<_>>();
            let Command::Signal(args) = Cli::try_parse_from(&argv).unwrap().command else { panic!() };
            assert_eq!(args.protocol, protocol);
        }
        let argv = peer.iter().copied().chain(["janus"]).collect::<Vec<_>>();
        assert!(Cli::try_parse_from(&argv).unwrap_err().to_string().contains("expected parley, matchbox or peerjs"));
        assert!(Cli::try_parse_from(["parley-load", "call", "--duration", "2h"]).is_err());
        assert!(Cli::try_parse_from(["parley-load", "call", "--calls", "0"]).is_err());
    }

    #[test]
    fn failover_arguments_are_validated() {
        let base = ["parley-load", "failover", "--jwt-secret-file", "s", "--kill", "k", "--restart", "r"];
        let cli = Cli::try_parse_from(base).unwrap();
        let Command::Failover(args) = cli.command else { panic!() };
        assert_eq!((args.trials, args.calls, args.hold, args.price_minor), (20, 1, Duration::from_secs(12), 3000));
        assert_eq!((args.kill.as_str(), args.restart.as_str()), ("k", "r"));
        assert!(Cli::try_parse_from(&base[..6]).is_err(), "--restart is required");
        assert!(parse_command(" ").is_err());
        for bad in [
            &["--trials", "0"][..],
            &["--calls", "0"],
            &["--trial-timeout", "10ms"],
            &["--hold", "2h"],
            &["--price-minor", "-1"],
        ] {
            let argv = base.iter().chain(bad.iter()).copied().collect::<Vec<_>>();
            assert!(Cli::try_parse_from(&argv).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn record_arguments_are_validated() {
        let cli = Cli::try_parse_from(["parley-load", "record"]).unwrap();
        let Command::Record(args) = cli.command else { panic!() };
        assert_eq!(
            (args.sessions, args.duration, args.video, args.video_kbps),
            (10, Duration::from_secs(20), false, 500)
        );
        assert_eq!((args.recorder_pid, args.setup_concurrency, args.max_loss_percent), (None, 10, 1.0));
        let cli = Cli::try_parse_from([
            "parley-load",
            "record",
            "--sessions",
            "100",
            "--duration",
            "30s",
            "--video",
            "--recorder-pid",
            "4242",
            "--max-loss-percent",
            "0.5",
        ])
        .unwrap();
        let Command::Record(args) = cli.command else { panic!() };
        assert_eq!((args.sessions, args.video, args.recorder_pid, args.max_loss_percent), (100, true, Some(4242), 0.5));
        for bad in [
            &["--sessions", "0"][..],
            &["--sessions", "2001"],
            &["--duration", "500ms"],
            &["--duration", "2h"],
            &["--video-kbps", "2"],
            &["--max-loss-percent", "101"],
            &["--max-loss-percent", "-1"],
            &["--max-loss-percent", "x"],
            &["--recorder-pid", "me"],
        ] {
            let argv = ["parley-load", "record"].iter().chain(bad.iter()).copied().collect::<Vec<_>>();
            assert!(Cli::try_parse_from(&argv).is_err(), "{bad:?} accepted");
        }
    }
}
