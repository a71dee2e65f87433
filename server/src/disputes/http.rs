//! The disputes API (D1–D4): open, answer, decide, list, and the evidence
//! bundle as JSON or Markdown. Errors are RFC 9457 problems with a stable
//! code (docs/protocol.md "Disputes").

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parley_domain::protocol::rest::{
    AnswerDisputeRequest, DecideDisputeRequest, Dispute, DisputeBundle, DisputeStatus, OpenDisputeRequest,
    WebhookEventType,
};
use parley_domain::protocol::{ErrorCode, Problem, Role, ServerMessage, UserInfo};
use parley_signaling::Store;

use super::{bundle, rules, sql};
use crate::kernel::{ApiError, AppState, Body, Caller, require, session_id};
use crate::store::outbox::{NewEvent, insert_event};

/// The routes of the disputes area.
pub fn router(state: AppState) -> Router {
    let idempotent = || axum::middleware::from_fn_with_state(state.clone(), crate::kernel::idempotency::layer);
    Router::new()
        .route("/v1/sessions/{id}/disputes", post(open))
        .route("/v1/disputes", get(list))
        .route("/v1/disputes/{id}", get(show))
        .route("/v1/disputes/{id}/bundle.md", get(show_markdown))
        .route("/v1/disputes/{id}/answer", post(answer))
        .route("/v1/disputes/{id}/decision", post(decide).layer(idempotent()))
        .with_state(state)
}

fn db(e: sqlx::Error) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// Stores `event` about `d` in `conn`'s transaction (committed with the
/// change it announces), once per `kind` and dispute.
async fn announce(
    conn: &mut sqlx::AnyConnection,
    kind: WebhookEventType,
    d: &Dispute,
    at: parley_domain::Timestamp,
) -> Result<(), ApiError> {
    let key = format!("{}:{}", kind.as_str(), d.id);
    let event = NewEvent::new(kind, d, at, Some(key)).map_err(|e| ApiError::Internal(e.to_string()))?;
    insert_event(conn, &event).await.map_err(db)?;
    Ok(())
}

/// Tells both parties, when connected, what dispute `d` is now (D4): read
/// afresh, and read and handed to the hub under the node's push lock (as a
/// booking push is), so the last `dispute.updated` a party gets says the
/// stored status even when an answer and a decision race. The webhook,
/// stored with the change, always goes to the operator.
async fn tell_parties(s: &AppState, d: &Dispute) {
    s.webhooks.wake();
    // The connection is taken before the lock (see `bookings::sql::push`).
    let mut conn = match s.store.pool().acquire().await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(dispute_id = %d.id, error = %e, "failed to read a dispute to push it");
            return;
        }
    };
    let _in_order = s.pushes.lock().await;
    let d = match sql::load(&mut conn, &d.id).await {
        Ok(Some(d)) => d,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(dispute_id = %d.id, error = %e, "failed to read a dispute to push it");
            return;
        }
    };
    let msg = ServerMessage::DisputeUpdated {
        dispute_id: d.id.clone(),
        session_id: d.session_id.clone(),
        status: d.status.as_str().to_owned(),
    };
    s.hub.notify_user(&d.seeker_id, &msg);
    s.hub.notify_user(&d.consultant_id, &msg);
}

/// Dispute `id` if `me` may see it (a party or a moderator): 404
/// `unknown_dispute` otherwise, as for one that does not exist.
async fn visible(s: &AppState, me: &UserInfo, id: &str) -> Result<Dispute, ApiError> {
    let mut conn = s.store.pool().acquire().await.map_err(db)?;
    match sql::load(&mut conn, id).await? {
        Some(d) if me.role == Role::Moderator || me.id == d.seeker_id || me.id == d.consultant_id => Ok(d),
        _ => Err(ApiError::NotFound(ErrorCode::UnknownDispute, format!("no dispute {id} of yours"))),
    }
}

/// `POST /v1/sessions/{id}/disputes` (a participant, D1): disputes an
/// ended, charged session within `PARLEY_DISPUTE_WINDOW_DAYS` of its end,
/// once per session. Body: [`OpenDisputeRequest`]. 201 with the
/// [`Dispute`]; the other side is told (`dispute.updated`, webhook
/// `dispute.opened`).
#[utoipa::path(post, path = "/v1/sessions/{id}/disputes", tag = "disputes", security(("bearer" = [])),
    params(("id" = String, Path, description = "session id (`ses_…`)")), request_body = OpenDisputeRequest,
    responses((status = 201, body = Dispute), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_field`: reason not in the list, text empty or too long", body = Problem),
        (status = 403, description = "`forbidden`: not a participant of the session", body = Problem),
        (status = 404, description = "`unknown_session`", body = Problem),
        (status = 409, description = "`session_not_completed`, `not_charged`, `dispute_window_closed`, `dispute_exists`", body = Problem)))]
pub(crate) async fn open(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<OpenDisputeRequest>,
) -> Result<(StatusCode, Json<Dispute>), ApiError> {
    let sid = session_id(id)?;
    let text = rules::checked_text("text", &req.text)?;
    let Some(stored) = s.store.session(&sid).await? else {
        return Err(ApiError::NotFound(ErrorCode::UnknownSession, format!("no session {sid}")));
    };
    let r = &stored.record;
    if me.id != r.seeker_id && me.id != r.consultant_id {
        return Err(ApiError::Forbidden(ErrorCode::Forbidden, format!("you are not a participant of session {sid}")));
    }
    let Some(ended) = stored.ended_at else {
        return Err(ApiError::Conflict(ErrorCode::SessionNotCompleted, format!("session {sid} has not ended")));
    };
    let pool = s.store.pool();
    if !sql::charged(&pool, &sid).await? {
        return Err(ApiError::Conflict(ErrorCode::NotCharged, format!("session {sid} was not charged")));
    }
    let now = s.clock.now();
    if !rules::within_window(ended, now, s.dispute_window_days) {
        return Err(ApiError::Conflict(
            ErrorCode::DisputeWindowClosed,
            format!("session {sid} ended more than {} days ago", s.dispute_window_days),
        ));
    }
    let dispute = Dispute {
        id: rules::new_dispute_id(),
        session_id: sid.clone(),
        seeker_id: r.seeker_id.clone(),
        consultant_id: r.consultant_id.clone(),
        opened_by: me.id.clone(),
        reason: req.reason,
        text,
        opened_at_ms: now.unix_millis(),
        status: DisputeStatus::Open,
        answer: None,
        answered_at_ms: None,
        decision: None,
        refunded: None,
        refund_id: None,
        note: None,
        decided_by: None,
        decided_at_ms: None,
    };
    let mut tx = pool.begin().await.map_err(db)?;
    if !sql::insert(&mut tx, &dispute).await? {
        return Err(ApiError::Conflict(ErrorCode::DisputeExists, format!("session {sid} is disputed already")));
    }
    announce(&mut tx, WebhookEventType::DisputeOpened, &dispute, now).await?;
    tx.commit().await.map_err(db)?;
    tracing::info!(dispute_id = %dispute.id, session_id = %sid, by = %me.id, reason = dispute.reason.as_str(), "dispute opened");
    tell_parties(&s, &dispute).await;
    Ok((StatusCode::CREATED, Json(dispute)))
}

/// `POST /v1/disputes/{id}/answer` (the side that did not open it, once,
/// D2). Body: [`AnswerDisputeRequest`]. Both parties are told
/// (`dispute.updated`, webhook `dispute.answered`).
#[utoipa::path(post, path = "/v1/disputes/{id}/answer", tag = "disputes", security(("bearer" = [])),
    params(("id" = String, Path, description = "dispute id (`dsp_…`)")), request_body = AnswerDisputeRequest,
    responses((status = 200, body = Dispute), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_field`: text empty or too long", body = Problem),
        (status = 403, description = "`forbidden`: the opener, or a moderator", body = Problem),
        (status = 404, description = "`unknown_dispute`", body = Problem),
        (status = 409, description = "`dispute_answered`, `dispute_decided`", body = Problem)))]
pub(crate) async fn answer(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<AnswerDisputeRequest>,
) -> Result<Json<Dispute>, ApiError> {
    let text = rules::checked_text("text", &req.text)?;
    let d = visible(&s, &me, &id).await?;
    if me.role == Role::Moderator || me.id == d.opened_by {
        return Err(ApiError::Forbidden(ErrorCode::Forbidden, "only the other side answers a dispute".into()));
    }
    let now = s.clock.now();
    let mut tx = s.store.pool().begin().await.map_err(db)?;
    if !sql::answer(&mut tx, &id, &text, now.unix_millis()).await? {
        drop(tx);
        let mut conn = s.store.pool().acquire().await.map_err(db)?;
        let status = sql::load(&mut conn, &id).await?.map(|d| d.status);
        return Err(match status {
            Some(DisputeStatus::Answered) => {
                ApiError::Conflict(ErrorCode::DisputeAnswered, format!("dispute {id} was answered already"))
            }
            _ => ApiError::Conflict(ErrorCode::DisputeDecided, format!("dispute {id} is decided")),
        });
    }
    let d = sql::load(&mut tx, &id).await?.ok_or_else(|| ApiError::Internal(format!("dispute {id} vanished")))?;
    announce(&mut tx, WebhookEventType::DisputeAnswered, &d, now).await?;
    tx.commit().await.map_err(db)?;
    tell_parties(&s, &d).await;
    Ok(Json(d))
}

/// `POST /v1/disputes/{id}/decision` (moderators, D3): uphold, partial or
/// full refund, with a note. A refund goes through billing's serialised,
/// idempotent refund path (request key `dispute:<id>`), which takes the
/// consultant's share and the fee back in proportion (C2). One decision
/// per dispute: rivals get `dispute_decided`. Takes `Idempotency-Key`.
/// Both parties are told (`dispute.updated`, webhook `dispute.decided`).
#[utoipa::path(post, path = "/v1/disputes/{id}/decision", tag = "disputes", security(("bearer" = [])),
    params(("id" = String, Path, description = "dispute id (`dsp_…`)")), request_body = DecideDisputeRequest,
    responses((status = 200, body = Dispute), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 400, description = "`invalid_field`: note, or amount (required for partial_refund only)", body = Problem),
        (status = 403, description = "`wrong_role`: moderators only", body = Problem),
        (status = 404, description = "`unknown_dispute`", body = Problem),
        (status = 409, description = "`dispute_decided`, `refund_exceeds_capture`, `not_charged`, `idempotency_key_in_use`", body = Problem),
        (status = 422, description = "`idempotency_key_reused`", body = Problem),
        (status = 502, description = "`payment_provider_error`", body = Problem)))]
pub(crate) async fn decide(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<DecideDisputeRequest>,
) -> Result<Json<Dispute>, ApiError> {
    require(&me, Role::Moderator)?;
    let note = rules::checked_text("note", &req.note)?;
    let refund = rules::refund_of(&req)?;
    let d = visible(&s, &me, &id).await?;
    let pool = s.store.pool();
    if !sql::claim(&pool, &id, req.decision, req.amount_minor, &note, &me.id).await? {
        return Err(ApiError::Conflict(ErrorCode::DisputeDecided, format!("dispute {id} is decided or being decided")));
    }
    let refunded = match refund {
        None => None,
        Some(amount) => match s.billing.refund(&d.session_id, amount, Some(&format!("dispute:{id}"))).await {
            Ok((refund_id, money)) => Some((money, refund_id)),
            Err(e) => {
                sql::unclaim(&pool, &id).await?;
                return Err(e.into());
            }
        },
    };
    let now = s.clock.now();
    let mut tx = pool.begin().await.map_err(db)?;
    sql::decided(&mut tx, &id, refunded.as_ref().map(|(m, r)| (m, r.as_str())), now.unix_millis()).await?;
    let d = sql::load(&mut tx, &id).await?.ok_or_else(|| ApiError::Internal(format!("dispute {id} vanished")))?;
    announce(&mut tx, WebhookEventType::DisputeDecided, &d, now).await?;
    tx.commit().await.map_err(db)?;
    tracing::info!(dispute_id = %id, moderator = %me.id, decision = req.decision.as_str(), "dispute decided");
    tell_parties(&s, &d).await;
    Ok(Json(d))
}

/// `GET /v1/disputes`: moderators see every dispute, others those of
/// their sessions; newest first, at most 200.
#[utoipa::path(get, path = "/v1/disputes", tag = "disputes", security(("bearer" = [])),
    responses((status = 200, body = Vec<Dispute>), (status = 401, description = "missing, forged or expired token", body = Problem)))]
pub(crate) async fn list(State(s): State<AppState>, Caller(me): Caller) -> Result<Json<Vec<Dispute>>, ApiError> {
    let user = (me.role != Role::Moderator).then_some(&me.id);
    Ok(Json(sql::list(&s.store.pool(), user).await?))
}

/// `GET /v1/disputes/{id}` (its parties and moderators, D4): the evidence
/// bundle ([`DisputeBundle`]); with `Accept: text/markdown`, the same as
/// `bundle.md`.
#[utoipa::path(get, path = "/v1/disputes/{id}", tag = "disputes", security(("bearer" = [])),
    params(("id" = String, Path, description = "dispute id (`dsp_…`)")),
    responses((status = 200, body = DisputeBundle), (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 404, description = "`unknown_dispute` (also for someone else's)", body = Problem)))]
pub(crate) async fn show(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let d = visible(&s, &me, &id).await?;
    let b = bundle::assemble(&s, &me, d).await?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("text/markdown") {
        return Ok(markdown_response(&b));
    }
    Ok(Json(b).into_response())
}

/// `GET /v1/disputes/{id}/bundle.md` (its parties and moderators, D4): the
/// evidence bundle as one Markdown page.
#[utoipa::path(get, path = "/v1/disputes/{id}/bundle.md", tag = "disputes", security(("bearer" = [])),
    params(("id" = String, Path, description = "dispute id (`dsp_…`)")),
    responses((status = 200, description = "`text/markdown`", content_type = "text/markdown"),
        (status = 401, description = "missing, forged or expired token", body = Problem),
        (status = 404, description = "`unknown_dispute`", body = Problem)))]
pub(crate) async fn show_markdown(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let d = visible(&s, &me, &id).await?;
    let b = bundle::assemble(&s, &me, d).await?;
    Ok(markdown_response(&b))
}

fn markdown_response(b: &DisputeBundle) -> Response {
    ([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], bundle::markdown(b)).into_response()
}
