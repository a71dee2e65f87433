//! Consultant metrics (issue 4): `GET /v1/consultants/{id}/metrics` —
//! sessions, billable minutes, earnings net of commission and refunds,
//! rating, acceptance of instant calls and bookings, and a per-month (UTC)
//! series.
//! (Prometheus metrics are `/metrics`, in routes.rs.)

use std::collections::BTreeMap;

use chrono::Datelike;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use parley_domain::protocol::rest::{Acceptance, AcceptanceCounts, ConsultantMetrics, MonthMetrics, Reputation};
use parley_domain::protocol::{ErrorCode, Problem, Role};
use parley_domain::{Currency, Money, UserId};
use parley_signaling::Store;
use serde::Deserialize;
use sqlx::{AnyPool, Row};

use crate::kernel::{ApiError, AppState, Caller};

/// The routes of this module.
pub fn router(state: AppState) -> Router {
    Router::new().route("/v1/consultants/{id}/metrics", get(consultant_metrics)).with_state(state)
}

/// `?from=&to=` (Unix ms) of `GET /v1/consultants/{id}/metrics`.
#[derive(Debug, Deserialize)]
pub(crate) struct PeriodQuery {
    from: Option<i64>,
    to: Option<i64>,
}

/// The UTC year and month (1–12) of Unix ms `ms` (1970-01 for the
/// out-of-range, which the route's checks keep out).
fn month_of(ms: i64) -> (i32, u32) {
    let at = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    (at.year(), at.month())
}

/// The first instant (Unix ms) of UTC month `(year, month)`.
fn month_start((y, m): (i32, u32)) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

fn next_month((y, m): (i32, u32)) -> (i32, u32) {
    if m == 12 { (y + 1, 1) } else { (y, m + 1) }
}

/// What one month adds up to while counting.
#[derive(Default)]
struct Tally {
    sessions: u64,
    billable_secs: u64,
    earnings: BTreeMap<String, i64>,
}

/// Why the metrics could not be computed: the database failed, or holds
/// something it should not. Either is a 500 `internal` ([`ApiError::Internal`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum MetricsError {
    /// A query failed, or a row lacked a column of the expected type.
    #[error(transparent)]
    Query(#[from] sqlx::Error),
    /// A stored currency code that does not parse.
    #[error("stored currency: {0}")]
    Currency(#[from] parley_domain::MoneyError),
}

impl From<MetricsError> for ApiError {
    fn from(e: MetricsError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

fn money_list(sums: &BTreeMap<String, i64>) -> Result<Vec<Money>, MetricsError> {
    sums.iter()
        .map(|(c, minor)| {
            let c = Currency::parse(c)?;
            Ok(Money::new(*minor, c))
        })
        .collect()
}

/// `GET /v1/consultants/{id}/metrics?from=&to=` (that consultant, or a
/// moderator): what happened in `[from, to)` (Unix ms; all time without).
#[utoipa::path(get, path = "/v1/consultants/{id}/metrics", tag = "consultants", security(("bearer" = [])),
    params(("id" = String, Path, description = "consultant id"),
        ("from" = Option<i64>, Query, description = "period start, Unix ms (inclusive)"),
        ("to" = Option<i64>, Query, description = "period end, Unix ms (exclusive)")),
    responses((status = 200, body = ConsultantMetrics), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_field`: bad id, `from`/`to` not integers, negative, or `from` ≥ `to`", body = Problem),
        (status = 403, description = "`forbidden`: not that consultant or a moderator", body = Problem),
        (status = 404, description = "`unknown_consultant` (moderators asking about an unknown id)", body = Problem)))]
pub(crate) async fn consultant_metrics(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    query: Result<Query<PeriodQuery>, QueryRejection>,
) -> Result<Json<ConsultantMetrics>, ApiError> {
    let invalid = |m: String| ApiError::BadRequest(ErrorCode::InvalidField, m);
    let id = UserId::parse(id).map_err(|e| invalid(format!("id: {e}")))?;
    let Query(q) = query.map_err(|e| invalid(e.body_text()))?;
    if q.from.is_some_and(|f| f < 0) || q.to.is_some_and(|t| t < 0) {
        return Err(invalid("from, to: Unix milliseconds, not negative".into()));
    }
    if let (Some(f), Some(t)) = (q.from, q.to)
        && f >= t
    {
        return Err(invalid(format!("from ({f}) must be before to ({t})")));
    }
    let own = me.role == Role::Consultant && me.id == id;
    if !own && me.role != Role::Moderator {
        return Err(ApiError::Forbidden(ErrorCode::Forbidden, "only the consultant and moderators see metrics".into()));
    }
    if !own && !s.store.user(&id).await?.is_some_and(|u| u.role == Role::Consultant) {
        return Err(ApiError::NotFound(ErrorCode::UnknownConsultant, format!("no consultant {id}")));
    }
    let (from, to) = (q.from.unwrap_or(0), q.to.unwrap_or(i64::MAX));
    let metrics = compute(&s.store.pool(), &id, from, to).await?;
    Ok(Json(ConsultantMetrics { from_ms: q.from, to_ms: q.to, ..metrics }))
}

/// The metrics of `consultant` over `[from, to)`.
async fn compute(pool: &AnyPool, consultant: &UserId, from: i64, to: i64) -> Result<ConsultantMetrics, MetricsError> {
    let mut months: BTreeMap<(i32, u32), Tally> = BTreeMap::new();
    let sessions = sqlx::query(
        "SELECT s.opened_ms, st.billable_secs FROM sessions s LEFT JOIN settlements st ON st.session_id = s.id \
         WHERE s.consultant_id = $1 AND s.opened_ms >= $2 AND s.opened_ms < $3",
    )
    .bind(consultant.as_str())
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    for row in &sessions {
        let t = months.entry(month_of(row.try_get("opened_ms")?)).or_default();
        t.sessions += 1;
        let secs: Option<i64> = row.try_get("billable_secs")?;
        t.billable_secs += u64::try_from(secs.unwrap_or(0)).unwrap_or(0);
    }
    // Earnings as the ledger booked them: the consultant's share of each
    // capture (after commission), less what refunds took back, in the
    // month each entry was booked.
    let entries = sqlx::query(
        "SELECT kind, amount_minor, currency, at_ms FROM ledger WHERE consultant_id = $1 \
         AND kind IN ('earnings', 'earnings_reversal') AND at_ms >= $2 AND at_ms < $3",
    )
    .bind(consultant.as_str())
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    for row in &entries {
        let amount: i64 = row.try_get("amount_minor")?;
        let signed = if row.try_get::<String, _>("kind")? == "earnings" { amount } else { -amount };
        let t = months.entry(month_of(row.try_get("at_ms")?)).or_default();
        *t.earnings.entry(row.try_get("currency")?).or_default() += signed;
    }
    let stars = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(SUM(stars), 0) AS BIGINT) AS total FROM reviews \
         WHERE consultant_id = $1 AND created_ms >= $2 AND created_ms < $3",
    )
    .bind(consultant.as_str())
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    let rating = Reputation::from_stars(
        u64::try_from(stars.try_get::<i64, _>("n")?).unwrap_or(0),
        u64::try_from(stars.try_get::<i64, _>("total")?).unwrap_or(0),
    );
    // Instant calls that rang: `calls.state` is the last transition.
    let calls = sqlx::query(
        "SELECT state, CAST(COUNT(*) AS BIGINT) AS n FROM calls WHERE consultant_id = $1 \
         AND created_ms >= $2 AND created_ms < $3 AND state IN ('accepted', 'declined', 'timeout') GROUP BY state",
    )
    .bind(consultant.as_str())
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let (mut accepted, mut declined, mut timed_out) = (0, 0, 0);
    for row in &calls {
        let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
        match row.try_get::<String, _>("state")?.as_str() {
            "accepted" => accepted = n,
            "declined" => declined = n,
            _ => timed_out = n,
        }
    }
    // Bookings answered or left to expire: a confirmed booking keeps its
    // start when later cancelled or held; a rescheduled one is pending again.
    let booked = sqlx::query(
        "SELECT CAST(COALESCE(SUM(CASE WHEN start_ms IS NOT NULL AND state IN ('confirmed', 'held', 'cancelled') \
         THEN 1 ELSE 0 END), 0) AS BIGINT) AS accepted, \
         CAST(COALESCE(SUM(CASE WHEN state = 'declined' THEN 1 ELSE 0 END), 0) AS BIGINT) AS declined, \
         CAST(COALESCE(SUM(CASE WHEN state = 'expired' THEN 1 ELSE 0 END), 0) AS BIGINT) AS expired \
         FROM bookings WHERE consultant_id = $1 AND created_ms >= $2 AND created_ms < $3",
    )
    .bind(consultant.as_str())
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    let count =
        |col: &str| -> Result<u64, sqlx::Error> { Ok(u64::try_from(booked.try_get::<i64, _>(col)?).unwrap_or(0)) };
    let bookings = AcceptanceCounts::new(count("accepted")?, count("declined")?, count("expired")?);
    let instant_calls = AcceptanceCounts::new(accepted, declined, timed_out);

    let mut total = Tally::default();
    let mut series = Vec::new();
    let (first, last) = match (months.keys().next(), months.keys().next_back()) {
        (Some(f), Some(l)) => (*f, *l),
        _ => ((0, 1), (0, 0)),
    };
    let mut month = first;
    while !months.is_empty() && month <= last {
        let t = months.remove(&month).unwrap_or_default();
        total.sessions += t.sessions;
        total.billable_secs += t.billable_secs;
        for (c, v) in &t.earnings {
            *total.earnings.entry(c.clone()).or_default() += v;
        }
        let earnings = money_list(&t.earnings)?;
        series.push(MonthMetrics {
            month: format!("{:04}-{:02}", month.0, month.1),
            start_ms: month_start(month),
            sessions: t.sessions,
            billable_secs: t.billable_secs,
            billable_minutes: t.billable_secs / 60,
            earnings,
        });
        month = next_month(month);
    }
    let earnings = money_list(&total.earnings)?;
    Ok(ConsultantMetrics {
        consultant_id: consultant.clone(),
        from_ms: None,
        to_ms: None,
        sessions: total.sessions,
        billable_secs: total.billable_secs,
        billable_minutes: total.billable_secs / 60,
        earnings,
        rating,
        acceptance: Acceptance { all: instant_calls.plus(&bookings), instant_calls, bookings },
        months: series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_utc_calendar_months() {
        assert_eq!(month_of(0), (1970, 1));
        assert_eq!(month_of(-1), (1969, 12));
        // 2024-02-29T23:59:59.999Z and the next millisecond.
        let leap_end = month_start((2024, 3));
        assert_eq!(leap_end, 1_709_251_200_000);
        assert_eq!(month_of(leap_end - 1), (2024, 2));
        assert_eq!(month_of(leap_end), (2024, 3));
        assert_eq!(month_start((2025, 1)), 1_735_689_600_000);
        assert_eq!(next_month((2025, 12)), (2026, 1));
        for ms in [0, 951_782_400_000, 1_735_689_599_999, 4_102_444_800_000] {
            let month = month_of(ms);
            assert!(month_start(month) <= ms && ms < month_start(next_month(month)), "{ms}");
        }
    }
}
