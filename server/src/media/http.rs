//! `POST /v1/webhooks/livekit`: LiveKit's webhooks, verified with
//! `livekit-api`'s `WebhookReceiver` (an `Authorization` JWT signed with
//! the API secret, carrying the body's SHA-256), applied once per event id
//! (L2) and in LiveKit's order to the session's meter (L1, L3); a
//! consented session's published tracks are egressed and the egress
//! results registered as its recordings (L4).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use livekit_api::services::egress::TrackEgressOutput;
use livekit_protocol as proto;
use parley_domain::SessionId;
use parley_domain::protocol::{ErrorCode, Problem};

use super::livekit::{Livekit, listed, room_name};
use super::sql;
use crate::kernel::ApiError;
use crate::store::files::{RecordingRow, insert_recording, new_recording_id, recordings_of};

/// The route of the LiveKit webhook (only with `PARLEY_MEDIA=livekit`).
pub fn router(livekit: Arc<Livekit>) -> Router {
    Router::new().route("/v1/webhooks/livekit", post(livekit_webhook)).with_state(livekit)
}

/// The route with peer-to-peer media: 404 `unknown_type` ("this server
/// does not use LiveKit"), as the Stripe webhook without Stripe.
pub fn absent_router() -> Router {
    let absent = || async {
        ApiError::NotFound(ErrorCode::UnknownType, "this server does not use LiveKit (PARLEY_MEDIA=p2p)".into())
    };
    Router::new().route("/v1/webhooks/livekit", post(absent))
}

/// `POST /v1/webhooks/livekit` (docs/protocol.md, "LiveKit webhooks"):
/// 200 `{"received": true, "duplicate": bool}`; 401 `bad_signature` for a
/// missing, forged, expired or altered one (the JWT or the body's hash);
/// 400 `malformed_payload` for a body that is not a `WebhookEvent`; 500
/// (LiveKit retries) if it could not be stored.
#[utoipa::path(post, path = "/v1/webhooks/livekit", tag = "webhooks",
    params(("Authorization" = String, Header, description = "LiveKit's webhook JWT (sha256 claim = the body's)")),
    request_body(content = String, description = "LiveKit's WebhookEvent, JSON", content_type = "application/webhook+json"),
    responses((status = 200, description = "`{\"received\": true, \"duplicate\": bool}`"),
        (status = 400, description = "`malformed_payload`", body = Problem),
        (status = 401, description = "`bad_signature`", body = Problem),
        (status = 404, description = "`unknown_type`: the server does not use LiveKit", body = Problem)))]
pub(crate) async fn livekit_webhook(
    State(lk): State<Arc<Livekit>>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<serde_json::Value>, ApiError> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let event = lk.verify(&body, auth).map_err(|e| match e {
        livekit_api::webhooks::WebhookError::InvalidData(e) => {
            ApiError::BadRequest(ErrorCode::MalformedPayload, format!("not a LiveKit webhook event: {e}"))
        }
        other => ApiError::Status(
            axum::http::StatusCode::UNAUTHORIZED,
            ErrorCode::BadSignature,
            format!("LiveKit webhook refused: {other}"),
        ),
    })?;
    let room = event.room.as_ref().map(|r| r.name.clone()).unwrap_or_default();
    let now = lk.clock.now();
    let db = |e: sqlx::Error| ApiError::Internal(format!("livekit event: {e}"));
    let first =
        sql::first_delivery(&lk.store, &event.id, &event.event, &room, event.created_at, now).await.map_err(db)?;
    if first && let Err(e) = apply(&lk, &event).await {
        sql::forget(&lk.store, &event.id).await.map_err(db)?;
        return Err(e);
    }
    Ok(Json(serde_json::json!({ "received": true, "duplicate": !first })))
}

/// Applies one verified, first-delivered event.
async fn apply(lk: &Arc<Livekit>, event: &proto::WebhookEvent) -> Result<(), ApiError> {
    let event_ms = event.created_at.saturating_mul(1000);
    let session = event.room.as_ref().and_then(|r| SessionId::parse(r.name.clone()).ok());
    match (event.event.as_str(), session) {
        ("participant_joined", Some(s)) => {
            if let Some(p) = &event.participant {
                let p = listed(p);
                lk.with_room(&s, |room, now| room.state.joined(&p, event_ms, now).into_iter().collect());
            }
        }
        ("participant_left", Some(s)) => {
            if let Some(p) = &event.participant {
                let p = listed(p);
                lk.with_room(&s, |room, now| room.state.left(&p, event_ms, now).into_iter().collect());
            }
        }
        ("room_finished", Some(s)) => {
            lk.with_room(&s, |room, now| room.state.finished(event_ms, now));
        }
        ("track_published", Some(s)) => start_egress(lk, &s, event),
        ("egress_ended", _) => {
            if let Some(info) = &event.egress_info {
                register_egress(lk, info).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// L4: a published track of a consented session is egressed to
/// `sessions/<session>/<identity>-<kind>-<track>.<ext>` in the egress
/// service's storage (the same bucket as `PARLEY_RECORDING_STORE`).
fn start_egress(lk: &Arc<Livekit>, session_id: &SessionId, event: &proto::WebhookEvent) {
    let recording = lk.lock().get(session_id).is_some_and(|o| o.recording);
    let (Some(participant), Some(track)) = (&event.participant, &event.track) else { return };
    if !recording {
        return;
    }
    let (kind, ext) = kind_of(track);
    let filepath = format!("sessions/{session_id}/{}-{kind}-{}.{ext}", participant.identity, track.sid);
    let output = TrackEgressOutput::File(Box::new(proto::DirectFileOutput { filepath, ..Default::default() }));
    let (lk, room, track_id) = (lk.clone(), room_name(session_id), track.sid.clone());
    lk.clone().tasks.spawn(async move {
        if let Err(e) = lk.egress.start_track_egress(&room, output, &track_id).await {
            tracing::error!(%room, track = %track_id, error = %e, "LiveKit StartTrackEgress failed");
        }
    });
}

/// `audio`/`video` and the file extension LiveKit's track egress writes.
fn kind_of(track: &proto::TrackInfo) -> (&'static str, &'static str) {
    let mime = track.mime_type.to_ascii_lowercase();
    if track.r#type == proto::TrackType::Video as i32 || mime.starts_with("video/") {
        ("video", if mime.contains("h264") { "mp4" } else { "webm" })
    } else {
        ("audio", "ogg")
    }
}

/// L4: a finished egress's files become the session's recordings (the
/// file named as [`start_egress`] named it; other egresses are ignored).
async fn register_egress(lk: &Livekit, info: &proto::EgressInfo) -> Result<(), ApiError> {
    if info.status != proto::EgressStatus::EgressComplete as i32 {
        tracing::warn!(egress = %info.egress_id, status = info.status, error = %info.error, "LiveKit egress did not complete");
        return Ok(());
    }
    let Ok(session_id) = SessionId::parse(info.room_name.clone()) else { return Ok(()) };
    let prefix = format!("sessions/{session_id}/");
    let now = lk.clock.now().unix_millis();
    let known =
        recordings_of(&lk.store, &session_id).await.map_err(|e| ApiError::Internal(format!("recordings: {e}")))?;
    for file in &info.file_results {
        // Another event about the same egress: registered already.
        if known.iter().any(|r| r.object_key == file.filename) {
            continue;
        }
        let Some(name) = file.filename.strip_prefix(&prefix) else { continue };
        let Some((stem, ext)) = name.rsplit_once('.') else { continue };
        let mut parts = stem.rsplitn(3, '-');
        let (Some(_track), Some(kind), Some(identity)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (codec, content_type) = match (kind, ext) {
            ("audio", _) => ("opus", "audio/ogg"),
            ("video", "mp4") => ("h264", "video/mp4"),
            ("video", _) => ("vp8", "video/webm"),
            _ => continue,
        };
        let row = RecordingRow {
            id: new_recording_id(),
            session_id: session_id.to_string(),
            participant_id: Some(identity.to_owned()),
            kind: kind.to_owned(),
            codec: codec.to_owned(),
            content_type: content_type.to_owned(),
            object_key: file.filename.clone(),
            bytes: file.size,
            duration_ms: file.duration / 1_000_000,
            created_ms: now,
            deleted_ms: None,
        };
        insert_recording(&lk.store, &row).await.map_err(|e| ApiError::Internal(format!("recording: {e}")))?;
    }
    Ok(())
}
