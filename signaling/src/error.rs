//! The signaling boundary's error: a stable [`ErrorCode`] and a readable
//! message, sent to the client as an `error` message.

use parley_domain::protocol::ErrorCode;

/// A request that failed. The connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct SignalError {
    /// Stable code (docs/protocol.md lists them all).
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

impl SignalError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        SignalError { code, message: message.into() }
    }

    /// [`ErrorCode::Internal`], logging the cause server-side.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        SignalError::new(ErrorCode::Internal, "the server failed to process this request; try again")
    }
}
