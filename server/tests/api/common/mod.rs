//! The test harness: the shared in-process one, `parley-testkit`
//! (`server/testkit`): a real `parley` on port 0 with a fresh database and
//! a manual clock, plus helpers for real WebSocket clients. Re-exported
//! here so that every module of this binary names it `crate::common`.

pub use parley_testkit::*;
