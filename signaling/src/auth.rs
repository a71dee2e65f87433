//! Identity: clients present a JWT (HS256) minted by the operator's platform
//! with the operator's secret, the way LiveKit access tokens work. Parley
//! knows a user from the token alone.
//!
//! Claims: `sub` (user id), `name`, `role` (`seeker` | `consultant` |
//! `moderator` | `recorder`), `exp` (Unix seconds), `iat`, and optionally
//! `premium: true` for premium seekers (recording and recaps, DESIGN.md §6).

use std::time::Duration;

use async_trait::async_trait;
use axum::http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parley_domain::protocol::{ErrorCode, Role, UserInfo};
use parley_domain::{Clock, Timestamp, UserId};
use serde::{Deserialize, Serialize};

/// Longest display name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 100;
/// Clock skew tolerated on `exp`, seconds.
const LEEWAY_SECS: u64 = 5;

/// The JWT claims Parley reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Display name.
    pub name: String,
    /// Seeker or consultant.
    pub role: Role,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: i64,
    /// A premium seeker (set by the operator's platform).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub premium: bool,
}

/// Who a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user.
    pub user: UserInfo,
    /// The token's `premium` claim.
    pub premium: bool,
}

/// Why a token was refused (HTTP 401 before the WebSocket upgrade).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header (and, on the WebSocket, no
    /// `ticket` query parameter).
    #[error("no bearer token: send `Authorization: Bearer <jwt>` (browsers: a `?ticket=` from POST /v1/ws-tickets)")]
    Missing,
    /// The token's `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// Bad signature, bad encoding or bad claims.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A WebSocket ticket the server never issued.
    #[error("unknown ticket: get one from POST /v1/ws-tickets")]
    UnknownTicket,
    /// A WebSocket ticket that already opened a connection.
    #[error("the ticket was already used: each opens one connection; get a new one")]
    TicketUsed,
    /// A WebSocket ticket past its expiry.
    #[error("the ticket has expired: get a new one just before connecting")]
    TicketExpired,
    /// The ticket store failed (HTTP 500 `internal`).
    #[error("tickets: {0}")]
    TicketStore(String),
}

impl AuthError {
    /// The stable error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing => ErrorCode::MissingToken,
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::Invalid(_) => ErrorCode::InvalidToken,
            AuthError::UnknownTicket => ErrorCode::UnknownTicket,
            AuthError::TicketUsed => ErrorCode::TicketUsed,
            AuthError::TicketExpired => ErrorCode::TicketExpired,
            AuthError::TicketStore(_) => ErrorCode::Internal,
        }
    }
}

/// Redeems one-time WebSocket tickets (`POST /v1/ws-tickets` issues them;
/// `/v1/signal?ticket=…` spends one). The server keeps them in its database
/// so that any node sharing it accepts a ticket another node issued.
#[async_trait]
pub trait Tickets: Send + Sync {
    /// Spends `ticket` once, on the server's clock: the identity it was
    /// issued for. Errors: [`AuthError::UnknownTicket`],
    /// [`AuthError::TicketUsed`], [`AuthError::TicketExpired`],
    /// [`AuthError::TicketStore`].
    async fn redeem(&self, ticket: &str) -> Result<Identity, AuthError>;
}

/// Signs and verifies tokens with the operator's shared secret. `exp` is
/// checked against the server's clock (injected; the system clock by
/// default), never the machine's directly.
#[derive(Clone)]
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    clock: std::sync::Arc<dyn Clock>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

impl Authenticator {
    /// An authenticator for HS256 tokens signed with `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self::with_clock(secret, std::sync::Arc::new(parley_domain::clock::SystemClock))
    }

    /// An authenticator for HS256 tokens signed with `secret` whose `exp`
    /// is checked against `clock` (the server's).
    pub fn with_clock(secret: &[u8], clock: std::sync::Arc<dyn Clock>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` is required here and checked below on the server's clock.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Authenticator {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            clock,
        }
    }

    /// Mints a token for `user`, valid for `ttl` from `now`.
    pub fn issue(&self, user: &UserInfo, ttl: Duration, now: Timestamp) -> String {
        self.issue_with(user, false, ttl, now)
    }

    /// Mints a token for `user` with the `premium` claim as given, valid for
    /// `ttl` from `now`.
    pub fn issue_with(&self, user: &UserInfo, premium: bool, ttl: Duration, now: Timestamp) -> String {
        let claims = Claims {
            sub: user.id.to_string(),
            name: user.name.clone(),
            role: user.role,
            iat: now.unix_secs(),
            exp: now.plus(ttl).unix_secs(),
            premium,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    /// Verifies `token` and returns the user it names.
    ///
    /// Errors: [`AuthError::Expired`] past `exp` (5 s leeway),
    /// [`AuthError::Invalid`] for a bad signature, algorithm or claims.
    pub fn verify(&self, token: &str) -> Result<UserInfo, AuthError> {
        self.verify_identity(token).map(|i| i.user)
    }

    /// Verifies `token` and returns the user it names with its claims
    /// beyond identity. Errors as [`Authenticator::verify`].
    pub fn verify_identity(&self, token: &str) -> Result<Identity, AuthError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                other => AuthError::Invalid(format!("{other:?}")),
            })?;
        let claims = data.claims;
        if claims.exp.saturating_add(i64::try_from(LEEWAY_SECS).unwrap_or(0)) < self.clock.now().unix_secs() {
            return Err(AuthError::Expired);
        }
        let id = UserId::parse(claims.sub).map_err(|e| AuthError::Invalid(format!("sub: {e}")))?;
        if claims.name.len() > MAX_NAME_LEN {
            return Err(AuthError::Invalid(format!("name is longer than {MAX_NAME_LEN} bytes")));
        }
        Ok(Identity { user: UserInfo { id, name: claims.name, role: claims.role }, premium: claims.premium })
    }

    /// Verifies the bearer token of an HTTP request (`Authorization:
    /// Bearer`, or `bearer`). Tokens are never read from URLs, which
    /// browsers and proxies log.
    pub fn verify_request(&self, headers: &HeaderMap) -> Result<UserInfo, AuthError> {
        self.verify_request_identity(headers).map(|i| i.user)
    }

    /// [`Authenticator::verify_request`], returning the [`Identity`].
    pub fn verify_request_identity(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        match bearer(headers) {
            Some(token) if !token.trim().is_empty() => self.verify_identity(token.trim()),
            _ => Err(AuthError::Missing),
        }
    }
}

/// The `Authorization: Bearer` token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserInfo {
        UserInfo { id: UserId::parse("u1").unwrap(), name: "Ada".into(), role: Role::Consultant }
    }

    fn now() -> Timestamp {
        use parley_domain::Clock;
        parley_domain::clock::SystemClock.now()
    }

    #[test]
    fn a_minted_token_verifies_to_its_user() {
        let auth = Authenticator::new(b"secret");
        let token = auth.issue(&user(), Duration::from_secs(60), now());
        assert_eq!(auth.verify(&token), Ok(user()));
    }

    #[test]
    fn expired_forged_and_garbage_tokens_are_refused() {
        let auth = Authenticator::new(b"secret");
        let old = now().plus(Duration::ZERO);
        let expired = auth.issue(&user(), Duration::ZERO, Timestamp::from_unix_millis(old.unix_millis() - 3_600_000));
        assert_eq!(auth.verify(&expired), Err(AuthError::Expired));
        let forged = Authenticator::new(b"other").issue(&user(), Duration::from_secs(60), now());
        assert_eq!(auth.verify(&forged).unwrap_err().code(), ErrorCode::InvalidToken);
        assert_eq!(auth.verify("not.a.jwt").unwrap_err().code(), ErrorCode::InvalidToken);
    }

    #[test]
    fn bad_sub_is_refused() {
        let auth = Authenticator::new(b"secret");
        let mut u = user();
        u.id = UserId::parse("ok").unwrap();
        let claims = Claims {
            sub: "has space".into(),
            name: "x".into(),
            role: Role::Seeker,
            exp: now().unix_secs() + 60,
            iat: 0,
            premium: false,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"secret"))
            .unwrap();
        assert!(matches!(auth.verify(&token), Err(AuthError::Invalid(m)) if m.contains("sub")));
    }

    #[test]
    fn the_header_carries_the_token_and_missing_is_reported() {
        let auth = Authenticator::new(b"secret");
        let token = auth.issue(&user(), Duration::from_secs(60), now());
        let mut headers = HeaderMap::new();
        assert_eq!(auth.verify_request(&headers), Err(AuthError::Missing));
        headers.insert("authorization", "Bearer  ".parse().unwrap());
        assert_eq!(auth.verify_request(&headers), Err(AuthError::Missing));
        headers.insert("authorization", format!("bearer {token}").parse().unwrap());
        assert_eq!(auth.verify_request(&headers), Ok(user()));
    }
}
