//! Client tokens for the synthetic users: minted locally with the server's
//! HS256 secret (fast; needed for thousands of connections), or obtained
//! one by one from the dev server's `POST /v1/dev/login`.
//!
//! The secret comes from `--jwt-secret-file`, or else `./data/jwt-secret`
//! (where a dev server started in this directory keeps it). Before use, one
//! minted token is checked against the server (`GET /v1/consultants`); if
//! the server refuses a token from the default file — it was started with
//! another data directory — the tool falls back to dev login.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parley_domain::protocol::Role;
use parley_sdk::{ApiClient, SdkError};
use serde::Serialize;

use crate::target::Target;

/// Where a dev server started in the current directory keeps its secret.
pub const DEFAULT_SECRET_FILE: &str = "data/jwt-secret";
/// Lifetime of minted tokens: longer than any bounded run.
pub const TOKEN_TTL: Duration = Duration::from_secs(3 * 3600);
/// Dev logins in flight at once.
const DEV_LOGIN_CONCURRENCY: usize = 16;

/// The claims the server reads (see `parley_signaling::Claims`).
#[derive(Debug, Serialize)]
struct Claims<'a> {
    sub: &'a str,
    name: &'a str,
    role: Role,
    exp: i64,
    iat: i64,
    /// A premium seeker (recorded calls); left out when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    premium: bool,
}

/// A synthetic user to get a token for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The id (`sub`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Seeker or consultant.
    pub role: Role,
    /// The `premium` claim (seekers who may ask for recorded calls). Only
    /// minted tokens carry it; dev login cannot make a user premium.
    pub premium: bool,
}

impl User {
    /// A user named after its id.
    pub fn new(id: String, role: Role) -> User {
        let name = format!("Load {}", id);
        User { id, name, role, premium: false }
    }

    /// A premium seeker named after its id.
    pub fn premium_seeker(id: String) -> User {
        User { premium: true, ..User::new(id, Role::Seeker) }
    }
}

/// Signs an HS256 token for `user`, issued at `iat` (Unix seconds), valid `ttl`.
pub fn mint(key: &EncodingKey, user: &User, iat: i64, ttl: Duration) -> anyhow::Result<String> {
    let claims = Claims {
        sub: &user.id,
        name: &user.name,
        role: user.role,
        iat,
        exp: iat + ttl.as_secs() as i64,
        premium: user.premium,
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key).context("signing a token")
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Reads a secret file as the server does (surrounding whitespace trimmed).
pub fn read_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the JWT secret {}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        bail!("the JWT secret file {} is empty", path.display());
    }
    Ok(secret.as_bytes().to_vec())
}

/// How tokens are obtained.
pub enum TokenSource {
    /// Minted locally with the server's secret.
    Secret {
        /// The signing key.
        key: EncodingKey,
        /// Where the secret was read.
        path: PathBuf,
    },
    /// `POST /v1/dev/login`, one request per user.
    DevLogin {
        /// The REST client.
        api: ApiClient,
    },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl TokenSource {
    /// Chooses the source: the `explicit` secret file (which must work), or
    /// [`DEFAULT_SECRET_FILE`] if present and accepted by the server, or dev
    /// login.
    pub async fn resolve(target: &Target, explicit: Option<&Path>) -> anyhow::Result<TokenSource> {
        let api = ApiClient::new(&target.base).map_err(|e| anyhow::anyhow!("REST client: {e}"))?;
        if let Some(path) = explicit {
            let key = EncodingKey::from_secret(&read_secret(path)?);
            probe(&api, &key).await.with_context(|| {
                format!("the server refused a token signed with {} (is it the server's jwt-secret?)", path.display())
            })?;
            return Ok(TokenSource::Secret { key, path: path.to_owned() });
        }
        let default = Path::new(DEFAULT_SECRET_FILE);
        if default.exists() {
            let key = EncodingKey::from_secret(&read_secret(default)?);
            match probe(&api, &key).await {
                Ok(()) => return Ok(TokenSource::Secret { key, path: default.to_owned() }),
                Err(e) => eprintln!(
                    "parley-load: warning: {} does not belong to this server ({e:#}); using dev login instead \
                     (pass --jwt-secret-file <data dir>/jwt-secret for large runs)",
                    default.display()
                ),
            }
        }
        // Fail early (and clearly) when nothing answers at the URL.
        match api.consultants("parley-load-reachability-check").await {
            Ok(_) | Err(SdkError::Unauthorized { .. }) => Ok(TokenSource::DevLogin { api }),
            Err(e) => bail!("cannot reach the server at {}: {e}", target.base),
        }
    }

    /// How tokens are obtained, for the report.
    pub fn describe(&self) -> String {
        match self {
            TokenSource::Secret { path, .. } => format!("minted with {}", path.display()),
            TokenSource::DevLogin { .. } => "dev login".to_owned(),
        }
    }

    /// Whether tokens are fetched one request at a time.
    pub fn is_dev_login(&self) -> bool {
        matches!(self, TokenSource::DevLogin { .. })
    }

    /// A token for `user`.
    pub async fn token(&self, user: &User) -> anyhow::Result<String> {
        match self {
            TokenSource::Secret { key, .. } => mint(key, user, unix_now(), TOKEN_TTL),
            TokenSource::DevLogin { api } => api
                .dev_login(&user.id, &user.name, user.role)
                .await
                .map(|(token, _)| token)
                .map_err(|e| anyhow::anyhow!("dev login of {}: {e}", user.id)),
        }
    }

    /// Tokens for every user of `users`, in order (dev logins a few at a time).
    pub async fn tokens(&self, users: &[User]) -> anyhow::Result<Vec<String>> {
        match self {
            TokenSource::Secret { key, .. } => {
                let iat = unix_now();
                users.iter().map(|u| mint(key, u, iat, TOKEN_TTL)).collect()
            }
            TokenSource::DevLogin { .. } => futures_util::stream::iter(users)
                .map(|u| self.token(u))
                .buffered(DEV_LOGIN_CONCURRENCY)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect(),
        }
    }
}

/// Checks that the server accepts a token signed with `key`.
async fn probe(api: &ApiClient, key: &EncodingKey) -> anyhow::Result<()> {
    let user = User::new("load-probe".into(), Role::Seeker);
    let token = mint(key, &user, unix_now(), Duration::from_secs(60))?;
    match api.consultants(&token).await {
        Ok(_) => Ok(()),
        Err(SdkError::Unauthorized { code, message }) => bail!("{}: {message}", code.as_str()),
        Err(e) => bail!("cannot reach the server: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[derive(Debug, serde::Deserialize)]
    struct Decoded {
        sub: String,
        name: String,
        role: String,
        exp: i64,
        iat: i64,
        #[serde(default)]
        premium: Option<bool>,
    }

    #[test]
    fn minted_tokens_carry_the_servers_claims() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let user = User::new("load-s-abc-1".into(), Role::Seeker);
        let token = mint(&EncodingKey::from_secret(secret), &user, unix_now(), TOKEN_TTL).unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Decoded>(&token, &DecodingKey::from_secret(secret), &validation).unwrap();
        let c = data.claims;
        assert_eq!((c.sub.as_str(), c.name.as_str(), c.role.as_str()), ("load-s-abc-1", "Load load-s-abc-1", "seeker"));
        assert_eq!(c.exp - c.iat, TOKEN_TTL.as_secs() as i64);
        assert_eq!(c.premium, None, "no premium claim unless asked for");
        let premium = User::premium_seeker("load-s-abc-2".into());
        let token = mint(&EncodingKey::from_secret(secret), &premium, unix_now(), TOKEN_TTL).unwrap();
        let data = jsonwebtoken::decode::<Decoded>(&token, &DecodingKey::from_secret(secret), &validation).unwrap();
        assert_eq!((data.claims.role.as_str(), data.claims.premium), ("seeker", Some(true)));
        assert!(
            jsonwebtoken::decode::<Decoded>(&token, &DecodingKey::from_secret(b"another secret"), &validation).is_err()
        );
    }

    #[test]
    fn secret_files_are_trimmed_and_must_not_be_empty() {
        let dir = std::env::temp_dir().join(format!("parley-load-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwt-secret");
        std::fs::write(&path, "abc\n").unwrap();
        assert_eq!(read_secret(&path).unwrap(), b"abc");
        std::fs::write(&path, " \n").unwrap();
        assert!(read_secret(&path).is_err());
        assert!(read_secret(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
