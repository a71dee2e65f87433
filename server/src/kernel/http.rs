//! The routes no area owns: health, readiness, Prometheus metrics, problem
//! type documentation, and (dev mode) dev login, the web demo and the
//! landing page.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parley_domain::UserId;
use parley_domain::protocol::rest::{DevLoginRequest, DevLoginResponse};
use parley_domain::protocol::{ErrorCode, Problem, Role, UserInfo};
use parley_signaling::Store;

use super::error::{ApiError, problem};
use super::extract::Body;
use super::state::AppState;

/// How long a dev-login token lives.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// `/healthz`, `/readyz`, `/metrics` and `/problems/{code}`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/problems/{code}", get(problem_type))
        .route("/v1/ws-tickets", post(super::tickets::issue))
        .with_state(state)
}

/// The error table of docs/protocol.md, compiled in: `GET /problems/{code}`
/// explains a problem type from it.
const PROTOCOL_DOC: &str = include_str!("../../../docs/protocol.md");

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
    Html(include_str!("../landing.html"))
}

/// 200 when the database (and, in a cluster, Redis) answers and the server
/// is not shutting down; 503 otherwise, saying which. The body is `ready`,
/// or in a cluster `ready; hub node <node id>` (docs/rules.md C7).
async fn readyz(State(s): State<AppState>) -> Response {
    if s.hub.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if let Err(e) = s.store.ping().await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}")).into_response();
    }
    if let Some(redis) = &s.redis {
        let mut redis = redis.clone();
        if let Err(e) = redis::cmd("PING").query_async::<String>(&mut redis).await {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}")).into_response();
        }
    }
    if s.hub.hub_unknown() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no hub node elected yet").into_response();
    }
    match s.hub.hub_node() {
        Some(node) => format!("ready; hub node {node}").into_response(),
        None => "ready".into_response(),
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render()).into_response()
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
