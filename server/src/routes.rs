//! HTTP routes besides signaling: health, readiness, metrics, the
//! consultant list, dev login and the landing page.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use parley_domain::protocol::rest::{ConsultantSummary, DevLoginRequest, DevLoginResponse};
use parley_domain::protocol::{ErrorCode, PresenceStatus, Problem, Role, UserInfo};
use parley_domain::{Clock, UserId};
use parley_signaling::{Authenticator, Hub, Store};

use crate::extract::Body;
use crate::store::SqlStore;

/// How long a dev-login token lives.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// What the routes share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: SqlStore,
    pub(crate) hub: Arc<Hub>,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: PrometheusHandle,
    pub(crate) billing: Arc<parley_billing::Billing>,
    pub(crate) meters: Arc<parley_metering::Meters>,
    /// `STRIPE_WEBHOOK_SECRET`, with the `stripe` provider.
    pub(crate) webhook_secret: Option<String>,
    /// Recording files and their signed links.
    pub(crate) files: Arc<crate::files::RecordingFiles>,
    /// Recording consent (premium seekers, consultants who allow it).
    pub(crate) consent: crate::recording::Consent,
    /// Wakes the booking scheduler (a booking changed).
    pub(crate) bookings_wake: Arc<tokio::sync::Notify>,
    /// The server time (Unix ms) of the booking scheduler's last finished
    /// pass.
    pub(crate) scheduler_progress: Arc<tokio::sync::watch::Sender<i64>>,
    /// `PARLEY_LATE_CANCEL_FEE_PERCENT`.
    pub(crate) late_cancel_fee_percent: u32,
    /// `PARLEY_SEEKER_NO_SHOW`.
    pub(crate) seeker_no_show: crate::config::SeekerNoShow,
    /// Outgoing webhooks (the outbox).
    pub(crate) webhooks: Arc<crate::webhooks::Webhooks>,
    /// Accepted pricing currencies and promotion packages.
    pub(crate) marketplace: Arc<crate::profiles::Marketplace>,
}

/// An error answered as an RFC 9457 problem ([`Problem`]) with an HTTP
/// status and a stable [`ErrorCode`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401.
    #[error("{0}")]
    Unauthorized(#[from] parley_signaling::AuthError),
    /// 400 with a code.
    #[error("{1}")]
    BadRequest(ErrorCode, String),
    /// 403 with a code.
    #[error("{1}")]
    Forbidden(ErrorCode, String),
    /// 404 with a code.
    #[error("{1}")]
    NotFound(ErrorCode, String),
    /// 409 with a code.
    #[error("{1}")]
    Conflict(ErrorCode, String),
    /// Any other status with a code (413 `payload_too_large`, 415
    /// `unsupported_media_type`, …).
    #[error("{2}")]
    Status(StatusCode, ErrorCode, String),
    /// 502: the payment provider refused or failed.
    #[error("payment provider: {0}")]
    Provider(String),
    /// 500.
    #[error("internal: {0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::Unauthorized(e) => (StatusCode::UNAUTHORIZED, e.code()),
            ApiError::BadRequest(code, _) => (StatusCode::BAD_REQUEST, *code),
            ApiError::Forbidden(code, _) => (StatusCode::FORBIDDEN, *code),
            ApiError::NotFound(code, _) => (StatusCode::NOT_FOUND, *code),
            ApiError::Conflict(code, _) => (StatusCode::CONFLICT, *code),
            ApiError::Status(status, code, _) => (*status, *code),
            ApiError::Provider(_) => (StatusCode::BAD_GATEWAY, ErrorCode::PaymentProviderError),
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
            }
        };
        let detail = match &self {
            ApiError::Internal(_) => "the server failed; try again".to_owned(),
            other => other.to_string(),
        };
        problem(status, code, detail)
    }
}

/// An RFC 9457 problem response: `application/problem+json` with
/// [`Problem`] (`type`, `title`, `status`, `detail`, `code`, `message`).
pub(crate) fn problem(status: StatusCode, code: ErrorCode, detail: String) -> Response {
    let body = Problem::new(code, status.as_u16(), detail);
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/problem+json"));
    response
}

/// The error table of docs/protocol.md, compiled in: `GET /problems/{code}`
/// explains a problem type from it.
const PROTOCOL_DOC: &str = include_str!("../../docs/protocol.md");

/// `GET /problems/{code}`: what a problem `type` means (RFC 9457 §3.1.1:
/// the type URI should lead to documentation) — the code's row of the
/// error table in docs/protocol.md, as plain text. 404 for unknown codes.
async fn problem_type(Path(code): Path<String>) -> Response {
    let Some(known) = ErrorCode::ALL.iter().find(|c| c.as_str() == code) else {
        return problem(StatusCode::NOT_FOUND, ErrorCode::UnknownType, format!("no problem type {code:?}"));
    };
    let row_start = format!("| `{}` |", known.as_str());
    let row = PROTOCOL_DOC.lines().find(|l| l.starts_with(&row_start)).unwrap_or_default();
    let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
    let mut text = format!("{}\n\ncode: {}\n", known.title(), known.as_str());
    if let Some(meaning) = cells.get(1) {
        text.push_str(&format!("\n{meaning}\n"));
    }
    if let Some(examples) = cells.get(2).filter(|e| !e.is_empty()) {
        text.push_str(&format!("\nFor example: {examples}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

impl From<parley_signaling::StoreError> for ApiError {
    fn from(e: parley_signaling::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// The routes of every mode.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .route("/v1/consultants", get(consultants))
        .route("/problems/{code}", get(problem_type))
        .with_state(state.clone())
        .merge(crate::files::router(state.clone()))
        .merge(crate::recording::router(state.clone()))
        .merge(crate::bookings::router(state.clone()))
        .merge(crate::reviews::router(state.clone()))
        .merge(crate::metrics_api::router(state.clone()))
        .merge(crate::profiles::router(state.clone()))
        .merge(crate::directory::router(state.clone()))
        .merge(crate::promotions::router(state.clone()))
        .merge(crate::api::router(state))
}

/// The dev-only routes (absent in prod): dev login, the web demo at `/`
/// and the JavaScript SDK at `/sdk/js/` (from `web_dir` and `sdk_js_dir`;
/// a landing page at `/` if the demo is not there).
pub fn dev_router(state: AppState, web_dir: &std::path::Path, sdk_js_dir: &std::path::Path) -> Router {
    let router = Router::new().route("/v1/dev/login", post(dev_login)).with_state(state);
    let router = router.nest_service("/sdk/js", tower_http::services::ServeDir::new(sdk_js_dir));
    if web_dir.join("index.html").is_file() {
        router.fallback_service(tower_http::services::ServeDir::new(web_dir))
    } else {
        router.merge(landing_router())
    }
}

/// `GET /`: a small landing page (prod, or dev without the web demo).
pub fn landing_router() -> Router {
    Router::new().route("/", get(landing))
}

async fn landing() -> Html<&'static str> {
    Html(include_str!("landing.html"))
}

/// 200 when the database answers and the server is not shutting down; 503 otherwise.
async fn readyz(State(s): State<AppState>) -> Response {
    if s.hub.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    match s.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}")).into_response(),
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render()).into_response()
}

/// `GET /v1/consultants` (bearer token): every known consultant with their
/// presence, available ones first.
#[utoipa::path(get, path = "/v1/consultants", tag = "consultants", security(("bearer" = [])),
    responses((status = 200, body = Vec<ConsultantSummary>),
        (status = 401, description = "missing, forged or expired token", body = Problem)))]
pub(crate) async fn consultants(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<ConsultantSummary>>, ApiError> {
    s.auth.verify_request(&headers, None)?;
    let mut users = s.store.users_with_role(Role::Consultant).await?;
    for online in s.hub.online_consultants() {
        if !users.iter().any(|u| u.id == online.id) {
            users.push(online);
        }
    }
    let ids: Vec<UserId> = users.iter().map(|u| u.id.clone()).collect();
    let presence = s.hub.presence_of(&ids);
    let mut list: Vec<ConsultantSummary> = Vec::with_capacity(users.len());
    for (u, presence) in users.into_iter().zip(presence) {
        let price = s.billing.price(&u.id).await?;
        list.push(ConsultantSummary { id: u.id, name: u.name, presence, price });
    }
    list.sort_by_key(|c| (c.presence != PresenceStatus::Available, c.name.clone()));
    Ok(Json(list))
}

/// Dev mode only: a token for a demo (or new) user, without a password.
#[utoipa::path(post, path = "/v1/dev/login", tag = "dev", request_body = DevLoginRequest,
    responses((status = 200, body = DevLoginResponse),
        (status = 400, description = "`malformed_json`, `invalid_field`, `missing_field`", body = Problem),
        (status = 403, description = "`role_not_allowed`: a recorder or moderator (their tokens come from the operator)", body = Problem)))]
pub(crate) async fn dev_login(
    State(s): State<AppState>,
    Body(req): Body<DevLoginRequest>,
) -> Result<Json<DevLoginResponse>, ApiError> {
    let id = UserId::parse(req.user_id)
        .map_err(|e| ApiError::BadRequest(ErrorCode::InvalidField, format!("user_id: {e}")))?;
    if let Some(role) = req.role.filter(|r| !dev_login_role(*r)) {
        return Err(role_not_allowed(role));
    }
    let user = match (s.store.user(&id).await?, req.name, req.role) {
        (Some(u), _, _) => u,
        (None, Some(name), Some(role)) if !name.trim().is_empty() && name.len() <= 100 => {
            let u = UserInfo { id, name, role };
            s.store.users_seen(std::slice::from_ref(&u), s.clock.now()).await?;
            u
        }
        (None, _, _) => {
            return Err(ApiError::BadRequest(
                ErrorCode::MissingField,
                format!("no user {id}: give `name` (1-100 bytes) and `role` to create one"),
            ));
        }
    };
    // A known recorder or moderator (the embedded recorder, or anyone who
    // connected with an operator's token) is not handed out either.
    if !dev_login_role(user.role) {
        return Err(role_not_allowed(user.role));
    }
    let token = s.auth.issue(&user, DEV_TOKEN_TTL, s.clock.now());
    Ok(Json(DevLoginResponse { token, user }))
}

/// The roles dev login mints: seekers and consultants. A recorder receives
/// every recorded session's media and a moderator refunds money, so their
/// tokens come only from the operator (`parley token`, `parley recorder`,
/// the embedded recorder), signed with the server's secret.
fn dev_login_role(role: Role) -> bool {
    matches!(role, Role::Seeker | Role::Consultant)
}

/// 403 `role_not_allowed` for a dev login as `role`.
fn role_not_allowed(role: Role) -> ApiError {
    ApiError::Forbidden(
        ErrorCode::RoleNotAllowed,
        format!(
            "dev login makes seekers and consultants only; a {} authenticates with a token the operator mints \
             (`parley token --role {}`)",
            role.as_str(),
            role.as_str()
        ),
    )
}
