//! The signaling wire protocol, version 1 (docs/protocol.md).
//!
//! A client connects a WebSocket to `/v1/signal` with a bearer JWT and
//! exchanges JSON text frames. Every frame is one object with a `type`.
//!
//! * Client → server: [`ClientEnvelope`] — an optional client `id` (echoed in
//!   the `ack` or `error` that answers it) and a [`ClientMessage`].
//! * Server → client: [`ServerEnvelope`] — a per-connection sequence number
//!   `seq` (1, 2, 3, … across resumes) and a [`ServerMessage`].
//!
//! Only these types cross the wire (ARCHITECTURE.md invariant); the JS SDK
//! mirrors them.

use serde::{Deserialize, Serialize};

use crate::ids::{CallId, SessionId, UserId};
use crate::money::Money;

/// The protocol version spoken by this build, sent in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;
/// The largest text frame processed, in bytes (DESIGN.md §3). A larger frame
/// is answered with [`ErrorCode::FrameTooLarge`] and dropped.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// The largest SDP accepted in `sdp.offer` / `sdp.answer`, in bytes.
pub const MAX_SDP_BYTES: usize = 32 * 1024;
/// Largest `chat.send` text, bytes (UTF-8).
pub const MAX_CHAT_BYTES: usize = 4 * 1024;
/// The longest ICE candidate line accepted, in bytes.
pub const MAX_CANDIDATE_BYTES: usize = 1024;

/// A client-chosen request id, echoed in the `ack` or `error` that answers
/// the request. Any string up to 64 bytes.
pub type RequestId = String;

/// A frame from client to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientEnvelope {
    /// Request id, echoed in the reply. Required for requests whose ack
    /// carries a result (`call.request`, `room.join`, `resume`, `ping`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    /// The message.
    #[serde(flatten)]
    pub msg: ClientMessage,
}

/// A frame from server to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerEnvelope {
    /// Sequence number of this message on the client's connection, from 1,
    /// continuing across `resume`.
    pub seq: u64,
    /// The message.
    #[serde(flatten)]
    pub msg: ServerMessage,
}

/// A consultant's presence. Clients may set `available` or `offline`; the
/// server sets `busy` while the consultant is ringing or in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PresenceStatus {
    /// Can be rung.
    Available,
    /// Ringing or in a session (set by the server).
    Busy,
    /// Not taking calls.
    Offline,
}

/// A user's role, from the JWT `role` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// Looks for advice and pays for it.
    Seeker,
    /// Gives advice and is paid for it.
    Consultant,
    /// Staff: ends sessions and refunds through the REST API; does not
    /// take part in calls (signaling refuses it with `wrong_role`).
    Moderator,
    /// The recording service (DESIGN.md §6): joins the rooms of sessions
    /// with recording consent as a receive-only participant; assigned by
    /// the server (`recording.assigned`), never rung.
    Recorder,
}

impl Role {
    /// The role's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Seeker => "seeker",
            Role::Consultant => "consultant",
            Role::Moderator => "moderator",
            Role::Recorder => "recorder",
        }
    }
}

/// Who a user is, as the server knows them from their token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    /// The JWT `sub`.
    pub id: UserId,
    /// Display name (JWT `name`).
    pub name: String,
    /// Seeker or consultant.
    pub role: Role,
}

/// An ICE candidate, in the W3C `RTCIceCandidateInit` shape (camelCase, as
/// browsers and webrtc-rs serialise it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    /// The `candidate:` attribute line, e.g.
    /// `"candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"`.
    pub candidate: String,
    /// Media stream identification tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// Index of the m-line.
    #[serde(default, rename = "sdpMLineIndex", skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
    /// ICE username fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

/// Where a participant's media goes when the session's media does not run
/// peer to peer: the `media` field of the `room.join` ack
/// ([`AckResult::Room`]). Absent for peer-to-peer sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum MediaJoin {
    /// A LiveKit SFU: connect to `url` with `token` (LiveKit's client
    /// SDKs: `room.connect(url, token)`) instead of negotiating peer to
    /// peer. The token admits exactly this session's room (named after the
    /// session id) and this user's identity (the user id), until the end of
    /// the session's longest possible length.
    Livekit {
        /// The LiveKit server's WebSocket URL (`wss://…`).
        url: String,
        /// A LiveKit access token (HS256 JWT signed with the operator's
        /// API secret).
        token: String,
    },
}

/// A STUN or TURN server, in the W3C `RTCIceServer` shape. TURN entries carry
/// time-limited credentials (TURN REST API: username `expiry:user`, password
/// base64 HMAC-SHA1 of the username).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:` / `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN username (`<expiry unix seconds>:<user id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// A client's view of its media connection (`RTCPeerConnection.connectionState`),
/// reported as dispute evidence (DESIGN.md M11). Presence, not this, is metered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaState {
    /// Not started.
    New,
    /// Connecting.
    Connecting,
    /// Media can flow.
    Connected,
    /// Lost, may recover.
    Disconnected,
    /// Failed; needs an ICE restart.
    Failed,
    /// Closed.
    Closed,
}

impl MediaState {
    /// The state's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaState::New => "new",
            MediaState::Connecting => "connecting",
            MediaState::Connected => "connected",
            MediaState::Disconnected => "disconnected",
            MediaState::Failed => "failed",
            MediaState::Closed => "closed",
        }
    }
}

/// A message from client to server. The `type` field names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientMessage {
    /// Consultants: set presence to `available` or `offline`. Answered by `ack`.
    #[serde(rename = "presence.set")]
    PresenceSet {
        /// `available` or `offline` (`busy` is the server's to set).
        status: PresenceStatus,
    },
    /// Seekers: call a consultant now. The server places the payment hold,
    /// then rings the consultant; the `ack` ([`AckResult::Call`]) means the
    /// consultant is ringing.
    #[serde(rename = "call.request")]
    CallRequest {
        /// Who to call.
        consultant_id: UserId,
        /// The seeker's payment method (e.g. a Stripe `pm_…` id); used by
        /// the payment hold.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payment_method: Option<String>,
        /// Ask for the session to be recorded (DESIGN.md §6). Only premium
        /// seekers may (`premium_required`), and only consultants whose
        /// profile allows it (`recording_not_allowed`); the consultant sees
        /// the request in `call.incoming` before accepting.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        record: bool,
    },
    /// Consultants: accept a ringing call. Both sides then get `call.accepted`.
    #[serde(rename = "call.accept")]
    CallAccept {
        /// The ringing call.
        call_id: CallId,
    },
    /// Consultants: decline a ringing call.
    #[serde(rename = "call.decline")]
    CallDecline {
        /// The ringing call.
        call_id: CallId,
        /// Optional words for the seeker, at most 200 bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Seekers: withdraw a call that is still ringing.
    #[serde(rename = "call.cancel")]
    CallCancel {
        /// The ringing call.
        call_id: CallId,
    },
    /// Join a session's room (only its seeker and consultant may). Answered
    /// by `ack` with [`AckResult::Room`]; the other side gets
    /// `participant.joined`.
    #[serde(rename = "room.join")]
    RoomJoin {
        /// The session.
        session_id: SessionId,
    },
    /// Leave a room without ending the session; rejoining within the grace
    /// period continues it.
    #[serde(rename = "room.leave")]
    RoomLeave {
        /// The session.
        session_id: SessionId,
    },
    /// An SDP offer for the other participant (also for renegotiation and ICE
    /// restart). At most [`MAX_SDP_BYTES`].
    #[serde(rename = "sdp.offer")]
    SdpOffer {
        /// The session whose room both are in.
        session_id: SessionId,
        /// The SDP.
        sdp: String,
        /// Who it is for: absent means the other participant; the recorder's
        /// id (from `recording.started`) addresses the recorder's peer
        /// connection. The recorder must always name the participant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<UserId>,
    },
    /// An SDP answer for the other participant (or, with `to`, the recorder).
    #[serde(rename = "sdp.answer")]
    SdpAnswer {
        /// The session whose room both are in.
        session_id: SessionId,
        /// The SDP.
        sdp: String,
        /// Who it is for; as in `sdp.offer`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<UserId>,
    },
    /// A trickled ICE candidate for the other participant (or, with `to`,
    /// the recorder).
    #[serde(rename = "ice.candidate")]
    IceCandidate {
        /// The session whose room both are in.
        session_id: SessionId,
        /// The candidate.
        candidate: IceCandidate,
        /// Who it is for; as in `sdp.offer`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<UserId>,
    },
    /// A chat line or a note for the session: relayed to the other
    /// participant as `chat.message`, stored, and listed in the recap
    /// (DESIGN.md §6). At most [`MAX_CHAT_BYTES`] of text.
    #[serde(rename = "chat.send")]
    ChatSend {
        /// The session.
        session_id: SessionId,
        /// The text, 1 to [`MAX_CHAT_BYTES`] bytes.
        text: String,
        /// `chat` (default) or `note` (e.g. an action item).
        #[serde(default)]
        kind: ChatKind,
    },
    /// A client's media connection state, stored in the session timeline
    /// (DESIGN.md M11).
    #[serde(rename = "media.state")]
    MediaStateReport {
        /// The session.
        session_id: SessionId,
        /// The state.
        state: MediaState,
    },
    /// Hang up: end the session for both participants.
    #[serde(rename = "session.end")]
    SessionEnd {
        /// The session.
        session_id: SessionId,
    },
    /// Take over a dropped connection's state: the server replays every
    /// message after `last_seq` and the new connection continues the old
    /// one's sequence, rooms and presence. Must be the first message sent.
    #[serde(rename = "resume")]
    Resume {
        /// The `resume_token` from the old connection's `hello`.
        resume_token: String,
        /// The last `seq` the client processed.
        last_seq: u64,
    },
    /// Application-level ping; answered by `ack` with [`AckResult::Pong`].
    #[serde(rename = "ping")]
    Ping,
    /// Fresh STUN/TURN servers for this user (TURN credentials valid for
    /// `PARLEY_TURN_TTL_SECS` from now), e.g. before an ICE restart late in
    /// a session. Answered by `ack` with [`AckResult::IceServers`]; needs an `id`.
    #[serde(rename = "ice.servers")]
    IceServers,
}

impl ClientMessage {
    /// Every client message `type`, as on the wire.
    pub const TYPES: &'static [&'static str] = &[
        "presence.set",
        "call.request",
        "call.accept",
        "call.decline",
        "call.cancel",
        "room.join",
        "room.leave",
        "sdp.offer",
        "sdp.answer",
        "ice.candidate",
        "media.state",
        "chat.send",
        "session.end",
        "resume",
        "ping",
        "ice.servers",
    ];

    /// The message's wire `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::PresenceSet { .. } => "presence.set",
            ClientMessage::CallRequest { .. } => "call.request",
            ClientMessage::CallAccept { .. } => "call.accept",
            ClientMessage::CallDecline { .. } => "call.decline",
            ClientMessage::CallCancel { .. } => "call.cancel",
            ClientMessage::RoomJoin { .. } => "room.join",
            ClientMessage::RoomLeave { .. } => "room.leave",
            ClientMessage::SdpOffer { .. } => "sdp.offer",
            ClientMessage::SdpAnswer { .. } => "sdp.answer",
            ClientMessage::IceCandidate { .. } => "ice.candidate",
            ClientMessage::MediaStateReport { .. } => "media.state",
            ClientMessage::ChatSend { .. } => "chat.send",
            ClientMessage::SessionEnd { .. } => "session.end",
            ClientMessage::Resume { .. } => "resume",
            ClientMessage::Ping => "ping",
            ClientMessage::IceServers => "ice.servers",
        }
    }
}

/// The result carried by an `ack`, for requests that return something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AckResult {
    /// `call.request`: the consultant is ringing.
    Call {
        /// The new call.
        call_id: CallId,
        /// The session the call opens if accepted.
        session_id: SessionId,
        /// When the ring times out, server time (Unix ms).
        ring_deadline_ms: i64,
    },
    /// `room.join`: you are in the room.
    Room {
        /// The session.
        session_id: SessionId,
        /// Who else is in the room now.
        participants: Vec<UserInfo>,
        /// STUN/TURN servers for the peer connection (may be empty).
        ice_servers: Vec<IceServer>,
        /// Whether you should make the offer: the seeker offers, the
        /// consultant answers (renegotiation uses the perfect-negotiation
        /// pattern with the consultant as the polite peer).
        offerer: bool,
        /// The session's meter as of the join: the free window and the
        /// billable time so far (DESIGN.md M8). Absent if not metered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meter: Option<MeterStatus>,
        /// The media server to connect to when the session's media does not
        /// run peer to peer (a LiveKit URL and token); absent for peer to
        /// peer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media: Option<MediaJoin>,
    },
    /// `resume`: the old connection's state is yours.
    Resumed {
        /// How many missed messages were replayed before this ack.
        replayed: u64,
        /// Fresh STUN/TURN servers (TURN credentials valid from now), so an
        /// ICE restart after the resume does not use expired ones. Empty
        /// (and absent on the wire) when the server has none configured.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServer>,
    },
    /// `ice.servers`: fresh STUN/TURN servers.
    IceServers {
        /// STUN/TURN servers for the peer connection (may be empty), TURN
        /// credentials valid for the configured TTL from now.
        ice_servers: Vec<IceServer>,
    },
    /// `ping`.
    Pong {
        /// Server time (Unix ms).
        server_time_ms: i64,
    },
}

/// What a `chat.send` line is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChatKind {
    /// A chat line.
    #[default]
    Chat,
    /// A note for the record (e.g. an action item); listed apart in the recap.
    Note,
}

impl ChatKind {
    /// The kind's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatKind::Chat => "chat",
            ChatKind::Note => "note",
        }
    }
}

/// Why recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingStopReason {
    /// The session ended.
    SessionEnded,
    /// The recorder left the room or lost its connection.
    RecorderLeft,
}

impl RecordingStopReason {
    /// The reason's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingStopReason::SessionEnded => "session_ended",
            RecordingStopReason::RecorderLeft => "recorder_left",
        }
    }
}

/// Why a ringing call ended without a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallEndReason {
    /// The consultant declined.
    Declined,
    /// The seeker cancelled.
    Cancelled,
    /// Nobody answered within the ring timeout (30 s).
    Timeout,
    /// The consultant went offline or disconnected while ringing.
    ConsultantUnavailable,
    /// The seeker disconnected while ringing.
    SeekerGone,
    /// The server is shutting down.
    ServerShutdown,
}

impl CallEndReason {
    /// The reason's wire name (also the `outcome` label in metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            CallEndReason::Declined => "declined",
            CallEndReason::Cancelled => "cancelled",
            CallEndReason::Timeout => "timeout",
            CallEndReason::ConsultantUnavailable => "consultant_unavailable",
            CallEndReason::SeekerGone => "seeker_gone",
            CallEndReason::ServerShutdown => "server_shutdown",
        }
    }
}

/// Why a participant is no longer in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// Sent `room.leave`.
    Left,
    /// The connection dropped; they may resume within the grace period.
    Dropped,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    /// A participant sent `session.end` (see `ended_by`).
    Hangup,
    /// A participant stayed away longer than the grace period (DESIGN.md M3).
    Abandoned,
    /// The booked length (or the instant-call maximum) was reached (M4).
    LengthReached,
    /// A per-minute session used up its payment hold (M7).
    HoldUsedUp,
    /// A moderator ended it (M4).
    Moderator,
    /// A scheduled session: a participant had not joined 15 minutes after
    /// the start (DESIGN.md §3). The hold is released.
    NoShow,
}

impl SessionEndReason {
    /// The reason's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEndReason::Hangup => "hangup",
            SessionEndReason::Abandoned => "abandoned",
            SessionEndReason::LengthReached => "length_reached",
            SessionEndReason::HoldUsedUp => "hold_used_up",
            SessionEndReason::Moderator => "moderator",
            SessionEndReason::NoShow => "no_show",
        }
    }
}

/// A session's meter as a participant joins (in the `room.join` ack), so a
/// client shows the right free-window countdown from the start, and again
/// after a rejoin (DESIGN.md M8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterStatus {
    /// The free window `F`, seconds.
    pub free_window_secs: u64,
    /// Billable seconds so far (both present, M5), rounded down.
    pub billable_secs: u64,
    /// Whether billable time has reached `F` (`meter.billing_started` was
    /// sent).
    pub billing_started: bool,
}

/// The free-window outcome of a session (DESIGN.md M6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Outcome {
    /// Billable time below the free window: the hold is released in full.
    Free,
    /// Billable time reached the free window: `charge` is captured.
    Charged,
}

impl Outcome {
    /// The outcome's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Free => "free",
            Outcome::Charged => "charged",
        }
    }
}

/// What a session costs, decided once when it ends (DESIGN.md M5–M7, B3)
/// and sent in `session.ended`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionBill {
    /// Free or charged.
    pub outcome: Outcome,
    /// Seconds both participants were present (M5), rounded down.
    pub billable_secs: u64,
    /// The amount captured from the seeker (zero when free), minor units.
    pub charge: Money,
}

/// Stable, machine-readable error codes, sent in `error` messages and in the
/// JSON body of refused HTTP requests. Never renamed; new ones may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ErrorCode {
    /// The frame is not valid JSON, or not a JSON object.
    MalformedJson,
    /// The `type` is not one this server knows.
    UnknownType,
    /// A required field is missing.
    MissingField,
    /// A field has the wrong type or an invalid value.
    InvalidField,
    /// A frame over [`MAX_FRAME_BYTES`].
    FrameTooLarge,
    /// An SDP over [`MAX_SDP_BYTES`] or a candidate over [`MAX_CANDIDATE_BYTES`].
    SdpTooLarge,
    /// More messages than the per-connection rate limit; this one was dropped.
    RateLimited,
    /// Binary frames are not part of the protocol.
    BinaryNotSupported,
    /// The message is for a room this connection has not joined.
    NotInRoom,
    /// You may not do this (e.g. join a session you are not part of).
    Forbidden,
    /// Your role cannot send this (e.g. a consultant calling).
    WrongRole,
    /// No such session.
    UnknownSession,
    /// The session has ended.
    SessionEnded,
    /// No such consultant.
    UnknownConsultant,
    /// A refund was asked for a session that was not charged.
    NotCharged,
    /// A refund would take the session's refunds past what was captured
    /// (refunds under way count).
    RefundExceedsCapture,
    /// An `Idempotency-Key` was reused with another request (method, path
    /// or body).
    IdempotencyKeyReused,
    /// A request with the same `Idempotency-Key` is still being processed.
    IdempotencyKeyInUse,
    /// The payment provider refused or failed the request.
    PaymentProviderError,
    /// A provider webhook came without its signature header.
    MissingSignature,
    /// A provider webhook's signature did not verify.
    BadSignature,
    /// A provider webhook's signed timestamp is more than 300 s from the
    /// server's clock.
    TimestampOutOfTolerance,
    /// A verified provider webhook could not be read.
    MalformedPayload,
    /// A signed download link is past its expiry (HTTP 403).
    LinkExpired,
    /// No such recording, or its file was deleted (HTTP 404).
    UnknownRecording,
    /// The `Range` of a download lies outside the file (HTTP 416).
    RangeNotSatisfiable,
    /// The consultant is offline or busy.
    ConsultantUnavailable,
    /// No such call, or not yours.
    UnknownCall,
    /// The call is no longer ringing (already accepted, declined, cancelled
    /// or timed out).
    CallNotRinging,
    /// The seeker already has a call ringing or a session open.
    AlreadyInCall,
    /// `resume` failed: unknown or expired token, or the missed messages are
    /// no longer buffered. Start afresh (rejoin rooms).
    ResumeFailed,
    /// `resume` sent after other messages on this connection.
    ResumeNotFirst,
    /// The payment hold was declined; the consultant was not rung.
    PaymentDeclined,
    /// The payment method needs the seeker's action (e.g. 3-D Secure).
    PaymentActionRequired,
    /// Only premium seekers may ask for recording or download recordings
    /// and recaps (DESIGN.md §6).
    PremiumRequired,
    /// The consultant's profile does not allow recording.
    RecordingNotAllowed,
    /// A time zone that is not an IANA name (e.g. `Europe/Paris`) known to the server.
    UnknownTimeZone,
    /// A currency the platform does not accept (not ISO 4217, or not in the deployment's list).
    UnsupportedCurrency,
    /// A price that is zero or negative where a charge is required, or above the platform's maximum.
    InvalidPrice,
    /// A proposed slot starts before the server's now (plus the minimum notice).
    SlotInPast,
    /// A proposed slot lies outside the consultant's availability, or its length is not one they offer.
    SlotUnavailable,
    /// A proposed or accepted slot overlaps another booking of the consultant (the loser of a booking race gets this).
    SlotTaken,
    /// No such booking, or not yours.
    UnknownBooking,
    /// The booking's state does not allow this (e.g. accepting a declined, cancelled or expired booking).
    BookingNotPending,
    /// A scheduled session's room opens 10 minutes before its start; this join came earlier.
    RoomNotOpen,
    /// The seeker already reviewed this session, or the consultant already replied.
    ReviewExists,
    /// The session has not ended (or was never held), so it cannot be reviewed yet.
    SessionNotCompleted,
    /// No such review.
    UnknownReview,
    /// No such promotion package.
    UnknownPackage,
    /// No such dispute, or not yours to see.
    UnknownDispute,
    /// The session already has a dispute (one per session, D1).
    DisputeExists,
    /// The dispute window (`PARLEY_DISPUTE_WINDOW_DAYS` after the end) has passed (D1).
    DisputeWindowClosed,
    /// The dispute was already answered (the other side answers once, D2).
    DisputeAnswered,
    /// The dispute is decided, or a moderator's decision is being carried out (D3).
    DisputeDecided,
    /// No such engagement or milestone, or not yours (E1–E8).
    UnknownEngagement,
    /// The engagement or milestone is not in a state that allows the
    /// request (e.g. approving a refunded milestone, cancelling twice, a
    /// package with no session left).
    EngagementState,
    /// The consultant has no payout account ready for transfers (E1).
    PayoutAccountRequired,
    /// No bearer token (HTTP 401).
    MissingToken,
    /// The token's signature or claims are invalid (HTTP 401).
    InvalidToken,
    /// The token has expired (HTTP 401).
    TokenExpired,
    /// The WebSocket ticket is not one the server issued (HTTP 401 before
    /// the upgrade).
    UnknownTicket,
    /// The WebSocket ticket was already used: each opens one connection
    /// (HTTP 401 before the upgrade).
    TicketUsed,
    /// The WebSocket ticket's 30 s have passed (HTTP 401 before the upgrade).
    TicketExpired,
    /// The connection was replaced by a newer one of the same user.
    Replaced,
    /// Dev login makes seekers and consultants only: recorders and
    /// moderators authenticate with a token the operator mints (HTTP 403).
    RoleNotAllowed,
    /// Another connection of this recorder is live; a second one is refused
    /// rather than taking over its assignments (HTTP 409 before the upgrade).
    RecorderConnected,
    /// The request body is larger than the server accepts (HTTP 413).
    PayloadTooLarge,
    /// The request body is not `application/json` (HTTP 415).
    UnsupportedMediaType,
    /// The route exists but not with this HTTP method (HTTP 405).
    MethodNotAllowed,
    /// No route at this path (HTTP 404).
    UnknownRoute,
    /// The server is shutting down or not ready.
    Unavailable,
    /// The server failed; the request may be retried.
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order (docs/protocol.md lists them all; a
    /// test checks both this list and the document).
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::MalformedJson,
        ErrorCode::UnknownType,
        ErrorCode::MissingField,
        ErrorCode::InvalidField,
        ErrorCode::FrameTooLarge,
        ErrorCode::SdpTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::BinaryNotSupported,
        ErrorCode::NotInRoom,
        ErrorCode::Forbidden,
        ErrorCode::WrongRole,
        ErrorCode::UnknownSession,
        ErrorCode::SessionEnded,
        ErrorCode::UnknownConsultant,
        ErrorCode::NotCharged,
        ErrorCode::RefundExceedsCapture,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::IdempotencyKeyInUse,
        ErrorCode::PaymentProviderError,
        ErrorCode::MissingSignature,
        ErrorCode::BadSignature,
        ErrorCode::TimestampOutOfTolerance,
        ErrorCode::MalformedPayload,
        ErrorCode::LinkExpired,
        ErrorCode::UnknownRecording,
        ErrorCode::RangeNotSatisfiable,
        ErrorCode::ConsultantUnavailable,
        ErrorCode::UnknownCall,
        ErrorCode::CallNotRinging,
        ErrorCode::AlreadyInCall,
        ErrorCode::ResumeFailed,
        ErrorCode::ResumeNotFirst,
        ErrorCode::PaymentDeclined,
        ErrorCode::PaymentActionRequired,
        ErrorCode::PremiumRequired,
        ErrorCode::RecordingNotAllowed,
        ErrorCode::UnknownTimeZone,
        ErrorCode::UnsupportedCurrency,
        ErrorCode::InvalidPrice,
        ErrorCode::SlotInPast,
        ErrorCode::SlotUnavailable,
        ErrorCode::SlotTaken,
        ErrorCode::UnknownBooking,
        ErrorCode::BookingNotPending,
        ErrorCode::RoomNotOpen,
        ErrorCode::ReviewExists,
        ErrorCode::SessionNotCompleted,
        ErrorCode::UnknownReview,
        ErrorCode::UnknownPackage,
        ErrorCode::UnknownDispute,
        ErrorCode::DisputeExists,
        ErrorCode::DisputeWindowClosed,
        ErrorCode::DisputeAnswered,
        ErrorCode::DisputeDecided,
        ErrorCode::UnknownEngagement,
        ErrorCode::EngagementState,
        ErrorCode::PayoutAccountRequired,
        ErrorCode::MissingToken,
        ErrorCode::InvalidToken,
        ErrorCode::TokenExpired,
        ErrorCode::UnknownTicket,
        ErrorCode::TicketUsed,
        ErrorCode::TicketExpired,
        ErrorCode::Replaced,
        ErrorCode::RoleNotAllowed,
        ErrorCode::RecorderConnected,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::MethodNotAllowed,
        ErrorCode::UnknownRoute,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// A short human title of the code, derived from its name
    /// (`slot_taken` → "Slot taken"): the RFC 9457 `title`.
    pub fn title(self) -> String {
        let words = self.as_str().replace('_', " ");
        let mut chars = words.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => String::new(),
        }
    }

    /// The code's wire name (also the `code` label in metrics).
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            MalformedJson => "malformed_json",
            UnknownType => "unknown_type",
            MissingField => "missing_field",
            InvalidField => "invalid_field",
            FrameTooLarge => "frame_too_large",
            SdpTooLarge => "sdp_too_large",
            RateLimited => "rate_limited",
            BinaryNotSupported => "binary_not_supported",
            NotInRoom => "not_in_room",
            Forbidden => "forbidden",
            WrongRole => "wrong_role",
            UnknownSession => "unknown_session",
            SessionEnded => "session_ended",
            UnknownConsultant => "unknown_consultant",
            NotCharged => "not_charged",
            RefundExceedsCapture => "refund_exceeds_capture",
            IdempotencyKeyReused => "idempotency_key_reused",
            IdempotencyKeyInUse => "idempotency_key_in_use",
            PaymentProviderError => "payment_provider_error",
            MissingSignature => "missing_signature",
            BadSignature => "bad_signature",
            TimestampOutOfTolerance => "timestamp_out_of_tolerance",
            MalformedPayload => "malformed_payload",
            LinkExpired => "link_expired",
            UnknownRecording => "unknown_recording",
            RangeNotSatisfiable => "range_not_satisfiable",
            ConsultantUnavailable => "consultant_unavailable",
            UnknownCall => "unknown_call",
            CallNotRinging => "call_not_ringing",
            AlreadyInCall => "already_in_call",
            ResumeFailed => "resume_failed",
            ResumeNotFirst => "resume_not_first",
            PaymentDeclined => "payment_declined",
            PaymentActionRequired => "payment_action_required",
            PremiumRequired => "premium_required",
            RecordingNotAllowed => "recording_not_allowed",
            UnknownTimeZone => "unknown_time_zone",
            UnsupportedCurrency => "unsupported_currency",
            InvalidPrice => "invalid_price",
            SlotInPast => "slot_in_past",
            SlotUnavailable => "slot_unavailable",
            SlotTaken => "slot_taken",
            UnknownBooking => "unknown_booking",
            BookingNotPending => "booking_not_pending",
            RoomNotOpen => "room_not_open",
            ReviewExists => "review_exists",
            SessionNotCompleted => "session_not_completed",
            UnknownReview => "unknown_review",
            UnknownPackage => "unknown_package",
            UnknownDispute => "unknown_dispute",
            DisputeExists => "dispute_exists",
            DisputeWindowClosed => "dispute_window_closed",
            DisputeAnswered => "dispute_answered",
            DisputeDecided => "dispute_decided",
            UnknownEngagement => "unknown_engagement",
            EngagementState => "engagement_state",
            PayoutAccountRequired => "payout_account_required",
            MissingToken => "missing_token",
            InvalidToken => "invalid_token",
            TokenExpired => "token_expired",
            UnknownTicket => "unknown_ticket",
            TicketUsed => "ticket_used",
            TicketExpired => "ticket_expired",
            Replaced => "replaced",
            RoleNotAllowed => "role_not_allowed",
            RecorderConnected => "recorder_connected",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            MethodNotAllowed => "method_not_allowed",
            UnknownRoute => "unknown_route",
            Unavailable => "unavailable",
            Internal => "internal",
        }
    }
}

/// The body of an `error` message or of a refused HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

/// The body of every refused REST request: an RFC 9457 problem detail
/// (`Content-Type: application/problem+json`), with Parley's stable `code`
/// and, for clients written against earlier versions, the `message`
/// (equal to `detail`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A URI reference naming the problem type: `/problems/{code}`,
    /// relative to the server (a page that explains the code).
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the problem type, the same for every occurrence.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time, for a human.
    pub detail: String,
    /// The stable machine-readable code (an RFC 9457 extension member).
    pub code: ErrorCode,
    /// The same text as `detail`.
    pub message: String,
}

impl Problem {
    /// The problem of `code` with HTTP `status` and `detail`.
    pub fn new(code: ErrorCode, status: u16, detail: impl Into<String>) -> Problem {
        let detail = detail.into();
        Problem {
            type_uri: format!("/problems/{}", code.as_str()),
            title: code.title(),
            status,
            message: detail.clone(),
            detail,
            code,
        }
    }
}

/// A message from server to client. The `type` field names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerMessage {
    /// First message on every connection.
    #[serde(rename = "hello")]
    Hello {
        /// [`PROTOCOL_VERSION`].
        protocol_version: u32,
        /// You, from your token.
        user: UserInfo,
        /// Present this in `resume` on a new connection after a drop.
        resume_token: String,
        /// How long a dropped connection's state is kept for `resume`,
        /// seconds (the grace period, DESIGN.md M3).
        resume_window_secs: u64,
        /// The server sends a WebSocket ping this often, seconds.
        ping_interval_secs: u64,
        /// Your presence (consultants), after this connection.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        presence: Option<PresenceStatus>,
    },
    /// A request succeeded.
    #[serde(rename = "ack")]
    Ack {
        /// The request's `id`.
        id: RequestId,
        /// What it returned, if anything.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<AckResult>,
    },
    /// A request failed, or a frame could not be processed. The connection
    /// stays open.
    #[serde(rename = "error")]
    Error {
        /// The request's `id`, when it had one and could be read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        /// Stable code.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
    /// Your presence changed (consultants; e.g. `busy` when a call rings).
    #[serde(rename = "presence.updated")]
    PresenceUpdated {
        /// The new status.
        status: PresenceStatus,
    },
    /// Consultants: a funded call is ringing. Accept or decline before
    /// `ring_deadline_ms`.
    #[serde(rename = "call.incoming")]
    CallIncoming {
        /// The call.
        call_id: CallId,
        /// The session it opens if accepted.
        session_id: SessionId,
        /// The caller.
        seeker: UserInfo,
        /// When the ring times out, server time (Unix ms).
        ring_deadline_ms: i64,
        /// The seeker asked for the session to be recorded; accepting
        /// consents to it (DESIGN.md §6).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        recording: bool,
    },
    /// The call was accepted: both sides should `room.join` the session.
    #[serde(rename = "call.accepted")]
    CallAccepted {
        /// The call.
        call_id: CallId,
        /// The session to join.
        session_id: SessionId,
    },
    /// The call ended without a session.
    #[serde(rename = "call.ended")]
    CallEnded {
        /// The call.
        call_id: CallId,
        /// Why.
        reason: CallEndReason,
        /// The consultant's words, for `declined`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The other participant joined (or rejoined) the room.
    #[serde(rename = "participant.joined")]
    ParticipantJoined {
        /// The session.
        session_id: SessionId,
        /// Who.
        user: UserInfo,
    },
    /// The other participant left the room or dropped.
    #[serde(rename = "participant.left")]
    ParticipantLeft {
        /// The session.
        session_id: SessionId,
        /// Who.
        user_id: UserId,
        /// Left on purpose, or dropped.
        reason: LeaveReason,
        /// Seconds they have to come back before the session ends (M3).
        grace_secs: u64,
    },
    /// Relayed offer from the other participant, or from the recorder
    /// (`from` is the recorder's id): answer it with `to` set to the
    /// recorder, sending your audio (and video) only.
    #[serde(rename = "sdp.offer")]
    SdpOffer {
        /// The session.
        session_id: SessionId,
        /// The sender.
        from: UserId,
        /// The SDP.
        sdp: String,
    },
    /// Relayed answer from the other participant.
    #[serde(rename = "sdp.answer")]
    SdpAnswer {
        /// The session.
        session_id: SessionId,
        /// The sender.
        from: UserId,
        /// The SDP.
        sdp: String,
    },
    /// Relayed ICE candidate from the other participant.
    #[serde(rename = "ice.candidate")]
    IceCandidate {
        /// The session.
        session_id: SessionId,
        /// The sender.
        from: UserId,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// A chat line or note from the other participant (`chat.send`).
    #[serde(rename = "chat.message")]
    ChatMessage {
        /// The session.
        session_id: SessionId,
        /// The sender.
        from: UserId,
        /// The text.
        text: String,
        /// `chat` or `note`.
        kind: ChatKind,
        /// Server time it was received (Unix ms).
        at_ms: i64,
    },
    /// Recording is on: the recorder joined the room and will offer each
    /// participant a receive-only peer connection (DESIGN.md §6). Sent to
    /// both participants.
    #[serde(rename = "recording.started")]
    RecordingStarted {
        /// The session.
        session_id: SessionId,
        /// The recorder's user id: its offers carry it as `from`; answers
        /// and candidates for it carry it as `to`.
        recorder_id: UserId,
    },
    /// Recording is off (the session ended, or the recorder left). Sent to
    /// both participants.
    #[serde(rename = "recording.stopped")]
    RecordingStopped {
        /// The session.
        session_id: SessionId,
        /// Why.
        reason: RecordingStopReason,
    },
    /// Recorders: record this session. Join its room (`room.join`) and
    /// offer each participant a receive-only connection.
    #[serde(rename = "recording.assigned")]
    RecordingAssigned {
        /// The session.
        session_id: SessionId,
    },
    /// A confirmed booking starts soon (DESIGN.md §3): 24 hours before and
    /// when its room opens (10 minutes before the start), to both sides.
    #[serde(rename = "booking.reminder")]
    BookingReminder {
        /// The booking (`bkg_…`).
        booking_id: String,
        /// The session to join (`room.join`) once the room is open.
        session_id: SessionId,
        /// The start, Unix ms.
        start_ms: i64,
        /// When the room opens, Unix ms; joins before it get `room_not_open`.
        opens_at_ms: i64,
    },
    /// A booking the user is party to changed (proposed, accepted,
    /// declined, cancelled, rescheduled, expired, its hold placed or
    /// failed, its room opened, a no-show): the booking as
    /// `GET /v1/bookings/{id}` shows it now, to both sides.
    #[serde(rename = "booking.updated")]
    BookingUpdated {
        /// The booking.
        booking: Box<rest::Booking>,
    },
    /// A dispute of one of your sessions changed (D4): opened, answered or
    /// decided. Fetch it with `GET /v1/disputes/{id}`. Sent when connected;
    /// the operator's platform always gets the `dispute.*` webhook.
    #[serde(rename = "dispute.updated")]
    DisputeUpdated {
        /// The dispute (`dsp_…`).
        dispute_id: String,
        /// The disputed session.
        session_id: SessionId,
        /// `open`, `answered` or `decided`.
        status: String,
    },
    /// The session ended; leave the room and close the peer connection.
    #[serde(rename = "session.ended")]
    SessionEnded {
        /// The session.
        session_id: SessionId,
        /// Why.
        reason: SessionEndReason,
        /// Who hung up, for `hangup`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ended_by: Option<UserId>,
        /// The meter's decision: free or charged, billable seconds, amount.
        /// Absent only if the session had no meter.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bill: Option<SessionBill>,
    },
    /// Sent to both participants `warn_before` (60 s) before billable time
    /// reaches the free window (DESIGN.md M8).
    #[serde(rename = "meter.free_window_ending")]
    MeterFreeWindowEnding {
        /// The session.
        session_id: SessionId,
        /// Billable seconds so far.
        billable_secs: u64,
        /// The free window `F`, seconds: billing starts when billable time
        /// reaches it.
        free_window_secs: u64,
    },
    /// Billable time reached the free window: the session will be charged
    /// (DESIGN.md M6, M8).
    #[serde(rename = "meter.billing_started")]
    MeterBillingStarted {
        /// The session.
        session_id: SessionId,
        /// Billable seconds so far.
        billable_secs: u64,
    },
    /// Every 30 s while both are present: billable seconds so far, the same
    /// number for both participants (DESIGN.md M8).
    #[serde(rename = "meter.tick")]
    MeterTick {
        /// The session.
        session_id: SessionId,
        /// Billable seconds so far.
        billable_secs: u64,
    },
    /// A per-minute session will use up its payment hold soon and then end
    /// (DESIGN.md M7).
    #[serde(rename = "meter.hold_ending")]
    MeterHoldEnding {
        /// The session.
        session_id: SessionId,
        /// Billable seconds so far.
        billable_secs: u64,
        /// Billable seconds at which the session ends.
        ends_at_billable_secs: u64,
    },
    /// The server is shutting down; the connection closes next (1001).
    /// Ringing calls have already ended (`call.ended`, `server_shutdown`).
    /// Reconnect in a moment.
    #[serde(rename = "server.shutdown")]
    ServerShutdown {
        /// Why.
        message: String,
    },
}

impl ServerMessage {
    /// Every server message `type`, as on the wire.
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "ack",
        "error",
        "presence.updated",
        "call.incoming",
        "call.accepted",
        "call.ended",
        "participant.joined",
        "participant.left",
        "sdp.offer",
        "sdp.answer",
        "ice.candidate",
        "chat.message",
        "recording.started",
        "recording.stopped",
        "recording.assigned",
        "booking.reminder",
        "booking.updated",
        "dispute.updated",
        "session.ended",
        "meter.free_window_ending",
        "meter.billing_started",
        "meter.tick",
        "meter.hold_ending",
        "server.shutdown",
    ];

    /// The message's wire `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerMessage::Hello { .. } => "hello",
            ServerMessage::Ack { .. } => "ack",
            ServerMessage::Error { .. } => "error",
            ServerMessage::PresenceUpdated { .. } => "presence.updated",
            ServerMessage::CallIncoming { .. } => "call.incoming",
            ServerMessage::CallAccepted { .. } => "call.accepted",
            ServerMessage::CallEnded { .. } => "call.ended",
            ServerMessage::ParticipantJoined { .. } => "participant.joined",
            ServerMessage::ParticipantLeft { .. } => "participant.left",
            ServerMessage::SdpOffer { .. } => "sdp.offer",
            ServerMessage::SdpAnswer { .. } => "sdp.answer",
            ServerMessage::IceCandidate { .. } => "ice.candidate",
            ServerMessage::ChatMessage { .. } => "chat.message",
            ServerMessage::RecordingStarted { .. } => "recording.started",
            ServerMessage::RecordingStopped { .. } => "recording.stopped",
            ServerMessage::RecordingAssigned { .. } => "recording.assigned",
            ServerMessage::BookingReminder { .. } => "booking.reminder",
            ServerMessage::BookingUpdated { .. } => "booking.updated",
            ServerMessage::DisputeUpdated { .. } => "dispute.updated",
            ServerMessage::SessionEnded { .. } => "session.ended",
            ServerMessage::MeterFreeWindowEnding { .. } => "meter.free_window_ending",
            ServerMessage::MeterBillingStarted { .. } => "meter.billing_started",
            ServerMessage::MeterTick { .. } => "meter.tick",
            ServerMessage::MeterHoldEnding { .. } => "meter.hold_ending",
            ServerMessage::ServerShutdown { .. } => "server.shutdown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_name<T: Serialize>(value: &T) -> String {
        serde_json::to_value(value).unwrap().as_str().unwrap().to_owned()
    }

    #[test]
    fn error_code_names_match_serde_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str(), wire_name(code));
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
        }
    }

    #[test]
    fn client_types_list_matches_the_enum() {
        let session_id = SessionId::parse("ses_1").unwrap();
        let all = [
            ClientMessage::PresenceSet { status: PresenceStatus::Available },
            ClientMessage::CallRequest {
                consultant_id: UserId::parse("c").unwrap(),
                payment_method: None,
                record: true,
            },
            ClientMessage::CallAccept { call_id: CallId::parse("k").unwrap() },
            ClientMessage::CallDecline { call_id: CallId::parse("k").unwrap(), reason: None },
            ClientMessage::CallCancel { call_id: CallId::parse("k").unwrap() },
            ClientMessage::RoomJoin { session_id: session_id.clone() },
            ClientMessage::RoomLeave { session_id: session_id.clone() },
            ClientMessage::SdpOffer { session_id: session_id.clone(), sdp: String::new(), to: None },
            ClientMessage::SdpAnswer { session_id: session_id.clone(), sdp: String::new(), to: None },
            ClientMessage::IceCandidate {
                session_id: session_id.clone(),
                candidate: IceCandidate {
                    candidate: String::new(),
                    sdp_mid: None,
                    sdp_m_line_index: None,
                    username_fragment: None,
                },
                to: Some(UserId::parse("rec").unwrap()),
            },
            ClientMessage::MediaStateReport { session_id: session_id.clone(), state: MediaState::Connected },
            ClientMessage::ChatSend { session_id: session_id.clone(), text: "hi".into(), kind: ChatKind::Note },
            ClientMessage::SessionEnd { session_id },
            ClientMessage::Resume { resume_token: String::new(), last_seq: 0 },
            ClientMessage::Ping,
            ClientMessage::IceServers,
        ];
        let names: Vec<_> = all.iter().map(ClientMessage::type_name).collect();
        assert_eq!(names, ClientMessage::TYPES);
        for m in &all {
            assert_eq!(serde_json::to_value(m).unwrap()["type"], m.type_name());
        }
    }

    #[test]
    fn server_types_list_matches_the_enum_and_serde() {
        let user = UserInfo { id: UserId::parse("u").unwrap(), name: "U".into(), role: Role::Seeker };
        let sid = SessionId::parse("ses_1").unwrap();
        let cid = CallId::parse("call_1").unwrap();
        let cand =
            IceCandidate { candidate: "c".into(), sdp_mid: None, sdp_m_line_index: None, username_fragment: None };
        let all = [
            ServerMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
                user: user.clone(),
                resume_token: "t".into(),
                resume_window_secs: 30,
                ping_interval_secs: 15,
                presence: None,
            },
            ServerMessage::Ack { id: "1".into(), result: None },
            ServerMessage::Error { id: None, code: ErrorCode::Internal, message: String::new() },
            ServerMessage::PresenceUpdated { status: PresenceStatus::Busy },
            ServerMessage::CallIncoming {
                call_id: cid.clone(),
                session_id: sid.clone(),
                seeker: user.clone(),
                ring_deadline_ms: 0,
                recording: true,
            },
            ServerMessage::CallAccepted { call_id: cid.clone(), session_id: sid.clone() },
            ServerMessage::CallEnded { call_id: cid, reason: CallEndReason::Timeout, message: None },
            ServerMessage::ParticipantJoined { session_id: sid.clone(), user: user.clone() },
            ServerMessage::ParticipantLeft {
                session_id: sid.clone(),
                user_id: user.id.clone(),
                reason: LeaveReason::Left,
                grace_secs: 30,
            },
            ServerMessage::SdpOffer { session_id: sid.clone(), from: user.id.clone(), sdp: String::new() },
            ServerMessage::SdpAnswer { session_id: sid.clone(), from: user.id.clone(), sdp: String::new() },
            ServerMessage::IceCandidate { session_id: sid.clone(), from: user.id.clone(), candidate: cand },
            ServerMessage::ChatMessage {
                session_id: sid.clone(),
                from: user.id.clone(),
                text: "hi".into(),
                kind: ChatKind::Chat,
                at_ms: 1,
            },
            ServerMessage::RecordingStarted { session_id: sid.clone(), recorder_id: user.id.clone() },
            ServerMessage::RecordingStopped { session_id: sid.clone(), reason: RecordingStopReason::RecorderLeft },
            ServerMessage::RecordingAssigned { session_id: sid.clone() },
            ServerMessage::BookingReminder {
                booking_id: "bkg_1".into(),
                session_id: sid.clone(),
                start_ms: 1_000_000,
                opens_at_ms: 400_000,
            },
            ServerMessage::BookingUpdated {
                booking: Box::new(rest::Booking {
                    id: "bkg_1".into(),
                    session_id: sid.clone(),
                    seeker_id: user.id.clone(),
                    consultant_id: user.id.clone(),
                    seeker_name: "S".into(),
                    consultant_name: "C".into(),
                    purpose: rest::Purpose::Consultation,
                    length_min: 30,
                    proposed: vec![1_000_000],
                    state: rest::BookingState::Pending,
                    start_ms: None,
                    opens_at_ms: None,
                    respond_by_ms: 900_000,
                    price: None,
                    hold_status: "none".into(),
                    hold_error: None,
                    record: false,
                    reason: None,
                    cancelled_by: None,
                    cancellation_fee: None,
                    created_ms: 1,
                }),
            },
            ServerMessage::DisputeUpdated {
                dispute_id: "dsp_1".into(),
                session_id: sid.clone(),
                status: "open".into(),
            },
            ServerMessage::SessionEnded {
                session_id: sid.clone(),
                reason: SessionEndReason::Hangup,
                ended_by: None,
                bill: None,
            },
            ServerMessage::MeterFreeWindowEnding { session_id: sid.clone(), billable_secs: 540, free_window_secs: 600 },
            ServerMessage::MeterBillingStarted { session_id: sid.clone(), billable_secs: 600 },
            ServerMessage::MeterTick { session_id: sid.clone(), billable_secs: 30 },
            ServerMessage::MeterHoldEnding { session_id: sid, billable_secs: 4140, ends_at_billable_secs: 4200 },
            ServerMessage::ServerShutdown { message: String::new() },
        ];
        let names: Vec<_> = all.iter().map(ServerMessage::type_name).collect();
        assert_eq!(names, ServerMessage::TYPES);
        for m in &all {
            let json = serde_json::to_value(ServerEnvelope { seq: 7, msg: m.clone() }).unwrap();
            assert_eq!((json["type"].as_str(), json["seq"].as_u64()), (Some(m.type_name()), Some(7)));
            let back: ServerEnvelope = serde_json::from_value(json).unwrap();
            assert_eq!(&back.msg, m, "round trip");
        }
    }
}

/// REST shapes (`/v1/...` JSON bodies), beside the signaling messages so
/// that every type crossing the wire lives in this module.
pub mod rest {
    use serde::{Deserialize, Serialize};

    use super::{ChatKind, Outcome, PresenceStatus, Role, UserInfo};
    use crate::ids::{CallId, SessionId, UserId};
    use crate::money::Money;

    /// `POST /v1/dev/login` body (dev mode only).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct DevLoginRequest {
        /// A known user, or a new one (then `name` and `role` are required).
        pub user_id: String,
        /// Display name for a new user, 1–100 bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub name: Option<String>,
        /// Role for a new user.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub role: Option<Role>,
    }

    /// `POST /v1/dev/login` answer.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct DevLoginResponse {
        /// A bearer JWT, valid 12 hours.
        pub token: String,
        /// Who it names.
        pub user: UserInfo,
    }

    /// One entry of `GET /v1/consultants`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct ConsultantSummary {
        /// Id.
        pub id: UserId,
        /// Display name.
        pub name: String,
        /// Presence now.
        pub presence: PresenceStatus,
        /// What a session with them costs; `None`: free (no payment hold).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub price: Option<ConsultantPrice>,
    }

    /// How a consultant prices a session (DESIGN.md M7).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub enum PriceModel {
        /// `amount` per session, captured once billable time reaches the
        /// free window.
        Fixed,
        /// `amount` per started minute of billable time beyond the free
        /// window, capped at the hold (rate × the instant-call maximum).
        PerMinute,
    }

    impl PriceModel {
        /// The model's wire name.
        pub fn as_str(self) -> &'static str {
            match self {
                PriceModel::Fixed => "fixed",
                PriceModel::PerMinute => "per_minute",
            }
        }

        /// The model named `s`.
        pub fn parse(s: &str) -> Option<Self> {
            match s {
                "fixed" => Some(PriceModel::Fixed),
                "per_minute" => Some(PriceModel::PerMinute),
                _ => None,
            }
        }
    }

    /// A consultant's price: `GET`/`PUT /v1/consultants/me/price`, and in
    /// the consultant list.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct ConsultantPrice {
        /// Fixed or per minute.
        pub model: PriceModel,
        /// The fixed amount, or the rate per started minute (minor units,
        /// more than zero).
        pub amount: Money,
    }

    /// The payment hold of a session (DESIGN.md B2).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct HoldInfo {
        /// `held`, `requires_action`, `declined`, `failed`, `captured`,
        /// `released` or `expired`.
        pub status: String,
        /// The authorised amount.
        pub amount: Money,
        /// The provider's PaymentIntent id (`pi_…`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub intent_id: Option<String>,
        /// `sandbox` or `stripe`.
        pub provider: String,
        /// When the authorisation lapses (B6), Unix ms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub expires_at_ms: Option<i64>,
    }

    /// One money movement of the ledger (DESIGN.md B7).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct LedgerItem {
        /// `hold`, `capture`, `fee`, `earnings`, `release`, `refund`,
        /// `fee_reversal`, `earnings_reversal` or `dispute`.
        pub kind: String,
        /// The amount moved.
        pub amount: Money,
        /// Server time, Unix ms.
        pub at_ms: i64,
        /// The provider's object id, if any (`pi_…`, `re_…`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub provider_ref: Option<String>,
    }

    /// One entry of a session's timeline.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct TimelineItem {
        /// Server time, Unix ms.
        pub at_ms: i64,
        /// `joined`, `left`, `dropped`, `media_state`, `ended`,
        /// `free_window_ending`, `billing_started`, `hold_ending`.
        pub kind: String,
        /// The participant concerned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub user_id: Option<UserId>,
        /// Media state, end reason, or billable seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub detail: Option<String>,
    }

    /// `GET /v1/sessions/{id}`: a session's state, meter and money.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct SessionDetails {
        /// The session.
        pub session_id: SessionId,
        /// The call that opened it.
        pub call_id: CallId,
        /// The seeker.
        pub seeker_id: UserId,
        /// The consultant.
        pub consultant_id: UserId,
        /// `open` or `ended`.
        pub state: String,
        /// Opened, Unix ms.
        pub opened_at_ms: i64,
        /// Ended, Unix ms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub ended_at_ms: Option<i64>,
        /// Why it ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub end_reason: Option<String>,
        /// Billable seconds: final once ended, else as of the last
        /// checkpoint.
        pub billable_secs: u64,
        /// The free-window outcome, once decided.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub outcome: Option<Outcome>,
        /// `pending`, `done` or `failed`: carrying out the decision (B3).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub settlement_status: Option<String>,
        /// The payment hold.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub hold: Option<HoldInfo>,
        /// Captured from the seeker.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub captured: Option<Money>,
        /// The platform's commission.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub fee: Option<Money>,
        /// The consultant's share.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub payout: Option<Money>,
        /// Refunded to the seeker.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub refunded: Option<Money>,
        /// The ledger entries of the session, oldest first.
        pub ledger: Vec<LedgerItem>,
        /// What happened, oldest first.
        pub timeline: Vec<TimelineItem>,
    }

    /// One session's earnings for its consultant.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct EarningsItem {
        /// The session.
        pub session_id: SessionId,
        /// When it was captured, Unix ms.
        pub at_ms: i64,
        /// Captured from the seeker.
        pub captured: Money,
        /// The platform's commission.
        pub fee: Money,
        /// The consultant's share, less refunds taken back.
        pub earnings: Money,
    }

    /// Earnings in one currency.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct EarningsTotal {
        /// Sum of the consultant's shares, less refunds taken back.
        pub earnings: Money,
        /// Sessions charged.
        pub sessions: u64,
    }

    /// `GET /v1/consultants/{id}/earnings`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct Earnings {
        /// The consultant.
        pub consultant_id: UserId,
        /// Totals per currency.
        pub totals: Vec<EarningsTotal>,
        /// Charged sessions, newest first.
        pub sessions: Vec<EarningsItem>,
    }

    /// One entry of `GET /v1/seekers/me/receipts`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct Receipt {
        /// The session.
        pub session_id: SessionId,
        /// The consultant.
        pub consultant_id: UserId,
        /// When the hold was placed, Unix ms.
        pub at_ms: i64,
        /// The hold.
        pub hold: Money,
        /// Free or charged, once decided.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub outcome: Option<Outcome>,
        /// Billable seconds, once decided.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub billable_secs: Option<u64>,
        /// Captured.
        pub charged: Money,
        /// Refunded.
        pub refunded: Money,
    }

    /// `POST /v1/consultants/me/payout-account` body (optional): where the
    /// onboarding link leads back to. Defaults: this server's `/`.
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PayoutLinkRequest {
        /// Opened if the link expired.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub refresh_url: Option<String>,
        /// Opened when onboarding is done.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub return_url: Option<String>,
    }

    /// `POST /v1/consultants/me/payout-account` answer: open `url` to finish
    /// payout onboarding (a Stripe Account Link).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct PayoutLink {
        /// The connected account (`acct_…`).
        pub account_id: String,
        /// The onboarding link.
        pub url: String,
    }

    /// `POST /v1/sessions/{id}/refund` body (moderators).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct RefundRequest {
        /// Minor units to refund; omitted: all that is left.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub amount_minor: Option<i64>,
        /// Why (kept in the log).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub reason: Option<String>,
    }

    /// `POST /v1/sessions/{id}/refund` answer.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct RefundResponse {
        /// The provider's refund (`re_…`).
        pub refund_id: String,
        /// Refunded now.
        pub amount: Money,
    }

    /// `PUT /v1/seekers/{id}/premium` (the operator's platform, with a
    /// moderator token): whether the seeker is premium (DESIGN.md §6). A
    /// token's `premium` claim counts too.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct PremiumRequest {
        /// Premium or not.
        pub premium: bool,
    }

    /// `GET` / `PUT /v1/consultants/me/recording`: whether the consultant
    /// allows their sessions to be recorded (default: no).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct RecordingConsent {
        /// Allowed or not.
        pub allowed: bool,
    }

    /// One stored file of a session's recording, with an expiring signed
    /// download link (HTTP Range supported).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct RecordingFile {
        /// The file's id (`rec_…`).
        pub id: String,
        /// Whose track; absent for the manifest.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub participant_id: Option<UserId>,
        /// `audio`, `video` or `manifest`.
        pub kind: String,
        /// `opus` (Ogg), `vp8` (IVF) or `json`.
        pub codec: String,
        /// The `Content-Type` it is served with.
        pub content_type: String,
        /// Size, bytes.
        pub bytes: u64,
        /// Media time covered, milliseconds.
        pub duration_ms: u64,
        /// Download path, relative to the server's base URL; valid until
        /// `url_expires_at_ms` (default 15 minutes).
        pub url: String,
        /// When the link stops working, server Unix ms.
        pub url_expires_at_ms: i64,
    }

    /// `GET /v1/sessions/{id}/recordings`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct RecordingList {
        /// The session.
        pub session_id: SessionId,
        /// Its files (none if it was not recorded, or retention deleted them).
        pub recordings: Vec<RecordingFile>,
    }

    /// Talk time of one participant, from the recording's audio levels
    /// (RFC 6464) or Opus voice activity.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct TalkTime {
        /// The participant.
        pub user_id: UserId,
        /// Milliseconds of speech.
        pub speech_ms: u64,
        /// Share of all speech in the session, percent (rounded down).
        pub share_percent: u8,
    }

    /// A chat line or note sent in the session.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct ChatLine {
        /// Server time, Unix ms.
        pub at_ms: i64,
        /// The sender.
        pub from: UserId,
        /// `chat` or `note`.
        pub kind: ChatKind,
        /// The text.
        pub text: String,
    }

    /// `GET /v1/sessions/{id}/recap`: what happened in a session, for its
    /// premium seeker and its consultant (DESIGN.md §6). Also as Markdown
    /// (`?format=markdown`).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct Recap {
        /// The session: state, timeline (joins, drops, rejoins, free window,
        /// end), billing outcome and money.
        pub session: SessionDetails,
        /// The seeker and the consultant.
        pub participants: Vec<UserInfo>,
        /// Whether the session was recorded (the recorder started; its
        /// files may still be being stored right after the end).
        pub recorded: bool,
        /// Talk time per participant (recorded sessions only).
        pub talk_time: Vec<TalkTime>,
        /// Chat lines, oldest first.
        pub chat: Vec<ChatLine>,
        /// Notes, oldest first.
        pub notes: Vec<ChatLine>,
        /// The recording's files with fresh download links.
        pub recordings: Vec<RecordingFile>,
    }

    // Issue 4's shapes, one file per area (domain/src/protocol/rest/).
    mod booking;
    mod directory;
    mod disputes;
    mod engagements;
    mod reviews;
    mod webhooks;
    pub use booking::*;
    pub use directory::*;
    pub use disputes::*;
    pub use engagements::*;
    pub use reviews::*;
    pub use webhooks::*;
}
