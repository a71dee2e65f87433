//! Tokens: checked as Parley checks them (HS256 with the secret, expiry,
//! `sub` / `name` / `role` claims), minted for dev login with
//! [`crate::tokens::mint`].

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use parley_domain::UserId;
use parley_domain::protocol::{ErrorCode, Role, UserInfo};
use serde::Deserialize;

use crate::tokens::{self, User};

/// Why a request was refused: the HTTP status and the protocol's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) code: ErrorCode,
    pub(super) message: String,
}

/// A `401 missing_token` refusal.
pub(super) fn missing_token() -> Refusal {
    Refusal { status: 401, code: ErrorCode::MissingToken, message: "no bearer token".into() }
}

/// The claims read from a token.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
    role: Role,
}

/// The relay's signing and checking keys, from one HS256 secret.
pub struct Keys {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl Keys {
    /// Keys for `secret` (the bytes of a `jwt-secret` file, trimmed).
    pub fn new(secret: &[u8]) -> Keys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        Keys { decoding: DecodingKey::from_secret(secret), encoding: EncodingKey::from_secret(secret), validation }
    }

    /// Who `token` names, if it is signed with the secret and not expired.
    /// Moderators are refused, as by Parley's signaling.
    pub(super) fn verify(&self, token: &str) -> Result<UserInfo, Refusal> {
        let invalid = |message: String| Refusal { status: 401, code: ErrorCode::InvalidToken, message };
        let claims = match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => data.claims,
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                return Err(Refusal { status: 401, code: ErrorCode::TokenExpired, message: "token expired".into() });
            }
            Err(e) => return Err(invalid(e.to_string())),
        };
        if claims.role == Role::Moderator {
            return Err(Refusal {
                status: 403,
                code: ErrorCode::WrongRole,
                message: "moderators use the REST API, not signaling".into(),
            });
        }
        let id = UserId::parse(&claims.sub).map_err(|e| invalid(format!("sub: {e}")))?;
        let name = claims.name.unwrap_or_else(|| claims.sub.clone());
        Ok(UserInfo { id, name, role: claims.role })
    }

    /// A token for `user`, valid [`tokens::TOKEN_TTL`].
    pub(super) fn mint(&self, user: &User) -> anyhow::Result<String> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        tokens::mint(&self.encoding, user, now as i64, tokens::TOKEN_TTL)
    }
}
