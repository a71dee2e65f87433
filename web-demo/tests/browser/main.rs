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
use parley_domain::clock::ManualClock;
use parley_domain::{SessionId, Timestamp, UserId};
use parley_server::Config;
use parley_testkit::TestApp;
use tokio::task::JoinHandle;

mod booked;
mod booking_changes;
mod consultant;
mod instant_calls;
mod money;
mod page;
mod recap;
mod scene;
mod server;
mod tab;

use self::scene::*;
use self::server::*;
use self::tab::*;

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
