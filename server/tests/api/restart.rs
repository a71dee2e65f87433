//! DESIGN.md M9 with a real crash: the `parley` binary is killed with
//! SIGKILL in mid-session and started again on the same database. The open
//! session is recovered from its last checkpoint (≤ 10 s lost, in the
//! seeker's favour), both participants rejoin within `G`, and the session
//! is settled once. Real time: about 15 s.

use crate::common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::WAIT;
use parley_domain::clock::SystemClock;
use parley_domain::protocol::{Outcome, Role, ServerMessage, UserInfo};
use parley_domain::{Clock, UserId};
use parley_sdk::{ApiClient, SignalingClient};
use parley_signaling::Authenticator;

const SECRET: &str = "restart-test-secret-restart-test-secret";

/// The server process, killed (SIGKILL) when dropped: also when a check
/// fails, so no server outlives the test.
struct Server(Child);

impl Server {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start(dir: &Path, port: u16) -> Server {
    Server(
        Command::new(env!("CARGO_BIN_EXE_parley"))
            .env_clear()
            .env("PARLEY_LISTEN", format!("127.0.0.1:{port}"))
            .env("PARLEY_DATA_DIR", dir)
            .env("PARLEY_JWT_SECRET", SECRET)
            .env("PARLEY_FREE_WINDOW_SECS", "4")
            .env("PARLEY_GRACE_SECS", "5")
            .env("PARLEY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start parley"),
    )
}

async fn ready(base: &str) {
    let deadline = Instant::now() + WAIT;
    while !reqwest::get(format!("{base}/readyz")).await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "parley did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn token(auth: &Authenticator, id: &str, name: &str, role: Role) -> String {
    let user = UserInfo { id: UserId::parse(id).unwrap(), name: name.into(), role };
    auth.issue(&user, Duration::from_secs(600), SystemClock.now())
}

#[tokio::test]
async fn m9_b3_a_session_survives_a_killed_server_and_is_settled_once() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let ws = format!("ws://127.0.0.1:{port}/v1/signal");
    let auth = Authenticator::new(SECRET.as_bytes());
    // The demo consultant charges EUR 30.00 (dev mode seeds the price).
    let seeker_token = token(&auth, "demo-seeker", "Sam Seeker", Role::Seeker);
    let consultant_token = token(&auth, "demo-consultant", "Cora Consultant", Role::Consultant);

    let mut server = start(dir.path(), port);
    ready(&base).await;
    let (consultant, mut c_events) = SignalingClient::connect(&ws, &consultant_token).await.unwrap();
    consultant.set_available(true).await.unwrap();
    let (seeker, _s_events) = SignalingClient::connect(&ws, &seeker_token).await.unwrap();
    seeker.call(&UserId::parse("demo-consultant").unwrap(), Some("pm_card_visa")).await.unwrap();
    let (call_id, session_id) = c_events
        .wait_for(WAIT, |m| match m {
            ServerMessage::CallIncoming { call_id, session_id, .. } => Some((call_id.clone(), session_id.clone())),
            _ => None,
        })
        .await
        .unwrap();
    consultant.accept(&call_id).await.unwrap();
    seeker.join(&session_id).await.unwrap();
    consultant.join(&session_id).await.unwrap();
    let live_since = Instant::now();

    // Past the first checkpoint (10 s), then a crash: no graceful anything.
    tokio::time::sleep(Duration::from_millis(12_500)).await;
    server.kill();
    let before_crash = live_since.elapsed();
    drop((seeker, consultant, c_events));

    let mut server = start(dir.path(), port);
    ready(&base).await;
    // Both come back within G and rejoin the recovered room.
    let (seeker, mut s_events) = SignalingClient::connect(&ws, &seeker_token).await.unwrap();
    let (consultant, _c_events) = SignalingClient::connect(&ws, &consultant_token).await.unwrap();
    seeker.join(&session_id).await.expect("the recovered room takes the seeker back");
    consultant.join(&session_id).await.expect("and the consultant");
    let rejoined = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    seeker.end_session(&session_id).await.unwrap();
    let after_restart = rejoined.elapsed();
    let bill = s_events
        .wait_for(WAIT, |m| match m {
            ServerMessage::SessionEnded { bill, .. } => Some(*bill),
            _ => None,
        })
        .await
        .unwrap()
        .expect("a bill");

    // Billable: the checkpointed time plus the time after the rejoin; at
    // most 10 s lost, never more than both were present (M5, M9).
    let true_secs = (before_crash + after_restart).as_secs_f64();
    let billed = bill.billable_secs as f64;
    assert_eq!(bill.outcome, Outcome::Charged, "{bill:?}");
    assert!(billed <= true_secs + 1.0, "billed {billed} s of {true_secs:.1} s present");
    assert!(billed >= true_secs - 10.0 - 1.0, "lost more than 10 s: billed {billed} s of {true_secs:.1} s");

    // Settled once: one capture, one receipt.
    let api = ApiClient::new(&base).unwrap();
    let details = common::settled(&api, &seeker_token, &session_id).await;
    assert_eq!(details.settlement_status.as_deref(), Some("done"), "{details:?}");
    assert_eq!(details.ledger.iter().filter(|l| l.kind == "capture").count(), 1, "{:?}", details.ledger);
    assert_eq!(details.billable_secs, bill.billable_secs);
    let receipts = api.receipts(&seeker_token).await.unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].charged.amount_minor, 3000);
    let kinds: Vec<&str> = details.timeline.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "joined").count(), 4, "{kinds:?}");
    server.kill();
}
