//! Issue 16, fresh TURN credentials, against a real coturn (Debian's
//! `coturn`; `scripts/test.sh` installs it and `faketime`).
//!
//! coturn checks a TURN REST credential's expiry against its own clock,
//! while the server under test runs on a manual clock fixed at
//! `TEST_EPOCH_MS`. So coturn runs under libfaketime with an offset kept
//! in a file that the test rewrites whenever it moves the server clock:
//! both agree on the time (to within the seconds the test takes), and the
//! test stays independent of the date it runs on. A clock coturn agrees
//! with the other way round (the server on real time) would make the test
//! depend on the date, and could not show credentials outliving their TTL
//! without waiting for it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{TestApp, incoming, spawn_app_with_clock, test_clock, until};
use parley_domain::Clock;
use parley_domain::UserId;
use parley_domain::clock::ManualClock;
use parley_domain::protocol::{IceServer, MediaState, Role};
use parley_sdk::call::{Call, CallConfig};
use parley_sdk::session::SessionCall;
use parley_sdk::{Event, Events};
use parley_signaling::turn::IceConfig;
use tokio::sync::mpsc;

const SECRET: &str = "coturn-test-secret";
const TTL: Duration = Duration::from_secs(600);

/// A coturn on a free loopback port, killed when dropped.
struct Coturn {
    child: Child,
    port: u16,
    offset_file: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A port free for both UDP and TCP, below the kernel's ephemeral range
/// (32768 and up), so no outgoing connection of another test running
/// beside this one takes its TCP side before coturn binds it.
fn free_port() -> u16 {
    loop {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

/// Debian's libfaketime (multi-threaded build).
fn libfaketime() -> PathBuf {
    let found = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"]
        .iter()
        .map(|dir| Path::new(dir).join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists());
    found.expect("libfaketime is installed (Debian `faketime`; scripts/test.sh installs it)")
}

impl Coturn {
    fn start(clock: &ManualClock) -> Coturn {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let offset_file = dir.path().join("faketime");
        let log = dir.path().join("turn.log");
        let coturn = Coturn {
            child: Command::new("turnserver")
                .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
                .arg(format!("--listening-port={port}"))
                .args(["--use-auth-secret", &format!("--static-auth-secret={SECRET}"), "--realm=parley.test"])
                .args(["--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers", "--fingerprint"])
                .args(["--verbose", "--simple-log", "--log-file=stdout"])
                .arg(format!("--userdb={}", dir.path().join("turndb").display()))
                .arg(format!("--pidfile={}", dir.path().join("pid").display()))
                .env("LD_PRELOAD", libfaketime())
                .env("FAKETIME_TIMESTAMP_FILE", &offset_file)
                .env("FAKETIME_NO_CACHE", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .expect("turnserver runs (Debian `coturn`; scripts/test.sh installs it)"),
            port,
            offset_file,
            log,
            _dir: dir,
        };
        coturn.follow(clock);
        coturn
    }

    /// Sets coturn's clock to `clock`'s time (an offset from the real one).
    fn follow(&self, clock: &ManualClock) {
        let real = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let offset = clock.now().unix_secs() - real;
        std::fs::write(&self.offset_file, format!("{offset:+}\n")).unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn ready(&self) {
        until("coturn listens", || async { self.log().contains("Total General servers") || self.tcp_open() }).await;
        until("coturn listens on TCP", || async { self.tcp_open() }).await;
    }

    fn tcp_open(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Hands every event to `call` (renegotiations fetch fresh servers).
fn drive(mut events: Events, call: Arc<SessionCall>) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            call.handle_event(&event).await;
            let _ = tx.send(event);
        }
    });
    rx
}

fn relay_only() -> CallConfig {
    CallConfig { resolve_mdns_candidates: false, relay_only: true, ..CallConfig::default() }
}

/// The expiry (Unix s) in a TURN REST username `<expiry>:<user>`.
fn expiry(servers: &[IceServer]) -> i64 {
    let turn = servers.iter().find(|s| s.credential.is_some()).expect("a TURN server");
    turn.username.as_deref().unwrap().split(':').next().unwrap().parse().unwrap()
}

async fn session_through(app: &TestApp) -> (Arc<SessionCall>, Arc<SessionCall>, Vec<IceServer>) {
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, s_events) = app.client("sam", Role::Seeker).await;
    seeker.call(&UserId::parse("cora").unwrap(), None).await.unwrap();
    let (call_id, session_id) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();
    let c_room = consultant.join(&session_id).await.unwrap();
    let c_call = Arc::new(SessionCall::start(&consultant, &c_room, relay_only()).await.unwrap());
    let _ = drive(c_events, c_call.clone());
    let s_room = seeker.join(&session_id).await.unwrap();
    let s_call = Arc::new(SessionCall::start(&seeker, &s_room, relay_only()).await.unwrap());
    let _ = drive(s_events, s_call.clone());
    (s_call, c_call, s_room.ice_servers)
}

/// A coturn and a server whose ICE servers name it (TURN only, REST
/// credentials valid for [`TTL`]), on one manual clock.
async fn with_coturn() -> (Arc<ManualClock>, Coturn, TestApp) {
    let clock = test_clock();
    let coturn = Coturn::start(&clock);
    coturn.ready().await;
    let app = spawn_app_with_clock(clock.clone(), |c| {
        c.signaling.ice = IceConfig {
            stun_urls: Vec::new(),
            turn_urls: vec![format!("turn:127.0.0.1:{}?transport=udp", coturn.port)],
            turn_secret: Some(SECRET.into()),
            turn_ttl: TTL,
        };
    })
    .await;
    (clock, coturn, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i16_turn_credentials_from_parley_work_in_coturn_expire_and_are_fresh_after_the_ttl() {
    let (clock, coturn, app) = with_coturn().await;

    // Parley's credentials are accepted: a relay-only call connects.
    let (s_call, c_call, joined) = session_through(&app).await;
    assert_eq!(expiry(&joined), clock.now().unix_secs() + TTL.as_secs() as i64);
    s_call.call.wait_connected(Duration::from_secs(20)).await.expect("seeker connected through coturn");
    c_call.call.wait_connected(Duration::from_secs(20)).await.expect("consultant connected through coturn");

    // Past the TTL on both clocks: the join's credentials are expired.
    app.advance(TTL + Duration::from_secs(60)).await;
    coturn.follow(&clock);
    let expired_user = joined.iter().find_map(|s| s.username.clone()).unwrap();
    let (a_out, b_in) = mpsc::unbounded_channel();
    let (b_out, a_in) = mpsc::unbounded_channel();
    let stale = |offerer| CallConfig { ice_servers: joined.clone(), offerer, ..relay_only() };
    let a = Call::start(stale(true), a_out, a_in).await.unwrap();
    let b = Call::start(stale(false), b_out, b_in).await.unwrap();
    until("coturn refuses the expired credentials", || async {
        coturn.log().lines().any(|l| l.contains(&expired_user) && l.contains("401"))
    })
    .await;
    assert_ne!(*a.media_state().borrow(), MediaState::Connected, "no relay with expired credentials");
    let _ = (a.close().await, b.close().await);

    // Fresh credentials from the SDK (`ice.servers`, what an ICE restart
    // or a rejoin uses) are valid from the server's now, and coturn takes
    // them: a new relay-only connection reaches Connected.
    let fresh = s_call_client_servers(&app).await;
    assert_eq!(expiry(&fresh), clock.now().unix_secs() + TTL.as_secs() as i64, "fresh: valid from now");
    let (a_out, b_in) = mpsc::unbounded_channel();
    let (b_out, a_in) = mpsc::unbounded_channel();
    let renewed = |offerer| CallConfig { ice_servers: fresh.clone(), offerer, ..relay_only() };
    let a = Call::start(renewed(true), a_out, a_in).await.unwrap();
    let b = Call::start(renewed(false), b_out, b_in).await.unwrap();
    a.wait_connected(Duration::from_secs(20)).await.expect("connected through coturn with fresh credentials");
    b.wait_connected(Duration::from_secs(20)).await.expect("both sides");
    let fresh_user = fresh.iter().find_map(|s| s.username.clone()).unwrap();
    assert!(coturn.log().lines().any(|l| l.contains(&fresh_user) && l.contains("ALLOCATE processed, success")));
    let _ = (a.close().await, b.close().await, s_call.close().await, c_call.close().await);
}

/// A relayed call past its TURN credentials' TTL restarts ICE
/// (`SessionCall::restart_ice`, what an app does when the connection
/// fails late in a session): both sides fetch fresh credentials, gather on
/// new sockets and get new allocations made with them — coturn never sees
/// the old allocation re-signed under a new username (441, RFC 8656 §5) —
/// and the data channel carries messages over the new relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i16_an_ice_restart_past_the_ttl_relays_through_new_allocations_with_fresh_credentials() {
    let (clock, coturn, app) = with_coturn().await;
    let (s_call, c_call, joined) = session_through(&app).await;
    for call in [&s_call.call, &c_call.call] {
        call.wait_connected(Duration::from_secs(20)).await.expect("connected through coturn");
        call.wait_data_channel_open(Duration::from_secs(20)).await.expect("data channel open");
    }
    let first_user = joined.iter().find_map(|s| s.username.clone()).unwrap();

    // Past the TTL on both clocks, the seeker restarts ICE.
    app.advance(TTL + Duration::from_secs(60)).await;
    coturn.follow(&clock);
    let fresh_expiry = clock.now().unix_secs() + TTL.as_secs() as i64;
    assert!(!first_user.starts_with(&format!("{fresh_expiry}:")), "the credentials are renewed");
    s_call.restart_ice().await.expect("restart offer sent");

    // Both sides allocate anew with their fresh usernames (TURN REST:
    // `<expiry>:<user>`; the clock has not moved since).
    let allocated = |user: &str| {
        let user = format!("{fresh_expiry}:{user}");
        coturn.log().lines().any(|l| l.contains(&user) && l.contains("ALLOCATE processed, success"))
    };
    until("both sides allocate with fresh credentials", || async { allocated("sam") && allocated("cora") }).await;
    let log = coturn.log();
    assert!(!log.contains("error 441"), "no allocation re-signed under another username:\n{log}");

    // The old sockets are gone: what the data channel carries now goes
    // through the new allocations.
    for (from, to) in [(&s_call.call, &c_call.call), (&c_call.call, &s_call.call)] {
        let sent = format!("after the restart from {}", if std::ptr::eq(from, &s_call.call) { "sam" } else { "cora" });
        from.send_data(sent.as_bytes()).await.expect("sent");
        let got = tokio::time::timeout(Duration::from_secs(20), to.recv_data()).await.expect("delivered in time");
        assert_eq!(got.as_deref(), Some(sent.as_bytes()));
    }
    assert_eq!(*s_call.call.media_state().borrow(), MediaState::Connected);
    let _ = (s_call.close().await, c_call.close().await);
}

/// What `ice.servers` answers now (asked by another user: a second
/// connection of sam's would replace the call's).
async fn s_call_client_servers(app: &TestApp) -> Vec<IceServer> {
    app.client("ivy", Role::Seeker).await.0.ice_servers().await.unwrap()
}
