//! Parley's shared vocabulary.
//!
//! Everything that crosses a crate boundary or the wire is defined here:
//! validated identifiers ([`ids`]), money in integer minor units
//! ([`money`]), server time ([`time`]) and the signaling wire protocol
//! ([`protocol`]). This crate depends on `serde` only; the `clock` feature
//! adds the clock implementations and the worker loop (module `clock`), which
//! need tokio's timers.

#[cfg(feature = "clock")]
pub mod clock;
pub mod ids;
pub mod money;
pub mod protocol;
pub mod reputation;
pub mod time;

pub use ids::{CallId, IdError, SessionId, UserId};
pub use money::{Currency, Money, MoneyError};
pub use time::{Clock, Sleep, Timestamp};
