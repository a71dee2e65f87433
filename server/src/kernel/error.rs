//! [`ApiError`]: every handler's error, answered as an RFC 9457 problem
//! (`application/problem+json`, docs/protocol.md "Errors"), and the
//! conversions from the store's errors.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use parley_domain::protocol::{ErrorCode, Problem};

use crate::store::files::FilesError;
use crate::store::outbox::OutboxError;

/// An error answered as an RFC 9457 problem ([`Problem`]) with an HTTP
/// status and a stable [`ErrorCode`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401.
    #[error("{0}")]
    Unauthorized(#[from] parley_signaling::AuthError),
    /// 400 with a code.
    #[error("{1}")]
    BadRequest(ErrorCode, String),
    /// 403 with a code.
    #[error("{1}")]
    Forbidden(ErrorCode, String),
    /// 404 with a code.
    #[error("{1}")]
    NotFound(ErrorCode, String),
    /// 409 with a code.
    #[error("{1}")]
    Conflict(ErrorCode, String),
    /// Any other status with a code (413 `payload_too_large`, 415
    /// `unsupported_media_type`, …).
    #[error("{2}")]
    Status(StatusCode, ErrorCode, String),
    /// 502: the payment provider refused or failed.
    #[error("payment provider: {0}")]
    Provider(String),
    /// 500.
    #[error("internal: {0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::Unauthorized(e) => (StatusCode::UNAUTHORIZED, e.code()),
            ApiError::BadRequest(code, _) => (StatusCode::BAD_REQUEST, *code),
            ApiError::Forbidden(code, _) => (StatusCode::FORBIDDEN, *code),
            ApiError::NotFound(code, _) => (StatusCode::NOT_FOUND, *code),
            ApiError::Conflict(code, _) => (StatusCode::CONFLICT, *code),
            ApiError::Status(status, code, _) => (*status, *code),
            ApiError::Provider(_) => (StatusCode::BAD_GATEWAY, ErrorCode::PaymentProviderError),
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
            }
        };
        let detail = match &self {
            ApiError::Internal(_) => "the server failed; try again".to_owned(),
            other => other.to_string(),
        };
        problem(status, code, detail)
    }
}

/// An RFC 9457 problem response: `application/problem+json` with
/// [`Problem`] (`type`, `title`, `status`, `detail`, `code`, `message`).
pub fn problem(status: StatusCode, code: ErrorCode, detail: String) -> Response {
    let body = Problem::new(code, status.as_u16(), detail);
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/problem+json"));
    response
}

impl From<parley_signaling::StoreError> for ApiError {
    fn from(e: parley_signaling::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<FilesError> for ApiError {
    /// 403 `bad_signature` / `link_expired` for a download link; 500 for
    /// anything else.
    fn from(e: FilesError) -> Self {
        match e {
            FilesError::BadSignature => ApiError::Forbidden(ErrorCode::BadSignature, e.to_string()),
            FilesError::LinkExpired { .. } => ApiError::Forbidden(ErrorCode::LinkExpired, e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<OutboxError> for ApiError {
    fn from(e: OutboxError) -> Self {
        ApiError::Internal(e.to_string())
    }
}
