//! The in-process test harness of Parley's server: one copy, used by the
//! server's own tests (`server/tests/api`), the web demo's browser tests
//! and anything else that needs a real `parley` in the test process.
//!
//! [`spawn_app`] and its variants start the real application on a loopback
//! port 0 with a fresh SQLite database in a temp dir (or a fresh PostgreSQL
//! database: [`spawn_app_on_postgres`]) and a manual clock that starts at a
//! fixed instant ([`TEST_EPOCH_MS`]) and moves only when a test moves it
//! ([`TestApp::advance`]). Tests wait on conditions, never on the wall
//! clock: [`until`], [`WAIT`], the SDK's `wait_for`.
//!
//! Dev-only (`publish = false`): it is a dev-dependency of the crates whose
//! tests use it, never a dependency of shipped code.

pub mod app;
pub mod postgres;
pub mod proxy;
pub mod raw;
pub mod session;

pub use crate::app::{
    TEST_EPOCH_MS, TestApp, WAIT, spawn_app, spawn_app_with, spawn_app_with_clock, spawn_app_with_gate, spawn_node,
    spawn_with_config, test_clock, until, user,
};
pub use crate::postgres::{fresh_postgres_url, spawn_app_on_postgres};
pub use crate::proxy::Proxy;
pub use crate::raw::Raw;
pub use crate::session::{
    OpenSession, incoming, next_matching, open_session, pump, settled, timeline_kinds, wait_ended,
};
