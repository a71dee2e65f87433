//! The `disputes` rows (migration 0012) and the parties' history. Every
//! change is one conditional statement, so rivals (two opens, two
//! decisions, a decision and an answer) find one outcome (D1–D3).

use parley_domain::protocol::rest::{Dispute, DisputeDecision, DisputeReason, DisputeStatus, PartyHistory};
use parley_domain::{Currency, Money, SessionId, UserId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::kernel::ApiError;

fn bad(what: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("dispute data: {what}"))
}

fn from_row(r: &AnyRow) -> Result<Dispute, ApiError> {
    let text = |c: &str| r.try_get::<String, _>(c).map_err(bad);
    let opt = |c: &str| r.try_get::<Option<String>, _>(c).map_err(bad);
    let user = |c: &str| UserId::parse(text(c)?).map_err(bad);
    let reason = text("reason")?;
    let status = text("status")?;
    let decision = opt("decision")?;
    let refunded = match (r.try_get::<Option<i64>, _>("refund_minor").map_err(bad)?, opt("currency")?) {
        (Some(a), Some(c)) => Some(Money::new(a, Currency::parse(&c).map_err(bad)?)),
        _ => None,
    };
    Ok(Dispute {
        id: text("id")?,
        session_id: SessionId::parse(text("session_id")?).map_err(bad)?,
        seeker_id: user("seeker_id")?,
        consultant_id: user("consultant_id")?,
        opened_by: user("opened_by")?,
        reason: DisputeReason::parse(&reason).ok_or_else(|| bad(format!("reason {reason:?}")))?,
        text: text("text")?,
        opened_at_ms: r.try_get("opened_ms").map_err(bad)?,
        status: DisputeStatus::parse(&status).ok_or_else(|| bad(format!("status {status:?}")))?,
        answer: opt("answer")?,
        answered_at_ms: r.try_get("answered_ms").map_err(bad)?,
        decision: decision
            .map(|d| DisputeDecision::parse(&d).ok_or_else(|| bad(format!("decision {d:?}"))))
            .transpose()?,
        refunded,
        refund_id: opt("refund_id")?,
        note: opt("note")?,
        decided_by: opt("decided_by")?.map(UserId::parse).transpose().map_err(bad)?,
        decided_at_ms: r.try_get("decided_ms").map_err(bad)?,
    })
}

const COLUMNS: &str = "id, session_id, seeker_id, consultant_id, opened_by, reason, text, opened_ms, status, answer, \
    answered_ms, decision, refund_minor, currency, refund_id, note, decided_by, decided_ms";

/// Dispute `id`, if any.
pub async fn load(conn: &mut AnyConnection, id: &str) -> Result<Option<Dispute>, ApiError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM disputes WHERE id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(bad)?;
    row.as_ref().map(from_row).transpose()
}

/// The disputes `user` may see (all for `None`: moderators), newest first,
/// at most 200.
pub async fn list(pool: &AnyPool, user: Option<&UserId>) -> Result<Vec<Dispute>, ApiError> {
    let rows = match user {
        Some(u) => sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM disputes WHERE seeker_id = $1 OR consultant_id = $1 ORDER BY opened_ms DESC, id LIMIT 200"
        )))
        .bind(u.as_str())
        .fetch_all(pool)
        .await,
        None => sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM disputes ORDER BY opened_ms DESC, id LIMIT 200")))
            .fetch_all(pool)
            .await,
    }
    .map_err(bad)?;
    rows.iter().map(from_row).collect()
}

/// Stores a new dispute; false if its session has one already (D1: the
/// unique key decides between two opened at once).
pub async fn insert(conn: &mut AnyConnection, d: &Dispute) -> Result<bool, ApiError> {
    let done = sqlx::query(
        "INSERT INTO disputes (id, session_id, seeker_id, consultant_id, opened_by, reason, text, opened_ms, status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open') ON CONFLICT (session_id) DO NOTHING",
    )
    .bind(&d.id)
    .bind(d.session_id.as_str())
    .bind(d.seeker_id.as_str())
    .bind(d.consultant_id.as_str())
    .bind(d.opened_by.as_str())
    .bind(d.reason.as_str())
    .bind(&d.text)
    .bind(d.opened_at_ms)
    .execute(conn)
    .await
    .map_err(bad)?;
    Ok(done.rows_affected() == 1)
}

/// Records the answer if the dispute is still `open` (D2); false if not.
pub async fn answer(conn: &mut AnyConnection, id: &str, text: &str, at_ms: i64) -> Result<bool, ApiError> {
    let done = sqlx::query(
        "UPDATE disputes SET status = 'answered', answer = $2, answered_ms = $3 WHERE id = $1 AND status = 'open'",
    )
    .bind(id)
    .bind(text)
    .bind(at_ms)
    .execute(conn)
    .await
    .map_err(bad)?;
    Ok(done.rows_affected() == 1)
}

/// Claims the dispute for a decision if it is `open` or `answered` (D3):
/// it becomes `deciding`, so rival decisions and a late answer are refused.
pub async fn claim(
    pool: &AnyPool,
    id: &str,
    decision: DisputeDecision,
    amount_minor: Option<i64>,
    note: &str,
    moderator: &UserId,
) -> Result<bool, ApiError> {
    let done = sqlx::query(
        "UPDATE disputes SET status = 'deciding', decision = $2, amount_minor = $3, note = $4, decided_by = $5 \
         WHERE id = $1 AND status IN ('open', 'answered')",
    )
    .bind(id)
    .bind(decision.as_str())
    .bind(amount_minor)
    .bind(note)
    .bind(moderator.as_str())
    .execute(pool)
    .await
    .map_err(bad)?;
    Ok(done.rows_affected() == 1)
}

/// Gives a claimed dispute back (its refund failed): `open` or `answered`
/// again, with no decision.
pub async fn unclaim(pool: &AnyPool, id: &str) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE disputes SET status = CASE WHEN answer IS NULL THEN 'open' ELSE 'answered' END, decision = NULL, \
         amount_minor = NULL, note = NULL, decided_by = NULL WHERE id = $1 AND status = 'deciding'",
    )
    .bind(id)
    .execute(pool)
    .await
    .map_err(bad)?;
    Ok(())
}

/// Marks a claimed dispute `decided`, with what was refunded.
pub async fn decided(
    conn: &mut AnyConnection,
    id: &str,
    refund: Option<(&Money, &str)>,
    at_ms: i64,
) -> Result<bool, ApiError> {
    let done = sqlx::query(
        "UPDATE disputes SET status = 'decided', refund_minor = $2, currency = $3, refund_id = $4, decided_ms = $5 \
         WHERE id = $1 AND status = 'deciding'",
    )
    .bind(id)
    .bind(refund.map(|(m, _)| m.amount_minor))
    .bind(refund.map(|(m, _)| m.currency.as_str().to_owned()))
    .bind(refund.map(|(_, r)| r.to_owned()))
    .bind(at_ms)
    .execute(conn)
    .await
    .map_err(bad)?;
    Ok(done.rows_affected() == 1)
}

/// Whether session `id`'s payment was captured (a hold `captured`).
pub async fn charged(pool: &AnyPool, id: &SessionId) -> Result<bool, ApiError> {
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM holds WHERE session_id = $1 AND status = 'captured'")
        .bind(id.as_str())
        .fetch_one(pool)
        .await
        .map_err(bad)?
        .try_get("n")
        .map_err(bad)?;
    Ok(n > 0)
}

/// `user`'s history as the session's `role` (`seeker` or `consultant`):
/// sessions, charged ones, disputes opened and against them, reviews.
pub async fn history(pool: &AnyPool, user: &UserId, role: &str) -> Result<PartyHistory, ApiError> {
    let column = if role == "seeker" { "seeker_id" } else { "consultant_id" };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT COUNT(*) FROM sessions WHERE {column} = $1) AS sessions, \
         (SELECT COUNT(*) FROM holds WHERE {column} = $1 AND status = 'captured') AS charged, \
         (SELECT COUNT(*) FROM disputes WHERE opened_by = $1) AS opened, \
         (SELECT COUNT(*) FROM disputes WHERE (seeker_id = $1 OR consultant_id = $1) AND opened_by <> $1) AS against, \
         (SELECT COUNT(*) FROM reviews WHERE {column} = $1) AS reviews, \
         (SELECT CAST(COALESCE(SUM(stars), 0) AS BIGINT) FROM reviews WHERE {column} = $1) AS stars"
    )))
    .bind(user.as_str())
    .fetch_one(pool)
    .await
    .map_err(bad)?;
    let n =
        |c: &str| -> Result<u64, ApiError> { Ok(u64::try_from(row.try_get::<i64, _>(c).map_err(bad)?).unwrap_or(0)) };
    let reviews = n("reviews")?;
    Ok(PartyHistory {
        user_id: user.clone(),
        role: role.to_owned(),
        sessions: n("sessions")?,
        charged_sessions: n("charged")?,
        disputes_opened: n("opened")?,
        disputes_against: n("against")?,
        reviews,
        average_stars_x100: (reviews > 0).then(|| n("stars").map(|s| s * 100 / reviews)).transpose()?,
    })
}
