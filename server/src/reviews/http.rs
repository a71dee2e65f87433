//! Reviews and reputation (issue 4): a session's seeker reviews it once
//! after it ended, its consultant replies once, anyone signed in reads a
//! consultant's reviews with their reputation (the Bayesian average of
//! `domain::reputation`). [`reputations`] gives other modules (the
//! directory) the reputation of many consultants at once.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use parley_domain::protocol::rest::{
    DEFAULT_REVIEW_PAGE, MAX_REVIEW_CHARS, MAX_REVIEW_PAGE, ReplyRequest, Reputation, Review, ReviewCreatedData,
    ReviewPage, ReviewReply, ReviewRequest, WebhookEventType,
};
use parley_domain::protocol::{ErrorCode, Problem, Role};
use parley_domain::{SessionId, Timestamp, UserId};
use parley_signaling::Store;
use serde::Deserialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::kernel::{ApiError, AppState, Body, Caller, require, session_id};
use crate::store::outbox::{NewEvent, insert_event};

/// The routes of this module.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/sessions/{id}/review", post(create_review))
        .route("/v1/reviews/{id}/reply", post(reply))
        .route("/v1/consultants/{id}/reviews", get(consultant_reviews))
        .with_state(state)
}

/// The reputation of each of `consultants` (every one gets an entry: the
/// prior without reviews), in one query per 500 ids.
pub async fn reputations(pool: &AnyPool, consultants: &[UserId]) -> Result<HashMap<UserId, Reputation>, sqlx::Error> {
    let mut out: HashMap<UserId, Reputation> =
        consultants.iter().map(|id| (id.clone(), Reputation::from_stars(0, 0))).collect();
    for chunk in consultants.chunks(500) {
        // Only placeholder numbers are spliced into the SQL; ids are bound.
        let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT consultant_id, CAST(COUNT(*) AS BIGINT) AS n, CAST(SUM(stars) AS BIGINT) AS total FROM reviews \
             WHERE consultant_id IN ({}) GROUP BY consultant_id",
            list.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(id.as_str());
        }
        for row in q.fetch_all(pool).await? {
            let id: String = row.try_get("consultant_id")?;
            let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
            let total = u64::try_from(row.try_get::<i64, _>("total")?).unwrap_or(0);
            if let Ok(id) = UserId::parse(id) {
                out.insert(id, Reputation::from_stars(n, total));
            }
        }
    }
    Ok(out)
}

/// The reputation of one consultant.
pub async fn reputation(pool: &AnyPool, consultant: &UserId) -> Result<Reputation, sqlx::Error> {
    let mut all = reputations(pool, std::slice::from_ref(consultant)).await?;
    Ok(all.remove(consultant).unwrap_or_else(|| Reputation::from_stars(0, 0)))
}

fn invalid(what: impl Into<String>) -> ApiError {
    ApiError::BadRequest(ErrorCode::InvalidField, what.into())
}

fn check_text(text: &str, may_be_empty: bool) -> Result<(), ApiError> {
    let chars = text.chars().count();
    if chars > MAX_REVIEW_CHARS {
        return Err(invalid(format!("text: {chars} characters; at most {MAX_REVIEW_CHARS}")));
    }
    if !may_be_empty && text.trim().is_empty() {
        return Err(invalid("text: must not be empty"));
    }
    Ok(())
}

const REVIEW_COLUMNS: &str = "id, session_id, seeker_id, consultant_id, stars, text, created_ms, reply_text, reply_ms";

fn review_from_row(row: &AnyRow) -> Result<Review, ApiError> {
    let bad = |e: &dyn std::fmt::Display| ApiError::Internal(format!("stored review: {e}"));
    let db = |e: sqlx::Error| ApiError::Internal(e.to_string());
    let reply_text: Option<String> = row.try_get("reply_text").map_err(db)?;
    let reply_ms: Option<i64> = row.try_get("reply_ms").map_err(db)?;
    Ok(Review {
        id: row.try_get("id").map_err(db)?,
        session_id: SessionId::parse(row.try_get::<String, _>("session_id").map_err(db)?).map_err(|e| bad(&e))?,
        seeker_id: UserId::parse(row.try_get::<String, _>("seeker_id").map_err(db)?).map_err(|e| bad(&e))?,
        consultant_id: UserId::parse(row.try_get::<String, _>("consultant_id").map_err(db)?).map_err(|e| bad(&e))?,
        stars: u8::try_from(row.try_get::<i64, _>("stars").map_err(db)?).map_err(|e| bad(&e))?,
        text: row.try_get("text").map_err(db)?,
        created_at_ms: row.try_get("created_ms").map_err(db)?,
        reply: reply_text.map(|text| ReviewReply { text, created_at_ms: reply_ms.unwrap_or_default() }),
    })
}

async fn review_by_id(pool: &AnyPool, id: &str) -> Result<Option<Review>, ApiError> {
    let sql = format!("SELECT {REVIEW_COLUMNS} FROM reviews WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    row.as_ref().map(review_from_row).transpose()
}

/// `POST /v1/sessions/{id}/review` (the session's seeker, once, after it
/// ended): 1–5 stars and up to 2000 characters of text. Emits
/// `review.created` (stored with the review).
#[utoipa::path(post, path = "/v1/sessions/{id}/review", tag = "reviews", security(("bearer" = [])),
    params(("id" = String, Path, description = "session id (`ses_…`)")), request_body = ReviewRequest,
    responses((status = 201, body = Review), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_field`: stars outside 1–5, text over 2000 characters, bad body or id", body = Problem),
        (status = 403, description = "`wrong_role`: seekers only; `forbidden`: not this session's seeker", body = Problem),
        (status = 404, description = "`unknown_session`", body = Problem),
        (status = 409, description = "`session_not_completed`: still open; `review_exists`: already reviewed", body = Problem)))]
pub(crate) async fn create_review(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<ReviewRequest>,
) -> Result<(StatusCode, Json<Review>), ApiError> {
    require(&me, Role::Seeker)?;
    let id = session_id(id)?;
    if !(1..=5).contains(&req.stars) {
        return Err(invalid(format!("stars: {} is not 1-5", req.stars)));
    }
    check_text(&req.text, true)?;
    let Some(session) = s.store.session(&id).await? else {
        return Err(ApiError::NotFound(ErrorCode::UnknownSession, format!("no session {id}")));
    };
    if session.record.seeker_id != me.id {
        return Err(ApiError::Forbidden(ErrorCode::Forbidden, format!("you are not the seeker of session {id}")));
    }
    if session.ended_at.is_none() {
        return Err(ApiError::Conflict(
            ErrorCode::SessionNotCompleted,
            format!("session {id} is still open; review it after it ends"),
        ));
    }
    let now = s.clock.now();
    let review = Review {
        id: format!("rev_{}", uuid::Uuid::now_v7().simple()),
        session_id: id.clone(),
        seeker_id: me.id.clone(),
        consultant_id: session.record.consultant_id.clone(),
        stars: req.stars,
        text: req.text,
        created_at_ms: now.unix_millis(),
        reply: None,
    };
    if !store_review(&s.store.pool(), &review, now).await? {
        return Err(ApiError::Conflict(ErrorCode::ReviewExists, format!("session {id} is already reviewed")));
    }
    s.webhooks.wake();
    Ok((StatusCode::CREATED, Json(review)))
}

/// Stores `review` and its `review.created` event in one transaction; false
/// if the session already has a review.
async fn store_review(pool: &AnyPool, review: &Review, now: Timestamp) -> Result<bool, ApiError> {
    let db = |e: sqlx::Error| ApiError::Internal(e.to_string());
    let data = ReviewCreatedData {
        review_id: review.id.clone(),
        session_id: review.session_id.clone(),
        seeker_id: review.seeker_id.clone(),
        consultant_id: review.consultant_id.clone(),
        stars: review.stars,
        text: review.text.clone(),
        created_at_ms: review.created_at_ms,
    };
    let key = format!("review.created:{}", review.session_id);
    let event = NewEvent::new(WebhookEventType::ReviewCreated, &data, now, Some(key))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut tx = pool.begin().await.map_err(db)?;
    let inserted = sqlx::query(
        "INSERT INTO reviews (id, session_id, seeker_id, consultant_id, stars, text, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (session_id) DO NOTHING",
    )
    .bind(&review.id)
    .bind(review.session_id.as_str())
    .bind(review.seeker_id.as_str())
    .bind(review.consultant_id.as_str())
    .bind(i64::from(review.stars))
    .bind(&review.text)
    .bind(review.created_at_ms)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    if inserted.rows_affected() != 1 {
        return Ok(false);
    }
    insert_event(&mut tx, &event).await.map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(true)
}

/// `POST /v1/reviews/{id}/reply` (the review's consultant, once): a public
/// reply of up to 2000 characters. Returns the review with it.
#[utoipa::path(post, path = "/v1/reviews/{id}/reply", tag = "reviews", security(("bearer" = [])),
    params(("id" = String, Path, description = "review id (`rev_…`)")), request_body = ReplyRequest,
    responses((status = 200, body = Review), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_field`: empty text or over 2000 characters, bad body", body = Problem),
        (status = 403, description = "`wrong_role`: consultants only; `forbidden`: another consultant's review", body = Problem),
        (status = 404, description = "`unknown_review`", body = Problem),
        (status = 409, description = "`review_exists`: already replied", body = Problem)))]
pub(crate) async fn reply(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<ReplyRequest>,
) -> Result<Json<Review>, ApiError> {
    require(&me, Role::Consultant)?;
    check_text(&req.text, false)?;
    let pool = s.store.pool();
    let Some(review) = review_by_id(&pool, &id).await? else {
        return Err(ApiError::NotFound(ErrorCode::UnknownReview, format!("no review {id}")));
    };
    if review.consultant_id != me.id {
        return Err(ApiError::Forbidden(ErrorCode::Forbidden, format!("review {id} is not about you")));
    }
    let now = s.clock.now().unix_millis();
    let done = sqlx::query("UPDATE reviews SET reply_text = $2, reply_ms = $3 WHERE id = $1 AND reply_text IS NULL")
        .bind(&id)
        .bind(&req.text)
        .bind(now)
        .execute(&pool)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if done.rows_affected() != 1 {
        return Err(ApiError::Conflict(ErrorCode::ReviewExists, format!("review {id} already has your reply")));
    }
    Ok(Json(Review { reply: Some(ReviewReply { text: req.text, created_at_ms: now }), ..review }))
}

/// `?limit=&cursor=` of `GET /v1/consultants/{id}/reviews`.
#[derive(Debug, Deserialize)]
pub(crate) struct PageQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// An opaque cursor: the last review's time and id, hex-encoded.
fn encode_cursor(created_ms: i64, id: &str) -> String {
    hex::encode(format!("{created_ms}:{id}"))
}

fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    let raw = String::from_utf8(hex::decode(cursor).ok()?).ok()?;
    let (ms, id) = raw.split_once(':')?;
    Some((ms.parse().ok()?, id.to_owned()))
}

/// `GET /v1/consultants/{id}/reviews?limit=&cursor=` (anyone signed in):
/// the consultant's reviews, newest first, `limit` per page (default 20,
/// at most 100), and their reputation over all reviews.
#[utoipa::path(get, path = "/v1/consultants/{id}/reviews", tag = "reviews", security(("bearer" = [])),
    params(("id" = String, Path, description = "consultant id"),
        ("limit" = Option<u32>, Query, description = "reviews per page, 1–100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, body = ReviewPage), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_field`: bad id, limit or cursor", body = Problem),
        (status = 404, description = "`unknown_consultant`", body = Problem)))]
pub(crate) async fn consultant_reviews(
    State(s): State<AppState>,
    Caller(_caller): Caller,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ReviewPage>, ApiError> {
    let id = UserId::parse(id).map_err(|e| invalid(format!("id: {e}")))?;
    let Query(q) = query.map_err(|e| invalid(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_REVIEW_PAGE);
    if !(1..=MAX_REVIEW_PAGE).contains(&limit) {
        return Err(invalid(format!("limit: {limit} is not 1-{MAX_REVIEW_PAGE}")));
    }
    let (before_ms, before_id) = match q.cursor.as_deref() {
        None | Some("") => (i64::MAX, String::new()),
        Some(c) => decode_cursor(c).ok_or_else(|| invalid("cursor: not one this server handed out"))?,
    };
    if !s.store.user(&id).await?.is_some_and(|u| u.role == Role::Consultant) {
        return Err(ApiError::NotFound(ErrorCode::UnknownConsultant, format!("no consultant {id}")));
    }
    let pool = s.store.pool();
    let sql = format!(
        "SELECT {REVIEW_COLUMNS} FROM reviews WHERE consultant_id = $1 \
         AND (created_ms < $2 OR (created_ms = $2 AND id < $3)) ORDER BY created_ms DESC, id DESC LIMIT $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.as_str())
        .bind(before_ms)
        .bind(&before_id)
        .bind(i64::from(limit) + 1)
        .fetch_all(&pool)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut reviews = rows.iter().map(review_from_row).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if reviews.len() > limit as usize {
        reviews.truncate(limit as usize);
        reviews.last().map(|r| encode_cursor(r.created_at_ms, &r.id))
    } else {
        None
    };
    let reputation = reputation(&pool, &id).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(ReviewPage { consultant_id: id, reputation, reviews, next_cursor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = encode_cursor(1_700_000_000_000, "rev_0192");
        assert_eq!(decode_cursor(&c), Some((1_700_000_000_000, "rev_0192".to_owned())));
        for bad in ["zz", "00", &hex::encode("nocolon"), &hex::encode("x:rev")] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
