//! Consultant profiles (issue 4): `PUT /v1/consultants/me/profile`,
//! `GET /v1/consultants/{id}/profile`, the checks of
//! `PUT /v1/consultants/me/price` (range and accepted currencies), and the
//! facts scheduling reads ([`scheduling_facts`]).
//!
//! A profile is one row of `profiles` (tags, languages and session lengths
//! as JSON arrays) plus its tags and languages in `profile_tags` and
//! `profile_languages` for the directory's filters; the full-text index
//! follows the row (an FTS5 table kept by triggers on SQLite, a generated
//! tsvector column on PostgreSQL). A write is one transaction.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use parley_domain::UserId;
use parley_domain::protocol::rest::{ConsultantProfile, ConsultantRating, ProfileUpdate};
use parley_domain::protocol::{ErrorCode, PresenceStatus, Problem, Role};
use sqlx::{AnyPool, Row};

use super::rules::{rating, validate};
use crate::kernel::{ApiError, AppState, Body, Caller, require};

/// What scheduling needs of a consultant's profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulingFacts {
    /// Their IANA time zone (validated with chrono-tz when written).
    pub time_zone: String,
    /// Session lengths offered, minutes, ascending, each 15–240.
    pub session_minutes: Vec<u32>,
}

impl SchedulingFacts {
    /// The time zone, parsed.
    pub fn tz(&self) -> Option<chrono_tz::Tz> {
        self.time_zone.parse().ok()
    }
}

/// The time zone and session lengths of `consultant`'s profile; `None`
/// without a profile.
pub async fn scheduling_facts(pool: &AnyPool, consultant: &UserId) -> Result<Option<SchedulingFacts>, sqlx::Error> {
    let row = sqlx::query("SELECT time_zone, session_minutes FROM profiles WHERE consultant_id = $1")
        .bind(consultant.as_str())
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let minutes: String = row.try_get("session_minutes")?;
    Ok(Some(SchedulingFacts {
        time_zone: row.try_get("time_zone")?,
        session_minutes: serde_json::from_str(&minutes).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    }))
}

/// Whether `consultant` has a profile.
pub async fn has_profile(pool: &AnyPool, consultant: &UserId) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT 1 AS one FROM profiles WHERE consultant_id = $1")
        .bind(consultant.as_str())
        .fetch_optional(pool)
        .await?;
    Ok(row.is_some())
}

/// `consultant`'s rating from the `reviews` table.
pub async fn rating_of(pool: &AnyPool, consultant: &UserId) -> Result<ConsultantRating, sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(stars), 0) AS BIGINT) AS total FROM reviews WHERE consultant_id = $1",
    )
    .bind(consultant.as_str())
    .fetch_one(pool)
    .await?;
    Ok(rating(row.try_get("n")?, row.try_get("total")?))
}

fn db(e: sqlx::Error) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn invalid(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(ErrorCode::InvalidField, format!("{field}: {why}"))
}

/// The routes of this module.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/consultants/me/profile", get(my_profile).put(set_profile))
        .route("/v1/consultants/{id}/profile", get(profile))
        .with_state(state)
}

async fn store_profile(s: &AppState, consultant: &UserId, p: &ProfileUpdate) -> Result<(), sqlx::Error> {
    // The write lock first: the profile's insert fires the full-text
    // triggers, whose table a fresh connection reads before it writes.
    // Then the consultant's lock, which the availability write takes too:
    // the availability read and rewritten below is not changed meanwhile.
    let mut tx = s.store.begin_write().await?;
    crate::bookings::sql::lock_consultant(&mut tx, consultant).await?;
    sqlx::query(
        "INSERT INTO profiles (consultant_id, display_name, headline, bio, tags, languages, time_zone, session_minutes, \
         updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (consultant_id) DO UPDATE SET \
         display_name = excluded.display_name, headline = excluded.headline, bio = excluded.bio, tags = excluded.tags, \
         languages = excluded.languages, time_zone = excluded.time_zone, session_minutes = excluded.session_minutes, \
         updated_ms = excluded.updated_ms",
    )
    .bind(consultant.as_str())
    .bind(&p.display_name)
    .bind(&p.headline)
    .bind(&p.bio)
    .bind(json(&p.tags))
    .bind(json(&p.languages))
    .bind(&p.time_zone)
    .bind(json(&p.session_minutes))
    .bind(s.clock.now().unix_millis())
    .execute(&mut *tx)
    .await?;
    crate::bookings::sql::follow_profile(&mut tx, consultant, &p.time_zone, &p.session_minutes).await?;
    sqlx::query("DELETE FROM profile_tags WHERE consultant_id = $1")
        .bind(consultant.as_str())
        .execute(&mut *tx)
        .await?;
    for t in &p.tags {
        sqlx::query("INSERT INTO profile_tags (consultant_id, tag) VALUES ($1, $2)")
            .bind(consultant.as_str())
            .bind(t)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM profile_languages WHERE consultant_id = $1")
        .bind(consultant.as_str())
        .execute(&mut *tx)
        .await?;
    for l in &p.languages {
        sqlx::query("INSERT INTO profile_languages (consultant_id, language) VALUES ($1, $2)")
            .bind(consultant.as_str())
            .bind(l)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// A list as a JSON array column.
fn json<T: serde::Serialize>(list: &[T]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

/// Parses a JSON array column.
pub(crate) fn json_list<T: serde::de::DeserializeOwned>(raw: &str) -> Result<Vec<T>, ApiError> {
    serde_json::from_str(raw).map_err(|e| ApiError::Internal(format!("stored list {raw:?}: {e}")))
}

/// `consultant`'s profile with the facts kept elsewhere; `None` without one.
pub async fn load_profile(s: &AppState, consultant: &UserId) -> Result<Option<ConsultantProfile>, ApiError> {
    let pool = s.store.pool();
    let row = sqlx::query(
        "SELECT display_name, headline, bio, tags, languages, time_zone, session_minutes, updated_ms FROM profiles \
         WHERE consultant_id = $1",
    )
    .bind(consultant.as_str())
    .fetch_optional(&pool)
    .await
    .map_err(db)?;
    let Some(row) = row else { return Ok(None) };
    let text = |k: &str| row.try_get::<String, _>(k).map_err(db);
    Ok(Some(ConsultantProfile {
        consultant_id: consultant.clone(),
        display_name: text("display_name")?,
        headline: text("headline")?,
        bio: text("bio")?,
        tags: json_list(&text("tags")?)?,
        languages: json_list(&text("languages")?)?,
        time_zone: text("time_zone")?,
        session_minutes: json_list(&text("session_minutes")?)?,
        updated_at_ms: row.try_get("updated_ms").map_err(db)?,
        price: s.billing.price(consultant).await?,
        purpose_prices: crate::bookings::availability::purpose_prices(s, consultant).await?,
        recording_allowed: s.consent.recording_allowed(consultant).await.map_err(db)?,
        payout_ready: s.billing.payout_account(consultant).await?.is_some_and(|(_, ready)| ready),
        rating: rating_of(&pool, consultant).await.map_err(db)?,
        featured_until_ms: s.billing.featured_until(consultant).await?.map(|t| t.unix_millis()),
        presence: s.hub.presence_of(std::slice::from_ref(consultant)).await.pop().unwrap_or(PresenceStatus::Offline),
    }))
}

/// `PUT /v1/consultants/me/profile` (consultants): creates or replaces
/// their profile. Body: [`ProfileUpdate`]; answer: the profile as
/// `GET /v1/consultants/{id}/profile` shows it.
#[utoipa::path(put, path = "/v1/consultants/me/profile", tag = "profiles", security(("bearer" = [])),
    request_body = ProfileUpdate,
    responses((status = 200, body = ConsultantProfile), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_field` (naming the field), `unknown_time_zone`", body = Problem),
        (status = 403, description = "`wrong_role`: consultants only", body = Problem)))]
pub(crate) async fn set_profile(
    State(s): State<AppState>,
    Caller(me): Caller,
    Body(update): Body<ProfileUpdate>,
) -> Result<Json<ConsultantProfile>, ApiError> {
    require(&me, Role::Consultant)?;
    let update = validate(update)?;
    store_profile(&s, &me.id, &update).await.map_err(db)?;
    let profile = load_profile(&s, &me.id).await?;
    profile.map(Json).ok_or_else(|| ApiError::Internal("the profile just written is missing".into()))
}

/// `GET /v1/consultants/me/profile` (consultants): their own profile.
#[utoipa::path(get, path = "/v1/consultants/me/profile", tag = "profiles", security(("bearer" = [])),
    responses((status = 200, body = ConsultantProfile), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 403, description = "`wrong_role`: consultants only", body = Problem),
        (status = 404, description = "`unknown_consultant`: no profile yet", body = Problem)))]
pub(crate) async fn my_profile(
    State(s): State<AppState>,
    Caller(me): Caller,
) -> Result<Json<ConsultantProfile>, ApiError> {
    require(&me, Role::Consultant)?;
    load_profile(&s, &me.id).await?.map(Json).ok_or_else(|| {
        ApiError::NotFound(
            ErrorCode::UnknownConsultant,
            "you have no profile yet: PUT /v1/consultants/me/profile".into(),
        )
    })
}

/// `GET /v1/consultants/{id}/profile` (any authenticated user).
#[utoipa::path(get, path = "/v1/consultants/{id}/profile", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path, description = "consultant id")),
    responses((status = 200, body = ConsultantProfile), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_field`: not a valid id", body = Problem),
        (status = 404, description = "`unknown_consultant`: no profile", body = Problem)))]
pub(crate) async fn profile(
    State(s): State<AppState>,
    Caller(_caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<ConsultantProfile>, ApiError> {
    let id = UserId::parse(id).map_err(|e| invalid("id", e))?;
    load_profile(&s, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(ErrorCode::UnknownConsultant, format!("{id} has no profile")))
}
