//! The hub: presence, instant calls, rooms and relay for every connected
//! client of this node. `core` decides (a pure state machine: inputs with
//! `now` in, stamped outputs and the next deadline out); `driver` ([`Hub`])
//! does the IO; `delivery` carries messages to clients.

mod core;
mod delivery;
pub(crate) mod driver;

pub(crate) use self::core::Refusal;
pub(crate) use delivery::LocalLink;
pub(crate) use driver::Handled;
pub use driver::{CLOSE_GOING_AWAY, CLOSE_RECORDER_CONNECTED, Hub};
