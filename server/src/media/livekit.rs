//! The LiveKit backend: a session's room (created when the session opens,
//! its participants removed and the room deleted when it ends), the access
//! tokens in `room.join` acks, and the meter fed from LiveKit's participant
//! events ([`super::rules`]). API calls go through `livekit-api`'s
//! `RoomClient` and `EgressClient` (Twirp over HTTP, signed with the API
//! key); webhooks are verified with its `WebhookReceiver`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use livekit_api::access_token::{AccessToken, TokenVerifier, VideoGrants};
use livekit_api::services::egress::EgressClient;
use livekit_api::services::room::{CreateRoomOptions, RemoveParticipantOptions, RoomClient};
use livekit_api::webhooks::{WebhookError, WebhookReceiver};
use livekit_protocol as proto;
use parley_domain::protocol::{MediaJoin, UserInfo};
use parley_domain::{Clock, SessionId, Timestamp};
use parley_metering::Meters;
use parley_signaling::JoinExtras;
use parley_signaling::store::SessionRecord;
use tokio_util::task::TaskTracker;

use super::rules::{Change, Listed, RoomState};
use crate::config::LivekitConfig;
use crate::kernel::worker::Wake;
use crate::store::SqlStore;

/// One open LiveKit session.
#[derive(Debug, Clone)]
pub(crate) struct Open {
    pub(crate) state: RoomState,
    /// Both consented to recording: its tracks are egressed.
    pub(crate) recording: bool,
    /// When its participants are next listed (server clock).
    next_poll: Timestamp,
}

/// The LiveKit media backend of one server.
pub struct Livekit {
    pub(crate) cfg: LivekitConfig,
    pub(crate) rooms: RoomClient,
    pub(crate) egress: EgressClient,
    receiver: WebhookReceiver,
    pub(crate) meters: Arc<Meters>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) store: SqlStore,
    open: Mutex<HashMap<SessionId, Open>>,
    /// The API calls in flight (room creation, teardown, egress).
    pub(crate) tasks: TaskTracker,
    /// Wakes the participant poll (a session opened).
    pub(crate) poll: Wake,
    /// How long an empty room is kept (the meter's grace: a participant
    /// may come back until then).
    grace: Duration,
    /// The longest a session can last: access tokens expire then.
    session_length: Duration,
}

impl std::fmt::Debug for Livekit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Livekit").field("url", &self.cfg.url).field("api_key", &self.cfg.api_key).finish()
    }
}

/// The name of a session's LiveKit room: the session id (`ses_…`).
pub fn room_name(session_id: &SessionId) -> String {
    session_id.as_str().to_owned()
}

impl Livekit {
    /// The backend for `cfg`. `grace` is the meter's (M3): an empty room
    /// is kept that long. `session_length` bounds the tokens' lifetime.
    pub fn new(
        cfg: LivekitConfig,
        meters: Arc<Meters>,
        clock: Arc<dyn Clock>,
        store: SqlStore,
        grace: Duration,
        session_length: Duration,
    ) -> Arc<Livekit> {
        let rooms = RoomClient::with_api_key(&cfg.url, &cfg.api_key, &cfg.api_secret);
        let egress = EgressClient::with_api_key(&cfg.url, &cfg.api_key, &cfg.api_secret);
        let receiver = WebhookReceiver::new(TokenVerifier::with_api_key(&cfg.api_key, &cfg.api_secret));
        Arc::new(Livekit {
            cfg,
            rooms,
            egress,
            receiver,
            meters,
            clock,
            store,
            open: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            poll: Wake::new(),
            grace,
            session_length,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open LiveKit sessions whose participants are due to be listed
    /// at `now`.
    fn due(&self, now: Timestamp) -> Vec<SessionId> {
        self.lock().iter().filter(|(_, o)| o.next_poll <= now).map(|(id, _)| id.clone()).collect()
    }

    /// The session opened at `at`: its room is created
    /// (`RoomService.CreateRoom`, named after the session, at most its two
    /// participants, kept `G` once empty), in the background.
    pub fn opened(self: &Arc<Self>, session: &SessionRecord, at: Timestamp) {
        self.open_room(session, at, at.plus(self.cfg.poll_interval));
    }

    /// Keeps `session` as open (present: nobody yet), polled first at
    /// `next_poll`, and creates its room.
    fn open_room(self: &Arc<Self>, session: &SessionRecord, at: Timestamp, next_poll: Timestamp) {
        let state = RoomState::new(session.seeker_id.clone(), session.consultant_id.clone(), at);
        self.lock().insert(session.session_id.clone(), Open { state, recording: session.recording, next_poll });
        self.poll.wake();
        let me = self.clone();
        let name = room_name(&session.session_id);
        self.tasks.spawn(async move {
            let timeout = u32::try_from(me.grace.as_secs()).unwrap_or(u32::MAX).max(1);
            let options = CreateRoomOptions {
                empty_timeout: timeout,
                departure_timeout: timeout,
                max_participants: 2,
                ..Default::default()
            };
            if let Err(e) = me.rooms.create_room(&name, options).await {
                tracing::error!(room = %name, error = %e, "LiveKit CreateRoom failed");
            }
        });
    }

    /// A session recovered at start-up (M9): its room is created if LiveKit
    /// dropped it, and its participants are listed at once (L1), since
    /// the webhooks sent while the server was down are not retried forever.
    pub fn restored(self: &Arc<Self>, session: &SessionRecord) {
        let now = self.clock.now();
        self.open_room(session, now, now);
    }

    /// The session ended: its participants are removed (their tokens
    /// revoked as of now) and the room deleted, in the background.
    pub fn ended(self: &Arc<Self>, session_id: &SessionId) {
        let Some(open) = self.lock().remove(session_id) else { return };
        let me = self.clone();
        let name = room_name(session_id);
        let revoke_token_ts = self.clock.now().unix_millis();
        self.tasks.spawn(async move {
            for (identity, _) in open.state.members() {
                let options = RemoveParticipantOptions { revoke_token_ts };
                // Absent participants are `not_found`: nothing to remove.
                if let Err(e) = me.rooms.remove_participant_with_options(&name, identity.as_str(), options).await {
                    tracing::debug!(room = %name, %identity, error = %e, "LiveKit RemoveParticipant");
                }
            }
            if let Err(e) = me.rooms.delete_room(&name).await {
                tracing::error!(room = %name, error = %e, "LiveKit DeleteRoom failed");
            }
        });
    }

    /// A LiveKit access token for `user` in `session_id`'s room: join,
    /// publish and subscribe in exactly that room, as exactly that
    /// identity, until the session's longest possible end.
    ///
    /// # Errors
    ///
    /// The token could not be signed.
    pub fn token(&self, session_id: &SessionId, user: &UserInfo) -> Result<String, String> {
        let grants = VideoGrants {
            room_join: true,
            room: room_name(session_id),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            ..Default::default()
        };
        AccessToken::with_api_key(&self.cfg.api_key, &self.cfg.api_secret)
            .with_identity(user.id.as_str())
            .with_name(&user.name)
            .with_ttl(self.session_length)
            .with_grants(grants)
            .to_jwt()
            .map_err(|e| e.to_string())
    }

    /// Verifies a webhook (`Authorization`: a JWT signed with the API
    /// secret whose `sha256` claim is the body's) and decodes it.
    ///
    /// # Errors
    ///
    /// Forged, expired, altered or malformed.
    pub fn verify(&self, body: &str, authorization: &str) -> Result<proto::WebhookEvent, WebhookError> {
        let token = authorization.strip_prefix("Bearer ").unwrap_or(authorization);
        self.receiver.receive(body, token)
    }

    /// Applies `f` to the open session's state and feeds what changed to
    /// the meter. `None` if the session is not open (here).
    pub(crate) fn with_room(
        &self,
        session_id: &SessionId,
        f: impl FnOnce(&mut Open, Timestamp) -> Vec<Change>,
    ) -> Option<Vec<Change>> {
        let mut open = self.lock();
        let room = open.get_mut(session_id)?;
        let changes = f(room, self.clock.now());
        // Fed under the lock: the meter sees a session's changes in order.
        for c in &changes {
            if c.joined {
                self.meters.joined(session_id, c.role, c.at);
            } else {
                self.meters.absent(session_id, c.role, c.at);
            }
        }
        Some(changes)
    }

    /// Lists the participants of each open session's room due at `now`
    /// (every poll interval from its opening) and applies what a lost
    /// webhook left out (L1). Returns when the next one is due.
    pub async fn poll_once(&self, now: Timestamp) -> Option<Timestamp> {
        for session_id in self.due(now) {
            if let Some(open) = self.lock().get_mut(&session_id) {
                open.next_poll = now.plus(self.cfg.poll_interval);
            }
            let asked = self.clock.now();
            let listed = match self.rooms.list_participants(&room_name(&session_id)).await {
                Ok(list) => list.iter().map(listed).collect::<Vec<_>>(),
                Err(e) => {
                    tracing::warn!(%session_id, error = %e, "LiveKit ListParticipants failed");
                    continue;
                }
            };
            self.with_room(&session_id, |room, now| room.state.polled(&listed, asked, now));
        }
        self.lock().values().map(|o| o.next_poll).min()
    }
}

/// A LiveKit participant as the rules see it.
pub(crate) fn listed(p: &proto::ParticipantInfo) -> Listed {
    let joined_at_ms = if p.joined_at_ms > 0 { p.joined_at_ms } else { p.joined_at * 1000 };
    Listed { identity: p.identity.clone(), sid: p.sid.clone(), joined_at_ms }
}

impl JoinExtras for Livekit {
    fn media(&self, session_id: &SessionId, user: &UserInfo) -> Option<MediaJoin> {
        match self.token(session_id, user) {
            Ok(token) => Some(MediaJoin::Livekit { url: self.cfg.url.clone(), token }),
            Err(e) => {
                tracing::error!(%session_id, error = %e, "cannot sign a LiveKit token");
                None
            }
        }
    }
}
