//! What signaling needs from the outside world, as traits the `server`
//! implements: persistence ([`Store`]) and the payment seam ([`CallGate`]).
//! Signaling never imports billing or a database driver.

use async_trait::async_trait;
use parley_domain::protocol::{
    CallEndReason, ChatKind, ErrorCode, MediaJoin, MediaState, MeterStatus, RecordingStopReason, Role, SessionBill,
    SessionEndReason, UserInfo,
};
use parley_domain::{CallId, SessionId, Timestamp, UserId};

/// A storage failure. Signaling answers the request with `internal`.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// An instant call as first stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// The call.
    pub call_id: CallId,
    /// The session it opens if accepted.
    pub session_id: SessionId,
    /// The caller.
    pub seeker_id: UserId,
    /// The callee.
    pub consultant_id: UserId,
    /// When `call.request` arrived.
    pub created_at: Timestamp,
    /// The seeker asked for recording (`call.request` `record`); the
    /// [`CallGate`] checks the consent rules (DESIGN.md §6).
    pub recording: bool,
    /// The seeker's token carries the `premium` claim. The gate may also
    /// know premium seekers from elsewhere (the operator's API).
    pub seeker_premium: bool,
}

/// A call's states, stored with the server time of each transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallState {
    /// `call.request` received; the payment hold is being placed.
    Requested,
    /// The payment hold was refused; the consultant was never rung.
    HoldRefused,
    /// The consultant is being rung.
    Ringing,
    /// Accepted: a session was opened.
    Accepted,
    /// Ended unanswered.
    Ended(CallEndReason),
}

impl CallState {
    /// The state's stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Requested => "requested",
            CallState::HoldRefused => "hold_refused",
            CallState::Ringing => "ringing",
            CallState::Accepted => "accepted",
            CallState::Ended(r) => r.as_str(),
        }
    }
}

/// A session as first stored, when its call is accepted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionRecord {
    /// The session.
    pub session_id: SessionId,
    /// The call that opened it.
    pub call_id: CallId,
    /// The seeker.
    pub seeker_id: UserId,
    /// The consultant.
    pub consultant_id: UserId,
    /// When it was opened.
    pub opened_at: Timestamp,
    /// Recording was asked for and allowed: the recorder is assigned when
    /// the session opens (DESIGN.md §6).
    pub recording: bool,
    /// A scheduled session (a booking), not an instant call (DESIGN.md §3):
    /// stored as kind `scheduled`.
    pub scheduled: bool,
}

/// A booked session whose room has not opened yet (DESIGN.md §3): what a
/// too-early `room.join` is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledSession {
    /// The seeker.
    pub seeker_id: UserId,
    /// The consultant.
    pub consultant_id: UserId,
    /// When the room opens (10 minutes before the start).
    pub opens_at: Timestamp,
}

/// Something that happened in a session, stored in its timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A participant joined the room (first time or again).
    Joined(UserId),
    /// A participant left on purpose.
    Left(UserId),
    /// A participant's connection dropped.
    Dropped(UserId),
    /// A participant's media connection state (DESIGN.md M11).
    Media(UserId, MediaState),
    /// A participant sent a chat line or a note (`chat.send`).
    Chat(UserId, ChatKind, String),
    /// The recorder joined: recording is on (its user id).
    RecordingStarted(UserId),
    /// Recording went off.
    RecordingStopped(RecordingStopReason),
    /// The session ended.
    Ended {
        /// Why.
        reason: SessionEndReason,
        /// Who hung up, for `hangup`.
        by: Option<UserId>,
        /// The meter's settlement decision, stored with the end (DESIGN.md
        /// B3); `None` if the session had no meter.
        bill: Option<SessionBill>,
    },
}

impl SessionEvent {
    /// The event's stored kind.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionEvent::Joined(_) => "joined",
            SessionEvent::Left(_) => "left",
            SessionEvent::Dropped(_) => "dropped",
            SessionEvent::Media(..) => "media_state",
            SessionEvent::Chat(_, kind, _) => kind.as_str(),
            SessionEvent::RecordingStarted(_) => "recording_started",
            SessionEvent::RecordingStopped(_) => "recording_stopped",
            SessionEvent::Ended { .. } => "ended",
        }
    }
}

/// What the store knows of a call, for replies about calls no longer ringing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCall {
    /// The call as created.
    pub record: CallRecord,
    /// Its latest state's stored name.
    pub state: String,
}

/// What the store knows of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The session as opened.
    pub record: SessionRecord,
    /// When it ended, if it has.
    pub ended_at: Option<Timestamp>,
    /// Why it ended (stored name), if it has.
    pub end_reason: Option<String>,
}

/// Persistence of users, calls and sessions, with every state transition and
/// its server timestamp. Implemented by `server` on SQLite and PostgreSQL.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records that these users were seen (connected) at `at`: inserts new
    /// ones, updates name, role and last-seen time of known ones.
    async fn users_seen(&self, users: &[UserInfo], at: Timestamp) -> Result<(), StoreError>;
    /// A user by id.
    async fn user(&self, id: &UserId) -> Result<Option<UserInfo>, StoreError>;
    /// All users with `role`, by name.
    async fn users_with_role(&self, role: Role) -> Result<Vec<UserInfo>, StoreError>;
    /// Stores a new call in state `requested`.
    async fn create_call(&self, call: &CallRecord) -> Result<(), StoreError>;
    /// Records a call's transition to `state` at `at`.
    async fn call_transition(&self, call_id: &CallId, state: CallState, at: Timestamp) -> Result<(), StoreError>;
    /// A call by id.
    async fn call(&self, call_id: &CallId) -> Result<Option<StoredCall>, StoreError>;
    /// Calls still `requested` or `ringing`: at a hub core's start, those
    /// its predecessor (a killed process, a lost hub node) was running.
    async fn live_calls(&self) -> Result<Vec<StoredCall>, StoreError>;
    /// Stores a newly opened session.
    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// Records the acceptance of `session.call_id` at `session.opened_at`
    /// (its transition to [`CallState::Accepted`]) and stores the session
    /// it opened, atomically: on `Err` neither is stored, so no call is left
    /// accepted without its session.
    async fn accept_call(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// Appends `event` at `at` to the session's timeline (and, for `Ended`,
    /// marks the session ended).
    async fn session_event(
        &self,
        session_id: &SessionId,
        event: &SessionEvent,
        at: Timestamp,
    ) -> Result<(), StoreError>;
    /// A session by id.
    async fn session(&self, session_id: &SessionId) -> Result<Option<StoredSession>, StoreError>;
    /// The session's timeline, oldest first: `(at, kind, user, detail)`.
    async fn session_timeline(&self, session_id: &SessionId) -> Result<Vec<TimelineEntry>, StoreError>;
    /// A booked session whose session is not stored yet: confirmed, or
    /// held with its room opening at this moment; `None` for anything else
    /// (the default: no bookings).
    async fn scheduled(&self, _session_id: &SessionId) -> Result<Option<ScheduledSession>, StoreError> {
        Ok(None)
    }
}

/// One entry of a session's stored timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Server time.
    pub at: Timestamp,
    /// [`SessionEvent::kind`].
    pub kind: String,
    /// The participant concerned, if any.
    pub user_id: Option<UserId>,
    /// Extra detail (media state, end reason).
    pub detail: Option<String>,
}

/// A refusal from the [`CallGate`]: the call is rejected with `code`
/// ([`ErrorCode::PaymentDeclined`] or [`ErrorCode::PaymentActionRequired`])
/// and the consultant is not rung.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRefusal {
    /// Stable code sent to the seeker.
    pub code: ErrorCode,
    /// Readable reason sent to the seeker.
    pub message: String,
}

/// The seam where the money path places the payment hold before a
/// consultant is rung (DESIGN.md §3, B2). The embedded default without
/// billing is [`OpenGate`].
#[async_trait]
pub trait CallGate: Send + Sync + 'static {
    /// Called after the call is validated and stored, before ringing. `Err`
    /// rejects the call and the consultant is never disturbed.
    async fn before_ring(&self, call: &CallRecord, payment_method: Option<&str>) -> Result<(), GateRefusal>;
    /// Called once when a call that passed `before_ring` ends without a
    /// session (declined, cancelled, timed out…): release the hold.
    async fn call_unanswered(&self, call: &CallRecord, reason: CallEndReason);
}

/// A [`CallGate`] that lets every call ring (no payment hold).
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenGate;

#[async_trait]
impl CallGate for OpenGate {
    async fn before_ring(&self, _call: &CallRecord, _pm: Option<&str>) -> Result<(), GateRefusal> {
        Ok(())
    }
    async fn call_unanswered(&self, _call: &CallRecord, _reason: CallEndReason) {}
}

/// The seam where the session meter hears what happens in rooms (DESIGN.md
/// §4). Every method is called under the hub's lock, in the order things
/// happened, and must return quickly without blocking or awaiting.
pub trait SessionHooks: Send + Sync + 'static {
    /// The session's call was accepted and the session stored, at `at`.
    fn opened(&self, session: &SessionRecord, at: Timestamp);
    /// A participant (by role) joined or rejoined the room at `at`.
    fn joined(&self, session_id: &SessionId, role: Role, at: Timestamp);
    /// A participant left the room or dropped at `at`; they have `G` to
    /// come back (M3).
    fn absent(&self, session_id: &SessionId, role: Role, at: Timestamp);
    /// The session's meter as of `at`, for the `room.join` ack.
    fn status(&self, session_id: &SessionId, at: Timestamp) -> Option<MeterStatus>;
    /// The session is ending at `at`; returns the bill, which is stored with
    /// the end and sent in `session.ended`.
    fn ending(
        &self,
        session_id: &SessionId,
        reason: SessionEndReason,
        by: Option<Role>,
        at: Timestamp,
    ) -> Option<SessionBill>;
}

/// What the server adds to a participant's `room.join` ack beyond the
/// peer-to-peer fields: where their media goes when it does not run peer to
/// peer (a LiveKit URL and token). Asked by the hub's driver, outside its
/// lock, once per join; `None` means peer to peer.
pub trait JoinExtras: Send + Sync + 'static {
    /// The media fields of `user`'s `room.join` ack for `session_id`
    /// (`user` is one of the session's two participants).
    fn media(&self, session_id: &SessionId, user: &UserInfo) -> Option<MediaJoin>;
}

/// [`SessionHooks`] that meter nothing: sessions end without a bill.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl SessionHooks for NoHooks {
    fn opened(&self, _: &SessionRecord, _: Timestamp) {}
    fn joined(&self, _: &SessionId, _: Role, _: Timestamp) {}
    fn absent(&self, _: &SessionId, _: Role, _: Timestamp) {}
    fn status(&self, _: &SessionId, _: Timestamp) -> Option<MeterStatus> {
        None
    }
    fn ending(&self, _: &SessionId, _: SessionEndReason, _: Option<Role>, _: Timestamp) -> Option<SessionBill> {
        None
    }
}
