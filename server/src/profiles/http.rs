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
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use parley_domain::protocol::rest::{
    ConsultantPrice, ConsultantProfile, ConsultantRating, ProfileUpdate, PromotionPackage,
};
use parley_domain::protocol::{ErrorCode, PresenceStatus, Problem, Role};
use parley_domain::{Currency, UserId};
use sqlx::{AnyPool, Row};

use crate::api::require;
use crate::extract::{Body, Caller};
use crate::routes::{ApiError, AppState};

/// The most a price may be, in minor units (EUR 10 000.00 per session or
/// per minute): more is 400 `invalid_price`.
pub const MAX_PRICE_MINOR: i64 = 1_000_000;

/// Longest display name, bytes.
pub const MAX_DISPLAY_NAME: usize = 100;
/// Longest headline, bytes.
pub const MAX_HEADLINE: usize = 160;
/// Longest bio, bytes.
pub const MAX_BIO: usize = 5000;
/// Most tags.
pub const MAX_TAGS: usize = 20;
/// Longest tag, bytes.
pub const MAX_TAG: usize = 40;
/// Most languages.
pub const MAX_LANGUAGES: usize = 20;
/// Most session lengths.
pub const MAX_SESSION_LENGTHS: usize = 6;
/// Shortest and longest session length offered, minutes.
pub const SESSION_MINUTES: std::ops::RangeInclusive<u32> = 15..=240;

/// What the marketplace accepts: the pricing currencies
/// (`PARLEY_CURRENCIES`) and the promotion packages on sale.
#[derive(Debug, Clone)]
pub struct Marketplace {
    /// Currencies consultants may price in.
    pub currencies: Vec<Currency>,
    /// Promotion packages on sale.
    pub packages: Vec<PromotionPackage>,
}

impl Marketplace {
    /// From the validated configuration, with the built-in packages.
    pub fn from_config(config: &crate::Config) -> Marketplace {
        Marketplace { currencies: config.currencies.clone(), packages: crate::promotions::default_packages() }
    }
}

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

/// A rating from `count` reviews whose stars add up to `stars_sum`.
pub fn rating(count: i64, stars_sum: i64) -> ConsultantRating {
    let count = u64::try_from(count).unwrap_or(0);
    let sum = u64::try_from(stars_sum).unwrap_or(0);
    ConsultantRating {
        count,
        mean: (count > 0).then(|| sum as f64 / count as f64),
        score: parley_domain::reputation::bayesian_average(count, sum),
    }
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

/// A language code normalised (`pt-br` → `pt-BR`), or `None` if it is not
/// a 2–3 letter language with an optional 4-letter script and an optional
/// 2-letter or 3-digit region.
pub fn language_code(raw: &str) -> Option<String> {
    let mut parts = raw.trim().split('-');
    let lang = parts.next()?;
    if !(2..=3).contains(&lang.len()) || !lang.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let mut out = lang.to_ascii_lowercase();
    let mut next = parts.next();
    if let Some(script) = next.filter(|s| s.len() == 4 && s.bytes().all(|b| b.is_ascii_alphabetic())) {
        out.push('-');
        out.push_str(&script[..1].to_ascii_uppercase());
        out.push_str(&script[1..].to_ascii_lowercase());
        next = parts.next();
    }
    if let Some(region) = next {
        let letters = region.len() == 2 && region.bytes().all(|b| b.is_ascii_alphabetic());
        let digits = region.len() == 3 && region.bytes().all(|b| b.is_ascii_digit());
        if !(letters || digits) {
            return None;
        }
        out.push('-');
        out.push_str(&region.to_ascii_uppercase());
    }
    parts.next().is_none().then_some(out)
}

/// A tag normalised (trimmed, lower-case), or why not.
pub fn tag(raw: &str) -> Result<String, String> {
    let t = raw.trim().to_lowercase();
    if t.is_empty() || t.len() > MAX_TAG {
        return Err(format!("each tag is 1-{MAX_TAG} bytes; {raw:?} is not"));
    }
    if t.chars().any(char::is_control) {
        return Err(format!("{raw:?} contains a control character"));
    }
    Ok(t)
}

fn one_line(field: &str, value: &str, min: usize, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.len() < min || v.len() > max {
        return Err(invalid(field, format!("{min}-{max} bytes (got {})", v.len())));
    }
    if v.chars().any(char::is_control) {
        return Err(invalid(field, "no control characters (line breaks, tabs, …)"));
    }
    Ok(v.to_owned())
}

/// `u` checked and normalised.
fn validate(u: ProfileUpdate) -> Result<ProfileUpdate, ApiError> {
    let display_name = one_line("display_name", &u.display_name, 1, MAX_DISPLAY_NAME)?;
    let headline = one_line("headline", &u.headline, 0, MAX_HEADLINE)?;
    let bio = u.bio.trim().to_owned();
    if bio.len() > MAX_BIO {
        return Err(invalid("bio", format!("at most {MAX_BIO} bytes (got {})", bio.len())));
    }
    if bio.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
        return Err(invalid("bio", "no control characters other than line breaks and tabs"));
    }
    if u.tags.len() > MAX_TAGS {
        return Err(invalid("tags", format!("at most {MAX_TAGS} (got {})", u.tags.len())));
    }
    let mut tags: Vec<String> = Vec::with_capacity(u.tags.len());
    for raw in &u.tags {
        let t = tag(raw).map_err(|why| invalid("tags", why))?;
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    if u.languages.len() > MAX_LANGUAGES {
        return Err(invalid("languages", format!("at most {MAX_LANGUAGES} (got {})", u.languages.len())));
    }
    let mut languages: Vec<String> = Vec::with_capacity(u.languages.len());
    for raw in &u.languages {
        let Some(l) = language_code(raw) else {
            return Err(invalid("languages", format!("{raw:?} is not a language code such as en, fr or pt-BR")));
        };
        if !languages.contains(&l) {
            languages.push(l);
        }
    }
    let time_zone: chrono_tz::Tz = u.time_zone.trim().parse().map_err(|_| {
        ApiError::BadRequest(
            ErrorCode::UnknownTimeZone,
            format!("time_zone: {:?} is not an IANA time zone such as Europe/Berlin", u.time_zone),
        )
    })?;
    let mut session_minutes = u.session_minutes;
    if session_minutes.is_empty() || session_minutes.len() > MAX_SESSION_LENGTHS {
        return Err(invalid(
            "session_minutes",
            format!("1-{MAX_SESSION_LENGTHS} lengths (got {})", session_minutes.len()),
        ));
    }
    if let Some(bad) = session_minutes.iter().find(|m| !SESSION_MINUTES.contains(m)) {
        return Err(invalid(
            "session_minutes",
            format!("each length is {}-{} minutes; {bad} is not", SESSION_MINUTES.start(), SESSION_MINUTES.end()),
        ));
    }
    session_minutes.sort_unstable();
    session_minutes.dedup();
    Ok(ProfileUpdate {
        display_name,
        headline,
        bio,
        tags,
        languages,
        time_zone: time_zone.name().to_owned(),
        session_minutes,
    })
}

/// Stores `p` (validated) as `consultant`'s profile: the row, its tags and
/// languages, in one transaction (the search index follows in it).
async fn store_profile(s: &AppState, consultant: &UserId, p: &ProfileUpdate) -> Result<(), sqlx::Error> {
    let mut tx = s.store.pool().begin().await?;
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
    crate::bookings::follow_profile(&mut tx, consultant, &p.time_zone, &p.session_minutes).await?;
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
        recording_allowed: s.consent.recording_allowed(consultant).await.map_err(db)?,
        payout_ready: s.billing.payout_account(consultant).await?.is_some_and(|(_, ready)| ready),
        rating: rating_of(&pool, consultant).await.map_err(db)?,
        featured_until_ms: s.billing.featured_until(consultant).await?.map(|t| t.unix_millis()),
        presence: s.hub.presence_of(std::slice::from_ref(consultant)).pop().unwrap_or(PresenceStatus::Offline),
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
    headers: HeaderMap,
) -> Result<Json<ConsultantProfile>, ApiError> {
    let me = s.auth.verify_request(&headers, None)?;
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
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ConsultantProfile>, ApiError> {
    s.auth.verify_request(&headers, None)?;
    let id = UserId::parse(id).map_err(|e| invalid("id", e))?;
    load_profile(&s, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(ErrorCode::UnknownConsultant, format!("{id} has no profile")))
}

/// The body of `PUT /v1/consultants/me/price`, checked: a currency outside
/// `PARLEY_CURRENCIES` (or not a currency at all) is `unsupported_currency`,
/// an amount outside 1..=[`MAX_PRICE_MINOR`] is `invalid_price`, any other
/// bad shape `invalid_field`.
pub(crate) fn checked_price(s: &AppState, value: serde_json::Value) -> Result<ConsultantPrice, ApiError> {
    let accepted = &s.marketplace.currencies;
    let list = || accepted.iter().map(Currency::as_str).collect::<Vec<_>>().join(", ");
    if let Some(c) = value.pointer("/amount/currency").and_then(|c| c.as_str())
        && !accepted.iter().any(|a| a.as_str() == c)
    {
        return Err(ApiError::BadRequest(
            ErrorCode::UnsupportedCurrency,
            format!("amount.currency: {c:?} is not accepted here; use one of {}", list()),
        ));
    }
    let price: ConsultantPrice = serde_json::from_value(value).map_err(|e| invalid("body", e))?;
    if price.amount.amount_minor <= 0 || price.amount.amount_minor > MAX_PRICE_MINOR {
        return Err(ApiError::BadRequest(
            ErrorCode::InvalidPrice,
            format!(
                "amount.amount_minor: between 1 and {MAX_PRICE_MINOR} minor units (got {})",
                price.amount.amount_minor
            ),
        ));
    }
    Ok(price)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_codes_are_checked_and_normalised() {
        assert_eq!(language_code("en").as_deref(), Some("en"));
        assert_eq!(language_code("pt-br").as_deref(), Some("pt-BR"));
        assert_eq!(language_code("ZH-hant-tw").as_deref(), Some("zh-Hant-TW"));
        assert_eq!(language_code("es-419").as_deref(), Some("es-419"));
        for bad in ["", "e", "english", "en-", "en-USA", "en_US", "en-US-x", "1a", "en-12"] {
            assert_eq!(language_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_sql_score_and_the_rating_agree() {
        let r = rating(4, 18);
        assert_eq!(r.mean, Some(4.5));
        assert!((r.score - (17.5 + 18.0) / 9.0).abs() < 1e-12);
        assert_eq!(rating(0, 0).mean, None);
    }
}
