//! The server under test: a real `parley` in-process on a manual clock, and
//! what the tests read from it (through its REST API, as any client would).

use super::*;

/// The shared in-process harness's server ([`parley_testkit::TestApp`])
/// serving the demo, and a REST client of it.
pub(crate) struct Server {
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    /// A REST client of the server (what the tests read, they read as a client).
    pub(crate) api: parley_sdk::ApiClient,
    app: TestApp,
}

/// The demo and SDK folders: the package's own unless overridden.
pub(crate) fn web_dirs() -> (PathBuf, PathBuf) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let web = std::env::var_os("PARLEY_TEST_WEB_DIR").map(PathBuf::from).unwrap_or_else(|| manifest.to_path_buf());
    let sdk =
        std::env::var_os("PARLEY_TEST_SDK_JS_DIR").map(PathBuf::from).unwrap_or_else(|| manifest.join("../sdk/js"));
    assert!(web.join("index.html").is_file(), "no web demo at {}: index.html is missing", web.display());
    assert!(sdk.join("parley.js").is_file(), "no JavaScript SDK at {}: parley.js is missing", sdk.display());
    (web, sdk)
}

impl Server {
    pub(crate) async fn start() -> Server {
        Self::start_with(|_| {}).await
    }

    /// A server whose test configuration `configure` changes first, on a
    /// manual clock at [`START_MS`].
    pub(crate) async fn start_with(configure: impl FnOnce(&mut Config)) -> Server {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_millis(START_MS)));
        let app = parley_testkit::spawn_app_with_clock(clock, |config| {
            configure(config);
            config.meter.free_window = FREE_WINDOW;
            config.meter.warn_before = WARN_BEFORE;
            (config.web_dir, config.sdk_js_dir) = web_dirs();
            // chromiumoxide warns about every DevTools message newer than its protocol.
            config.log = format!("{},chromiumoxide=off", config.log);
        })
        .await;
        let api = parley_sdk::ApiClient::new(&app.base).expect("a REST client");
        Server { base: app.base.clone(), api, app }
    }

    /// A server on a fresh PostgreSQL database of the server named by
    /// `TEST_DATABASE_URL` (`./scripts/test.sh` sets it). Missing → the test
    /// fails, never a silent skip.
    pub(crate) async fn start_on_postgres() -> Server {
        let url = parley_testkit::fresh_postgres_url().await;
        Self::start_with(|c| c.database_url = url).await
    }

    /// Moves the server clock forward (the meter, ring timeouts and the
    /// booking scheduler follow it).
    pub(crate) fn advance(&self, by: Duration) {
        self.app.clock.advance(by);
    }

    /// The server clock now, Unix ms.
    pub(crate) fn now_ms(&self) -> i64 {
        use parley_domain::Clock;
        self.app.clock.now().unix_millis()
    }

    /// A moderator token (the operator's platform), valid for an hour of server time.
    pub(crate) fn moderator_token(&self) -> String {
        use parley_domain::protocol::{Role, UserInfo};
        let operator =
            UserInfo { id: UserId::parse("bt-operator").expect("id"), name: "Operator".into(), role: Role::Moderator };
        self.app.auth.issue(&operator, Duration::from_secs(3600), Timestamp::from_unix_millis(self.now_ms()))
    }

    /// The amount of the payment hold placed for the open `session`, in
    /// minor units, as `GET /v1/sessions/{id}` states it to a moderator.
    pub(crate) async fn hold_minor(&self, session: &str) -> i64 {
        let id = SessionId::parse(session).expect("a session id");
        let details = self.api.session(&self.moderator_token(), &id).await.expect("GET /v1/sessions/{id}");
        details.hold.unwrap_or_else(|| panic!("no hold was placed for {session}")).amount.amount_minor
    }

    /// Waits until the consultant's price is stored (the price form saved
    /// it), as `GET /v1/consultants` lists it.
    pub(crate) async fn wait_price(&self, consultant: &str, amount_minor: i64) {
        let id = UserId::parse(consultant).expect("valid user id");
        let deadline = Instant::now() + WAIT;
        loop {
            let listed = self.api.consultants(&self.moderator_token()).await.expect("GET /v1/consultants");
            let price = listed.into_iter().find(|c| c.id == id).and_then(|c| c.price);
            if price.as_ref().is_some_and(|p| p.amount.amount_minor == amount_minor) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?}: the price form (#price-amount, #price-save) did not store \
                 {amount_minor} for {consultant} (listed: {price:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server gracefully, within [`WAIT`].
    pub(crate) async fn stop(mut self) {
        tokio::time::timeout(WAIT, self.app.stop()).await.expect("server stops in time");
    }
}
