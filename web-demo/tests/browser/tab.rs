//! The browsers: one headless chromium per side, its page, and the waits,
//! clicks and reads the tests use (all bounded by [`WAIT`]).

use super::*;

pub(crate) fn chromium_path() -> PathBuf {
    let path = std::env::var_os("PARLEY_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        path.is_file(),
        "chromium not found at {}: the browser tests need Debian's chromium. Run the tests with \
         ./scripts/test.sh, which installs it (apt-get install chromium) and sets PARLEY_CHROMIUM.",
        path.display()
    );
    path
}

pub(crate) fn screenshot_dir() -> PathBuf {
    // The test binary is target/<profile>/deps/browser-<hash>.
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe.ancestors().nth(3).expect("target dir").to_path_buf();
    let dir = target.join("browser-screenshots");
    std::fs::create_dir_all(&dir).expect("create target/browser-screenshots");
    dir
}

/// One chromium process (its own empty profile) and its page.
pub(crate) struct Tab {
    pub(crate) who: &'static str,
    pub(crate) page: Page,
    pub(crate) browser: Browser,
    pub(crate) handler: JoinHandle<()>,
    /// The page's console output and uncaught exceptions, for failure messages.
    pub(crate) console: Arc<Mutex<Vec<String>>>,
    pub(crate) _profile: tempfile::TempDir,
}

impl Tab {
    pub(crate) async fn launch(who: &'static str) -> Tab {
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

    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.browser.close()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.browser.wait()).await;
        let _ = self.browser.kill().await;
        self.handler.abort();
    }

    pub(crate) async fn open(&self, url: &str) {
        self.page.goto(url).await.unwrap_or_else(|e| panic!("{}: open {url}: {e}", self.who));
    }

    /// Evaluates `js` (awaiting a promise) and returns its JSON value.
    pub(crate) async fn eval(&self, js: &str) -> serde_json::Value {
        let result =
            self.page.evaluate_expression(js).await.unwrap_or_else(|e| panic!("{}: evaluating {js}: {e}", self.who));
        result.value().cloned().unwrap_or(serde_json::Value::Null)
    }

    /// Polls `predicate` (a JS expression) until it is true; fails after
    /// [`WAIT`] naming `what`, with a screenshot of the page.
    pub(crate) async fn wait_until(&self, what: &str, predicate: &str) {
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

    pub(crate) async fn wait_visible(&self, selector: &str) {
        self.wait_until(&format!("{selector} to be visible"), &visible_js(selector)).await;
    }

    pub(crate) async fn wait_hidden(&self, selector: &str) {
        self.wait_until(&format!("{selector} to be hidden"), &format!("!({})", visible_js(selector))).await;
    }

    pub(crate) async fn is_visible(&self, selector: &str) -> bool {
        self.eval(&visible_js(selector)).await == serde_json::Value::Bool(true)
    }

    pub(crate) async fn text(&self, selector: &str) -> String {
        let sel = js_str(selector);
        self.eval(&format!("document.querySelector({sel})?.textContent ?? ''")).await.as_str().unwrap_or("").to_owned()
    }

    /// Clicks `selector` with the mouse once it is visible and enabled. If
    /// the app re-rendered it between finding and clicking (a push redrew
    /// a list: "Node is detached"), clicks the new one, as a user would; a
    /// few such redraws at most.
    pub(crate) async fn click(&self, selector: &str) {
        let sel = js_str(selector);
        for attempt in 1.. {
            self.wait_until(
                &format!("{selector} to be visible and enabled"),
                &format!("({}) && !document.querySelector({sel}).disabled", visible_js(selector)),
            )
            .await;
            let element =
                self.page.find_element(selector).await.unwrap_or_else(|e| panic!("{}: find {selector}: {e}", self.who));
            match element.click().await {
                Ok(_) => return,
                Err(e) if attempt < 5 && e.to_string().contains("detached") => continue,
                Err(e) => panic!("{}: click {selector}: {e}", self.who),
            }
        }
    }

    /// Sets an input's or select's value as a user would (input + change events).
    pub(crate) async fn fill(&self, selector: &str, value: &str) {
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

    pub(crate) async fn png(&self) -> Option<Vec<u8>> {
        let params = ScreenshotParams::builder().format(CaptureScreenshotFormat::Png).build();
        self.page.screenshot(params).await.ok()
    }

    /// Saves the page as `target/browser-screenshots/<name>.png` (and in
    /// `docs/screenshots/` for the README ones when asked to).
    pub(crate) async fn screenshot(&self, name: &str) {
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
    pub(crate) fn console_tail(&self) -> String {
        let log = self.console.lock().unwrap_or_else(|p| p.into_inner());
        let start = log.len().saturating_sub(30);
        if log.is_empty() { "(empty)".into() } else { log[start..].join("\n  ") }
    }

    /// The state of the demo's peer connection (SDK internals: diagnostics only).
    pub(crate) async fn peer_state(&self) -> String {
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

    pub(crate) async fn failure_screenshot(&self, what: &str) -> String {
        let slug: String = what.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(60).collect();
        let path = screenshot_dir().join(format!("failed-{}-{slug}.png", self.who));
        match self.png().await {
            Some(png) if std::fs::write(&path, &png).is_ok() => path.display().to_string(),
            _ => "no screenshot".into(),
        }
    }

    /// `window.parleyDemo.inboundBytes()`.
    pub(crate) async fn inbound_bytes(&self) -> f64 {
        self.eval("window.parleyDemo.inboundBytes()").await.as_f64().unwrap_or(0.0)
    }

    /// Waits until inbound media bytes are above zero and then rise.
    pub(crate) async fn wait_media_flowing(&self) {
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
    pub(crate) async fn sign_in(&self, user: &str, name: &str, role: &str) {
        self.fill("#login-user", user).await;
        self.fill("#login-name", name).await;
        self.fill("#login-role", role).await;
        self.click("#login-submit").await;
        self.wait_visible(&format!(r#"body[data-role="{role}"]"#)).await;
    }
}

/// Logs the type of every signaling message sent and received to the
/// console (diagnostics only: the failure messages show the console tail).
pub(crate) const WS_LOG_JS: &str = "(() => {
  const Native = window.WebSocket;
  const brief = (data) => { try { const m = JSON.parse(data); return [m.type, m.id, m.seq].filter((x) => x != null).join(' '); } catch { return '?'; } };
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      // Every socket URL the page opens, for the tests that check no token is in one.
      (window.parleySocketUrls ||= []).push(String(args[0]));
      this.addEventListener('message', (ev) => console.debug('ws <', brief(ev.data)));
    }
    send(data) { console.debug('ws >', brief(data)); return super.send(data); }
  };
})();";

/// A JS string literal.
pub(crate) fn js_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

/// A JS expression: `selector` matches an element that is rendered.
pub(crate) fn visible_js(selector: &str) -> String {
    let sel = js_str(selector);
    format!("(() => {{ const e = document.querySelector({sel}); return !!e && e.checkVisibility(); }})()")
}

pub(crate) fn call_now() -> String {
    format!(r#"#consultants [data-consultant-id="{CONSULTANT}"] button.call-now"#)
}
