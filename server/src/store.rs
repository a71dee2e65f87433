//! The SQL store: signaling's [`Store`] on SQLite (the embedded default) or
//! PostgreSQL, through sqlx's `Any` driver. The SQL is the same text for
//! both (`$N` placeholders work on SQLite too); only the migrations differ
//! (`migrations/sqlite`, `migrations/postgres`).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use parley_domain::protocol::{Role, UserInfo};
use parley_domain::{CallId, SessionId, Timestamp, UserId};
use parley_signaling::store::{
    CallRecord, CallState, SessionEvent, SessionRecord, StoredCall, StoredSession, TimelineEntry,
};
use parley_signaling::{Store, StoreError};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Users per multi-row upsert in [`Store::users_seen`] (3 bound values each).
const USERS_PER_STATEMENT: usize = 100;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:` URLs.
    Sqlite,
    /// `postgres:` / `postgresql:` URLs.
    Postgres,
}

impl Backend {
    /// The backend of `url`, or `None` for an unsupported scheme.
    pub fn of(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// Persistence of users, calls and sessions on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

fn store_err(e: sqlx::Error) -> StoreError {
    StoreError(e.to_string())
}

impl SqlStore {
    /// Connects to `url` and runs the migrations.
    ///
    /// SQLite gets WAL journaling, `synchronous=NORMAL` and a 5 s busy
    /// timeout; its file is created if missing.
    pub async fn connect(url: &str) -> anyhow::Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let backend =
            Backend::of(url).ok_or_else(|| anyhow::anyhow!("DATABASE_URL: expected sqlite: or postgres:// URL"))?;
        let options = sqlx::any::AnyConnectOptions::from_str(url)?;
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            sqlx::raw_sql(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                            )
                            .execute(conn)
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await?
            }
        };
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(SqlStore { pool, backend })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers (`/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ()).map_err(store_err)
    }
}

fn user_from_row(row: &AnyRow) -> Result<UserInfo, StoreError> {
    let id: String = row.try_get("id").map_err(store_err)?;
    let role: String = row.try_get("role").map_err(store_err)?;
    Ok(UserInfo {
        id: UserId::parse(id).map_err(|e| StoreError(e.to_string()))?,
        name: row.try_get("name").map_err(store_err)?,
        role: match role.as_str() {
            "consultant" => Role::Consultant,
            _ => Role::Seeker,
        },
    })
}

fn parse_id<T: FromStr>(s: String) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e: T::Err| StoreError(format!("bad stored id {s:?}: {e}")))
}

#[async_trait]
impl Store for SqlStore {
    /// One multi-row upsert per [`USERS_PER_STATEMENT`] users, in one
    /// transaction: a burst of 10,000 new connections costs 100 statements,
    /// not 10,000 round trips to the database worker.
    async fn users_seen(&self, users: &[UserInfo], at: Timestamp) -> Result<(), StoreError> {
        // A row may be upserted once per statement (PostgreSQL): the last wins.
        let mut latest: Vec<&UserInfo> = Vec::with_capacity(users.len());
        let mut seen = std::collections::HashSet::with_capacity(users.len());
        for u in users.iter().rev() {
            if seen.insert(&u.id) {
                latest.push(u);
            }
        }
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        for chunk in latest.chunks(USERS_PER_STATEMENT) {
            let rows: Vec<String> =
                (0..chunk.len()).map(|i| format!("(${}, ${}, ${}, $1, $1)", 3 * i + 2, 3 * i + 3, 3 * i + 4)).collect();
            let sql = format!(
                "INSERT INTO users (id, name, role, first_seen_ms, last_seen_ms) VALUES {} \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, \
                 last_seen_ms = excluded.last_seen_ms",
                rows.join(", ")
            );
            // Only numbered placeholders are spliced in; values are bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(at.unix_millis());
            for u in chunk {
                query = query.bind(u.id.as_str()).bind(&u.name).bind(u.role.as_str());
            }
            query.execute(&mut *tx).await.map_err(store_err)?;
        }
        tx.commit().await.map_err(store_err)
    }

    async fn user(&self, id: &UserId) -> Result<Option<UserInfo>, StoreError> {
        let row = sqlx::query("SELECT id, name, role FROM users WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn users_with_role(&self, role: Role) -> Result<Vec<UserInfo>, StoreError> {
        let rows = sqlx::query("SELECT id, name, role FROM users WHERE role = $1 ORDER BY name, id")
            .bind(role.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(store_err)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn create_call(&self, call: &CallRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        sqlx::query(
            "INSERT INTO calls (id, session_id, seeker_id, consultant_id, state, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(call.call_id.as_str())
        .bind(call.session_id.as_str())
        .bind(call.seeker_id.as_str())
        .bind(call.consultant_id.as_str())
        .bind(CallState::Requested.as_str())
        .bind(call.created_at.unix_millis())
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        sqlx::query("INSERT INTO call_events (call_id, state, at_ms) VALUES ($1, $2, $3)")
            .bind(call.call_id.as_str())
            .bind(CallState::Requested.as_str())
            .bind(call.created_at.unix_millis())
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        tx.commit().await.map_err(store_err)
    }

    async fn call_transition(&self, call_id: &CallId, state: CallState, at: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        sqlx::query("UPDATE calls SET state = $1, updated_ms = $2 WHERE id = $3")
            .bind(state.as_str())
            .bind(at.unix_millis())
            .bind(call_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        sqlx::query("INSERT INTO call_events (call_id, state, at_ms) VALUES ($1, $2, $3)")
            .bind(call_id.as_str())
            .bind(state.as_str())
            .bind(at.unix_millis())
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        tx.commit().await.map_err(store_err)
    }

    async fn call(&self, call_id: &CallId) -> Result<Option<StoredCall>, StoreError> {
        let row =
            sqlx::query("SELECT id, session_id, seeker_id, consultant_id, state, created_ms FROM calls WHERE id = $1")
                .bind(call_id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(store_err)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredCall {
            record: CallRecord {
                call_id: parse_id(row.try_get("id").map_err(store_err)?)?,
                session_id: parse_id(row.try_get("session_id").map_err(store_err)?)?,
                seeker_id: parse_id(row.try_get("seeker_id").map_err(store_err)?)?,
                consultant_id: parse_id(row.try_get("consultant_id").map_err(store_err)?)?,
                created_at: Timestamp::from_unix_millis(row.try_get("created_ms").map_err(store_err)?),
            },
            state: row.try_get("state").map_err(store_err)?,
        }))
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id, call_id, kind, seeker_id, consultant_id, opened_ms) \
             VALUES ($1, $2, 'instant', $3, $4, $5)",
        )
        .bind(s.session_id.as_str())
        .bind(s.call_id.as_str())
        .bind(s.seeker_id.as_str())
        .bind(s.consultant_id.as_str())
        .bind(s.opened_at.unix_millis())
        .execute(&self.pool)
        .await
        .map_err(store_err)?;
        Ok(())
    }

    async fn session_event(
        &self,
        session_id: &SessionId,
        event: &SessionEvent,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let (user, detail): (Option<&UserId>, Option<String>) = match event {
            SessionEvent::Joined(u) | SessionEvent::Left(u) | SessionEvent::Dropped(u) => (Some(u), None),
            SessionEvent::Media(u, state) => (
                Some(u),
                Some(serde_json::to_value(state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()),
            ),
            SessionEvent::Ended { reason, by } => (by.as_ref(), Some(reason.as_str().to_owned())),
        };
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        sqlx::query(
            "INSERT INTO session_events (session_id, kind, user_id, detail, at_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(session_id.as_str())
        .bind(event.kind())
        .bind(user.map(UserId::as_str))
        .bind(detail.as_deref())
        .bind(at.unix_millis())
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        if let SessionEvent::Ended { reason, by } = event {
            sqlx::query(
                "UPDATE sessions SET ended_ms = $1, end_reason = $2, ended_by = $3 WHERE id = $4 AND ended_ms IS NULL",
            )
            .bind(at.unix_millis())
            .bind(reason.as_str())
            .bind(by.as_ref().map(UserId::as_str))
            .bind(session_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        }
        tx.commit().await.map_err(store_err)
    }

    async fn session(&self, session_id: &SessionId) -> Result<Option<StoredSession>, StoreError> {
        let row = sqlx::query(
            "SELECT id, call_id, seeker_id, consultant_id, opened_ms, ended_ms, end_reason FROM sessions WHERE id = $1",
        )
        .bind(session_id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_err)?;
        let Some(row) = row else { return Ok(None) };
        let ended_ms: Option<i64> = row.try_get("ended_ms").map_err(store_err)?;
        Ok(Some(StoredSession {
            record: SessionRecord {
                session_id: parse_id(row.try_get("id").map_err(store_err)?)?,
                call_id: parse_id(row.try_get("call_id").map_err(store_err)?)?,
                seeker_id: parse_id(row.try_get("seeker_id").map_err(store_err)?)?,
                consultant_id: parse_id(row.try_get("consultant_id").map_err(store_err)?)?,
                opened_at: Timestamp::from_unix_millis(row.try_get("opened_ms").map_err(store_err)?),
            },
            ended_at: ended_ms.map(Timestamp::from_unix_millis),
            end_reason: row.try_get("end_reason").map_err(store_err)?,
        }))
    }

    async fn session_timeline(&self, session_id: &SessionId) -> Result<Vec<TimelineEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, user_id, detail, at_ms FROM session_events WHERE session_id = $1 ORDER BY at_ms, id",
        )
        .bind(session_id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?;
        rows.iter()
            .map(|row| {
                let user: Option<String> = row.try_get("user_id").map_err(store_err)?;
                Ok(TimelineEntry {
                    at: Timestamp::from_unix_millis(row.try_get("at_ms").map_err(store_err)?),
                    kind: row.try_get("kind").map_err(store_err)?,
                    user_id: user.map(parse_id).transpose()?,
                    detail: row.try_get("detail").map_err(store_err)?,
                })
            })
            .collect()
    }
}
