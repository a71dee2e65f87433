//! Reading engagements back as the API shows them (E1–E8): the
//! `engagements`, `milestones` and `escrow_moves` rows. Every write goes
//! through billing's escrow (one state machine under the engagement's lock).

use parley_domain::protocol::ErrorCode;
use parley_domain::protocol::rest::{Engagement, Milestone, PackageTerms};
use parley_domain::{Currency, Money, SessionId, UserId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::kernel::ApiError;

fn db(e: sqlx::Error) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn data(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("engagement data: {e}"))
}

/// 404 `unknown_engagement` for `id`.
pub fn unknown(id: &str) -> ApiError {
    ApiError::NotFound(ErrorCode::UnknownEngagement, format!("no engagement or milestone {id:?} of yours"))
}

/// The parties of engagement `id` (seeker, consultant), if it exists.
pub async fn parties(pool: &AnyPool, id: &str) -> Result<Option<(UserId, UserId)>, ApiError> {
    let row = sqlx::query("SELECT seeker_id, consultant_id FROM engagements WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(db)?;
    row.map(|r| {
        let seeker = UserId::parse(r.try_get::<String, _>("seeker_id").map_err(db)?).map_err(data)?;
        let consultant = UserId::parse(r.try_get::<String, _>("consultant_id").map_err(db)?).map_err(data)?;
        Ok((seeker, consultant))
    })
    .transpose()
}

/// The engagement milestone `id` belongs to, if it exists.
pub async fn milestone_engagement(pool: &AnyPool, id: &str) -> Result<Option<String>, ApiError> {
    let row = sqlx::query("SELECT engagement_id FROM milestones WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(db)?;
    row.map(|r| r.try_get("engagement_id").map_err(db)).transpose()
}

fn milestone(r: &AnyRow, currency: Currency) -> Result<Milestone, ApiError> {
    let links: Option<String> = r.try_get("links").map_err(db)?;
    Ok(Milestone {
        id: r.try_get("id").map_err(db)?,
        seq: u32::try_from(r.try_get::<i64, _>("seq").map_err(db)?).unwrap_or(0),
        description: r.try_get("description").map_err(db)?,
        amount: Money::new(r.try_get("amount_minor").map_err(db)?, currency),
        state: r.try_get("state").map_err(db)?,
        note: r.try_get("note").map_err(db)?,
        links: links.map(|l| serde_json::from_str(&l).map_err(data)).transpose()?.unwrap_or_default(),
        release_due_ms: r.try_get("release_due_ms").map_err(db)?,
        dispute_reason: r.try_get("dispute_reason").map_err(db)?,
        released: Money::new(r.try_get("released_minor").map_err(db)?, currency),
        refunded: Money::new(r.try_get("refunded_minor").map_err(db)?, currency),
        resolution_note: r.try_get("resolution_note").map_err(db)?,
    })
}

/// Engagement `id` as the API shows it, if it exists, read on `conn` (a
/// transaction sees its own changes: the escrow webhooks, E9). Released,
/// refunded and escrowed amounts are the movements reserved so far
/// (pending or done; a refused one counts as nothing).
pub async fn load(conn: &mut AnyConnection, id: &str) -> Result<Option<Engagement>, ApiError> {
    let Some(e) =
        sqlx::query("SELECT * FROM engagements WHERE id = $1").bind(id).fetch_optional(&mut *conn).await.map_err(db)?
    else {
        return Ok(None);
    };
    let currency = Currency::parse(&e.try_get::<String, _>("currency").map_err(db)?).map_err(data)?;
    let m = |v: i64| Money::new(v, currency);
    let rows = sqlx::query("SELECT * FROM milestones WHERE engagement_id = $1 ORDER BY seq")
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    let milestones = rows.iter().map(|r| milestone(r, currency)).collect::<Result<Vec<_>, _>>()?;
    let moves = sqlx::query(
        "SELECT kind, amount_minor, fee_minor, session_id FROM escrow_moves WHERE engagement_id = $1 \
         AND status <> 'failed' ORDER BY created_ms, key",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let (mut released, mut refunded, mut fees) = (0_i64, 0_i64, 0_i64);
    let mut sessions = Vec::new();
    for r in &moves {
        let kind: String = r.try_get("kind").map_err(db)?;
        let (gross, fee): (i64, i64) = (r.try_get("amount_minor").map_err(db)?, r.try_get("fee_minor").map_err(db)?);
        if kind == "transfer" {
            released += gross;
        } else {
            refunded += gross - fee;
            fees += fee;
        }
        if let Some(s) = r.try_get::<Option<String>, _>("session_id").map_err(db)? {
            sessions.push(SessionId::parse(s).map_err(data)?);
        }
    }
    let state: String = e.try_get("state").map_err(db)?;
    let funded_minor: i64 = e.try_get("amount_minor").map_err(db)?;
    let funded = if matches!(state.as_str(), "funding" | "failed") { 0 } else { funded_minor };
    let package = match e.try_get::<Option<i64>, _>("sessions").map_err(db)? {
        Some(n) => Some(PackageTerms {
            sessions: u32::try_from(n).unwrap_or(0),
            minutes: u32::try_from(e.try_get::<Option<i64>, _>("session_minutes").map_err(db)?.unwrap_or(0))
                .unwrap_or(0),
            price: m(e.try_get::<Option<i64>, _>("session_price_minor").map_err(db)?.unwrap_or(0)),
        }),
        None => None,
    };
    let used = u32::try_from(sessions.len()).unwrap_or(u32::MAX);
    let left = match (&package, state.as_str()) {
        (Some(p), "active") => {
            let taken = u32::try_from(booked(conn, id).await?).unwrap_or(u32::MAX).max(used);
            p.sessions.saturating_sub(taken)
        }
        _ => 0,
    };
    Ok(Some(Engagement {
        id: id.to_owned(),
        seeker_id: UserId::parse(e.try_get::<String, _>("seeker_id").map_err(db)?).map_err(data)?,
        consultant_id: UserId::parse(e.try_get::<String, _>("consultant_id").map_err(db)?).map_err(data)?,
        kind: e.try_get("kind").map_err(db)?,
        state,
        title: e.try_get("title").map_err(db)?,
        funded: m(funded),
        released: m(released),
        refunded: m(refunded),
        escrowed: m(funded - released - refunded - fees),
        package,
        sessions_used: used,
        sessions_left: left,
        milestones,
        cancel_fee: e.try_get::<Option<i64>, _>("cancel_fee_minor").map_err(db)?.map(m),
        intent_id: e.try_get("intent_id").map_err(db)?,
        error: e.try_get("error").map_err(db)?,
        created_at_ms: e.try_get("created_ms").map_err(db)?,
        sessions,
    }))
}

/// Ids of `user`'s engagements (as seeker or consultant), newest first, at
/// most 100.
pub async fn of_user(pool: &AnyPool, user: &UserId) -> Result<Vec<String>, ApiError> {
    let rows = sqlx::query(
        "SELECT id FROM engagements WHERE seeker_id = $1 OR consultant_id = $1 ORDER BY created_ms DESC, id LIMIT 100",
    )
    .bind(user.as_str())
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter().map(|r| r.try_get("id").map_err(db)).collect()
}

/// The SQL counting the bookings of package `e.id` that take a session
/// (E2): pending, confirmed or held, and not ended free.
const BOOKED: &str = "SELECT CAST(COUNT(*) AS BIGINT) FROM bookings b WHERE b.engagement_id = e.id \
    AND b.state IN ('pending', 'confirmed', 'held') \
    AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.session_id = b.session_id \
    AND (s.outcome <> 'charged' OR s.amount_minor <= 0))";

/// How many of package `id`'s sessions its bookings take ([`BOOKED`]).
async fn booked(conn: &mut AnyConnection, id: &str) -> Result<i64, ApiError> {
    let sql = format!("SELECT ({BOOKED}) AS n FROM engagements e WHERE e.id = $1");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(&mut *conn).await.map_err(db)
}

/// What a package booking needs of engagement `id`: its consultant, its
/// session length and price, and how many sessions are still free to book,
/// if it is `seeker`'s active package. Read on `conn` after taking the
/// engagement's row lock ([`parley_billing::lock_engagement`]), so rival
/// bookings of one package count one after the other (E2).
///
/// A session is taken by a booking that is pending, confirmed or held and
/// whose session did not end free (a cancelled, declined or expired
/// booking gives its session back), and by a draw of the escrow; free =
/// sessions − the larger of the two counts.
async fn bookable_package(
    conn: &mut AnyConnection,
    id: &str,
    seeker: &UserId,
) -> Result<Option<(UserId, u32, Money, i64)>, ApiError> {
    let sql = format!(
        "SELECT e.consultant_id, e.session_minutes, e.session_price_minor, e.currency, e.sessions, \
         (SELECT CAST(COUNT(*) AS BIGINT) FROM escrow_moves m WHERE m.engagement_id = e.id AND m.session_id IS NOT NULL \
          AND m.status <> 'failed') AS drawn, ({BOOKED}) AS booked \
         FROM engagements e WHERE e.id = $1 AND e.seeker_id = $2 AND e.kind = 'package' AND e.state = 'active'"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(seeker.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    let Some(r) = row else { return Ok(None) };
    let currency = Currency::parse(&r.try_get::<String, _>("currency").map_err(db)?).map_err(data)?;
    let consultant = UserId::parse(r.try_get::<String, _>("consultant_id").map_err(db)?).map_err(data)?;
    let minutes = u32::try_from(r.try_get::<Option<i64>, _>("session_minutes").map_err(db)?.unwrap_or(0)).unwrap_or(0);
    let price = Money::new(r.try_get::<Option<i64>, _>("session_price_minor").map_err(db)?.unwrap_or(0), currency);
    let sessions = r.try_get::<Option<i64>, _>("sessions").map_err(db)?.unwrap_or(0);
    let taken = r.try_get::<i64, _>("drawn").map_err(db)?.max(r.try_get::<i64, _>("booked").map_err(db)?);
    Ok(Some((consultant, minutes, price, sessions - taken)))
}

/// The price of a session booked on package `engagement` (E2) by
/// `seeker` with `consultant` for `length_min`: the package's session
/// price, fixed. Run inside the booking's transaction `tx` before anything
/// else (its first statement takes the engagement's row lock, held until
/// the booking is inserted and committed): so N+2 rival bookings of a
/// package with N sessions left get exactly N through. 404
/// `unknown_engagement` (not the seeker's active package), 400
/// `invalid_field` (another consultant or length), 409 `engagement_state`
/// (every session charged or booked).
pub async fn package_booking(
    tx: &mut AnyConnection,
    now_ms: i64,
    engagement: &str,
    seeker: &UserId,
    consultant: &UserId,
    length_min: u32,
) -> Result<parley_domain::protocol::rest::ConsultantPrice, ApiError> {
    if !parley_billing::lock_engagement(tx, engagement, now_ms).await.map_err(ApiError::from)? {
        return Err(unknown(engagement));
    }
    let (of, minutes, price, free) =
        bookable_package(tx, engagement, seeker).await?.ok_or_else(|| unknown(engagement))?;
    if &of != consultant {
        return Err(ApiError::BadRequest(ErrorCode::InvalidField, format!("engagement_id: a package with {of}")));
    }
    if minutes != length_min {
        return Err(ApiError::BadRequest(ErrorCode::InvalidField, format!("length_min: the package's {minutes}")));
    }
    if free <= 0 {
        return Err(ApiError::Conflict(
            ErrorCode::EngagementState,
            format!("engagement {engagement} has no session left to book"),
        ));
    }
    Ok(parley_domain::protocol::rest::ConsultantPrice {
        model: parley_domain::protocol::rest::PriceModel::Fixed,
        amount: price,
    })
}
