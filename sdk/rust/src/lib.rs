//! Parley's Rust client SDK.
//!
//! * [`SignalingClient`]: the WebSocket signaling client (typed requests,
//!   an event stream, automatic resume).
//! * [`ApiClient`]: the REST client.
//! * [`call::Call`]: a webrtc-rs peer connection driven through signaling
//!   signals, and [`session::SessionCall`] which wires one to a session room.
//!
//! See `examples/` for runnable programs.

pub mod api;
pub mod call;
pub mod client;
pub mod session;

pub use api::ApiClient;
pub use client::{Event, Events, RingingCall, RoomInfo, SignalingClient};
use parley_domain::protocol::ErrorCode;

/// Everything an SDK call can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SdkError {
    /// The server could not be reached or the connection failed.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The server refused the token (HTTP 401).
    #[error("unauthorized ({code:?}): {message}")]
    Unauthorized {
        /// `missing_token`, `invalid_token` or `token_expired`.
        code: ErrorCode,
        /// The server's words.
        message: String,
    },
    /// The server answered the request with an `error`.
    #[error("{code:?}: {message}")]
    Server {
        /// Stable code (docs/protocol.md).
        code: ErrorCode,
        /// The server's words.
        message: String,
    },
    /// No answer in time.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The connection is closed.
    #[error("closed: {0}")]
    Closed(String),
    /// The server sent something this SDK does not understand.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The WebRTC call failed.
    #[error("call: {0}")]
    Call(String),
}

impl SdkError {
    /// The server's error code, if the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            SdkError::Server { code, .. } | SdkError::Unauthorized { code, .. } => Some(*code),
            _ => None,
        }
    }
}
