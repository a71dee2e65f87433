//! Browser tests of the web app (issues 5 and 15): a real `parley`
//! in-process (SQLite in a temp dir, a free window `F` of 8 s, and a manual
//! server clock that starts at a fixed instant, [`START_MS`], and moves only
//! when a test says so) serves `web-demo/` and `sdk/js/`; two headless
//! chromium processes, each with its own empty profile, are the seeker and
//! the consultant. The tests find elements only through the DOM contract in
//! `web-demo/README.md` and read media flow through
//! `window.parleyDemo.inboundBytes()`. They wait on conditions in the page,
//! never on the wall clock: the meter and the booking scheduler run on the
//! manual clock.
//!
//! Needs Debian's chromium (`PARLEY_CHROMIUM`, default `/usr/bin/chromium`):
//! `./scripts/test.sh` installs it. A missing browser fails the tests.
//!
//! Screenshots of the main screens go to `target/browser-screenshots/`;
//! with `PARLEY_UPDATE_SCREENSHOTS=1` a few are also copied to
//! `docs/screenshots/`. `PARLEY_TEST_WEB_DIR` / `PARLEY_TEST_SDK_JS_DIR`
//! serve another copy of the demo (local development only).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::js_protocol::runtime::{EventConsoleApiCalled, EventExceptionThrown};
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::ScreenshotParams;
use futures_util::StreamExt;
use parley_domain::{SessionId, Timestamp, UserId};
use parley_server::{Application, Config};
use parley_signaling::clock::ManualClock;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The bound of every wait.
const WAIT: Duration = Duration::from_secs(20);
/// The free window `F` of the test server.
const FREE_WINDOW: Duration = Duration::from_secs(8);
/// `meter.free_window_ending` comes this long before `F`.
const WARN_BEFORE: Duration = Duration::from_secs(4);
/// How far the server clock is moved in a call to go past `F`.
const PAST_FREE_WINDOW: Duration = Duration::from_secs(9);
/// The server clock's start: Monday 2030-01-07 08:00 UTC (a fixed instant,
/// never the wall clock; late enough that the dev tokens it signs have not
/// expired by the system clock that verifies them).
const START_MS: i64 = 1_894_003_200_000;

const SEEKER: &str = "bt-seeker";
const SEEKER_NAME: &str = "Sam Browser";
const CONSULTANT: &str = "bt-consultant";
const CONSULTANT_NAME: &str = "Cora Browser";

/// Screenshots also copied to `docs/screenshots/` on request.
const DOC_SCREENSHOTS: &[&str] = &[
    "02-consultants",
    "04-in-call",
    "04-free-window-choice",
    "06-summary-charged",
    "07-declined-card",
    "11-profile-booking",
    "12-my-sessions",
    "13-consultant-metrics",
    "16-recap",
];

/// Two chromium processes per test on 2 cores: one test at a time (an
/// async lock: each test has its own runtime, and a failed test must not
/// poison it for the others).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------
// The server

struct Server {
    base: String,
    billing: Arc<parley_billing::Billing>,
    clock: Arc<ManualClock>,
    auth: Arc<parley_signaling::Authenticator>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// The demo and SDK folders: the package's own unless overridden.
fn web_dirs() -> (PathBuf, PathBuf) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let web = std::env::var_os("PARLEY_TEST_WEB_DIR").map(PathBuf::from).unwrap_or_else(|| manifest.to_path_buf());
    let sdk =
        std::env::var_os("PARLEY_TEST_SDK_JS_DIR").map(PathBuf::from).unwrap_or_else(|| manifest.join("../sdk/js"));
    assert!(web.join("index.html").is_file(), "no web demo at {}: index.html is missing", web.display());
    assert!(sdk.join("parley.js").is_file(), "no JavaScript SDK at {}: parley.js is missing", sdk.display());
    (web, sdk)
}

impl Server {
    async fn start() -> Server {
        Self::start_with(|_| {}).await
    }

    /// A server whose test configuration `configure` changes first.
    async fn start_with(configure: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_tests(dir.path());
        configure(&mut config);
        config.meter.free_window = FREE_WINDOW;
        config.meter.warn_before = WARN_BEFORE;
        (config.web_dir, config.sdk_js_dir) = web_dirs();
        // chromiumoxide warns about every DevTools message newer than its protocol.
        config.log = format!("{},chromiumoxide=off", config.log);
        parley_server::telemetry::init_tracing(&config.log);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_millis(START_MS)));
        let app = Application::build_with_clock(config, clock.clone()).await.expect("server builds");
        let base = format!("http://{}", app.local_addr());
        let billing = app.billing();
        let auth = app.auth();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Server { base, billing, clock, auth, shutdown: Some(tx), task: Some(task), _dir: dir }
    }

    /// A server on a fresh PostgreSQL database of the server named by
    /// `TEST_DATABASE_URL` (`./scripts/test.sh` sets it). Missing → the test
    /// fails, never a silent skip.
    async fn start_on_postgres() -> Server {
        use sqlx::Connection;
        let base = std::env::var("TEST_DATABASE_URL")
            .expect("TEST_DATABASE_URL is not set: run the tests with ./scripts/test.sh, which starts PostgreSQL");
        let mut admin = sqlx::PgConnection::connect(&base).await.expect("TEST_DATABASE_URL is reachable");
        let name = format!("parley_web_{}", uuid::Uuid::new_v4().simple());
        // `name` is made above from a UUID: safe to splice.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let (prefix, _) = base.rsplit_once('/').expect("TEST_DATABASE_URL has a database path");
        let url = format!("{prefix}/{name}");
        Self::start_with(|c| c.database_url = url).await
    }

    /// Moves the server clock forward (the meter, ring timeouts and the
    /// booking scheduler follow it).
    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The server clock now, Unix ms.
    fn now_ms(&self) -> i64 {
        use parley_domain::Clock;
        self.clock.now().unix_millis()
    }

    /// A moderator token (the operator's platform), valid for an hour of server time.
    fn moderator_token(&self) -> String {
        use parley_domain::protocol::{Role, UserInfo};
        let operator =
            UserInfo { id: UserId::parse("bt-operator").expect("id"), name: "Operator".into(), role: Role::Moderator };
        self.auth.issue(&operator, Duration::from_secs(3600), Timestamp::from_unix_millis(self.now_ms()))
    }

    /// The amount of the payment hold placed for `session`, in minor units.
    async fn hold_minor(&self, session: &str) -> i64 {
        let id = SessionId::parse(session).expect("a session id");
        let hold = self.billing.hold(&id).await.expect("hold lookup");
        hold.unwrap_or_else(|| panic!("no hold was placed for {session}")).amount.amount_minor
    }

    /// Waits until the consultant's price is stored (the price form saved it).
    async fn wait_price(&self, consultant: &str, amount_minor: i64) {
        let id = UserId::parse(consultant).expect("valid user id");
        let deadline = Instant::now() + WAIT;
        loop {
            let price = self.billing.price(&id).await.expect("price lookup");
            if price.as_ref().is_some_and(|p| p.amount.amount_minor == amount_minor) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?}: the price form (#price-amount, #price-save) did not store \
                 {amount_minor} for {consultant} (stored: {price:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server ran");
        }
    }
}

// ---------------------------------------------------------------------------
// The browsers

fn chromium_path() -> PathBuf {
    let path = std::env::var_os("PARLEY_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        path.is_file(),
        "chromium not found at {}: the browser tests need Debian's chromium. Run the tests with \
         ./scripts/test.sh, which installs it (apt-get install chromium) and sets PARLEY_CHROMIUM.",
        path.display()
    );
    path
}

fn screenshot_dir() -> PathBuf {
    // The test binary is target/<profile>/deps/browser-<hash>.
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe.ancestors().nth(3).expect("target dir").to_path_buf();
    let dir = target.join("browser-screenshots");
    std::fs::create_dir_all(&dir).expect("create target/browser-screenshots");
    dir
}

/// One chromium process (its own empty profile) and its page.
struct Tab {
    who: &'static str,
    page: Page,
    browser: Browser,
    handler: JoinHandle<()>,
    /// The page's console output and uncaught exceptions, for failure messages.
    console: Arc<Mutex<Vec<String>>>,
    _profile: tempfile::TempDir,
}

impl Tab {
    async fn launch(who: &'static str) -> Tab {
        let exe = chromium_path();
        let profile = tempfile::tempdir().expect("profile dir");
        let (width, height) = (1280, 860);
        let config = BrowserConfig::builder()
            .chrome_executable(&exe)
            .user_data_dir(profile.path())
            .no_sandbox()
            .window_size(width, height)
            .viewport(Viewport { width, height, device_scale_factor: Some(1.0), ..Viewport::default() })
            .launch_timeout(WAIT)
            .request_timeout(WAIT)
            .args([
                "disable-gpu",
                "disable-quic",
                "no-first-run",
                "disable-background-networking",
                "disable-component-update",
                "disable-sync",
                "use-fake-ui-for-media-stream",
                "use-fake-device-for-media-stream",
                "autoplay-policy=no-user-gesture-required",
            ])
            .build()
            .expect("browser config");
        let (browser, mut handler) = Browser::launch(config)
            .await
            .unwrap_or_else(|e| panic!("{who}: chromium ({}) did not start: {e}", exe.display()));
        // The handler drives the DevTools connection; messages it cannot
        // parse (a newer protocol) are not fatal.
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        let page = browser.new_page("about:blank").await.unwrap_or_else(|e| panic!("{who}: new page: {e}"));
        let console = Arc::new(Mutex::new(Vec::new()));
        let mut calls = page.event_listener::<EventConsoleApiCalled>().await.expect("console events");
        let mut thrown = page.event_listener::<EventExceptionThrown>().await.expect("exception events");
        let log = console.clone();
        tokio::spawn(async move {
            loop {
                let line = tokio::select! {
                    Some(ev) = calls.next() => {
                        let args: Vec<String> = ev.args.iter().map(|a| match (&a.value, &a.description) {
                            (Some(serde_json::Value::String(s)), _) => s.clone(),
                            (Some(v), _) => v.to_string(),
                            (None, Some(d)) => d.clone(),
                            (None, None) => format!("{:?}", a.r#type),
                        }).collect();
                        format!("console.{:?}: {}", ev.r#type, args.join(" "))
                    }
                    Some(ev) = thrown.next() => {
                        let d = &ev.exception_details;
                        let what = d.exception.as_ref().and_then(|e| e.description.clone()).unwrap_or_default();
                        format!("uncaught: {} {what}", d.text)
                    }
                    else => break,
                };
                log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        // The signaling traffic in the console log, for failure messages.
        page.evaluate_on_new_document(WS_LOG_JS).await.unwrap_or_else(|e| panic!("{who}: init script: {e}"));
        Tab { who, page, browser, handler, console, _profile: profile }
    }

    async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.browser.close()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.browser.wait()).await;
        let _ = self.browser.kill().await;
        self.handler.abort();
    }

    async fn open(&self, url: &str) {
        self.page.goto(url).await.unwrap_or_else(|e| panic!("{}: open {url}: {e}", self.who));
    }

    /// Evaluates `js` (awaiting a promise) and returns its JSON value.
    async fn eval(&self, js: &str) -> serde_json::Value {
        let result =
            self.page.evaluate_expression(js).await.unwrap_or_else(|e| panic!("{}: evaluating {js}: {e}", self.who));
        result.value().cloned().unwrap_or(serde_json::Value::Null)
    }

    /// Polls `predicate` (a JS expression) until it is true; fails after
    /// [`WAIT`] naming `what`, with a screenshot of the page.
    async fn wait_until(&self, what: &str, predicate: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(result) = self.page.evaluate_expression(predicate).await
                && result.value() == Some(&serde_json::Value::Bool(true))
            {
                return;
            }
            if Instant::now() >= deadline {
                let shot = self.failure_screenshot(what).await;
                panic!(
                    "{}: timed out after {WAIT:?} waiting for {what} (page: {shot})\nconsole:\n  {}",
                    self.who,
                    self.console_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_visible(&self, selector: &str) {
        self.wait_until(&format!("{selector} to be visible"), &visible_js(selector)).await;
    }

    async fn wait_hidden(&self, selector: &str) {
        self.wait_until(&format!("{selector} to be hidden"), &format!("!({})", visible_js(selector))).await;
    }

    async fn is_visible(&self, selector: &str) -> bool {
        self.eval(&visible_js(selector)).await == serde_json::Value::Bool(true)
    }

    async fn text(&self, selector: &str) -> String {
        let sel = js_str(selector);
        self.eval(&format!("document.querySelector({sel})?.textContent ?? ''")).await.as_str().unwrap_or("").to_owned()
    }

    /// Clicks `selector` with the mouse once it is visible and enabled.
    async fn click(&self, selector: &str) {
        let sel = js_str(selector);
        self.wait_until(
            &format!("{selector} to be visible and enabled"),
            &format!("({}) && !document.querySelector({sel}).disabled", visible_js(selector)),
        )
        .await;
        let element =
            self.page.find_element(selector).await.unwrap_or_else(|e| panic!("{}: find {selector}: {e}", self.who));
        element.click().await.unwrap_or_else(|e| panic!("{}: click {selector}: {e}", self.who));
    }

    /// Sets an input's or select's value as a user would (input + change events).
    async fn fill(&self, selector: &str, value: &str) {
        self.wait_visible(selector).await;
        let (sel, val) = (js_str(selector), js_str(value));
        let ok = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); e.focus(); e.value = {val};
                   e.dispatchEvent(new Event('input', {{bubbles: true}}));
                   e.dispatchEvent(new Event('change', {{bubbles: true}}));
                   return e.value === {val}; }})()"
            ))
            .await;
        assert_eq!(ok, serde_json::Value::Bool(true), "{}: {selector} does not take the value {value:?}", self.who);
    }

    async fn png(&self) -> Option<Vec<u8>> {
        let params = ScreenshotParams::builder().format(CaptureScreenshotFormat::Png).build();
        self.page.screenshot(params).await.ok()
    }

    /// Saves the page as `target/browser-screenshots/<name>.png` (and in
    /// `docs/screenshots/` for the README ones when asked to).
    async fn screenshot(&self, name: &str) {
        let png = self.png().await.unwrap_or_else(|| panic!("{}: screenshot {name}", self.who));
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        if std::env::var("PARLEY_UPDATE_SCREENSHOTS").as_deref() == Ok("1") && DOC_SCREENSHOTS.contains(&name) {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
            std::fs::create_dir_all(&docs).expect("create docs/screenshots");
            std::fs::write(docs.join(format!("{name}.png")), &png).expect("write docs/screenshots");
        }
    }

    /// The last lines of the page's console.
    fn console_tail(&self) -> String {
        let log = self.console.lock().unwrap_or_else(|p| p.into_inner());
        let start = log.len().saturating_sub(30);
        if log.is_empty() { "(empty)".into() } else { log[start..].join("\n  ") }
    }

    /// The state of the demo's peer connection (SDK internals: diagnostics only).
    async fn peer_state(&self) -> String {
        let js = "(() => { const c = window.parleyDemo && window.parleyDemo.call; const pc = c && c.pc;
            if (!pc) return 'no call';
            return JSON.stringify({ connection: pc.connectionState, ice: pc.iceConnectionState,
              gathering: pc.iceGatheringState, signaling: pc.signalingState,
              local: pc.currentLocalDescription && pc.currentLocalDescription.type,
              remote: pc.currentRemoteDescription && pc.currentRemoteDescription.type,
              offerer: c.offerer, senders: pc.getSenders().length, receivers: pc.getReceivers().length }); })()";
        match self.page.evaluate_expression(js).await {
            Ok(r) => r.value().map(|v| v.to_string()).unwrap_or_default(),
            Err(e) => format!("unknown ({e})"),
        }
    }

    async fn failure_screenshot(&self, what: &str) -> String {
        let slug: String = what.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(60).collect();
        let path = screenshot_dir().join(format!("failed-{}-{slug}.png", self.who));
        match self.png().await {
            Some(png) if std::fs::write(&path, &png).is_ok() => path.display().to_string(),
            _ => "no screenshot".into(),
        }
    }

    /// `window.parleyDemo.inboundBytes()`.
    async fn inbound_bytes(&self) -> f64 {
        self.eval("window.parleyDemo.inboundBytes()").await.as_f64().unwrap_or(0.0)
    }

    /// Waits until inbound media bytes are above zero and then rise.
    async fn wait_media_flowing(&self) {
        let deadline = Instant::now() + WAIT;
        let mut first: Option<f64> = None;
        loop {
            let bytes = self.inbound_bytes().await;
            match first {
                None if bytes > 0.0 => first = Some(bytes),
                Some(b0) if bytes > b0 => return,
                _ => {}
            }
            if Instant::now() >= deadline {
                let shot = self.failure_screenshot("inbound media").await;
                panic!(
                    "{}: timed out after {WAIT:?} waiting for window.parleyDemo.inboundBytes() to rise \
                     (first sample {first:?}, last {bytes}; page: {shot}; peer connection: {})\nconsole:\n  {}",
                    self.who,
                    self.peer_state().await,
                    self.console_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Signs in through `#login-form` as a new user.
    async fn sign_in(&self, user: &str, name: &str, role: &str) {
        self.fill("#login-user", user).await;
        self.fill("#login-name", name).await;
        self.fill("#login-role", role).await;
        self.click("#login-submit").await;
        self.wait_visible(&format!(r#"body[data-role="{role}"]"#)).await;
    }
}

/// Logs the type of every signaling message sent and received to the
/// console (diagnostics only: the failure messages show the console tail).
const WS_LOG_JS: &str = "(() => {
  const Native = window.WebSocket;
  const brief = (data) => { try { const m = JSON.parse(data); return [m.type, m.id, m.seq].filter((x) => x != null).join(' '); } catch { return '?'; } };
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => console.debug('ws <', brief(ev.data)));
    }
    send(data) { console.debug('ws >', brief(data)); return super.send(data); }
  };
})();";

/// A JS string literal.
fn js_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

/// A JS expression: `selector` matches an element that is rendered.
fn visible_js(selector: &str) -> String {
    let sel = js_str(selector);
    format!("(() => {{ const e = document.querySelector({sel}); return !!e && e.checkVisibility(); }})()")
}

fn call_now() -> String {
    format!(r#"#consultants [data-consultant-id="{CONSULTANT}"] button.call-now"#)
}

// ---------------------------------------------------------------------------
// The journeys

/// What the consultant types into the price form.
struct PriceForm {
    /// In major units, as a person types it ("30", "1.50").
    amount: &'static str,
    model: &'static str,
    /// What must be stored, in minor units.
    minor: i64,
}

const FIXED_30: PriceForm = PriceForm { amount: "30", model: "fixed", minor: 3000 };
const PER_MINUTE_150: PriceForm = PriceForm { amount: "1.50", model: "per_minute", minor: 150 };

/// A server, a consultant with a published profile (a tax adviser in
/// Paris), a price and presence `available`, and a seeker who found them
/// by keyword in the directory.
struct Scene {
    server: Server,
    seeker: Tab,
    consultant: Tab,
}

impl Scene {
    async fn start(screenshots: bool) -> Scene {
        Self::start_with(screenshots, FIXED_30).await
    }

    async fn start_with(screenshots: bool, price: PriceForm) -> Scene {
        Self::start_on(Server::start().await, screenshots, price).await
    }

    async fn start_on(server: Server, screenshots: bool, price: PriceForm) -> Scene {
        let (seeker, consultant) = tokio::join!(Tab::launch("seeker"), Tab::launch("consultant"));
        let home = format!("{}/", server.base);
        tokio::join!(seeker.open(&home), consultant.open(&home));

        consultant.wait_visible("#login-form").await;
        consultant.sign_in(CONSULTANT, CONSULTANT_NAME, "consultant").await;
        consultant.publish_profile().await;
        consultant.wait_visible(r#"#price-form[data-loaded="true"]"#).await;
        consultant.fill("#price-amount", price.amount).await;
        consultant.fill("#price-model", price.model).await;
        consultant.click("#price-save").await;
        server.wait_price(CONSULTANT, price.minor).await;
        consultant.click("#availability-toggle").await;
        consultant.wait_visible(r#"#availability-toggle[aria-pressed="true"]"#).await;
        if screenshots {
            consultant.screenshot("10-consultant-desk").await;
        }

        seeker.wait_visible("#login-form").await;
        if screenshots {
            seeker.screenshot("01-sign-in").await;
        }
        seeker.sign_in(SEEKER, SEEKER_NAME, "seeker").await;
        // Keyword search over the directory: "tax" is in the headline and tags, not the name.
        seeker.fill("#consultant-search", "taxes").await;
        seeker
            .wait_visible(&format!(r#"#consultants [data-consultant-id="{CONSULTANT}"][data-presence="available"]"#))
            .await;
        if screenshots {
            seeker.screenshot("02-consultants").await;
        }
        Scene { server, seeker, consultant }
    }

    /// The seeker calls with `card`; the consultant's `#incoming-call` shows.
    async fn call(&self, card: &str, screenshots: bool) {
        self.seeker.fill("#payment-method", card).await;
        self.seeker.click(&call_now()).await;
        self.consultant.wait_visible("#incoming-call").await;
        if screenshots {
            self.seeker.wait_visible("#outgoing-call").await;
            self.seeker.screenshot("03-outgoing-call").await;
            self.consultant.screenshot("03-incoming-call").await;
        }
    }

    /// Both sides are in `#call-view` with media flowing both ways and the
    /// free-window countdown shown.
    async fn talk(&self) {
        tokio::join!(self.seeker.wait_visible("#call-view"), self.consultant.wait_visible("#call-view"));
        tokio::join!(self.seeker.wait_media_flowing(), self.consultant.wait_media_flowing());
        tokio::join!(self.seeker.wait_visible("#meter-countdown"), self.consultant.wait_visible("#meter-countdown"));
        // The countdown starts from the server's free window (the `room.join`
        // ack carries it), not from an assumed 10 minutes.
        for side in [&self.seeker, &self.consultant] {
            let left = side.eval("Number(document.querySelector('#meter-countdown').dataset.seconds)").await;
            let left = left.as_f64().unwrap_or(f64::MAX);
            assert!(left <= FREE_WINDOW.as_secs_f64(), "countdown shows {left} s of a {FREE_WINDOW:?} free window");
        }
    }

    /// The consultant accepts the ringing call; both talk.
    async fn accept_and_talk(&self) {
        self.consultant.click("#accept-call").await;
        self.talk().await;
    }

    /// Moves the server clock past `F`: both see the billing indicator.
    async fn past_the_free_window(&self) {
        self.server.advance(PAST_FREE_WINDOW);
        tokio::join!(self.seeker.wait_visible("#meter-billing"), self.consultant.wait_visible("#meter-billing"));
    }

    async fn finish(self) {
        tokio::join!(self.seeker.close(), self.consultant.close());
        self.server.stop().await;
    }
}

impl Tab {
    /// The consultant publishes a profile through the editor and waits
    /// until the desk says it is live in the directory.
    async fn publish_profile(&self) {
        self.wait_visible(r#"#profile-form[data-loaded="true"]"#).await;
        self.fill("#profile-display-name", CONSULTANT_NAME).await;
        self.fill("#profile-headline-input", "Tax advice for freelancers").await;
        self.fill("#profile-bio-input", "Ten years of VAT returns for people who work for themselves.").await;
        self.fill("#profile-tags-input", "Tax, VAT, freelancing").await;
        self.fill("#profile-languages-input", "en, fr").await;
        self.fill("#profile-time-zone", "Europe/Paris").await;
        self.click("#profile-save").await;
        self.wait_visible(r#"#profile-live[data-live="true"]"#).await;
    }

    /// The seeker leaves a review on `#summary` and finds it on the
    /// consultant's profile page.
    async fn review_and_find_it(&self, text: &str) {
        self.fill("#review-stars", "4").await;
        self.fill("#review-text", text).await;
        self.click("#review-submit").await;
        self.wait_visible("#review-thanks").await;
        self.click("#review-profile").await;
        self.wait_visible(&format!(r#"#profile-view[data-consultant-id="{CONSULTANT}"]"#)).await;
        let sel = js_str("#profile-reviews .review");
        let want = js_str(text);
        self.wait_until(
            "the review on the profile (#profile-reviews)",
            &format!(
                "[...document.querySelectorAll({sel})].some((r) => r.textContent.includes({want}) && r.textContent.includes('★★★★☆'))"
            ),
        )
        .await;
        let rating = self.text("#profile-rating").await;
        assert!(rating.contains("4.0") && rating.contains("1 review"), "{}: #profile-rating is {rating:?}", self.who);
    }
}

/// An instant call with real media, hung up before `F`: free; the seeker's
/// review is posted and shows on the consultant's profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_call_hung_up_within_the_free_window_is_free_and_the_review_is_posted() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::start(true).await;
    scene.call("pm_card_visa", true).await;
    scene.accept_and_talk().await;
    scene.seeker.screenshot("04-in-call").await;
    // `F` − 4 s: the seeker is asked, and ends the call now, free.
    scene.server.advance(FREE_WINDOW - WARN_BEFORE + Duration::from_secs(1));
    scene.seeker.wait_visible("#free-window-choice").await;
    scene.consultant.wait_visible("#free-window-choice").await;
    assert!(!scene.consultant.is_visible("#choice-end").await, "consultant: offered the seeker's choice");
    let words = scene.seeker.text("#choice-text").await;
    assert!(words.contains("30.00"), "seeker: the choice does not state the charge: {words:?}");
    scene.seeker.screenshot("04-free-window-choice").await;
    scene.seeker.click("#choice-end").await;
    scene.seeker.wait_visible(r#"#summary[data-outcome="free"]"#).await;
    scene.consultant.wait_visible(r#"#summary[data-outcome="free"]"#).await;
    scene.seeker.screenshot("05-summary-free").await;
    scene.seeker.review_and_find_it("Clear and kind, from a browser.").await;
    scene.seeker.screenshot("09-profile-with-review").await;
    scene.finish().await;
}

/// The same call kept past `F`: the billing indicator shows, the bill is
/// the fixed EUR 30.00; the ringing screen stated the hold that was placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_call_past_the_free_window_is_charged_the_fixed_hold_shown() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::start(false).await;
    scene.call("pm_card_visa", false).await;
    scene.seeker.assert_hold_shown(&scene.server, 3000, "30.00").await;
    scene.accept_and_talk().await;
    scene.server.advance(FREE_WINDOW - WARN_BEFORE + Duration::from_secs(1));
    scene.seeker.click("#choice-continue").await;
    scene.seeker.wait_hidden("#free-window-choice").await;
    scene.past_the_free_window().await;
    scene.seeker.screenshot("04-in-call-billing").await;
    scene.seeker.click("#hangup").await;
    scene.seeker.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    scene.consultant.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    let amount = scene.seeker.text("#summary-amount").await;
    assert!(amount.contains("30.00"), "seeker: #summary-amount is {amount:?}, expected EUR 30.00");
    scene.seeker.screenshot("06-summary-charged").await;
    scene.finish().await;
}

/// A per-minute consultant who typed "1.50" charges EUR 1.50 a minute
/// (150 minor units, not 1); the ringing screen states the hold placed:
/// the rate × the instant-call maximum of 60 minutes, EUR 90.00.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_minute_call_states_the_hold_that_was_placed() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::start_with(false, PER_MINUTE_150).await;
    let price =
        scene.seeker.text(&format!(r#"#consultants [data-consultant-id="{CONSULTANT}"] .consultant-price"#)).await;
    assert!(price.contains("1.50") && price.contains("minute"), "seeker: the listed price is {price:?}");
    scene.call("pm_card_visa", false).await;
    scene.seeker.assert_hold_shown(&scene.server, 9000, "90.00").await;
    scene.seeker.screenshot("03-outgoing-call-per-minute").await;
    // Past `F`, the running amount: a started minute costs EUR 1.50.
    scene.accept_and_talk().await;
    scene.past_the_free_window().await;
    scene
        .seeker
        .wait_until(
            "#meter-amount stating one started minute (EUR 1.50)",
            "(() => { const e = document.querySelector('#meter-amount'); return e.checkVisibility() && e.dataset.minor === '150'; })()",
        )
        .await;
    scene.seeker.click("#hangup").await;
    scene.seeker.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    let amount = scene.seeker.text("#summary-amount").await;
    assert!(amount.contains("1.50"), "seeker: #summary-amount is {amount:?}, expected one started minute, EUR 1.50");
    // Later, from the recent calls: named, charged, and the bill opens again.
    let session = scene.seeker.eval("document.querySelector('#summary').dataset.sessionId").await;
    let session = session.as_str().expect("#summary has data-session-id").to_owned();
    scene.seeker.click("#summary-close").await;
    let receipt = format!(r#"#receipts li[data-session-id="{session}"]"#);
    scene
        .seeker
        .wait_until(
            "the receipt charged with the consultant's name",
            &format!(
                "(() => {{ const e = document.querySelector({}); return !!e && e.textContent.includes('Cora Browser') && e.textContent.includes('Charged €1.50'); }})()",
                js_str(&receipt)
            ),
        )
        .await;
    scene.seeker.click(&format!("{receipt} .receipt-open")).await;
    scene.seeker.wait_visible(&format!(r#"#summary[data-session-id="{session}"][data-outcome="charged"]"#)).await;
    scene.finish().await;
}

impl Tab {
    /// The ringing screen states the hold the server placed for its session.
    async fn assert_hold_shown(&self, server: &Server, minor: i64, major: &str) {
        self.wait_visible("#outgoing-detail[data-hold-minor]").await;
        let session = self.eval("document.querySelector('#outgoing-call').dataset.sessionId").await;
        let session = session.as_str().expect("#outgoing-call has data-session-id").to_owned();
        let placed = server.hold_minor(&session).await;
        assert_eq!(placed, minor, "the server placed a hold of {placed}");
        let shown = self.eval("Number(document.querySelector('#outgoing-detail').dataset.holdMinor)").await;
        assert_eq!(shown.as_i64(), Some(placed), "{}: the ringing screen states a hold of {shown}", self.who);
        let text = self.text("#outgoing-detail").await;
        assert!(text.contains(major), "{}: #outgoing-detail says {text:?}, not {major}", self.who);
        assert!(
            text.contains("free window"),
            "{}: #outgoing-detail does not explain the free window: {text:?}",
            self.who
        );
    }
}

/// A reload in the middle of a call rejoins the open session: media flows
/// again and hanging up ends it with a bill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_mid_call_rejoins_the_open_session() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::start(false).await;
    scene.call("pm_card_visa", false).await;
    scene.accept_and_talk().await;
    let session = scene.seeker.eval("document.querySelector('#call-view').dataset.sessionId").await;
    scene.seeker.page.reload().await.expect("reload");
    scene.seeker.wait_visible(&format!(r#"#call-view[data-session-id={session}]"#)).await;
    scene.seeker.wait_media_flowing().await;
    scene.consultant.wait_media_flowing().await;
    scene.seeker.click("#hangup").await;
    scene.seeker.wait_visible(r#"#summary[data-outcome="free"]"#).await;
    scene.consultant.wait_visible(r#"#summary[data-outcome="free"]"#).await;
    scene.finish().await;
}

/// The consultant declines: the seeker's ringing ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_call_ends_the_seekers_ringing() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::start(false).await;
    scene.call("pm_card_visa", false).await;
    scene.seeker.wait_visible("#outgoing-call").await;
    scene.consultant.click("#decline-call").await;
    scene.consultant.wait_hidden("#incoming-call").await;
    scene.seeker.wait_hidden("#outgoing-call").await;
    scene
        .seeker
        .wait_until(
            "#error-banner or the home screen (#consultants) after the decline",
            &format!("{} || {}", visible_js("#error-banner"), visible_js("#consultants")),
        )
        .await;
    assert!(!scene.seeker.is_visible("#call-view").await, "seeker: #call-view shows after a decline");
    scene.seeker.screenshot("08-call-declined").await;
    scene.finish().await;
}

/// A declined card: the seeker sees `payment_declined`, the consultant's
/// phone never rings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_never_rings_the_consultant() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::start(false).await;
    // Records whether #incoming-call is ever shown from now on.
    let watching = scene
        .consultant
        .eval(
            "(() => { const e = document.querySelector('#incoming-call'); window.__sawIncoming = e.checkVisibility();
               new MutationObserver(() => { if (e.checkVisibility()) window.__sawIncoming = true; })
                 .observe(e, { attributes: true });
               return true; })()",
        )
        .await;
    assert_eq!(watching, serde_json::Value::Bool(true));
    scene.seeker.fill("#payment-method", "pm_card_chargeDeclined").await;
    scene.seeker.click(&call_now()).await;
    scene.seeker.wait_visible(r#"#error-banner[data-code="payment_declined"]"#).await;
    assert!(!scene.seeker.is_visible("#outgoing-call").await, "seeker: #outgoing-call shows for a declined card");
    scene.seeker.screenshot("07-declined-card").await;
    // Anything that would ring would have come by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let saw = scene.consultant.eval("window.__sawIncoming").await;
    assert_eq!(saw, serde_json::Value::Bool(false), "consultant: #incoming-call showed for a declined card");
    assert!(!scene.consultant.is_visible("#incoming-call").await, "consultant: #incoming-call shows");
    scene.finish().await;
}

/// The scheduled journey: the consultant opens a weekly calendar with a
/// day off; the seeker finds them by keyword, opens the profile (no slots
/// on the day off), proposes three slots (a fourth cannot be picked) after
/// reading price, hold timing and the cancellation policy, for mentorship
/// (priced EUR 45.00 by the consultant), then two other times instead; the
/// consultant accepts the second; when the server clock reaches the room
/// opening both get Join, talk past `F`, and the seeker is charged the
/// mentorship price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booked_session_from_the_profile_to_the_bill() {
    let _serial = SERIAL.lock().await;
    booked_journey(Server::start().await).await;
}

/// The booked journey on PostgreSQL (its full-text search and scheduling queries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booked_session_from_the_profile_to_the_bill_on_postgres() {
    let _serial = SERIAL.lock().await;
    booked_journey(Server::start_on_postgres().await).await;
}

async fn booked_journey(server: Server) {
    let scene = Scene::start_on(server, false, FIXED_30).await;
    let (seeker, consultant, server) = (&scene.seeker, &scene.consultant, &scene.server);

    // The consultant's week: Monday to Friday, 09:00-17:00 Paris time.
    for day in ["mon", "tue", "wed", "thu", "fri"] {
        consultant.click(&format!("#avail-{day}-on")).await;
    }
    // Mentorship costs EUR 45.00 (a price per purpose, in major units).
    consultant.fill("#price-mentorship", "45").await;
    consultant.click("#price-save").await;
    consultant
        .wait_until("prices saved", "document.querySelector('#status').textContent.includes('Price saved')")
        .await;

    // Tuesday 8 January off (a date exception).
    consultant.fill("#exception-date", "2030-01-08").await;
    consultant.click("#exception-add").await;
    consultant.wait_visible(r#"#exception-rows .exception[data-date="2030-01-08"]"#).await;
    consultant.click("#week-save").await;
    consultant
        .wait_until(
            "availability saved",
            "document.querySelector('#status').textContent.includes('Availability saved')",
        )
        .await;

    // The seeker's profile page.
    seeker.click(&format!(r#"#consultants [data-consultant-id="{CONSULTANT}"] .open-profile"#)).await;
    seeker.wait_visible("#profile-view").await;
    let headline = seeker.text("#profile-headline").await;
    assert_eq!(headline, "Tax advice for freelancers");
    seeker.wait_until("four free slots", "document.querySelectorAll('#profile-slots input').length >= 4").await;
    let days = seeker
        .eval("[...document.querySelectorAll('#profile-slots .slot-day-title')].map((e) => e.textContent).join(' | ')")
        .await;
    let days = days.as_str().unwrap_or_default().to_owned();
    assert!(
        days.contains("January 7") && days.contains("January 9") && !days.contains("January 8"),
        "seeker: slot days {days:?}: Tuesday 8 January is off"
    );
    let zones = seeker.text("#book-zones").await;
    assert!(zones.contains("Europe/Paris"), "seeker: #book-zones is {zones:?}: the consultant's zone is not shown");
    for n in 1..=3 {
        seeker.click(&format!("#profile-slots .slot:nth-child({n}) input")).await;
    }
    let fourth_disabled = seeker.eval("document.querySelectorAll('#profile-slots input')[3].disabled").await;
    assert_eq!(fourth_disabled, serde_json::Value::Bool(true), "seeker: a fourth slot can be picked");
    let summary = seeker.text("#book-summary").await;
    for words in ["30.00", "hold", "24 hours"] {
        assert!(summary.contains(words), "seeker: #book-summary does not mention {words:?}: {summary:?}");
    }
    seeker.screenshot("11-profile-booking").await;
    seeker.fill("#book-purpose", "mentorship").await;
    seeker.click("#book-submit").await;
    seeker.wait_visible(r#"#my-bookings .booking[data-state="pending"]"#).await;

    // The seeker changes their mind: two other times instead.
    seeker.click(r#"#my-bookings .booking[data-state="pending"] .booking-reschedule"#).await;
    seeker.wait_visible(r#"#book-form[data-mode="reschedule"]"#).await;
    seeker.wait_until("free slots to pick", "document.querySelectorAll('#profile-slots input').length >= 5").await;
    for n in 4..=5 {
        seeker.click(&format!("#profile-slots .slot:nth-child({n}) input")).await;
    }
    seeker.click("#book-submit").await;
    seeker
        .wait_until("the new proposal", "document.querySelector('#status').textContent.includes('New times proposed')")
        .await;

    // The consultant accepts the second proposed time.
    let pending = r#"#consultant-bookings .booking[data-state="pending"]"#;
    consultant.wait_visible(pending).await;
    consultant
        .wait_until(
            "the rescheduled booking offering the two new times",
            &format!("document.querySelector('{pending} .booking-slot')?.options.length === 2"),
        )
        .await;
    let second = consultant.eval(&format!("document.querySelector('{pending} .booking-slot').options[1].value")).await;
    let second = second.as_str().expect("a second proposed time").to_owned();
    consultant.fill(&format!("{pending} .booking-slot"), &second).await;
    consultant.click(&format!("{pending} .booking-accept")).await;
    let confirmed = format!(r#".booking[data-state="confirmed"][data-start-ms="{second}"]"#);
    consultant.wait_visible(&format!("#consultant-bookings {confirmed}")).await;
    seeker.wait_visible(&format!("#my-bookings {confirmed}")).await;
    seeker.wait_visible(&format!("#my-bookings {confirmed} .booking-wait")).await;
    assert!(!seeker.is_visible("#my-bookings .booking-join").await, "seeker: Join shows before the room opens");
    // Cancelling now would be late (the start is within 24 hours): the fee is stated first.
    seeker.click(&format!("#my-bookings {confirmed} .booking-cancel")).await;
    seeker.wait_visible(&format!("#my-bookings {confirmed} .booking-fee")).await;
    let fee = seeker.text(&format!("#my-bookings {confirmed} .booking-fee")).await;
    assert!(fee.contains("late") && fee.contains("45.00"), "seeker: the late-cancellation words are {fee:?}");
    seeker.click(&format!("#my-bookings {confirmed} .booking-cancel-keep")).await;
    seeker.screenshot("12-my-sessions").await;

    // The server clock reaches the room opening (10 minutes before the start).
    let opens =
        seeker.eval(&format!("Number(document.querySelector('#my-bookings {confirmed}').dataset.opensAtMs)")).await;
    let opens = opens.as_i64().expect("data-opens-at-ms");
    let wait = u64::try_from(opens - server.now_ms()).expect("the room opens later");
    server.advance(Duration::from_millis(wait));
    let join = r#".booking[data-state="held"] .booking-join"#;
    let (seeker_join, consultant_join) = (format!("#my-bookings {join}"), format!("#consultant-bookings {join}"));
    tokio::join!(seeker.click(&seeker_join), consultant.click(&consultant_join));
    scene.talk().await;
    scene.past_the_free_window().await;
    seeker.click("#hangup").await;
    seeker.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    consultant.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    let amount = seeker.text("#summary-amount").await;
    assert!(
        amount.contains("45.00"),
        "seeker: #summary-amount is {amount:?}, expected the mentorship price, EUR 45.00"
    );
    scene.finish().await;
}

/// The consultant's journey on top of an instant call (and the seeker's
/// directory filters: language, available now, price sort and range):
/// payouts set up
/// through the onboarding link and its return page; a charged call; the
/// earnings net of commission; the seeker's review answered from the desk
/// and the reply visible on the profile; the metrics chart; a promotion
/// bought with its receipt, after which the consultant is featured and
/// first in the seeker's search although another consultant matches better.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consultant_journey_from_payouts_to_featured_first() {
    let _serial = SERIAL.lock().await;
    consultant_journey(Server::start().await).await;
}

/// The consultant's journey on PostgreSQL (ranking, promotions, metrics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consultant_journey_from_payouts_to_featured_first_on_postgres() {
    let _serial = SERIAL.lock().await;
    consultant_journey(Server::start_on_postgres().await).await;
}

async fn consultant_journey(server: Server) {
    let scene = Scene::start_on(server, false, FIXED_30).await;
    let (seeker, consultant) = (&scene.seeker, &scene.consultant);

    // Payout onboarding: the sandbox link comes straight back to the desk.
    consultant.wait_visible(r#"#payout-status[data-ready="false"]"#).await;
    consultant.click("#payout-setup").await;
    consultant.wait_visible(r#"#payout-status[data-ready="true"]"#).await;
    let url = consultant.eval("location.search").await;
    assert_eq!(url, serde_json::json!(""), "consultant: the return page keeps its query in the address bar");

    // A consultant whose profile matches "taxes" better (name, headline and tags).
    let other = seeker.eval(OTHER_CONSULTANT_JS).await;
    assert_eq!(other, serde_json::json!("ok"), "creating the other consultant: {other}");
    seeker.fill("#consultant-search", "tax").await;
    // Filters: French speakers; available now; cheapest first (no price counts as 0).
    let ids = "[...document.querySelectorAll('#consultants [data-consultant-id]')].map((e) => e.dataset.consultantId).join(',')";
    let listed = |want: &str| format!("{ids} === {}", js_str(want));
    seeker.fill("#filter-language", "fr").await;
    seeker.wait_until("only French speakers", &listed(CONSULTANT)).await;
    seeker.fill("#filter-language", "").await;
    seeker.click("#filter-available").await;
    seeker.wait_until("only consultants available now", &listed(CONSULTANT)).await;
    seeker.click("#filter-available").await;
    seeker.fill("#filter-sort", "price").await;
    seeker.wait_until("cheapest first", &listed(&format!("bt-other-consultant,{CONSULTANT}"))).await;
    seeker.fill("#filter-max-price", "10").await;
    seeker.wait_until("at most EUR 10", &listed("bt-other-consultant")).await;
    seeker.fill("#filter-max-price", "").await;
    seeker.fill("#filter-sort", "").await;
    seeker.wait_until(
        "the better match listed first",
        r#"document.querySelector('#consultants [data-consultant-id]')?.dataset.consultantId === 'bt-other-consultant'"#,
    ).await;

    // A charged call (the consultant availability toggle survived the payout round trip).
    consultant.wait_visible(r#"#availability-toggle[aria-pressed="true"]"#).await;
    scene.call("pm_card_visa", false).await;
    scene.accept_and_talk().await;
    scene.past_the_free_window().await;
    consultant.click("#hangup").await;
    seeker.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    consultant.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    seeker.review_and_find_it("Sorted my VAT in one call.").await;

    consultant.click("#summary-close").await;
    consultant.wait_visible("#consultant-home").await;
    // Earnings: EUR 30.00 less the platform's commission (20 % by default).
    consultant
        .wait_until(
            "earnings of one session",
            "document.querySelector('#earnings-count').textContent.includes('1 paid session')",
        )
        .await;
    let total = consultant.text("#earnings-total").await;
    assert!(total.contains("24.00"), "consultant: #earnings-total is {total:?}, expected EUR 24.00 (30.00 less 20 %)");

    // The review, answered from the desk; the reply shows on the profile.
    let review = "#my-reviews .review";
    consultant.wait_visible(&format!("{review} .reply-text")).await;
    consultant.fill(&format!("{review} .reply-text"), "Glad it helped, Sam.").await;
    consultant.click(&format!("{review} .reply-submit")).await;
    consultant.wait_visible(&format!("{review} .review-reply")).await;

    // The metrics chart: one month with one session.
    consultant.wait_visible(r#"#metrics-chart[data-months="1"] svg rect"#).await;
    let facts = consultant.text("#metrics-facts").await;
    assert!(facts.contains("Sessions1"), "consultant: #metrics-facts is {facts:?}");
    consultant.screenshot("13-consultant-metrics").await;

    // A promotion: paid at once, with its receipt and window.
    consultant.click(r#"#promo-packages button.promo-buy[data-package-id="featured_7d"]"#).await;
    consultant.wait_visible(r#"#promo-current[data-featured="true"]"#).await;
    consultant.wait_visible("#promo-receipts .promo-receipt").await;
    let receipt = consultant.text("#promo-receipts .promo-receipt").await;
    assert!(receipt.contains("19.00"), "consultant: the promotion receipt is {receipt:?}");

    // The seeker: the consultant featured and first, and the reply on the profile.
    seeker.click("#profile-back").await;
    let first = format!(
        r#"(() => {{ const e = document.querySelector('#consultants [data-consultant-id]');
            return !!e && e.dataset.consultantId === '{CONSULTANT}' && e.dataset.featured === 'true' && !!e.querySelector('.featured-badge'); }})()"#
    );
    seeker.wait_until("the featured consultant first and marked", &first).await;
    seeker.screenshot("14-featured-first").await;
    seeker.click(&format!(r#"#consultants [data-consultant-id="{CONSULTANT}"] .open-profile"#)).await;
    seeker
        .wait_until(
            "the consultant's reply under the review",
            "[...document.querySelectorAll('#profile-reviews .review-reply')].some((r) => r.textContent.includes('Glad it helped, Sam.'))",
        )
        .await;
    scene.finish().await;
}

/// Premium: the consultant allows recording, the operator makes the
/// seeker premium, the seeker asks for recording when calling; both see
/// that the call is recorded; afterwards the recap lists the recordings,
/// an Ogg Opus track plays in the page and downloads through its signed link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_premium_recorded_call_has_a_recap_whose_recording_plays_and_downloads() {
    let _serial = SERIAL.lock().await;
    let server = Server::start_with(|c| c.recorder = parley_server::config::RecorderMode::Embedded).await;
    let scene = Scene::start_on(server, false, FIXED_30).await;
    let (seeker, consultant) = (&scene.seeker, &scene.consultant);
    consultant.click("#recording-consent").await;
    consultant
        .wait_until("consent saved", "document.querySelector('#status').textContent.includes('may now ask')")
        .await;
    let premium = seeker
        .eval(&format!(
            r#"(async () => {{ const {{ ParleyApi }} = await import(new URL("/sdk/js/parley.js", location.href).href);
                 await new ParleyApi().setPremium({}, {}, true); return "ok"; }})()"#,
            js_str(&scene.server.moderator_token()),
            js_str(SEEKER)
        ))
        .await;
    assert_eq!(premium, serde_json::json!("ok"), "making the seeker premium: {premium}");
    seeker.click("#record-request").await;
    scene.call("pm_card_visa", false).await;
    scene.accept_and_talk().await;
    tokio::join!(seeker.wait_visible("#recording-indicator"), consultant.wait_visible("#recording-indicator"));
    // Both send to the recorder (SDK internals: the recorder's connection is up and carries media).
    let uplink = "(async () => { const r = window.parleyDemo.call && window.parleyDemo.call.recorder;
        if (!r || r.pc.connectionState !== 'connected') return false;
        let sent = 0; (await r.pc.getStats()).forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'audio') sent += s.packetsSent; });
        return sent > 100; })()";
    tokio::join!(
        seeker.wait_until("audio sent to the recorder", uplink),
        consultant.wait_until("audio sent to the recorder", uplink)
    );
    seeker.click("#hangup").await;
    seeker.wait_visible(r#"#summary[data-outcome="free"]"#).await;
    seeker.wait_visible("#recap-recordings .recording[data-kind=\"audio\"] audio").await;
    seeker.screenshot("16-recap").await;
    // Played in the page: time moves on in the first audio track.
    seeker.eval("(() => { const a = document.querySelector('#recap-recordings audio'); a.muted = true; a.play(); return true; })()").await;
    seeker
        .wait_until("the recording playing", "document.querySelector('#recap-recordings audio').currentTime > 0")
        .await;
    // Downloaded through its signed link.
    let download = seeker
        .eval(
            "(async () => { const a = document.querySelector('#recap-recordings .recording[data-kind=\"audio\"] .recording-download');
               const r = await fetch(a.href, { cache: 'no-store' }); const b = await r.arrayBuffer();
               return { status: r.status, type: r.headers.get('content-type'), bytes: b.byteLength, ogg: new TextDecoder().decode(b.slice(0, 4)) }; })()",
        )
        .await;
    assert_eq!(download["status"], 200, "{download}");
    assert_eq!(download["ogg"], "OggS", "{download}");
    assert!(download["bytes"].as_u64().is_some_and(|n| n > 100), "{download}");
    scene.finish().await;
}

/// Creates (through the SDK, in the seeker's page) a consultant whose
/// profile matches "tax" better than the scene's; resolves "ok".
const OTHER_CONSULTANT_JS: &str = r#"(async () => {
  const { ParleyApi } = await import(new URL("/sdk/js/parley.js", location.href).href);
  const api = new ParleyApi();
  const c = await api.devLogin("bt-other-consultant", "Tex Taxman", "consultant");
  await api.setProfile(c.token, {
    display_name: "Tex Tax", headline: "Tax, tax returns and tax audits", bio: "Tax.", tags: ["tax", "taxes", "tax-audit"],
    languages: ["en"], time_zone: "UTC", session_minutes: [30],
  });
  return "ok";
})()"#;

/// At phone width (390 px) the seeker's home is usable: the search box
/// takes the width, nothing scrolls sideways. A "can't reach Parley" banner
/// goes away once a request succeeds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_width_and_the_network_banner_clears_when_parley_is_back() {
    use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
    let _serial = SERIAL.lock().await;
    let scene = Scene::start(false).await;
    let seeker = &scene.seeker;
    seeker.page.execute(SetDeviceMetricsOverrideParams::new(390, 844, 2.0, true)).await.expect("phone viewport");
    seeker.wait_until("the phone layout", "window.innerWidth === 390").await;
    let width = seeker.eval("document.querySelector('#consultant-search').getBoundingClientRect().width").await;
    assert!(width.as_f64().is_some_and(|w| w >= 300.0), "seeker: the search box is {width} px wide at 390 px");
    let overflow = seeker.eval("document.documentElement.scrollWidth").await;
    assert!(overflow.as_f64().is_some_and(|w| w <= 390.0), "seeker: the page is {overflow} px wide at 390 px");
    seeker.screenshot("15-phone-home").await;

    // The network goes away for the page's requests, and comes back.
    seeker
        .eval(
            "(() => { const real = window.fetch; window.__offline = true;
               window.fetch = (...a) => window.__offline ? Promise.reject(new TypeError('Failed to fetch')) : real(...a);
               return true; })()",
        )
        .await;
    seeker.wait_visible(r#"#error-banner[data-code="network"]"#).await;
    seeker.eval("(() => { window.__offline = false; return true; })()").await;
    seeker.wait_hidden("#error-banner").await;
    scene.finish().await;
}

/// The SDK's directory and booking methods, used from the demo page: a
/// consultant publishes a profile with a distinctive tag, availability and a
/// price; a seeker finds them by the tag, lists their slots and proposes
/// one, which the consultant accepts. A slot in the past is refused with a
/// `ParleyError` whose code is `slot_in_past`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_finds_a_consultant_in_the_directory_and_books_a_slot() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let tab = Tab::launch("sdk").await;
    tab.open(&format!("{}/", server.base)).await;
    tab.wait_visible("#login-form").await;
    let js = BOOKING_JOURNEY_JS
        .replace("__CONSULTANT__", "bt-booked-consultant")
        .replace("__SEEKER__", "bt-booking-seeker")
        .replace("__TAG__", "Browser-Booking-Tag")
        .replace("__NOW__", &server.now_ms().to_string());
    let out = tab.eval(&js).await;
    let console = tab.console_tail();
    assert_eq!(out["error"], serde_json::Value::Null, "the journey threw: {out}\nconsole:\n  {console}");
    assert_eq!(out["roles"], serde_json::json!(["consultant", "seeker"]), "{out}");
    // Tags are stored lower-case; session lengths sorted.
    assert_eq!(out["profile_tags"], serde_json::json!(["browser-booking-tag", "tax"]), "{out}");
    assert_eq!(out["availability_lengths"], serde_json::json!([30, 60]), "{out}");
    assert_eq!(out["price"], 2500, "{out}");
    assert_eq!(out["directory_ids"], serde_json::json!(["bt-booked-consultant"]), "{out}");
    assert_eq!(out["directory_price"], 2500, "{out}");
    assert_eq!(out["directory_without_the_tag"], true, "{out}");
    assert_eq!(out["slots_length_min"], 60, "{out}");
    assert_eq!(out["slots_time_zone"], "UTC", "{out}");
    // Available around the clock: a whole day of hour slots.
    assert!(out["slot_count"].as_u64().is_some_and(|n| n >= 23), "{out}");
    assert_eq!(out["slot_length_ms"], 3_600_000, "{out}");
    assert_eq!(out["slot_on_the_hour"], true, "{out}");
    assert_eq!(out["proposed_state"], "pending", "{out}");
    assert_eq!(out["proposed_price"], 2500, "{out}");
    assert_eq!(out["accepted_state"], "confirmed", "{out}");
    assert_eq!(out["accepted_start"], out["start"], "{out}");
    assert_eq!(out["opens_before_start_ms"], 600_000, "{out}");
    assert_eq!(out["seeker_sees"], "confirmed", "{out}");
    assert_eq!(out["consultant_lists"], serde_json::json!(["confirmed"]), "{out}");
    assert_eq!(out["slot_no_longer_free"], true, "{out}");
    assert_eq!(
        out["past"],
        serde_json::json!({"parley_error": true, "code": "slot_in_past", "is_constant": true, "status": 400}),
        "{out}"
    );
    tab.close().await;
    server.stop().await;
}

/// The journey of the test above, run in the page; placeholders
/// `__CONSULTANT__`, `__SEEKER__`, `__TAG__` and `__NOW__` (the server clock, Unix ms). Resolves with the values to
/// check (`error` if something threw).
const BOOKING_JOURNEY_JS: &str = r#"(async () => {
  const { ParleyApi, ParleyError, ErrorCode } = await import(new URL("/sdk/js/parley.js", location.href).href);
  const api = new ParleyApi();
  const out = {};
  try {
    const c = await api.devLogin("__CONSULTANT__", "Cora Booking", "consultant");
    const s = await api.devLogin("__SEEKER__", "Sam Booking", "seeker");
    out.roles = [c.user.role, s.user.role];
    const profile = await api.setProfile(c.token, {
      display_name: "Cora Booking", headline: "Booked from a browser", tags: ["__TAG__", "Tax"],
      languages: ["en"], time_zone: "Europe/Paris", session_minutes: [60, 30],
    });
    out.profile_tags = profile.tags;
    const weekly = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
      .map((weekday) => ({ weekday, start: "00:00", end: "24:00" }));
    const availability = await api.setAvailability(c.token, { time_zone: "UTC", session_lengths_min: [60, 30], weekly, exceptions: [] });
    out.availability_lengths = availability.session_lengths_min;
    const price = await api.setPrice(c.token, { model: "fixed", amount: { amount_minor: 2500, currency: "EUR" } });
    out.price = price.amount.amount_minor;

    const tag = "__TAG__".toLowerCase();
    const page = await api.directory(s.token, { tag, currency: "EUR", max_price: 5000, cursor: undefined, q: null });
    out.directory_ids = page.items.map((i) => i.id);
    out.directory_price = page.items[0]?.price?.amount?.amount_minor;
    const everyone = await api.directory(s.token, { limit: 50 });
    out.directory_without_the_tag = everyone.items.some((i) => i.id === "__CONSULTANT__");

    // Two days ahead: well inside the booking horizon, never near the room opening.
    const from = __NOW__ + 2 * 24 * 3600 * 1000;
    const slots = await api.slots(s.token, "__CONSULTANT__", { from_ms: from, to_ms: from + 24 * 3600 * 1000, length_min: 60 });
    out.slots_length_min = slots.length_min;
    out.slots_time_zone = slots.time_zone;
    out.slot_count = slots.slots.length;
    const start = slots.slots[0].start_ms;
    out.start = start;
    out.slot_length_ms = slots.slots[0].end_ms - start;
    out.slot_on_the_hour = start % 3600000 === 0 && start >= from;

    const proposed = await api.proposeBooking(s.token, {
      consultant_id: "__CONSULTANT__", slots: [start], length_min: 60, payment_method: "pm_card_visa",
    });
    out.proposed_state = proposed.state;
    out.proposed_price = proposed.price && proposed.price.amount.amount_minor;
    const accepted = await api.acceptBooking(c.token, proposed.id, start);
    out.accepted_state = accepted.state;
    out.accepted_start = accepted.start_ms;
    out.opens_before_start_ms = accepted.start_ms - accepted.opens_at_ms;
    out.seeker_sees = (await api.booking(s.token, proposed.id)).state;
    out.consultant_lists = (await api.bookings(c.token)).bookings.filter((b) => b.id === proposed.id).map((b) => b.state);
    const after = await api.slots(s.token, "__CONSULTANT__", { from_ms: from, to_ms: from + 24 * 3600 * 1000, length_min: 60 });
    out.slot_no_longer_free = !after.slots.some((x) => x.start_ms === start);

    try {
      await api.proposeBooking(s.token, {
        consultant_id: "__CONSULTANT__", slots: [__NOW__ - 3600000], length_min: 60, payment_method: "pm_card_visa",
      });
      out.past = "resolved";
    } catch (err) {
      out.past = { parley_error: err instanceof ParleyError, code: err.code, is_constant: err.code === ErrorCode.SLOT_IN_PAST, status: err.status };
    }
  } catch (err) {
    out.error = `${err.name}: ${err.code || ""} ${err.message}`;
  }
  return out;
})()"#;
