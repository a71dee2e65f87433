//! The server under test: [`TestApp`], a real `parley` on port 0 with a
//! fresh SQLite database in a temp dir (or PostgreSQL: [`crate::postgres`])
//! and a manual clock at [`TEST_EPOCH_MS`].

use std::sync::Arc;
use std::time::Duration;

use parley_domain::clock::ManualClock;
use parley_domain::protocol::{Role, ServerMessage, UserInfo};
use parley_domain::{Clock, UserId};
use parley_sdk::{Events, SignalingClient};
use parley_server::store::SqlStore;
use parley_server::{Application, Config};
use parley_signaling::Authenticator;
use tokio::sync::oneshot;

use crate::raw::Raw;

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
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// `ws://127.0.0.1:<port>/v1/signal`.
    pub ws_url: String,
    /// The server's clock: moves only when a test moves it.
    pub clock: Arc<ManualClock>,
    /// The booking scheduler's progress (server Unix ms of its last pass).
    pub scheduler: tokio::sync::watch::Receiver<i64>,
    /// The server's store (the tests' window on what was persisted).
    pub store: SqlStore,
    /// Signs and checks the server's tokens.
    pub auth: Arc<Authenticator>,
    /// The server's billing service.
    pub billing: Arc<parley_billing::Billing>,
    /// The server's recording files (signed links).
    pub files: Arc<parley_server::files::RecordingFiles>,
    /// The configuration it runs with.
    pub config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), parley_server::app::StartError>>>,
    _dir: Arc<tempfile::TempDir>,
    /// The node's own runtime ([`spawn_node`]): shutting it down kills the
    /// node like `kill -9`.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A server with exactly `config` on a runtime of its own (one worker
/// thread), so that [`TestApp::kill`] can end every task of it at once —
/// its sockets, meters, leases and workers — as `kill -9` would, while the
/// test and the other nodes run on.
pub async fn spawn_node(config: Config, dir: Arc<tempfile::TempDir>, clock: Arc<ManualClock>) -> TestApp {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the node");
    let mut app = runtime.spawn(spawn_full(config, dir, clock, None)).await.expect("the node starts");
    app.runtime = Some(runtime);
    app
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
        runtime: None,
    }
}

/// The user `id` with `role`, named `<id> name`.
pub fn user(id: &str, role: Role) -> UserInfo {
    UserInfo { id: UserId::parse(id).unwrap(), name: format!("{id} name"), role }
}

impl TestApp {
    /// A token for `id` with `role`, valid for a year of the server's clock (tests move it by
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
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = self.ws_url.as_str().into_client_request().expect("a WebSocket URL");
        let bearer = format!("Bearer {}", self.token(id, role)).parse().expect("a header value");
        request.headers_mut().insert("authorization", bearer);
        let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("raw connect");
        let mut raw = Raw { ws, resume_token: String::new(), last_seq: 0 };
        let hello = raw.recv().await;
        match hello.msg {
            ServerMessage::Hello { resume_token, .. } => raw.resume_token = resume_token,
            other => panic!("first message is hello: {other:?}"),
        }
        raw
    }

    /// Kills a node started with [`spawn_node`] without any goodbye: its
    /// tasks stop where they are and its sockets close (no WebSocket close
    /// frame, no checkpoint, no lease given up).
    pub fn kill(&mut self) {
        let runtime = self.runtime.take().expect("kill: a node started with spawn_node");
        runtime.shutdown_background();
        // The graceful stop is never asked for (the sender stays): a
        // killed node is not waited for.
        self.server.take();
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
    /// dir, configuration, clock and address (open sessions are restored,
    /// M9): clients that reconnect by themselves find the new process.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let mut config = self.config.clone();
        config.listen = self.base.trim_start_matches("http://").parse().expect("the server's address");
        spawn_with_config(config, self._dir.clone(), self.clock.clone()).await
    }

    /// Waits until the booking scheduler has finished a pass at the
    /// server's current time: whatever it does by now is done. The
    /// scheduler sleeps until its next deadline, so it is woken for the pass.
    pub async fn scheduler_caught_up(&self) {
        let now = self.clock.now().unix_millis();
        self.store.booking_signal().wake();
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
