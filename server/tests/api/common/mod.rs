//! Test harness: a real `parley` server on port 0 with a fresh database
//! and a manual clock, plus helpers for real WebSocket clients.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parley_domain::clock::ManualClock;
use parley_domain::protocol::{ErrorCode, Role, ServerEnvelope, ServerMessage, UserInfo};
use parley_domain::{Clock, UserId};
use parley_sdk::session::SessionCall;
use parley_sdk::{Event, Events, SignalingClient};
use parley_server::store::SqlStore;
use parley_server::{Application, Config};
use parley_signaling::{Authenticator, Store};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Where every test's server clock starts: Monday 2026-11-02 12:00:00 UTC.
/// Fixed, so no test depends on the hour, the date or the time zone it
/// runs in (for a consultant available 09:00–17:00 UTC, the first slot
/// 20 h from now starts 21 h from now: within 24 h); tests move it forward
/// with [`TestApp::advance`].
pub const TEST_EPOCH_MS: i64 = 1_793_620_800_000;

/// A manual clock at [`TEST_EPOCH_MS`].
pub fn test_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(parley_domain::Timestamp::from_unix_millis(TEST_EPOCH_MS)))
}

/// How long a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `done` until it holds, for up to [`WAIT`]; fails the test with
/// `what` otherwise.
pub async fn until<F: std::future::Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running server.
pub struct TestApp {
    pub base: String,
    pub ws_url: String,
    pub clock: Arc<ManualClock>,
    /// The booking scheduler's progress (server Unix ms of its last pass).
    pub scheduler: tokio::sync::watch::Receiver<i64>,
    pub store: SqlStore,
    pub auth: Arc<Authenticator>,
    pub billing: Arc<parley_billing::Billing>,
    pub files: Arc<parley_server::files::RecordingFiles>,
    pub config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Arc<tempfile::TempDir>,
}

/// A server on SQLite in a fresh temp dir, with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server whose configuration `tweak` adjusts.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_clock(test_clock(), tweak).await
}

/// A server whose configuration `tweak` adjusts, on `clock` (shared with
/// a fake of an outside service that must agree on the time).
pub async fn spawn_app_with_clock(clock: Arc<ManualClock>, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut config = Config::for_tests(dir.path());
    tweak(&mut config);
    spawn_with_config(config, dir, clock).await
}

/// A server with exactly `config`, sharing `dir` and `clock` (a restart).
pub async fn spawn_with_config(config: Config, dir: Arc<tempfile::TempDir>, clock: Arc<ManualClock>) -> TestApp {
    spawn_full(config, dir, clock, None).await
}

/// A server (SQLite, defaults) whose payment seam is `gate`.
pub async fn spawn_app_with_gate(gate: Arc<dyn parley_signaling::CallGate>) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let config = Config::for_tests(dir.path());
    spawn_full(config, dir, test_clock(), Some(gate)).await
}

async fn spawn_full(
    config: Config,
    dir: Arc<tempfile::TempDir>,
    clock: Arc<ManualClock>,
    gate: Option<Arc<dyn parley_signaling::CallGate>>,
) -> TestApp {
    parley_server::telemetry::init_tracing(&config.log);
    // reqwest is built without a crypto provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let app = Application::build_with(config.clone(), clock.clone(), gate).await.expect("server builds");
    let addr = app.local_addr();
    let store = app.store();
    let auth = app.auth();
    let billing = app.billing();
    let files = app.recording_files();
    let scheduler = app.scheduler_progress();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        ws_url: format!("ws://{addr}/v1/signal"),
        clock,
        scheduler,
        store,
        auth,
        billing,
        files,
        config,
        shutdown: Some(tx),
        server: Some(server),
        _dir: dir,
    }
}

pub fn user(id: &str, role: Role) -> UserInfo {
    UserInfo { id: UserId::parse(id).unwrap(), name: format!("{id} name"), role }
}

impl TestApp {
    /// A token for `id` with `role`, valid one hour.
    /// A token valid for a year of the server's clock (tests move it by
    /// months).
    pub fn token(&self, id: &str, role: Role) -> String {
        self.auth.issue(&user(id, role), Duration::from_secs(365 * 24 * 3600), self.clock.now())
    }

    /// An SDK client for `id`.
    pub async fn client(&self, id: &str, role: Role) -> (SignalingClient, Events) {
        SignalingClient::connect(&self.ws_url, &self.token(id, role)).await.expect("client connects")
    }

    /// A consultant who is available.
    pub async fn available_consultant(&self, id: &str) -> (SignalingClient, Events) {
        let (c, mut events) = self.client(id, Role::Consultant).await;
        c.set_available(true).await.expect("presence.set");
        events
            .wait_for(WAIT, |m| matches!(m, ServerMessage::PresenceUpdated { .. }).then_some(()))
            .await
            .expect("presence.updated");
        (c, events)
    }

    /// A raw WebSocket client (for malformed input).
    pub async fn raw(&self, id: &str, role: Role) -> Raw {
        let url = format!("{}?access_token={}", self.ws_url, self.token(id, role));
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("raw connect");
        let mut raw = Raw { ws, resume_token: String::new(), last_seq: 0 };
        let hello = raw.recv().await;
        match hello.msg {
            ServerMessage::Hello { resume_token, .. } => raw.resume_token = resume_token,
            other => panic!("first message is hello: {other:?}"),
        }
        raw
    }

    /// Shuts the server down gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
    }

    /// Stops the server gracefully and starts it again on the same data
    /// dir, configuration and clock (open sessions are restored, M9).
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        spawn_with_config(self.config.clone(), self._dir.clone(), self.clock.clone()).await
    }

    /// Waits until the booking scheduler has finished a pass at the
    /// server's current time: whatever it does by now is done.
    pub async fn scheduler_caught_up(&self) {
        let now = self.clock.now().unix_millis();
        let mut progress = self.scheduler.clone();
        tokio::time::timeout(WAIT, progress.wait_for(|at| *at >= now))
            .await
            .expect("the booking scheduler caught up with the clock")
            .expect("the scheduler runs");
    }

    /// POSTs `body` to `path` as `token` with an `Idempotency-Key`: the
    /// status, the JSON body and whether the response was a replay.
    pub async fn post_keyed(
        &self,
        token: &str,
        path: &str,
        key: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value, bool) {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let replayed = resp.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
        (status, resp.json().await.unwrap_or(serde_json::Value::Null), replayed)
    }

    /// Reconciles the ledger with the payment provider now (what `parley
    /// reconcile` and the hourly check run, issue 13) and fails the test
    /// with the report if anything disagrees: call it at the end of every
    /// money test.
    pub async fn assert_reconciled(&self) {
        let report = self.reconcile().await;
        assert!(report.findings.is_empty(), "{}", parley_server::reconcile::render(&report));
    }

    /// The reconciliation report as of the server clock's now.
    pub async fn reconcile(&self) -> parley_domain::protocol::rest::ReconcileFindingsData {
        parley_server::reconcile::check(&self.store.pool(), self.billing.provider().as_ref(), self.clock.now())
            .await
            .expect("reconcile runs")
    }

    /// Moves the server clock forward and lets timers run.
    pub async fn advance(&self, by: Duration) {
        self.clock.advance(by);
        tokio::task::yield_now().await;
    }
}

/// A raw WebSocket client.
pub struct Raw {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// From the connection's `hello`.
    pub resume_token: String,
    /// The `seq` of the last message received.
    pub last_seq: u64,
}

impl Raw {
    pub async fn send(&mut self, text: impl Into<String>) {
        self.ws.send(Message::Text(text.into().into())).await.expect("send");
    }

    /// The next server message (skipping pings).
    pub async fn recv(&mut self) -> ServerEnvelope {
        loop {
            let msg =
                tokio::time::timeout(WAIT, self.ws.next()).await.expect("message in time").expect("open").expect("ok");
            match msg {
                Message::Text(t) => {
                    let env: ServerEnvelope = serde_json::from_str(&t).expect("server JSON");
                    self.last_seq = env.seq;
                    return env;
                }
                Message::Close(f) => panic!("closed: {f:?}"),
                _ => {}
            }
        }
    }

    /// Skips messages until `pick` accepts one.
    pub async fn recv_until<T>(&mut self, mut pick: impl FnMut(&ServerMessage) -> Option<T>) -> T {
        loop {
            let env = self.recv().await;
            if let Some(t) = pick(&env.msg) {
                return t;
            }
        }
    }

    /// The next message, which must be an error: its id and code.
    pub async fn recv_error(&mut self) -> (Option<String>, ErrorCode, String) {
        match self.recv().await.msg {
            ServerMessage::Error { id, code, message } => (id, code, message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// The next server message within `wait` (skipping pings), or `None`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<ServerEnvelope> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()?;
            match msg.expect("open").expect("ok") {
                Message::Text(t) => {
                    let env: ServerEnvelope = serde_json::from_str(&t).expect("server JSON");
                    self.last_seq = env.seq;
                    return Some(env);
                }
                Message::Close(f) => panic!("closed: {f:?}"),
                _ => {}
            }
        }
    }

    /// Sends ping requests until one is acked: proof the connection works.
    /// A ping the rate limit dropped gets no answer (docs/protocol.md §8.8),
    /// so another is sent after 500 ms without one, for up to [`WAIT`].
    pub async fn assert_alive(&mut self, id: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        for attempt in 0.. {
            assert!(tokio::time::Instant::now() < deadline, "no ping acked within {WAIT:?}");
            self.send(format!(r#"{{"type":"ping","id":"{id}.{attempt}"}}"#)).await;
            while let Some(env) = self.recv_within(Duration::from_millis(500)).await {
                match env.msg {
                    ServerMessage::Ack { id: got, .. } if got.starts_with(&format!("{id}.")) => return,
                    ServerMessage::Error { id: None, code: ErrorCode::RateLimited, .. } => {}
                    other => panic!("expected the ping's ack, got {other:?}"),
                }
            }
        }
    }
}

/// The store's view of a session's timeline kinds, oldest first.
pub async fn timeline_kinds(store: &SqlStore, session: &parley_domain::SessionId) -> Vec<String> {
    store.session_timeline(session).await.unwrap().into_iter().map(|e| e.kind).collect()
}

/// A loopback TCP proxy in front of the server whose connections a test can
/// cut, to drop a client's network without telling either side.
pub struct Proxy {
    pub ws_url: String,
    cut: tokio::sync::watch::Sender<u64>,
    refusing: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    pub async fn start(app: &TestApp) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = app.base.trim_start_matches("http://").to_owned();
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let cuts = cut.clone();
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refuse = refusing.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if refuse.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped at once: the network is down
                }
                let mut server = TcpStream::connect(&upstream).await.unwrap();
                let mut cut_rx = cuts.subscribe();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.changed() => {} // both sockets dropped: the link is gone
                    }
                });
            }
        });
        Proxy { ws_url: format!("ws://{addr}/v1/signal"), cut, refusing }
    }

    /// While `true`, new connections through the proxy are dropped at once
    /// (the client's network is down, so it cannot reconnect yet).
    pub fn set_refusing(&self, refusing: bool) {
        self.refusing.store(refusing, std::sync::atomic::Ordering::SeqCst);
    }

    /// Drops every connection currently through the proxy.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

/// A fresh, empty PostgreSQL database on the server named by
/// `TEST_DATABASE_URL` (the README's test command sets it and starts
/// PostgreSQL). Missing variable → the test fails: never a silent skip.
pub async fn fresh_postgres_url() -> String {
    use sqlx::Connection;
    let base = std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL is not set: run the tests with ./scripts/test.sh (see README), which starts PostgreSQL",
    );
    let mut admin = sqlx::PgConnection::connect(&base).await.expect("TEST_DATABASE_URL is reachable");
    let name = format!("parley_test_{}", uuid::Uuid::new_v4().simple());
    // `name` is generated above from a UUID: safe to splice.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let (prefix, _) = base.rsplit_once('/').expect("URL has a database path");
    format!("{prefix}/{name}")
}

/// A server on a fresh PostgreSQL database.
pub async fn spawn_app_on_postgres() -> TestApp {
    let url = fresh_postgres_url().await;
    spawn_app_with(|c| c.database_url = url).await
}

/// `GET /v1/sessions/{id}` once its settlement was carried out (done or
/// failed: DESIGN.md B3), polling for up to [`WAIT`].
pub async fn settled(
    api: &parley_sdk::ApiClient,
    token: &str,
    session_id: &parley_domain::SessionId,
) -> parley_domain::protocol::rest::SessionDetails {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let d = api.session(token, session_id).await.unwrap();
        if matches!(d.settlement_status.as_deref(), Some("done" | "failed")) {
            return d;
        }
        assert!(tokio::time::Instant::now() < deadline, "not settled in time: {d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The clients of an open session: seeker, their events, consultant, theirs.
pub type OpenSession = (SignalingClient, Events, SignalingClient, Events, parley_domain::SessionId);

/// `sam` calls `cora` (with payment method `pm` if given); she accepts and
/// both join.
pub async fn open_session(app: &TestApp, pm: Option<&str>) -> OpenSession {
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, s_events) = app.client("sam", Role::Seeker).await;
    seeker.call(&UserId::parse("cora").unwrap(), pm).await.expect("call rings");
    let (call_id, session_id) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();
    seeker.join(&session_id).await.unwrap();
    consultant.join(&session_id).await.unwrap();
    (seeker, s_events, consultant, c_events, session_id)
}

/// Waits for `session.ended`.
pub async fn wait_ended(events: &mut Events) {
    events
        .wait_for(WAIT, |m| matches!(m, ServerMessage::SessionEnded { .. }).then_some(()))
        .await
        .expect("session.ended");
}

/// Waits for `call.incoming`; returns the call and session ids.
pub async fn incoming(events: &mut Events) -> (parley_domain::CallId, parley_domain::SessionId) {
    events
        .wait_for(WAIT, |m| match m {
            ServerMessage::CallIncoming { call_id, session_id, .. } => Some((call_id.clone(), session_id.clone())),
            _ => None,
        })
        .await
        .expect("call.incoming")
}

/// Feeds relayed signals (and `recording.*`) to the call once it exists;
/// forwards everything else to the test.
pub fn pump(mut events: Events) -> (oneshot::Sender<Arc<SessionCall>>, mpsc::UnboundedReceiver<ServerMessage>) {
    let (call_tx, mut call_rx) = oneshot::channel::<Arc<SessionCall>>();
    let (rest_tx, rest_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut call: Option<Arc<SessionCall>> = None;
        let mut early = Vec::new();
        loop {
            tokio::select! {
                c = &mut call_rx, if call.is_none() => {
                    let Ok(c) = c else { return };
                    for m in early.drain(..) { c.handle(&m); }
                    call = Some(c);
                }
                e = events.recv() => {
                    let Some(Event::Server(m)) = e else { if e.is_none() { return } else { continue } };
                    let media = matches!(m, ServerMessage::SdpOffer { .. } | ServerMessage::SdpAnswer { .. }
                        | ServerMessage::IceCandidate { .. } | ServerMessage::RecordingStarted { .. });
                    match &call {
                        Some(c) => {
                            let notice = matches!(m, ServerMessage::RecordingStarted { .. } | ServerMessage::RecordingStopped { .. });
                            if !c.handle(&m) || notice { let _ = rest_tx.send(m); }
                        }
                        None if media => { early.push(m.clone()); let _ = rest_tx.send(m); }
                        None => { let _ = rest_tx.send(m); }
                    }
                }
            }
        }
    });
    (call_tx, rest_rx)
}

pub async fn next_matching(
    rx: &mut mpsc::UnboundedReceiver<ServerMessage>,
    pick: impl Fn(&ServerMessage) -> bool,
) -> ServerMessage {
    tokio::time::timeout(WAIT, async {
        loop {
            let m = rx.recv().await.expect("pump alive");
            if pick(&m) {
                return m;
            }
        }
    })
    .await
    .expect("message in time")
}
