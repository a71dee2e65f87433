//! Parley's Rust client SDK.

pub mod call;
