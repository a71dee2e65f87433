//! The directory (issue 4): `GET /v1/directory` — consultants with a
//! profile, searched by keyword, filtered, sorted and paged by keyset.
//!
//! Everything happens in one SQL query. The keyword part is the one place
//! where the SQL differs per backend ([`match_join`]): SQLite's FTS5 ranked
//! by bm25 (name 10, headline 5, bio 1, tags 8), PostgreSQL's tsvector
//! ranked by ts_rank (name and tags A, headline B, bio D); both stem English
//! words, so `taxes` finds `tax`. Ranks, ratings and prices become integer
//! sort keys (ranks × 10⁹, ratings in millionths of a star) so a cursor
//! carries exact values: the cursor is base64url JSON of the sort, the
//! featured flag, the key and the id of the last item, and the next page is
//! what sorts after it. Featured consultants (an active promotion) come
//! first in every sort.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parley_domain::protocol::rest::{ConsultantPrice, DirectoryItem, DirectoryPage, PriceModel};
use parley_domain::protocol::{ErrorCode, PresenceStatus, Problem};
use parley_domain::reputation::{PRIOR_MEAN, PRIOR_WEIGHT};
use parley_domain::{Currency, Money, UserId};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::http::json_list;
use super::rules::{language_code, rating};
use crate::kernel::{ApiError, AppState, Caller};
use crate::store::Backend;

/// Items per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: i64 = 20;
/// Most items per page.
pub const MAX_LIMIT: i64 = 50;
/// Longest `q`, bytes.
pub const MAX_QUERY: usize = 200;
/// Most words of `q` used.
pub const MAX_WORDS: usize = 16;

/// How the directory is ordered (after featured consultants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sort {
    /// Best keyword match first (only with `q`; the default then).
    Relevance,
    /// Highest Bayesian rating first (the default without `q`).
    Rating,
    /// Cheapest first (no price counts as 0).
    Price,
}

impl Sort {
    fn as_str(self) -> &'static str {
        match self {
            Sort::Relevance => "relevance",
            Sort::Rating => "rating",
            Sort::Price => "price",
        }
    }
}

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    /// The sort it belongs to.
    s: String,
    /// The last item's featured flag (0/1).
    f: i64,
    /// The last item's sort key.
    k: i64,
    /// The last item's id.
    id: String,
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(raw: &str, sort: Sort) -> Result<Cursor, ApiError> {
        let bad = || invalid("cursor", "not a cursor of this listing: pass next_cursor back unchanged");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
        let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if c.s != sort.as_str() || !(c.f == 0 || c.f == 1) || UserId::parse(c.id.as_str()).is_err() {
            return Err(bad());
        }
        Ok(c)
    }
}

/// The query parameters, checked.
#[derive(Debug, Default)]
struct Params {
    words: Vec<String>,
    tag: Option<String>,
    language: Option<String>,
    currency: Option<Currency>,
    min_price: Option<i64>,
    max_price: Option<i64>,
    available_now: bool,
    /// Millionths of a star.
    min_rating: Option<i64>,
    sort: Option<Sort>,
    limit: Option<i64>,
    cursor: Option<String>,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(ErrorCode::InvalidField, format!("{field}: {why}"))
}

fn parse(s: &AppState, q: &HashMap<String, String>) -> Result<(Params, Sort), ApiError> {
    let mut p = Params::default();
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let int = |k: &str| -> Result<Option<i64>, ApiError> {
        get(k).map(|v| v.parse::<i64>().map_err(|_| invalid(k, format!("{v:?} is not an integer")))).transpose()
    };
    if let Some(text) = get("q") {
        if text.len() > MAX_QUERY {
            return Err(invalid("q", format!("at most {MAX_QUERY} bytes")));
        }
        p.words = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .take(MAX_WORDS)
            .collect();
        if p.words.is_empty() {
            return Err(invalid("q", "no words to search for (letters or digits)"));
        }
    }
    if let Some(t) = get("tag") {
        p.tag = Some(super::rules::tag(t).map_err(|why| invalid("tag", why))?);
    }
    if let Some(l) = get("language") {
        p.language = Some(
            language_code(l).ok_or_else(|| invalid("language", format!("{l:?} is not a code such as en or pt-BR")))?,
        );
    }
    if let Some(c) = get("currency") {
        let accepted = &s.marketplace.currencies;
        p.currency = Some(accepted.iter().copied().find(|a| a.as_str() == c).ok_or_else(|| {
            ApiError::BadRequest(ErrorCode::UnsupportedCurrency, format!("currency: {c:?} is not accepted here"))
        })?);
    }
    p.min_price = int("min_price")?;
    p.max_price = int("max_price")?;
    for (k, v) in [("min_price", p.min_price), ("max_price", p.max_price)] {
        if v.is_some_and(|v| v < 0) {
            return Err(invalid(k, "minor units, 0 or more"));
        }
    }
    if let (Some(lo), Some(hi)) = (p.min_price, p.max_price)
        && lo > hi
    {
        return Err(invalid("min_price", format!("{lo} is above max_price {hi}")));
    }
    if (p.min_price.is_some() || p.max_price.is_some()) && p.currency.is_none() {
        return Err(ApiError::BadRequest(
            ErrorCode::MissingField,
            "currency: a price range needs the currency it is in (e.g. currency=EUR)".into(),
        ));
    }
    p.available_now = match get("available_now") {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => return Err(invalid("available_now", format!("{v:?}: true or false"))),
    };
    if let Some(r) = get("min_rating") {
        let r: f64 = r.parse().map_err(|_| invalid("min_rating", format!("{r:?} is not a number")))?;
        if !(1.0..=5.0).contains(&r) {
            return Err(invalid("min_rating", "between 1 and 5 stars"));
        }
        p.min_rating = Some((r * 1_000_000.0).round() as i64);
    }
    p.sort = match get("sort") {
        None => None,
        Some("relevance") if p.words.is_empty() => return Err(invalid("sort", "relevance needs a search (q)")),
        Some("relevance") => Some(Sort::Relevance),
        Some("rating") => Some(Sort::Rating),
        Some("price") => Some(Sort::Price),
        Some(v) => return Err(invalid("sort", format!("{v:?}: relevance, rating or price"))),
    };
    let sort = p.sort.unwrap_or(if p.words.is_empty() { Sort::Rating } else { Sort::Relevance });
    p.limit = int("limit")?;
    if let Some(l) = p.limit
        && !(1..=MAX_LIMIT).contains(&l)
    {
        return Err(invalid("limit", format!("1-{MAX_LIMIT} (got {l})")));
    }
    p.cursor = get("cursor").map(str::to_owned);
    Ok((p, sort))
}

/// A bound value.
enum Arg {
    Int(i64),
    Text(String),
}

/// SQL text with its numbered arguments.
#[derive(Default)]
struct Sql {
    args: Vec<Arg>,
}

impl Sql {
    /// Adds `a`; returns its placeholder.
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }
}

/// The keyword match: a join that keeps the matching profiles and names
/// their relevance `m.rank` (an integer, higher is better). The only
/// backend-specific SQL of the directory.
fn match_join(backend: Backend, q: &str) -> String {
    match backend {
        // bm25 is lower-is-better: negated. Column weights: display_name,
        // headline, bio, tags.
        Backend::Sqlite => format!(
            "JOIN (SELECT rowid AS mrid, CAST(ROUND(-bm25(profiles_fts, 10.0, 5.0, 1.0, 8.0) * 1000000000.0) AS BIGINT) \
             AS rank FROM profiles_fts WHERE profiles_fts MATCH {q}) m ON m.mrid = p.rid"
        ),
        Backend::Postgres => format!(
            "JOIN (SELECT consultant_id AS mid, CAST(ROUND(CAST(ts_rank(search, plainto_tsquery('english', {q})) \
             AS DOUBLE PRECISION) * 1000000000.0) AS BIGINT) AS rank FROM profiles \
             WHERE search @@ plainto_tsquery('english', {q})) m ON m.mid = p.consultant_id"
        ),
    }
}

/// The Bayesian rating in SQL, in millionths of a star: the same formula
/// as `reputation::bayesian_average`, over the `r` (reviews) join.
fn score_sql() -> String {
    format!(
        "CAST(ROUND(({:.4} + COALESCE(r.total, 0)) * 1000000.0 / ({:.4} + COALESCE(r.n, 0))) AS BIGINT)",
        PRIOR_WEIGHT * PRIOR_MEAN,
        PRIOR_WEIGHT
    )
}

/// `GET /v1/directory` (any authenticated user): consultants with a
/// profile, featured ones first, then by the chosen sort.
#[utoipa::path(get, path = "/v1/directory", tag = "directory", security(("bearer" = [])),
    params(
        ("q" = Option<String>, Query, description = "keywords (all must match) over name, headline, bio and tags; at most 200 bytes"),
        ("tag" = Option<String>, Query, description = "only consultants with this tag (case-insensitive)"),
        ("language" = Option<String>, Query, description = "only consultants speaking this language; `pt` also matches `pt-BR`"),
        ("min_price" = Option<i64>, Query, description = "lowest price, minor units (needs `currency`; no price counts as 0)"),
        ("max_price" = Option<i64>, Query, description = "highest price, minor units (needs `currency`)"),
        ("currency" = Option<String>, Query, description = "only consultants priced in this currency, and free ones"),
        ("available_now" = Option<bool>, Query, description = "only consultants available to call now"),
        ("min_rating" = Option<f64>, Query, description = "lowest Bayesian rating, 1-5 stars"),
        ("sort" = Option<String>, Query, description = "`relevance` (with q; the default then), `rating` (the default without q) or `price`"),
        ("limit" = Option<i64>, Query, description = "items per page, 1-50, default 20"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses((status = 200, body = DirectoryPage), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_field` (naming the parameter), `missing_field` (a price range without currency), `unsupported_currency`", body = Problem)))]
pub(crate) async fn directory(
    State(s): State<AppState>,
    Caller(_caller): Caller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<DirectoryPage>, ApiError> {
    let Query(query) = query.map_err(|e| invalid("query", e.body_text()))?;
    let (p, sort) = parse(&s, &query)?;
    let cursor = p.cursor.as_deref().map(|c| Cursor::decode(c, sort)).transpose()?;
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);

    let available: Vec<UserId> = if p.available_now {
        let online: Vec<UserId> = s.hub.online_consultants().await.into_iter().map(|u| u.id).collect();
        let presence = s.hub.presence_of(&online).await;
        let ids: Vec<UserId> = online
            .into_iter()
            .zip(presence)
            .filter(|(_, p)| *p == PresenceStatus::Available)
            .map(|(id, _)| id)
            .collect();
        if ids.is_empty() {
            return Ok(Json(DirectoryPage { items: Vec::new(), next_cursor: None }));
        }
        ids
    } else {
        Vec::new()
    };

    let mut sql = Sql::default();
    let now = sql.arg(Arg::Int(s.clock.now().unix_millis()));
    let score = score_sql();
    let mut from = String::from("FROM profiles p ");
    if !p.words.is_empty() {
        let text = match s.store.backend() {
            // Each word quoted: FTS5 syntax in the words is taken literally.
            Backend::Sqlite => p.words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(" "),
            Backend::Postgres => p.words.join(" "),
        };
        let q = sql.arg(Arg::Text(text));
        from.push_str(&match_join(s.store.backend(), &q));
    }
    from.push_str(
        " LEFT JOIN prices pr ON pr.consultant_id = p.consultant_id \
         LEFT JOIN (SELECT consultant_id, COUNT(*) AS n, CAST(SUM(stars) AS BIGINT) AS total FROM reviews \
         GROUP BY consultant_id) r ON r.consultant_id = p.consultant_id \
         LEFT JOIN featured f ON f.consultant_id = p.consultant_id",
    );
    let mut conds: Vec<String> = vec!["1 = 1".into()];
    if let Some(t) = &p.tag {
        let t = sql.arg(Arg::Text(t.clone()));
        conds.push(format!(
            "EXISTS (SELECT 1 FROM profile_tags t WHERE t.consultant_id = p.consultant_id AND t.tag = {t})"
        ));
    }
    if let Some(l) = &p.language {
        let exact = sql.arg(Arg::Text(l.clone()));
        let sub = sql.arg(Arg::Text(format!("{l}-%")));
        conds.push(format!(
            "EXISTS (SELECT 1 FROM profile_languages l WHERE l.consultant_id = p.consultant_id \
             AND (l.language = {exact} OR l.language LIKE {sub}))"
        ));
    }
    if let Some(c) = p.currency {
        let c = sql.arg(Arg::Text(c.as_str().to_owned()));
        conds.push(format!("(pr.currency = {c} OR pr.currency IS NULL)"));
    }
    if let Some(lo) = p.min_price {
        let lo = sql.arg(Arg::Int(lo));
        conds.push(format!("COALESCE(pr.amount_minor, 0) >= {lo}"));
    }
    if let Some(hi) = p.max_price {
        let hi = sql.arg(Arg::Int(hi));
        conds.push(format!("COALESCE(pr.amount_minor, 0) <= {hi}"));
    }
    if p.available_now {
        let ids: Vec<String> = available.iter().map(|id| sql.arg(Arg::Text(id.to_string()))).collect();
        conds.push(format!("p.consultant_id IN ({})", ids.join(", ")));
    }
    if let Some(r) = p.min_rating {
        let r = sql.arg(Arg::Int(r));
        conds.push(format!("{score} >= {r}"));
    }
    let (key, desc) = match sort {
        Sort::Relevance => ("m.rank".to_owned(), true),
        Sort::Rating => (score.clone(), true),
        Sort::Price => ("COALESCE(pr.amount_minor, 0)".to_owned(), false),
    };
    let keyset = match &cursor {
        None => "1 = 1".to_owned(),
        Some(c) => {
            let f = sql.arg(Arg::Int(c.f));
            let k = sql.arg(Arg::Int(c.k));
            let id = sql.arg(Arg::Text(c.id.clone()));
            let after = if desc { "<" } else { ">" };
            format!("(d.featured < {f} OR (d.featured = {f} AND (d.k {after} {k} OR (d.k = {k} AND d.id > {id}))))")
        }
    };
    let lim = sql.arg(Arg::Int(limit + 1));
    let text = format!(
        "SELECT * FROM (SELECT p.consultant_id AS id, p.display_name, p.headline, p.tags, p.languages, \
         pr.model AS price_model, pr.amount_minor AS price_minor, pr.currency AS price_currency, \
         CAST(COALESCE(r.n, 0) AS BIGINT) AS reviews, CAST(COALESCE(r.total, 0) AS BIGINT) AS stars, \
         CAST(CASE WHEN f.until_ms > {now} THEN 1 ELSE 0 END AS BIGINT) AS featured, {key} AS k \
         {from} WHERE {conds}) d WHERE {keyset} ORDER BY d.featured DESC, d.k {dir}, d.id LIMIT {lim}",
        conds = conds.join(" AND "),
        dir = if desc { "DESC" } else { "ASC" },
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(text));
    for a in sql.args {
        q = match a {
            Arg::Int(i) => q.bind(i),
            Arg::Text(t) => q.bind(t),
        };
    }
    let rows = q.fetch_all(&s.store.pool()).await.map_err(|e| ApiError::Internal(e.to_string()))?;

    let db = |e: sqlx::Error| ApiError::Internal(e.to_string());
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(usize::try_from(limit).unwrap_or(usize::MAX))];
    let mut items = Vec::with_capacity(rows.len());
    let mut last = None;
    for r in rows {
        let id =
            UserId::parse(r.try_get::<String, _>("id").map_err(db)?).map_err(|e| ApiError::Internal(e.to_string()))?;
        let price = match (
            r.try_get::<Option<String>, _>("price_model").map_err(db)?,
            r.try_get::<Option<i64>, _>("price_minor").map_err(db)?,
            r.try_get::<Option<String>, _>("price_currency").map_err(db)?,
        ) {
            (Some(m), Some(a), Some(c)) => Some(ConsultantPrice {
                model: PriceModel::parse(&m).ok_or_else(|| ApiError::Internal(format!("price model {m:?}")))?,
                amount: Money::new(a, Currency::parse(&c).map_err(|e| ApiError::Internal(e.to_string()))?),
            }),
            _ => None,
        };
        let featured: i64 = r.try_get("featured").map_err(db)?;
        last =
            Some(Cursor { s: sort.as_str().into(), f: featured, k: r.try_get("k").map_err(db)?, id: id.to_string() });
        items.push(DirectoryItem {
            id,
            display_name: r.try_get("display_name").map_err(db)?,
            headline: r.try_get("headline").map_err(db)?,
            tags: json_list(&r.try_get::<String, _>("tags").map_err(db)?)?,
            languages: json_list(&r.try_get::<String, _>("languages").map_err(db)?)?,
            price,
            rating: rating(r.try_get("reviews").map_err(db)?, r.try_get("stars").map_err(db)?),
            presence: PresenceStatus::Offline,
            featured: featured == 1,
        });
    }
    let ids: Vec<UserId> = items.iter().map(|i| i.id.clone()).collect();
    for (item, presence) in items.iter_mut().zip(s.hub.presence_of(&ids).await) {
        item.presence = presence;
    }
    let next_cursor = if more { last.map(|c| c.encode()) } else { None };
    Ok(Json(DirectoryPage { items, next_cursor }))
}

/// The routes of this module.
pub fn router(state: AppState) -> Router {
    Router::new().route("/v1/directory", get(directory)).with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_refuses_tampering() {
        let c = Cursor { s: "rating".into(), f: 1, k: 3_750_000, id: "cora".into() };
        assert_eq!(Cursor::decode(&c.encode(), Sort::Rating).unwrap(), c);
        assert!(Cursor::decode(&c.encode(), Sort::Price).is_err(), "another sort's cursor");
        assert!(Cursor::decode("not a cursor", Sort::Rating).is_err());
        let mut raw = c.encode();
        raw.insert(3, 'x');
        assert!(Cursor::decode(&raw, Sort::Rating).is_err());
        let forged = Cursor { s: "rating".into(), f: 7, k: 0, id: "cora".into() };
        assert!(Cursor::decode(&forged.encode(), Sort::Rating).is_err());
    }

    #[test]
    fn the_sql_prior_is_the_domain_prior() {
        assert!(score_sql().contains("(17.5000 + COALESCE(r.total, 0))"), "{}", score_sql());
        assert!(score_sql().contains("/ (5.0000 + COALESCE(r.n, 0))"), "{}", score_sql());
    }
}
