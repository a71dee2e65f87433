//! `Idempotency-Key` on Parley's own money-moving requests (issue 13), as
//! Stripe does it (Stripe API reference, "Idempotent requests"): a client
//! that retries a `POST` after a timeout or a dropped connection sends the
//! same key, and gets the first attempt's response instead of moving money
//! again.
//!
//! Per caller (the token's user) and key, the first request's fingerprint
//! (method, path and a SHA-256 of the body) is stored as `running` before
//! the handler runs. Then:
//! - the same key with the same request replays the stored response
//!   (status, content type, body) with `Idempotent-Replayed: true`;
//! - with another request: 422 `idempotency_key_reused`;
//! - while the first is still running: 409 `idempotency_key_in_use`.
//!
//! The handler runs in its own task, so a client that hangs up does not
//! cancel it half-way: its response is stored for the retry. A response
//! with a 5xx status is not stored (the key is freed: a retry runs again,
//! and the handlers' own provider idempotency keys keep that safe). Keys
//! are kept 24 hours. A request without the header is served as usual;
//! one without a valid token goes to the handler, which answers 401.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parley_domain::protocol::ErrorCode;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::error::{ApiError, problem};
use super::state::AppState;

/// The request header (Stripe's name).
pub const HEADER: &str = "idempotency-key";
/// The header on a replayed response.
pub const REPLAYED: &str = "idempotent-replayed";
/// Longest key, bytes (Stripe allows 255).
pub const MAX_KEY_LEN: usize = 255;
/// How long a key is remembered, ms (24 h, as Stripe).
pub const KEEP_MS: i64 = 24 * 3600 * 1000;
/// Largest request body read for the fingerprint, bytes (axum's default
/// JSON limit).
const MAX_BODY: usize = 2 * 1024 * 1024;

/// The caller's key, for handlers that tie their own provider idempotency
/// keys to it (refunds reuse their reservation).
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub String);

/// The middleware: wrap a money-moving route with
/// `axum::middleware::from_fn_with_state(state, idempotency::layer)`.
pub async fn layer(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(raw) = req.headers().get(HEADER) else { return next.run(req).await };
    let key = match raw.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= MAX_KEY_LEN => k.to_owned(),
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidField,
                format!("Idempotency-Key: 1 to {MAX_KEY_LEN} visible ASCII characters"),
            );
        }
    };
    // Authentication comes first: without a user there is nothing to key.
    let Ok(user) = s.auth.verify_request(req.headers()) else { return next.run(req).await };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidField,
            format!("body: at most {MAX_BODY} bytes"),
        );
    };
    let mut hash = Sha256::new();
    hash.update(parts.method.as_str().as_bytes());
    hash.update(b"\n");
    hash.update(parts.uri.path().as_bytes());
    hash.update(b"\n");
    hash.update(&bytes);
    let fingerprint = hex::encode(hash.finalize());
    match claim(&s, user.id.as_str(), &key, &fingerprint).await {
        Ok(Claim::Fresh) => {}
        Ok(Claim::Replay(response)) => return response,
        Ok(Claim::Refused(response)) => return response,
        Err(e) => return ApiError::Internal(format!("idempotency keys: {e}")).into_response(),
    }
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(IdempotencyKey(key.clone()));
    let user_id = user.id.to_string();
    // Run to the end even if the client hangs up, so the retry finds it.
    let task = tokio::spawn(async move {
        let response = next.run(req).await;
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
        if let Err(e) = finish(&s, &user_id, &key, parts.status, parts.headers.get(header::CONTENT_TYPE), &body).await {
            tracing::error!(error = %e, "storing an idempotent response failed");
        }
        Response::from_parts(parts, Body::from(body))
    });
    match task.await {
        Ok(response) => response,
        Err(e) => ApiError::Internal(format!("request task: {e}")).into_response(),
    }
}

enum Claim {
    /// The key is ours: run the request.
    Fresh,
    /// The key's request finished: its response.
    Replay(Response),
    /// Another request, or one still running.
    Refused(Response),
}

async fn claim(s: &AppState, user: &str, key: &str, fingerprint: &str) -> Result<Claim, sqlx::Error> {
    let pool = s.store.pool();
    let now = s.clock.now().unix_millis();
    // Keys older than a day are forgotten.
    sqlx::query("DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND created_ms < $3")
        .bind(user)
        .bind(key)
        .bind(now - KEEP_MS)
        .execute(&pool)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, fingerprint, state, created_ms) VALUES ($1, $2, $3, 'running', $4) \
         ON CONFLICT (user_id, key) DO NOTHING",
    )
    .bind(user)
    .bind(key)
    .bind(fingerprint)
    .bind(now)
    .execute(&pool)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::Fresh);
    }
    let Some(row) = sqlx::query(
        "SELECT fingerprint, state, status, content_type, body FROM idempotency_keys WHERE user_id = $1 AND key = $2",
    )
    .bind(user)
    .bind(key)
    .fetch_optional(&pool)
    .await?
    else {
        // Freed meanwhile (its first attempt failed with a 5xx): the
        // client retries.
        return Ok(Claim::Refused(problem(
            StatusCode::CONFLICT,
            ErrorCode::IdempotencyKeyInUse,
            format!("the request with Idempotency-Key {key:?} has just failed; retry it"),
        )));
    };
    if row.try_get::<String, _>("fingerprint")? != fingerprint {
        return Ok(Claim::Refused(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::IdempotencyKeyReused,
            format!("Idempotency-Key {key:?} was first used with another request (method, path or body)"),
        )));
    }
    if row.try_get::<String, _>("state")? != "done" {
        return Ok(Claim::Refused(problem(
            StatusCode::CONFLICT,
            ErrorCode::IdempotencyKeyInUse,
            format!("the request with Idempotency-Key {key:?} is still being processed; retry in a moment"),
        )));
    }
    let status: Option<i64> = row.try_get("status")?;
    let status = status.and_then(|s| u16::try_from(s).ok()).and_then(|s| StatusCode::from_u16(s).ok());
    let content_type: Option<String> = row.try_get("content_type")?;
    let body: Option<String> = row.try_get("body")?;
    let mut response = Response::new(Body::from(body.unwrap_or_default()));
    *response.status_mut() = status.unwrap_or(StatusCode::OK);
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    response.headers_mut().insert(REPLAYED, HeaderValue::from_static("true"));
    Ok(Claim::Replay(response))
}

/// Stores the response of the key's request, or frees the key after a 5xx
/// (or a body that is not text, which no route here answers).
async fn finish(
    s: &AppState,
    user: &str,
    key: &str,
    status: StatusCode,
    content_type: Option<&HeaderValue>,
    body: &Bytes,
) -> Result<(), sqlx::Error> {
    let pool = s.store.pool();
    let text = std::str::from_utf8(body).ok();
    match text.filter(|_| !status.is_server_error()) {
        Some(text) => {
            sqlx::query(
                "UPDATE idempotency_keys SET state = 'done', status = $3, content_type = $4, body = $5 \
                 WHERE user_id = $1 AND key = $2",
            )
            .bind(user)
            .bind(key)
            .bind(i64::from(status.as_u16()))
            .bind(content_type.and_then(|c| c.to_str().ok()))
            .bind(text)
            .execute(&pool)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2")
                .bind(user)
                .bind(key)
                .execute(&pool)
                .await?;
        }
    }
    Ok(())
}
