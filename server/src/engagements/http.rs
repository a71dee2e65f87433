//! The escrow REST API (E1–E8): create and fund an engagement, read it,
//! submit, approve, dispute and resolve milestones, cancel. Money-moving
//! routes take `Idempotency-Key`. Errors are RFC 9457 problems with a
//! stable code (docs/protocol.md, "Escrow").

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use parley_billing::{BillingError, Decision, NewEngagement};
use parley_domain::protocol::rest::{
    BookingReason, CreateEngagement, DisputeMilestone, Engagement, ResolveMilestone, SubmitMilestone,
};
use parley_domain::protocol::{ErrorCode, Problem, Role, UserInfo};

use super::{rules, sql};
use crate::kernel::idempotency::IdempotencyKey;
use crate::kernel::{ApiError, AppState, Body, Caller, require};

/// The routes of the escrow area.
pub fn router(state: AppState) -> Router {
    let idempotent = || axum::middleware::from_fn_with_state(state.clone(), crate::kernel::idempotency::layer);
    Router::new()
        .route("/v1/engagements", post(create).layer(idempotent()).get(list))
        .route("/v1/engagements/{id}", get(one))
        .route("/v1/engagements/{id}/cancel", post(cancel).layer(idempotent()))
        .route("/v1/milestones/{id}/submit", post(submit))
        .route("/v1/milestones/{id}/approve", post(approve).layer(idempotent()))
        .route("/v1/milestones/{id}/dispute", post(dispute))
        .route("/v1/milestones/{id}/resolve", post(resolve).layer(idempotent()))
        .with_state(state)
}

/// A billing error as a problem; an unknown engagement is a 404.
fn api(e: BillingError) -> ApiError {
    match e {
        BillingError::Conflict(ErrorCode::UnknownEngagement, m) => ApiError::NotFound(ErrorCode::UnknownEngagement, m),
        other => other.into(),
    }
}

/// A body read after the caller's role was checked: 400 `invalid_field`.
fn parse<T: serde::de::DeserializeOwned>(raw: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(raw).map_err(|e| ApiError::BadRequest(ErrorCode::InvalidField, format!("body: {e}")))
}

/// Engagement `id` if `me` is a party or a moderator; 404 otherwise (a
/// stranger learns nothing of it).
async fn visible(s: &AppState, me: &UserInfo, id: &str) -> Result<Engagement, ApiError> {
    let mut conn = s.store.pool().acquire().await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let e = sql::load(&mut conn, id).await?.ok_or_else(|| sql::unknown(id))?;
    if me.role == Role::Moderator || me.id == e.seeker_id || me.id == e.consultant_id {
        Ok(e)
    } else {
        Err(sql::unknown(id))
    }
}

/// The engagement of milestone `id`, if `me` may see it.
async fn of_milestone(s: &AppState, me: &UserInfo, id: &str) -> Result<Engagement, ApiError> {
    let eng = sql::milestone_engagement(&s.store.pool(), id).await?.ok_or_else(|| sql::unknown(id))?;
    visible(s, me, &eng).await
}

/// `POST /v1/engagements` (seekers): creates an engagement with a
/// consultant and charges its total at once into the platform's balance
/// (E1). Body: [`CreateEngagement`]. With `Idempotency-Key`, a retry
/// answers the same engagement and charges once.
#[utoipa::path(post, path = "/v1/engagements", tag = "escrow", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "retry-safe key")),
    request_body = CreateEngagement,
    responses((status = 200, body = Engagement), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_field`, `missing_field`, `unsupported_currency`, `payment_declined`, `payment_action_required`", body = Problem),
        (status = 403, description = "`wrong_role`: seekers only", body = Problem),
        (status = 409, description = "`payout_account_required`, `idempotency_key_in_use`", body = Problem),
        (status = 422, description = "`idempotency_key_reused`", body = Problem),
        (status = 502, description = "`payment_provider_error`: retry with the same key", body = Problem)))]
pub(crate) async fn create(
    State(s): State<AppState>,
    Caller(me): Caller,
    key: Option<Extension<IdempotencyKey>>,
    Body(raw): Body<serde_json::Value>,
) -> Result<Json<Engagement>, ApiError> {
    require(&me, Role::Seeker)?;
    let req: CreateEngagement = parse(raw)?;
    let terms = rules::terms(&req, &s.marketplace.currencies)?;
    let title = rules::text("title", &req.title)?;
    if req.payment_method.trim().is_empty() {
        return Err(ApiError::BadRequest(ErrorCode::MissingField, "payment_method: the card to charge".into()));
    }
    if req.consultant_id == me.id {
        return Err(ApiError::BadRequest(ErrorCode::InvalidField, "consultant_id: not yourself".into()));
    }
    let key = key.map(|k| format!("{}:{}", me.id, k.0.0));
    let new = NewEngagement {
        seeker: &me.id,
        consultant: &req.consultant_id,
        title: &title,
        terms: &terms,
        payment_method: req.payment_method.trim(),
        request_key: key.as_deref(),
    };
    let id = s.billing.fund_engagement(&new).await.map_err(api)?;
    tracing::info!(engagement = id, seeker = %me.id, consultant = %req.consultant_id, "engagement funded");
    Ok(Json(visible(&s, &me, &id).await?))
}

/// `GET /v1/engagements` (anyone): the caller's engagements, as seeker or
/// consultant, newest first (at most 100).
#[utoipa::path(get, path = "/v1/engagements", tag = "escrow", security(("bearer" = [])),
    responses((status = 200, body = Vec<Engagement>), (status = 401, description = "missing, forged or expired token", body = Problem)))]
pub(crate) async fn list(State(s): State<AppState>, Caller(me): Caller) -> Result<Json<Vec<Engagement>>, ApiError> {
    let mut out = Vec::new();
    for id in sql::of_user(&s.store.pool(), &me.id).await? {
        out.push(visible(&s, &me, &id).await?);
    }
    Ok(Json(out))
}

/// `GET /v1/engagements/{id}` (its parties and moderators).
#[utoipa::path(get, path = "/v1/engagements/{id}", tag = "escrow", security(("bearer" = [])),
    params(("id" = String, Path, description = "engagement id (`eng_…`)")),
    responses((status = 200, body = Engagement), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 404, description = "`unknown_engagement`", body = Problem)))]
pub(crate) async fn one(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Json<Engagement>, ApiError> {
    Ok(Json(visible(&s, &me, &id).await?))
}

/// `POST /v1/engagements/{id}/cancel` (its parties and moderators):
/// refunds what is still in escrow once (E6); a seeker who cancels pays
/// `PARLEY_ESCROW_CANCEL_FEE_PERCENT` of it. Body: optional
/// [`BookingReason`].
#[utoipa::path(post, path = "/v1/engagements/{id}/cancel", tag = "escrow", security(("bearer" = [])),
    params(("id" = String, Path, description = "engagement id"), ("Idempotency-Key" = Option<String>, Header, description = "retry-safe key")),
    request_body(content = Option<BookingReason>, description = "optional reason"),
    responses((status = 200, body = Engagement), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 404, description = "`unknown_engagement`", body = Problem),
        (status = 409, description = "`engagement_state`: not active, or a milestone is disputed", body = Problem),
        (status = 502, description = "`payment_provider_error`: the refund is retried", body = Problem)))]
pub(crate) async fn cancel(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    body: Option<Body<BookingReason>>,
) -> Result<Json<Engagement>, ApiError> {
    let e = visible(&s, &me, &id).await?;
    let fee = if me.id == e.seeker_id { s.billing.config().escrow_cancel_fee_percent } else { 0 };
    let reason = body.and_then(|Body(b)| b.reason).unwrap_or_default();
    s.billing.cancel_engagement(&id, &me.id, fee).await.map_err(api)?;
    tracing::info!(engagement = id, by = %me.id, reason, "engagement cancelled");
    Ok(Json(visible(&s, &me, &id).await?))
}

/// `POST /v1/milestones/{id}/submit` (the engagement's consultant): the
/// work is done (E3); unanswered, it is released after
/// `PARLEY_ESCROW_AUTO_RELEASE_DAYS` (E4). Body: [`SubmitMilestone`].
#[utoipa::path(post, path = "/v1/milestones/{id}/submit", tag = "escrow", security(("bearer" = [])),
    params(("id" = String, Path, description = "milestone id (`ms_…`)")), request_body = SubmitMilestone,
    responses((status = 200, body = Engagement), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_field`", body = Problem),
        (status = 403, description = "`forbidden`: only its consultant", body = Problem),
        (status = 404, description = "`unknown_engagement`", body = Problem),
        (status = 409, description = "`engagement_state`: not open", body = Problem)))]
pub(crate) async fn submit(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<SubmitMilestone>,
) -> Result<Json<Engagement>, ApiError> {
    let e = of_milestone(&s, &me, &id).await?;
    if me.id != e.consultant_id {
        return Err(ApiError::Forbidden(ErrorCode::Forbidden, "only the engagement's consultant submits".into()));
    }
    let decision = Decision::Submit { note: rules::text("note", &req.note)?, links: rules::links(&req.links)? };
    s.billing.decide_milestone(&id, &decision).await.map_err(api)?;
    s.escrow_wake.wake();
    Ok(Json(visible(&s, &me, &e.id).await?))
}

/// `POST /v1/milestones/{id}/approve` (the engagement's seeker): releases
/// it to the consultant (E3): a transfer of its amount less the commission,
/// idempotency key `release:<milestone>`. Approving it again answers as it
/// stands; a refunded or disputed milestone is 409.
#[utoipa::path(post, path = "/v1/milestones/{id}/approve", tag = "escrow", security(("bearer" = [])),
    params(("id" = String, Path, description = "milestone id"), ("Idempotency-Key" = Option<String>, Header, description = "retry-safe key")),
    responses((status = 200, body = Engagement), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 403, description = "`forbidden`: only its seeker", body = Problem),
        (status = 404, description = "`unknown_engagement`", body = Problem),
        (status = 409, description = "`engagement_state`", body = Problem),
        (status = 502, description = "`payment_provider_error`: the transfer is retried", body = Problem)))]
pub(crate) async fn approve(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Json<Engagement>, ApiError> {
    let e = of_milestone(&s, &me, &id).await?;
    if me.id != e.seeker_id {
        return Err(ApiError::Forbidden(ErrorCode::Forbidden, "only the engagement's seeker approves".into()));
    }
    s.billing.decide_milestone(&id, &Decision::Approve).await.map_err(api)?;
    Ok(Json(visible(&s, &me, &e.id).await?))
}

/// `POST /v1/milestones/{id}/dispute` (either party): stops its
/// auto-release until a moderator resolves it (E5). Body:
/// [`DisputeMilestone`].
#[utoipa::path(post, path = "/v1/milestones/{id}/dispute", tag = "escrow", security(("bearer" = [])),
    params(("id" = String, Path, description = "milestone id")), request_body = DisputeMilestone,
    responses((status = 200, body = Engagement), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_field`", body = Problem),
        (status = 403, description = "`forbidden`: only its parties", body = Problem),
        (status = 404, description = "`unknown_engagement`", body = Problem),
        (status = 409, description = "`engagement_state`: not open or submitted", body = Problem)))]
pub(crate) async fn dispute(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<DisputeMilestone>,
) -> Result<Json<Engagement>, ApiError> {
    let e = of_milestone(&s, &me, &id).await?;
    if me.id != e.seeker_id && me.id != e.consultant_id {
        return Err(ApiError::Forbidden(ErrorCode::Forbidden, "only the engagement's parties dispute".into()));
    }
    let decision = Decision::Dispute { reason: rules::text("reason", &req.reason)?, by: me.id.clone() };
    s.billing.decide_milestone(&id, &decision).await.map_err(api)?;
    Ok(Json(visible(&s, &me, &e.id).await?))
}

/// `POST /v1/milestones/{id}/resolve` (moderators): decides a disputed
/// milestone (E5): `release_minor` to the consultant (less the commission),
/// the rest refunded to the seeker. Body: [`ResolveMilestone`].
#[utoipa::path(post, path = "/v1/milestones/{id}/resolve", tag = "escrow", security(("bearer" = [])),
    params(("id" = String, Path, description = "milestone id"), ("Idempotency-Key" = Option<String>, Header, description = "retry-safe key")),
    request_body = ResolveMilestone,
    responses((status = 200, body = Engagement), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_field`: release_minor outside 0..=amount, or no note", body = Problem),
        (status = 403, description = "`wrong_role`: moderators only", body = Problem),
        (status = 404, description = "`unknown_engagement`", body = Problem),
        (status = 409, description = "`engagement_state`: not disputed", body = Problem),
        (status = 502, description = "`payment_provider_error`: the movements are retried", body = Problem)))]
pub(crate) async fn resolve(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(raw): Body<serde_json::Value>,
) -> Result<Json<Engagement>, ApiError> {
    require(&me, Role::Moderator)?;
    let req: ResolveMilestone = parse(raw)?;
    let e = of_milestone(&s, &me, &id).await?;
    let decision = Decision::Resolve {
        release_minor: req.release_minor,
        note: rules::text("note", &req.note)?,
        by: me.id.clone(),
    };
    s.billing.decide_milestone(&id, &decision).await.map_err(api)?;
    tracing::info!(milestone = id, moderator = %me.id, release_minor = req.release_minor, "milestone dispute resolved");
    Ok(Json(visible(&s, &me, &e.id).await?))
}
