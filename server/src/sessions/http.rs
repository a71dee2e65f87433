//! The money path's REST API (issue 3): session details, consultant prices,
//! earnings, receipts, payout onboarding, moderator refunds and ends.
//! Errors are RFC 9457 problems ([`Problem`](parley_domain::protocol::Problem)) with a
//! stable code (see docs/protocol.md, "REST").

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use parley_billing::{BillingError, webhook};
use parley_domain::UserId;
use parley_domain::protocol::rest::{
    ConsultantPrice, Earnings, PayoutLink, PayoutLinkRequest, Receipt, RefundRequest, RefundResponse, SessionDetails,
};
use parley_domain::protocol::{ErrorCode, Problem, Role, SessionEndReason};

use super::details::details;
use crate::kernel::{ApiError, AppState, Body, Caller, require, session_id};

/// The routes of this module.
pub fn router(state: AppState) -> Router {
    let idempotent = || axum::middleware::from_fn_with_state(state.clone(), crate::kernel::idempotency::layer);
    Router::new()
        .route("/v1/sessions/{id}", get(session))
        .route("/v1/sessions/{id}/refund", post(refund).layer(idempotent()))
        .route("/v1/sessions/{id}/end", post(end_session))
        .route("/v1/consultants/me/price", get(my_price).put(set_price).delete(clear_price))
        .route("/v1/consultants/me/payout-account", post(payout_account).layer(idempotent()))
        .route("/v1/consultants/{id}/earnings", get(earnings))
        .route("/v1/seekers/me/receipts", get(receipts))
        .route("/v1/webhooks/stripe", post(stripe_webhook))
        .with_state(state)
}

/// `POST /v1/webhooks/stripe` (DESIGN.md B5): the `Stripe-Signature` is
/// verified over the raw body (HMAC-SHA256, 300 s tolerance, server clock);
/// each event id is processed once. 400 with `missing_signature`,
/// `bad_signature`, `timestamp_out_of_tolerance` or `malformed_payload`;
/// 404 when the server does not use the `stripe` provider; 500 (Stripe
/// retries) if applying the event failed.
#[utoipa::path(post, path = "/v1/webhooks/stripe", tag = "webhooks",
    params(("Stripe-Signature" = String, Header, description = "`t=…,v1=…`")),
    request_body(content = String, description = "the Stripe event, raw JSON", content_type = "application/json"),
    responses((status = 200, description = "`{\"received\": true, \"duplicate\": bool}`"),
        (status = 400, description = "`missing_signature`, `bad_signature`, `timestamp_out_of_tolerance`, `malformed_payload`", body = Problem),
        (status = 404, description = "the server does not use Stripe", body = Problem)))]
pub(crate) async fn stripe_webhook(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(secret) = &s.webhook_secret else {
        return Err(ApiError::NotFound(ErrorCode::UnknownType, "this server does not use Stripe".into()));
    };
    let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    let now = s.clock.now().unix_secs();
    let refused = |e: webhook::WebhookError| ApiError::BadRequest(e.code(), e.to_string());
    webhook::verify(&body, signature, secret, now, webhook::DEFAULT_TOLERANCE_SECS).map_err(refused)?;
    let event = webhook::parse(&body).map_err(refused)?;
    let processed = s.billing.handle_webhook(&event).await?;
    if processed {
        s.billing.wake();
        // A card dispute may need its evidence and notices (D5).
        s.disputes_wake.wake();
    }
    Ok(Json(serde_json::json!({ "received": true, "duplicate": !processed })))
}

/// A billing error as a problem: the code it carries, 400 for a refused
/// request, 409 for a state that does not allow it, 502 for the provider.
impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::Refused(code, m) => ApiError::BadRequest(code, m),
            BillingError::Conflict(code, m) => ApiError::Conflict(code, m),
            BillingError::Provider(p) => ApiError::Provider(p.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// `GET /v1/sessions/{id}` (its participants and moderators): state,
/// billable seconds, outcome, hold, capture, fee, payout, refunds, ledger
/// and timeline.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path, description = "session id (`ses_…`)")),
    responses((status = 200, body = SessionDetails), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 403, description = "`forbidden`: not a participant", body = Problem),
        (status = 404, description = "`unknown_session`", body = Problem)))]
pub(crate) async fn session(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionDetails>, ApiError> {
    let id = session_id(id)?;
    Ok(Json(details(&s, &me, &id).await?))
}

/// `GET /v1/consultants/me/price` (consultants): their price, `null` when
/// they do not charge.
#[utoipa::path(get, path = "/v1/consultants/me/price", tag = "consultants", security(("bearer" = [])),
    responses((status = 200, body = Option<ConsultantPrice>), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 403, description = "`wrong_role`: consultants only", body = Problem)))]
pub(crate) async fn my_price(
    State(s): State<AppState>,
    Caller(me): Caller,
) -> Result<Json<Option<ConsultantPrice>>, ApiError> {
    require(&me, Role::Consultant)?;
    Ok(Json(s.billing.price(&me.id).await?))
}

/// `PUT /v1/consultants/me/price` (consultants): sets the price of their
/// next sessions (DESIGN.md M7). Body: [`ConsultantPrice`].
#[utoipa::path(put, path = "/v1/consultants/me/price", tag = "consultants", security(("bearer" = [])),
    request_body = ConsultantPrice,
    responses((status = 200, body = ConsultantPrice), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_price`: amount outside 1..=1000000; `unsupported_currency`: not in PARLEY_CURRENCIES; `invalid_field`: bad body", body = Problem),
        (status = 403, description = "`wrong_role`: consultants only", body = Problem)))]
pub(crate) async fn set_price(
    State(s): State<AppState>,
    Caller(me): Caller,
    Body(body): Body<serde_json::Value>,
) -> Result<Json<ConsultantPrice>, ApiError> {
    require(&me, Role::Consultant)?;
    let price = super::rules::checked_price(&s, body)?;
    s.billing.set_price(&me.id, &price).await?;
    Ok(Json(price))
}

/// `DELETE /v1/consultants/me/price` (consultants): their calls are free.
#[utoipa::path(delete, path = "/v1/consultants/me/price", tag = "consultants", security(("bearer" = [])),
    responses((status = 200, description = "`null`: calls are free now"), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 403, description = "`wrong_role`: consultants only", body = Problem)))]
pub(crate) async fn clear_price(
    State(s): State<AppState>,
    Caller(me): Caller,
) -> Result<Json<Option<ConsultantPrice>>, ApiError> {
    require(&me, Role::Consultant)?;
    s.billing.clear_price(&me.id).await?;
    Ok(Json(None))
}

/// `POST /v1/consultants/me/payout-account` (consultants): creates their
/// payout account if needed and returns an onboarding link.
#[utoipa::path(post, path = "/v1/consultants/me/payout-account", tag = "consultants", security(("bearer" = [])),
    request_body(content = Option<PayoutLinkRequest>, description = "optional return and refresh URLs"),
    responses((status = 200, body = PayoutLink), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 403, description = "`wrong_role`: consultants only", body = Problem),
        (status = 502, description = "`payment_provider_error`", body = Problem)))]
pub(crate) async fn payout_account(
    State(s): State<AppState>,
    Caller(me): Caller,
    headers: HeaderMap,
    body: Option<Body<PayoutLinkRequest>>,
) -> Result<Json<PayoutLink>, ApiError> {
    require(&me, Role::Consultant)?;
    let body = body.map(|Body(b)| b).unwrap_or_default();
    let base = headers.get("host").and_then(|h| h.to_str().ok()).map(|h| format!("http://{h}")).unwrap_or_default();
    let refresh = body.refresh_url.unwrap_or_else(|| format!("{base}/?payout=refresh"));
    let ret = body.return_url.unwrap_or_else(|| format!("{base}/?payout=done"));
    let (account_id, url) = s.billing.payout_onboarding(&me.id, &refresh, &ret).await?;
    Ok(Json(PayoutLink { account_id, url }))
}

/// `GET /v1/consultants/{id}/earnings` (that consultant, or moderators).
#[utoipa::path(get, path = "/v1/consultants/{id}/earnings", tag = "consultants", security(("bearer" = [])),
    params(("id" = String, Path, description = "consultant id")),
    responses((status = 200, body = Earnings), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 403, description = "`forbidden`: another consultant's", body = Problem)))]
pub(crate) async fn earnings(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Json<Earnings>, ApiError> {
    let id = UserId::parse(id).map_err(|e| ApiError::BadRequest(ErrorCode::InvalidField, format!("id: {e}")))?;
    if me.role != Role::Moderator && me.id != id {
        return Err(ApiError::Forbidden(
            ErrorCode::Forbidden,
            "only the consultant and moderators see earnings".into(),
        ));
    }
    Ok(Json(s.billing.earnings(&id).await?))
}

/// `GET /v1/seekers/me/receipts` (seekers).
#[utoipa::path(get, path = "/v1/seekers/me/receipts", tag = "seekers", security(("bearer" = [])),
    responses((status = 200, body = Vec<Receipt>), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 403, description = "`wrong_role`: seekers only", body = Problem)))]
pub(crate) async fn receipts(State(s): State<AppState>, Caller(me): Caller) -> Result<Json<Vec<Receipt>>, ApiError> {
    require(&me, Role::Seeker)?;
    Ok(Json(s.billing.receipts(&me.id).await?))
}

/// `POST /v1/sessions/{id}/refund` (moderators): refunds part or all of a
/// charged session. Body: [`RefundRequest`].
#[utoipa::path(post, path = "/v1/sessions/{id}/refund", tag = "moderation", security(("bearer" = [])),
    params(("id" = String, Path, description = "session id")), request_body = RefundRequest,
    responses((status = 200, body = RefundResponse), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_field`: amount below 1", body = Problem),
        (status = 403, description = "`wrong_role`: moderators only", body = Problem),
        (status = 409, description = "`not_charged`, `refund_exceeds_capture`, `idempotency_key_in_use`", body = Problem),
        (status = 422, description = "`idempotency_key_reused`", body = Problem),
        (status = 502, description = "`payment_provider_error`", body = Problem)))]
pub(crate) async fn refund(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    key: Option<axum::Extension<crate::kernel::idempotency::IdempotencyKey>>,
    Body(req): Body<RefundRequest>,
) -> Result<Json<RefundResponse>, ApiError> {
    require(&me, Role::Moderator)?;
    let id = session_id(id)?;
    // The caller's key, per caller (as the middleware keeps it).
    let key = key.map(|k| format!("{}:{}", me.id, k.0.0));
    let (refund_id, amount) = s.billing.refund(&id, req.amount_minor, key.as_deref()).await?;
    tracing::info!(session_id = %id, moderator = %me.id, %amount, reason = req.reason.as_deref().unwrap_or(""), "refund");
    Ok(Json(RefundResponse { refund_id, amount }))
}

/// `POST /v1/sessions/{id}/end` (moderators): ends an open session (M4);
/// it is settled like any other. 409 `session_ended` if it is not open.
#[utoipa::path(post, path = "/v1/sessions/{id}/end", tag = "moderation", security(("bearer" = [])),
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, description = "`{\"session_id\": …, \"ended\": true}`"), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 403, description = "`wrong_role`: moderators only", body = Problem),
        (status = 409, description = "`session_ended`: not open", body = Problem)))]
pub(crate) async fn end_session(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&me, Role::Moderator)?;
    let id = session_id(id)?;
    if !s.hub.end_session_for(&id, SessionEndReason::Moderator).await {
        return Err(ApiError::Conflict(ErrorCode::SessionEnded, format!("session {id} is not open on this server")));
    }
    Ok(Json(serde_json::json!({ "session_id": id, "ended": true })))
}
