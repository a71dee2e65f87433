//! Promotions (issue 4): the package catalogue and the routes to buy
//! featured placement in the directory. The money side (charge at once,
//! the window, the receipt, the ledger) is `parley_billing::promotions`.

use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use parley_domain::protocol::rest::{MyPromotions, PromotionPackage, PromotionPurchaseRequest, PromotionReceipt};
use parley_domain::protocol::{ErrorCode, Problem, Role};
use parley_domain::{Currency, Money};

use crate::kernel::{ApiError, AppState, Body, Caller, require};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// The built-in catalogue: `featured_7d` (7 days, EUR 19.00) and
/// `featured_30d` (30 days, EUR 59.00).
pub fn default_packages() -> Vec<PromotionPackage> {
    let eur = Currency::parse("EUR").expect("valid");
    vec![
        PromotionPackage {
            id: "featured_7d".into(),
            name: "Featured in the directory for 7 days".into(),
            duration_secs: (7 * DAY).as_secs(),
            price: Money::new(1900, eur),
        },
        PromotionPackage {
            id: "featured_30d".into(),
            name: "Featured in the directory for 30 days".into(),
            duration_secs: (30 * DAY).as_secs(),
            price: Money::new(5900, eur),
        },
    ]
}

/// The routes of this module.
pub fn router(state: AppState) -> Router {
    let idempotent = axum::middleware::from_fn_with_state(state.clone(), crate::kernel::idempotency::layer);
    Router::new()
        .route("/v1/promotions/packages", get(packages))
        .route("/v1/consultants/me/promotions", post(buy).layer(idempotent).get(my_promotions))
        .with_state(state)
}

/// `GET /v1/promotions/packages` (any authenticated user): the packages on
/// sale.
#[utoipa::path(get, path = "/v1/promotions/packages", tag = "promotions", security(("bearer" = [])),
    responses((status = 200, body = Vec<PromotionPackage>),
        (status = 401, description = "missing, forged or expired token", body = Problem)))]
pub(crate) async fn packages(
    State(s): State<AppState>,
    Caller(_caller): Caller,
) -> Result<Json<Vec<PromotionPackage>>, ApiError> {
    Ok(Json(s.marketplace.packages.clone()))
}

/// `POST /v1/consultants/me/promotions` (consultants with a profile): buys
/// a package, charged at once; the featured window starts now, or when the
/// running one ends. Nothing is featured when the payment fails.
#[utoipa::path(post, path = "/v1/consultants/me/promotions", tag = "promotions", security(("bearer" = [])),
    request_body = PromotionPurchaseRequest,
    responses((status = 200, body = PromotionReceipt), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`unknown_package`, `payment_declined`, `payment_action_required`, `missing_field` (no payment method, or no profile yet), `invalid_field`", body = Problem),
        (status = 403, description = "`wrong_role`: consultants only", body = Problem),
        (status = 502, description = "`payment_provider_error`: nothing was charged", body = Problem)))]
pub(crate) async fn buy(
    State(s): State<AppState>,
    Caller(me): Caller,
    Body(req): Body<PromotionPurchaseRequest>,
) -> Result<Json<PromotionReceipt>, ApiError> {
    require(&me, Role::Consultant)?;
    let Some(package) = s.marketplace.packages.iter().find(|p| p.id == req.package_id) else {
        let ids: Vec<&str> = s.marketplace.packages.iter().map(|p| p.id.as_str()).collect();
        return Err(ApiError::BadRequest(
            ErrorCode::UnknownPackage,
            format!("package_id: no package {:?}; on sale: {}", req.package_id, ids.join(", ")),
        ));
    };
    let pm = req.payment_method.trim();
    if pm.is_empty() {
        return Err(ApiError::BadRequest(ErrorCode::MissingField, "payment_method: name a payment method".into()));
    }
    if !super::http::has_profile(&s.store.pool(), &me.id).await.map_err(|e| ApiError::Internal(e.to_string()))? {
        return Err(ApiError::BadRequest(
            ErrorCode::MissingField,
            "profile: the directory lists consultants with a profile; PUT /v1/consultants/me/profile first".into(),
        ));
    }
    Ok(Json(s.billing.buy_promotion(&me.id, package, pm).await?))
}

/// `GET /v1/consultants/me/promotions` (consultants): their paid
/// purchases and the placement running now.
#[utoipa::path(get, path = "/v1/consultants/me/promotions", tag = "promotions", security(("bearer" = [])),
    responses((status = 200, body = MyPromotions), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 403, description = "`wrong_role`: consultants only", body = Problem)))]
pub(crate) async fn my_promotions(
    State(s): State<AppState>,
    Caller(me): Caller,
) -> Result<Json<MyPromotions>, ApiError> {
    require(&me, Role::Consultant)?;
    Ok(Json(s.billing.promotions(&me.id).await?))
}
