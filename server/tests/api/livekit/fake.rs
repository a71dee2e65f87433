//! A local fake of LiveKit's server API, for the tests of the LiveKit
//! media backend: the Twirp services `livekit.RoomService` and
//! `livekit.Egress` over HTTP at `/twirp/…`, checking what LiveKit checks
//! (the API key's JWT on every call, signed with the secret, with the
//! grants the method needs; protobuf or JSON bodies), keeping room and
//! participant state; and webhooks signed as LiveKit signs them (a JWT
//! with the body's SHA-256, `Authorization` header).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use livekit_api::access_token::{AccessToken, Claims, TokenVerifier};
use livekit_protocol as proto;
use prost::Message;
use sha2::{Digest, Sha256};

/// The API key the fake accepts.
pub const API_KEY: &str = "APItestkey";
/// Its secret (LiveKit wants at least 32 bytes).
pub const API_SECRET: &str = "test-livekit-secret-0123456789abcdef";

/// A room as the fake keeps it.
#[derive(Debug, Clone, Default)]
pub struct FakeRoom {
    /// The `CreateRoom` request.
    pub created: proto::CreateRoomRequest,
    /// Its participants now.
    pub participants: Vec<proto::ParticipantInfo>,
}

/// What the fake saw and keeps.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Rooms by name (deleted ones removed).
    pub rooms: BTreeMap<String, FakeRoom>,
    /// Every room ever deleted, in order.
    pub deleted: Vec<String>,
    /// `RemoveParticipant` requests, in order.
    pub removed: Vec<proto::RoomParticipantIdentity>,
    /// `StartTrackEgress` requests, in order.
    pub egresses: Vec<proto::TrackEgressRequest>,
    /// `ListParticipants` calls answered.
    pub lists: usize,
    /// Calls refused for their credentials or grants.
    pub refused: usize,
}

/// The fake server.
#[derive(Clone)]
pub struct FakeLivekit {
    /// `http://127.0.0.1:<port>` (what `LIVEKIT_URL` is set to).
    pub url: String,
    /// Its state.
    pub state: Arc<Mutex<FakeState>>,
}

fn twirp_error(status: StatusCode, code: &str, msg: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], serde_json::json!({"code": code, "msg": msg}).to_string())
        .into_response()
}

/// Decodes a request body as `livekit-api` may send it.
fn decode<M: Message + Default + serde::de::DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Option<M> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/json") {
        serde_json::from_slice(body).ok()
    } else if ct.starts_with("application/protobuf") {
        M::decode(body.as_ref()).ok()
    } else {
        None
    }
}

fn encode<M: Message + serde::Serialize>(headers: &HeaderMap, msg: &M) -> Response {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/json") {
        ([(header::CONTENT_TYPE, "application/json")], serde_json::to_string(msg).unwrap()).into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/protobuf")], msg.encode_to_vec()).into_response()
    }
}

/// The caller's verified claims (`Authorization: Bearer <jwt>` signed with
/// the API secret, issued by the API key).
fn claims(headers: &HeaderMap) -> Option<Claims> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = auth.strip_prefix("Bearer ")?;
    let claims = TokenVerifier::with_api_key(API_KEY, API_SECRET).verify(token).ok()?;
    (claims.iss == API_KEY).then_some(claims)
}

async fn twirp(
    State(fake): State<FakeLivekit>,
    Path((service, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(c) = claims(&headers) else {
        fake.state.lock().unwrap().refused += 1;
        return twirp_error(StatusCode::UNAUTHORIZED, "unauthenticated", "invalid API key or token");
    };
    let v = &c.video;
    let denied = |fake: &FakeLivekit| {
        fake.state.lock().unwrap().refused += 1;
        twirp_error(StatusCode::FORBIDDEN, "permission_denied", "missing grant")
    };
    let malformed = || twirp_error(StatusCode::BAD_REQUEST, "malformed", "bad body");
    let mut st = fake.state.lock().unwrap();
    match (service.as_str(), method.as_str()) {
        ("livekit.RoomService", "CreateRoom") => {
            let Some(req) = decode::<proto::CreateRoomRequest>(&headers, &body) else { return malformed() };
            if !v.room_create {
                drop(st);
                return denied(&fake);
            }
            let room = proto::Room {
                sid: format!("RM_{}", req.name),
                name: req.name.clone(),
                empty_timeout: req.empty_timeout,
                departure_timeout: req.departure_timeout,
                max_participants: req.max_participants,
                ..Default::default()
            };
            st.rooms.entry(req.name.clone()).or_insert(FakeRoom { created: req, participants: vec![] });
            encode(&headers, &room)
        }
        ("livekit.RoomService", "DeleteRoom") => {
            let Some(req) = decode::<proto::DeleteRoomRequest>(&headers, &body) else { return malformed() };
            if !v.room_create {
                drop(st);
                return denied(&fake);
            }
            st.rooms.remove(&req.room);
            st.deleted.push(req.room);
            encode(&headers, &proto::DeleteRoomResponse {})
        }
        ("livekit.RoomService", "ListParticipants") => {
            let Some(req) = decode::<proto::ListParticipantsRequest>(&headers, &body) else {
                return malformed();
            };
            if !(v.room_admin && v.room == req.room) {
                drop(st);
                return denied(&fake);
            }
            let Some(room) = st.rooms.get(&req.room) else {
                return twirp_error(StatusCode::NOT_FOUND, "not_found", "room not found");
            };
            let participants = room.participants.clone();
            st.lists += 1;
            encode(&headers, &proto::ListParticipantsResponse { participants })
        }
        ("livekit.RoomService", "RemoveParticipant") => {
            let Some(req) = decode::<proto::RoomParticipantIdentity>(&headers, &body) else {
                return malformed();
            };
            if !(v.room_admin && v.room == req.room) {
                drop(st);
                return denied(&fake);
            }
            st.removed.push(req.clone());
            let Some(room) = st.rooms.get_mut(&req.room) else {
                return twirp_error(StatusCode::NOT_FOUND, "not_found", "room not found");
            };
            let before = room.participants.len();
            room.participants.retain(|p| p.identity != req.identity);
            if room.participants.len() == before {
                return twirp_error(StatusCode::NOT_FOUND, "not_found", "participant not found");
            }
            encode(&headers, &proto::RemoveParticipantResponse {})
        }
        ("livekit.Egress", "StartTrackEgress") => {
            let Some(req) = decode::<proto::TrackEgressRequest>(&headers, &body) else { return malformed() };
            if !v.room_record {
                drop(st);
                return denied(&fake);
            }
            let info = proto::EgressInfo {
                egress_id: format!("EG_{}", st.egresses.len() + 1),
                room_name: req.room_name.clone(),
                status: proto::EgressStatus::EgressStarting as i32,
                ..Default::default()
            };
            st.egresses.push(req);
            encode(&headers, &info)
        }
        _ => twirp_error(StatusCode::NOT_FOUND, "bad_route", "no such method"),
    }
}

impl FakeLivekit {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> FakeLivekit {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = FakeLivekit { url, state: Arc::default() };
        let app = Router::new().route("/twirp/{service}/{method}", post(twirp)).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// A participant connection (`sid`) of `identity`, joined at `joined_ms`.
    pub fn participant(identity: &str, sid: &str, joined_ms: i64) -> proto::ParticipantInfo {
        proto::ParticipantInfo {
            sid: sid.into(),
            identity: identity.into(),
            joined_at: joined_ms / 1000,
            joined_at_ms: joined_ms,
            state: proto::participant_info::State::Active as i32,
            ..Default::default()
        }
    }

    /// A media connection as LiveKit would see it join (the room's state
    /// changes; no webhook).
    pub fn connect(&self, room: &str, p: &proto::ParticipantInfo) {
        let mut st = self.state.lock().unwrap();
        let r = st.rooms.get_mut(room).expect("room exists");
        r.participants.retain(|q| q.identity != p.identity);
        r.participants.push(p.clone());
    }

    /// A connection as LiveKit would see it leave (no webhook).
    pub fn disconnect(&self, room: &str, sid: &str) {
        let mut st = self.state.lock().unwrap();
        if let Some(r) = st.rooms.get_mut(room) {
            r.participants.retain(|q| q.sid != sid);
        }
    }
}

/// A webhook event.
pub fn event(id: &str, kind: &str, room: &str, created_at_secs: i64) -> proto::WebhookEvent {
    proto::WebhookEvent {
        id: id.into(),
        event: kind.into(),
        room: Some(proto::Room { name: room.into(), sid: format!("RM_{room}"), ..Default::default() }),
        created_at: created_at_secs,
        ..Default::default()
    }
}

/// The body and `Authorization` header LiveKit sends for `event`, signed
/// with `secret` (the API's, or another for a forgery).
pub fn signed(event: &proto::WebhookEvent, secret: &str) -> (String, String) {
    let body = serde_json::to_string(event).unwrap();
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()));
    let jwt = AccessToken::with_api_key(API_KEY, secret).with_sha256(&hash).to_jwt().unwrap();
    (body, jwt)
}

/// Posts a signed body to the server's webhook endpoint; the status and
/// the JSON answer.
pub async fn post_webhook(base: &str, body: String, auth: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/webhooks/livekit"))
        .header("content-type", "application/webhook+json")
        .header("authorization", auth)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Signs and posts `event` as LiveKit does.
pub async fn deliver(base: &str, event: &proto::WebhookEvent) -> (u16, serde_json::Value) {
    let (body, auth) = signed(event, API_SECRET);
    post_webhook(base, body, &auth).await
}
