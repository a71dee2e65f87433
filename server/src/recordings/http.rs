//! The recordings REST API (DESIGN.md §6): recordings with signed links,
//! the recap as JSON or Markdown, premium and consent settings. Consent
//! itself is [`crate::store::consent`]; the files are
//! [`crate::store::files`].

use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use parley_domain::protocol::rest::{
    ChatLine, PremiumRequest, Recap, RecordingConsent, RecordingList, SessionDetails, TalkTime,
};
use parley_domain::protocol::{ChatKind, ErrorCode, Role, UserInfo};
use parley_domain::{SessionId, UserId};
use parley_recorder::media::Manifest;
use parley_signaling::{Identity, Store};
use serde::Deserialize;
use sqlx::Row;

use crate::kernel::{ApiError, AppState, Body, Caller, CallerIdentity, require, session_id};
use crate::sessions::details::details;

/// The stored manifest of a session's recording, if any.
async fn manifest(s: &AppState, session_id: &SessionId) -> Result<Option<Manifest>, ApiError> {
    let row = sqlx::query("SELECT manifest FROM recording_manifests WHERE session_id = $1")
        .bind(session_id.as_str())
        .fetch_optional(&s.store.pool())
        .await
        .map_err(db)?;
    let Some(row) = row else { return Ok(None) };
    let json: String = row.try_get("manifest").map_err(db)?;
    serde_json::from_str(&json).map(Some).map_err(|e| ApiError::Internal(format!("manifest: {e}")))
}

fn db(e: sqlx::Error) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// The routes of the recordings area (besides the signed downloads).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/sessions/{id}/recordings", get(recordings))
        .route("/v1/sessions/{id}/recap", get(recap))
        .route("/v1/seekers/{id}/premium", put(set_premium))
        .route("/v1/consultants/me/recording", get(my_recording_consent).put(set_recording_consent))
        .with_state(state)
}

/// Recordings and recaps are for the session's consultant and its seeker
/// if premium (DESIGN.md §6): else 403 `premium_required` / `forbidden`.
async fn may_read(s: &AppState, who: &Identity, id: &SessionId) -> Result<(UserId, UserId), ApiError> {
    let Some(stored) = s.store.session(id).await? else {
        return Err(ApiError::NotFound(ErrorCode::UnknownSession, format!("no session {id}")));
    };
    let r = stored.record;
    if who.user.id == r.consultant_id {
        return Ok((r.seeker_id, r.consultant_id));
    }
    if who.user.id != r.seeker_id {
        return Err(ApiError::Forbidden(ErrorCode::Forbidden, format!("you are not a participant of session {id}")));
    }
    if who.premium || s.consent.is_premium(&who.user.id).await.map_err(db)? {
        Ok((r.seeker_id, r.consultant_id))
    } else {
        Err(ApiError::Forbidden(ErrorCode::PremiumRequired, "recordings and recaps are for premium seekers".into()))
    }
}

/// `GET /v1/sessions/{id}/recordings` (the consultant; the seeker if
/// premium): the recording's files with signed links valid 15 minutes.
#[utoipa::path(get, path = "/v1/sessions/{id}/recordings", tag = "recordings", security(("bearer" = [])),
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = RecordingList),
        (status = 403, description = "`forbidden`, `premium_required`", body = parley_domain::protocol::Problem),
        (status = 404, description = "`unknown_session`", body = parley_domain::protocol::Problem)))]
pub(crate) async fn recordings(
    State(s): State<AppState>,
    CallerIdentity(who): CallerIdentity,
    Path(id): Path<String>,
) -> Result<Json<RecordingList>, ApiError> {
    let id = session_id(id)?;
    may_read(&s, &who, &id).await?;
    let recordings = super::files_of(&s, &id).await?;
    Ok(Json(RecordingList { session_id: id, recordings }))
}

#[derive(Deserialize)]
pub(crate) struct RecapQuery {
    format: Option<String>,
}

/// `GET /v1/sessions/{id}/recap[?format=markdown]` (the consultant; the
/// seeker if premium): participants, timeline, billing outcome, talk time,
/// chat and notes, recordings. JSON by default; Markdown as a download.
#[utoipa::path(get, path = "/v1/sessions/{id}/recap", tag = "recordings", security(("bearer" = [])),
    params(("id" = String, Path, description = "session id"),
        ("format" = Option<String>, Query, description = "`json` (default) or `markdown`")),
    responses((status = 200, body = Recap),
        (status = 400, description = "`invalid_field` (format)", body = parley_domain::protocol::Problem),
        (status = 403, description = "`forbidden`, `premium_required`", body = parley_domain::protocol::Problem),
        (status = 404, description = "`unknown_session`", body = parley_domain::protocol::Problem)))]
pub(crate) async fn recap(
    State(s): State<AppState>,
    CallerIdentity(who): CallerIdentity,
    Path(id): Path<String>,
    query: Result<Query<RecapQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let id = session_id(id)?;
    let Query(q) = query.map_err(|e| ApiError::BadRequest(ErrorCode::InvalidField, e.body_text()))?;
    let markdown = match q.format.as_deref() {
        None | Some("json") => false,
        Some("markdown") | Some("md") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(
                ErrorCode::InvalidField,
                format!("format: `{other}` is not json or markdown"),
            ));
        }
    };
    let (seeker, consultant) = may_read(&s, &who, &id).await?;
    let mut session = details(&s, &who.user, &id).await?;
    let mut participants = Vec::new();
    for uid in [&seeker, &consultant] {
        let user = s.store.user(uid).await?;
        participants.push(user.unwrap_or(UserInfo {
            id: uid.clone(),
            name: uid.to_string(),
            role: if uid == &seeker { Role::Seeker } else { Role::Consultant },
        }));
    }
    let mut chat = Vec::new();
    let mut notes = Vec::new();
    for t in &session.timeline {
        let kind = match t.kind.as_str() {
            "chat" => ChatKind::Chat,
            "note" => ChatKind::Note,
            _ => continue,
        };
        let (Some(from), Some(text)) = (t.user_id.clone(), t.detail.clone()) else { continue };
        let line = ChatLine { at_ms: t.at_ms, from, kind, text };
        if kind == ChatKind::Note { notes.push(line) } else { chat.push(line) }
    }
    session.timeline.retain(|t| t.kind != "chat" && t.kind != "note");
    let manifest = manifest(&s, &id).await?;
    let talk_time = manifest.as_ref().map(talk_time).unwrap_or_default();
    let recordings = super::files_of(&s, &id).await?;
    // Recorded once the recorder started, even while its files are still
    // being stored after the end (a client then waits for `recordings`).
    let started = session.timeline.iter().any(|t| t.kind == "recording_started");
    let recap = Recap {
        recorded: started || manifest.is_some() || !recordings.is_empty(),
        session,
        participants,
        talk_time,
        chat,
        notes,
        recordings,
    };
    if markdown {
        let name = format!("attachment; filename=\"recap-{id}.md\"");
        Ok((
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, name)],
            recap_markdown(&recap),
        )
            .into_response())
    } else {
        Ok(Json(recap).into_response())
    }
}

/// Talk time per participant from the manifest's audio tracks.
fn talk_time(manifest: &Manifest) -> Vec<TalkTime> {
    let mut per_user: Vec<(String, u64)> = Vec::new();
    for t in manifest.tracks.iter().filter(|t| t.kind == "audio") {
        match per_user.iter_mut().find(|(u, _)| *u == t.participant_id) {
            Some((_, ms)) => *ms += t.speech_ms,
            None => per_user.push((t.participant_id.clone(), t.speech_ms)),
        }
    }
    let total: u64 = per_user.iter().map(|(_, ms)| ms).sum();
    per_user
        .into_iter()
        .filter_map(|(u, ms)| {
            Some(TalkTime {
                user_id: UserId::parse(u).ok()?,
                speech_ms: ms,
                share_percent: (ms * 100).checked_div(total).map_or(0, |p| u8::try_from(p).unwrap_or(100)),
            })
        })
        .collect()
}

/// The recap as a Markdown document.
pub fn recap_markdown(r: &Recap) -> String {
    let d: &SessionDetails = &r.session;
    let name = |id: &UserId| r.participants.iter().find(|p| &p.id == id).map_or(id.to_string(), |p| p.name.clone());
    let ms = |t: i64| {
        let secs = (t - d.opened_at_ms).max(0) / 1000;
        format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    };
    let mut out = String::new();
    let _ = writeln!(out, "# Session recap — {}\n", d.session_id);
    for p in &r.participants {
        let _ = writeln!(out, "- **{}**: {} (`{}`)", p.role.as_str(), p.name, p.id);
    }
    let _ = writeln!(
        out,
        "- **state**: {}{}",
        d.state,
        d.end_reason.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
    );
    let _ = writeln!(out, "- **billable time**: {} s", d.billable_secs);
    let outcome = match d.outcome {
        Some(parley_domain::protocol::Outcome::Free) => {
            "free (within the free window; the hold was released)".to_owned()
        }
        Some(parley_domain::protocol::Outcome::Charged) => match &d.captured {
            Some(m) => format!("charged {} {}.{:02}", m.currency, m.amount_minor / 100, m.amount_minor % 100),
            None => "charged".to_owned(),
        },
        None => "not decided yet".to_owned(),
    };
    let _ = writeln!(out, "- **billing**: {outcome}");
    let _ = writeln!(out, "- **recorded**: {}\n", if r.recorded { "yes" } else { "no" });
    let _ = writeln!(out, "## Timeline\n");
    for t in &d.timeline {
        let who = t.user_id.as_ref().map(|u| format!(" {}", name(u))).unwrap_or_default();
        let detail = t.detail.as_deref().map(|x| format!(" ({x})")).unwrap_or_default();
        let _ = writeln!(out, "- {} {}{}{}", ms(t.at_ms), t.kind, who, detail);
    }
    if !r.talk_time.is_empty() {
        let _ = writeln!(out, "\n## Talk time\n");
        for t in &r.talk_time {
            let _ = writeln!(out, "- {}: {} s ({} %)", name(&t.user_id), t.speech_ms / 1000, t.share_percent);
        }
    }
    for (title, lines) in [("Chat", &r.chat), ("Notes", &r.notes)] {
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n## {title}\n");
        for l in lines {
            let _ = writeln!(out, "- {} **{}**: {}", ms(l.at_ms), name(&l.from), l.text.replace('\n', " "));
        }
    }
    if !r.recordings.is_empty() {
        let _ = writeln!(out, "\n## Recordings (links expire)\n");
        for f in &r.recordings {
            let whose = f.participant_id.as_ref().map(|u| format!("{} ", name(u))).unwrap_or_default();
            let _ = writeln!(out, "- [{whose}{} ({}, {} s)]({})", f.kind, f.codec, f.duration_ms / 1000, f.url);
        }
    }
    out
}

/// `PUT /v1/seekers/{id}/premium` (moderator tokens: the operator's
/// platform): marks a seeker premium or not.
#[utoipa::path(put, path = "/v1/seekers/{id}/premium", tag = "recordings", security(("bearer" = [])),
    params(("id" = String, Path, description = "seeker id")),
    request_body = PremiumRequest,
    responses((status = 200, body = PremiumRequest),
        (status = 403, description = "`wrong_role`", body = parley_domain::protocol::Problem)))]
pub(crate) async fn set_premium(
    State(s): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(req): Body<PremiumRequest>,
) -> Result<Json<PremiumRequest>, ApiError> {
    if me.role != Role::Moderator {
        return Err(ApiError::Forbidden(
            ErrorCode::WrongRole,
            "only the operator (moderator tokens) sets premium".into(),
        ));
    }
    let seeker =
        UserId::parse(id).map_err(|e| ApiError::BadRequest(ErrorCode::InvalidField, format!("seeker id: {e}")))?;
    s.consent.set_premium(&seeker, req.premium, s.clock.now()).await.map_err(db)?;
    Ok(Json(req))
}

/// `GET /v1/consultants/me/recording` (consultants): whether they allow
/// recording.
#[utoipa::path(get, path = "/v1/consultants/me/recording", tag = "recordings", security(("bearer" = [])),
    responses((status = 200, body = RecordingConsent),
        (status = 403, description = "`wrong_role`", body = parley_domain::protocol::Problem)))]
pub(crate) async fn my_recording_consent(
    State(s): State<AppState>,
    CallerIdentity(who): CallerIdentity,
) -> Result<Json<RecordingConsent>, ApiError> {
    require(&who.user, Role::Consultant)?;
    let allowed = s.consent.recording_allowed(&who.user.id).await.map_err(db)?;
    Ok(Json(RecordingConsent { allowed }))
}

/// `PUT /v1/consultants/me/recording` (consultants): allow recording or not.
#[utoipa::path(put, path = "/v1/consultants/me/recording", tag = "recordings", security(("bearer" = [])),
    request_body = RecordingConsent,
    responses((status = 200, body = RecordingConsent),
        (status = 400, description = "`invalid_field`", body = parley_domain::protocol::Problem),
        (status = 403, description = "`wrong_role`", body = parley_domain::protocol::Problem)))]
pub(crate) async fn set_recording_consent(
    State(s): State<AppState>,
    Caller(me): Caller,
    Body(req): Body<RecordingConsent>,
) -> Result<Json<RecordingConsent>, ApiError> {
    require(&me, Role::Consultant)?;
    s.consent.set_recording_allowed(&me.id, req.allowed, s.clock.now()).await.map_err(db)?;
    Ok(Json(req))
}
