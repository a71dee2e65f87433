//! `parley-load signal` runs unchanged against the bare relay (issue 17),
//! started in-process on a free port: every pair sets up and relays (or,
//! paired only, joins its call and hangs up).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use parley_domain::protocol::Role;
use parley_load::bare::BareRelay;
use parley_load::signal::{self, PairSetup, SignalOptions, SignalReport};
use parley_load::tokens::{self, User};
use parley_load::{target, ws};

const SECRET: &str = "bare-relay-test-secret-0123456789abcdef";

/// Starts a relay on a free loopback port.
fn start() -> SocketAddr {
    let relay = BareRelay::bind("127.0.0.1:0".parse().unwrap(), SECRET.as_bytes()).unwrap();
    let addr = relay.local_addr().unwrap();
    tokio::spawn(relay.run());
    addr
}

/// The relay's secret in a file of its own (`name` keeps tests apart).
fn secret_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("parley-bare-relay-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwt-secret");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    path
}

fn options(addr: SocketAddr) -> SignalOptions {
    SignalOptions {
        target: target::parse(&format!("http://{addr}")).unwrap(),
        clients: 4,
        pairs: 3,
        server_pid: None,
        db_pid: None,
        relay_secs: 1,
        relay_window: 1,
        call_rate: None,
        calls_at_once: false,
        price_minor: 0,
        jwt_secret_file: None,
        connect_concurrency: 2,
        setup: PairSetup::Full,
    }
}

/// Every connection opened, every pair set up with all its messages
/// relayed, the relay phase relayed, no error from the relay.
fn assert_clean(report: &SignalReport, clients: u64, pairs: u64) {
    let line = parley_load::report::json_line(report);
    assert!(report.ok(), "{line}");
    assert_eq!((report.idle_connected, report.pairs_set_up), (clients, pairs), "{line}");
    // Per pair: an offer, an answer and 2 × 20 candidates.
    assert_eq!(report.setup_relay_messages, pairs * 42, "{line}");
    assert!(report.relay_hops > 0, "{line}");
    assert!(report.errors.is_empty() && report.client_errors.is_empty(), "{line}");
    assert_eq!(report.idle_dropped, 0, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signal_scenario_runs_against_the_bare_relay_with_minted_tokens() {
    let addr = start();
    let opts = SignalOptions {
        server_pid: Some(std::process::id()),
        relay_window: 4,
        jwt_secret_file: Some(secret_file("minted")),
        ..options(addr)
    };
    let (report, _) = signal::run(opts).await.unwrap();
    assert_clean(&report, 4, 3);
    assert!(report.token_source.starts_with("minted"), "{}", report.token_source);
    // The figures the benchmark derives CPU per relayed message from.
    assert!(report.server_cpu_percent_relay.is_some() && report.relay_throughput_msgs_per_sec > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_at_once_start_together_once_every_pair_is_connected() {
    let addr = start();
    let opts = SignalOptions { clients: 0, pairs: 8, calls_at_once: true, ..options(addr) };
    let (report, stats) = signal::run(opts).await.unwrap();
    assert_clean(&report, 0, 8);
    let line = parley_load::report::json_line(&report);
    assert!(report.calls_at_once, "{line}");
    // Every pair connected before the calls began, within the set-up phase.
    let connected = report.connected_secs.expect("the start was reached");
    assert!(connected <= report.setup_secs, "{line}");
    assert_eq!(stats.setup.count(), 8, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_set_ups_with_dev_login_tokens() {
    let addr = start();
    // No secret file (and no ./data/jwt-secret here): the generator falls
    // back to the relay's dev login.
    let opts = SignalOptions { clients: 0, call_rate: Some(20.0), ..options(addr) };
    let (report, _) = signal::run(opts).await.unwrap();
    assert_clean(&report, 0, 3);
    assert_eq!(report.token_source, "dev login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paired_only_pairs_join_their_calls_and_relay_nothing() {
    let addr = start();
    // The relay runs in this process: it stands in for the database too.
    let opts = SignalOptions {
        server_pid: Some(std::process::id()),
        db_pid: Some(std::process::id()),
        relay_secs: 0,
        jwt_secret_file: Some(secret_file("paired")),
        setup: PairSetup::PairedOnly,
        ..options(addr)
    };
    let (report, stats) = signal::run(opts).await.unwrap();
    let line = parley_load::report::json_line(&report);
    assert!(report.ok() && report.paired_only, "{line}");
    assert_eq!((report.idle_connected, report.pairs_set_up), (4, 3), "{line}");
    assert!(report.errors.is_empty() && report.client_errors.is_empty(), "{line}");
    // Set-up timed to the seeker's room.join ack; no SDP, no candidate, no relay phase.
    assert_eq!(stats.setup.count(), 3, "{line}");
    assert!(report.setup_ms_p50.is_some(), "{line}");
    assert_eq!((stats.sdp_relay.count(), report.setup_relay_messages), (0, 0), "{line}");
    assert!(report.sdp_relay_ms_p50.is_none() && report.setup_relay_ms_p50.is_none(), "{line}");
    assert_eq!((report.relay_hops, stats.relay.count()), (0, 0), "{line}");
    // The figures.
    assert!(report.setup_connections_per_sec.is_some_and(|c| c > 0.0), "{line}");
    assert!(report.server_cpu_us_per_setup_connection.is_some(), "{line}");
    // The database's share, and how busy the server's cores were (none
    // when the phase ended within one of /proc/stat's 10 ms ticks).
    assert!(report.db_cpu_percent_setup.is_some_and(|c| c >= 0.0), "{line}");
    assert!(report.server_cores_busy_percent_setup.is_none_or(|b| (0.0..=100.0).contains(&b)), "{line}");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["paired_only"], true, "{line}");
}

#[tokio::test]
async fn paired_only_with_a_relay_phase_is_refused_before_any_traffic() {
    // Nothing listens here: the refusal comes before any connection.
    let opts = SignalOptions { relay_secs: 1, setup: PairSetup::PairedOnly, ..options("127.0.0.1:9".parse().unwrap()) };
    let e = signal::run(opts).await.unwrap_err().to_string();
    assert!(e.contains("--paired-only needs --relay-secs 0"), "{e}");
}

#[tokio::test]
async fn a_database_pid_not_running_is_refused_before_any_traffic() {
    // Nothing listens here either; pid 0 is never a process's.
    let opts = SignalOptions { relay_secs: 0, db_pid: Some(0), ..options("127.0.0.1:9".parse().unwrap()) };
    let e = signal::run(opts).await.unwrap_err().to_string();
    assert!(e.contains("--db-pid 0: no such process"), "{e}");
}

#[tokio::test]
async fn tokens_signed_with_another_secret_are_refused() {
    let addr = start();
    let url = format!("ws://{addr}/v1/signal");
    let user = User::new("load-s-x-1".into(), Role::Seeker);
    let key = jsonwebtoken::EncodingKey::from_secret(b"not the relay's secret");
    let forged = tokens::mint(&key, &user, now(), tokens::TOKEN_TTL).unwrap();
    let e = ws::open(&url, &forged, Duration::from_secs(10)).await.unwrap_err();
    assert_eq!((e.kind.as_str(), e.message.starts_with("invalid_token")), ("http_401", true), "{e}");

    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let token = tokens::mint(&key, &user, now(), tokens::TOKEN_TTL).unwrap();
    let (_ws, hello) = ws::open(&url, &token, Duration::from_secs(10)).await.unwrap();
    assert_eq!(hello.id.as_str(), "load-s-x-1");
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}
