//! One-time WebSocket tickets (`POST /v1/ws-tickets`): a browser cannot set
//! headers on a WebSocket, and a token in the URL ends up in logs and
//! history. The page asks for a ticket with its `Authorization` header and
//! opens `/v1/signal?ticket=…` with it: single use, valid [`TICKET_TTL`] of
//! server time, stored in the database (only its SHA-256) so any node
//! sharing it accepts it. Spending one is one conditional update, so two
//! connections racing with the same ticket cannot both get in.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parley_domain::protocol::rest::WsTicket;
use parley_domain::protocol::{Problem, Role, UserInfo};
use parley_domain::{Clock, UserId};
use parley_signaling::{AuthError, Identity, Tickets};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::error::ApiError;
use super::extract::CallerIdentity;
use super::state::AppState;

/// How long a ticket opens a connection (server clock).
pub const TICKET_TTL: Duration = Duration::from_secs(30);

/// The stored form of a ticket: its SHA-256, hex.
fn hash(ticket: &str) -> String {
    hex::encode(Sha256::digest(ticket.as_bytes()))
}

/// `POST /v1/ws-tickets` (any signaling role: seekers, consultants,
/// recorders): a one-time ticket for `/v1/signal?ticket=…`, valid 30 s of
/// server time and for one connection, carrying the caller's identity
/// (name, role, premium) as their token had it.
#[utoipa::path(post, path = "/v1/ws-tickets", tag = "signaling", security(("bearer" = [])),
    responses((status = 200, body = WsTicket),
        (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 403, description = "`wrong_role`: moderators do not use signaling", body = Problem)))]
pub(crate) async fn issue(
    State(s): State<AppState>,
    CallerIdentity(me): CallerIdentity,
) -> Result<Json<WsTicket>, ApiError> {
    if me.user.role == Role::Moderator {
        return Err(ApiError::Forbidden(
            parley_domain::protocol::ErrorCode::WrongRole,
            "moderators use the REST API, not signaling".into(),
        ));
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let ticket = URL_SAFE_NO_PAD.encode(bytes);
    let now = s.clock.now().unix_millis();
    let expires_at_ms = now + i64::try_from(TICKET_TTL.as_millis()).unwrap_or(i64::MAX);
    let pool = s.store.pool();
    // Tickets long past their expiry are of no use, not even to explain a refusal.
    sqlx::query("DELETE FROM ws_tickets WHERE expires_ms < $1")
        .bind(now - 3_600_000)
        .execute(&pool)
        .await
        .map_err(db)?;
    sqlx::query(
        "INSERT INTO ws_tickets (ticket_hash, user_id, name, role, premium, expires_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(hash(&ticket))
    .bind(me.user.id.as_str())
    .bind(&me.user.name)
    .bind(me.user.role.as_str())
    .bind(i64::from(me.premium))
    .bind(expires_at_ms)
    .execute(&pool)
    .await
    .map_err(db)?;
    Ok(Json(WsTicket { ticket, expires_at_ms }))
}

fn db(e: sqlx::Error) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// The tickets of the database `pool`, spent on `clock`'s time.
pub struct SqlTickets {
    pool: sqlx::AnyPool,
    clock: Arc<dyn Clock>,
}

impl SqlTickets {
    /// Tickets stored in `pool`, expiring on `clock`.
    pub fn new(pool: sqlx::AnyPool, clock: Arc<dyn Clock>) -> Self {
        SqlTickets { pool, clock }
    }
}

fn store_err(e: sqlx::Error) -> AuthError {
    AuthError::TicketStore(e.to_string())
}

#[async_trait]
impl Tickets for SqlTickets {
    async fn redeem(&self, ticket: &str) -> Result<Identity, AuthError> {
        let now = self.clock.now().unix_millis();
        let key = hash(ticket);
        let spent = sqlx::query(
            "UPDATE ws_tickets SET used_ms = $2 WHERE ticket_hash = $1 AND used_ms IS NULL AND expires_ms > $2 \
             RETURNING user_id, name, role, premium",
        )
        .bind(&key)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_err)?;
        let Some(row) = spent else {
            // Why not: read the row as it is now.
            let used: Option<Option<i64>> = sqlx::query_scalar("SELECT used_ms FROM ws_tickets WHERE ticket_hash = $1")
                .bind(&key)
                .fetch_optional(&self.pool)
                .await
                .map_err(store_err)?;
            return Err(match used {
                None => AuthError::UnknownTicket,
                Some(Some(_)) => AuthError::TicketUsed,
                Some(None) => AuthError::TicketExpired,
            });
        };
        let text = |k: &str| row.try_get::<String, _>(k).map_err(store_err);
        let role = text("role")?;
        let role = [Role::Seeker, Role::Consultant, Role::Moderator, Role::Recorder]
            .into_iter()
            .find(|r| r.as_str() == role)
            .ok_or_else(|| AuthError::TicketStore(format!("stored role {role:?}")))?;
        let id = UserId::parse(text("user_id")?).map_err(|e| AuthError::TicketStore(e.to_string()))?;
        let premium = row.try_get::<i64, _>("premium").map_err(store_err)? != 0;
        Ok(Identity { user: UserInfo { id, name: text("name")?, role }, premium })
    }
}
