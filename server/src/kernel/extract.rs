//! What every REST handler shares so that every error is an RFC 9457
//! problem (`application/problem+json` with a stable `code`) and the token
//! is checked before the body is read:
//!
//! - [`Caller`]: the bearer token's user (401 problem otherwise). Put it
//!   first among a handler's arguments: axum runs extractors in order, and
//!   the body extractor always runs last.
//! - [`CallerIdentity`]: the same, with the token's claims (premium).
//! - [`Body`]: a JSON body whose rejection is a problem (400
//!   `malformed_json` / `invalid_field`, 413 `payload_too_large`, 415
//!   `unsupported_media_type`); `Option<Body<T>>` for an optional one.
//! - [`problems`]: a layer that turns what axum itself answers in plain
//!   text (404 for an unknown route, 405, 413, extractor rejections) into
//!   problems.
//! - [`MAX_BODY_BYTES`]: the request body limit.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use parley_domain::protocol::{ErrorCode, UserInfo};
use serde::de::DeserializeOwned;

use parley_signaling::Identity;

use super::error::{ApiError, problem};
use super::state::AppState;

/// Largest request body accepted, bytes (1 MiB); a larger one is answered
/// 413 `payload_too_large` (after the token is checked).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The caller named by the request's bearer token (`Authorization: Bearer`).
/// Rejection: 401 `missing_token`, `invalid_token` or `token_expired`.
#[derive(Debug, Clone)]
pub struct Caller(pub UserInfo);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        Ok(Caller(s.auth.verify_request(&parts.headers)?))
    }
}

/// The caller named by the bearer token with the token's claims (the
/// premium claim), for the routes that read them. The same check as
/// [`Caller`], with the same rejections.
#[derive(Debug, Clone)]
pub struct CallerIdentity(pub Identity);

impl FromRequestParts<AppState> for CallerIdentity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        Ok(CallerIdentity(s.auth.verify_request_identity(&parts.headers)?))
    }
}

/// A JSON request body (`Content-Type: application/json`, at most
/// [`MAX_BODY_BYTES`]). Rejections are problems: see [`ApiError`]'s
/// `From<JsonRejection>`. As `Option<Body<T>>`, a request without a
/// `Content-Type` has no body (`None`).
#[derive(Debug, Clone)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(t) = <Json<T> as FromRequest<S>>::from_request(req, state).await?;
        Ok(Body(t))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> OptionalFromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let body = <Json<T> as OptionalFromRequest<S>>::from_request(req, state).await?;
        Ok(body.map(|Json(t)| Body(t)))
    }
}

impl From<JsonRejection> for ApiError {
    /// 400 `malformed_json` (not JSON), 400 `invalid_field` (JSON of the
    /// wrong shape; the message names the field), 413 `payload_too_large`,
    /// 415 `unsupported_media_type`.
    fn from(e: JsonRejection) -> Self {
        match &e {
            JsonRejection::JsonSyntaxError(_) => ApiError::BadRequest(ErrorCode::MalformedJson, e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::Status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with `Content-Type: application/json`".into(),
            ),
            _ if e.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
            _ => ApiError::BadRequest(ErrorCode::InvalidField, e.body_text()),
        }
    }
}

/// 413 `payload_too_large`.
fn too_large() -> ApiError {
    ApiError::Status(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("the request body is over {MAX_BODY_BYTES} bytes"),
    )
}

/// Middleware: an error response that is not already a problem (axum's own
/// plain-text answers: 404 for an unknown route, 405, 413 from the body
/// limit, extractor rejections; `/readyz`'s 503) becomes one, with a code
/// chosen by its status and its text as the `detail`. Headers such as
/// `Allow` are kept.
pub async fn problems(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if is_problem {
        return response;
    }
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::UnknownRoute,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UNAUTHORIZED => ErrorCode::MissingToken,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidField,
    };
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let detail = match (text.is_empty(), code) {
        (false, _) => text,
        (true, ErrorCode::UnknownRoute) => "no endpoint at this path".to_owned(),
        (true, ErrorCode::MethodNotAllowed) => match parts.headers.get(header::ALLOW).and_then(|a| a.to_str().ok()) {
            Some(allow) => format!("this path takes {allow}"),
            None => "this path does not take this method".to_owned(),
        },
        (true, ErrorCode::PayloadTooLarge) => format!("the request body is over {MAX_BODY_BYTES} bytes"),
        (true, _) => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let mut out = problem(status, code, detail);
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rejections_keep_their_status() {
        let err: ApiError = JsonRejection::MissingJsonContentType(Default::default()).into();
        assert!(matches!(
            err,
            ApiError::Status(StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorCode::UnsupportedMediaType, _)
        ));
    }
}
