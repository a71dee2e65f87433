// TypeScript declarations of the Parley JavaScript SDK (parley.js) and of
// the protocol types. Kept in step with `domain/src/protocol.rs`
// (parley_domain::protocol): the message types are exactly
// `ClientMessage::TYPES` and `ServerMessage::TYPES`, and `ErrorCode` lists
// every code of `ErrorCode::ALL`. docs/protocol.md describes each field.

// ---------------------------------------------------------------------------
// Shared types (docs/protocol.md §5)

/** User, call and session ids: 1–64 bytes of `[A-Za-z0-9_.@:-]`. */
export type UserId = string;
export type CallId = string;
export type SessionId = string;

/** `recorder`: the recording service (WebSocket only, never rung). */
export type Role = "seeker" | "consultant" | "moderator" | "recorder";
export type PresenceStatus = "available" | "busy" | "offline";
export type MediaState = "new" | "connecting" | "connected" | "disconnected" | "failed" | "closed";
export type CallEndReason =
  | "declined"
  | "cancelled"
  | "timeout"
  | "consultant_unavailable"
  | "seeker_gone"
  | "server_shutdown";
export type LeaveReason = "left" | "dropped";
export type SessionEndReason = "hangup" | "abandoned" | "length_reached" | "hold_used_up" | "moderator" | "no_show";
export type Outcome = "free" | "charged";
export type PriceModel = "fixed" | "per_minute";
/** `chat.send` / `chat.message`: a chat line, or a note for the record (listed apart in the recap). */
export type ChatKind = "chat" | "note";
export type RecordingStopReason = "session_ended" | "recorder_left";

export interface UserInfo {
  id: UserId;
  name: string;
  role: Role;
}

/** W3C `RTCIceCandidateInit` names. */
export interface IceCandidate {
  candidate: string;
  sdpMid?: string;
  sdpMLineIndex?: number;
  usernameFragment?: string;
}

/** W3C `RTCIceServer`. */
export interface IceServer {
  urls: string[];
  username?: string;
  credential?: string;
}

/** Integer minor units and an ISO 4217 currency; never a float. */
export interface Money {
  amount_minor: number;
  currency: string;
}

export interface SessionBill {
  outcome: Outcome;
  billable_secs: number;
  charge: Money;
}

export interface ErrorBody {
  code: ErrorCode;
  message: string;
}

// ---------------------------------------------------------------------------
// Error codes (docs/protocol.md §10; ErrorCode::ALL)

export type ErrorCode =
  | "malformed_json"
  | "unknown_type"
  | "missing_field"
  | "invalid_field"
  | "frame_too_large"
  | "sdp_too_large"
  | "rate_limited"
  | "binary_not_supported"
  | "not_in_room"
  | "forbidden"
  | "wrong_role"
  | "unknown_session"
  | "session_ended"
  | "unknown_consultant"
  | "not_charged"
  | "refund_exceeds_capture"
  | "idempotency_key_reused"
  | "idempotency_key_in_use"
  | "payment_provider_error"
  | "missing_signature"
  | "bad_signature"
  | "timestamp_out_of_tolerance"
  | "malformed_payload"
  | "link_expired"
  | "unknown_recording"
  | "range_not_satisfiable"
  | "consultant_unavailable"
  | "unknown_call"
  | "call_not_ringing"
  | "already_in_call"
  | "resume_failed"
  | "resume_not_first"
  | "payment_declined"
  | "payment_action_required"
  | "premium_required"
  | "recording_not_allowed"
  | "unknown_time_zone"
  | "unsupported_currency"
  | "invalid_price"
  | "slot_in_past"
  | "slot_unavailable"
  | "slot_taken"
  | "unknown_booking"
  | "booking_not_pending"
  | "room_not_open"
  | "review_exists"
  | "session_not_completed"
  | "unknown_review"
  | "unknown_package"
  | "unknown_dispute"
  | "dispute_exists"
  | "dispute_window_closed"
  | "dispute_answered"
  | "dispute_decided"
  | "unknown_engagement"
  | "engagement_state"
  | "payout_account_required"
  | "missing_token"
  | "invalid_token"
  | "token_expired"
  | "unknown_ticket"
  | "ticket_used"
  | "ticket_expired"
  | "replaced"
  | "role_not_allowed"
  | "recorder_connected"
  | "payload_too_large"
  | "unsupported_media_type"
  | "method_not_allowed"
  | "unknown_route"
  | "unavailable"
  | "internal";

/** The error codes by constant name (`ErrorCode.PAYMENT_DECLINED === "payment_declined"`). */
export declare const ErrorCode: {
  readonly MALFORMED_JSON: "malformed_json";
  readonly UNKNOWN_TYPE: "unknown_type";
  readonly MISSING_FIELD: "missing_field";
  readonly INVALID_FIELD: "invalid_field";
  readonly FRAME_TOO_LARGE: "frame_too_large";
  readonly SDP_TOO_LARGE: "sdp_too_large";
  readonly RATE_LIMITED: "rate_limited";
  readonly BINARY_NOT_SUPPORTED: "binary_not_supported";
  readonly NOT_IN_ROOM: "not_in_room";
  readonly FORBIDDEN: "forbidden";
  readonly WRONG_ROLE: "wrong_role";
  readonly UNKNOWN_SESSION: "unknown_session";
  readonly SESSION_ENDED: "session_ended";
  readonly UNKNOWN_CONSULTANT: "unknown_consultant";
  readonly NOT_CHARGED: "not_charged";
  readonly REFUND_EXCEEDS_CAPTURE: "refund_exceeds_capture";
  readonly IDEMPOTENCY_KEY_REUSED: "idempotency_key_reused";
  readonly IDEMPOTENCY_KEY_IN_USE: "idempotency_key_in_use";
  readonly PAYMENT_PROVIDER_ERROR: "payment_provider_error";
  readonly MISSING_SIGNATURE: "missing_signature";
  readonly BAD_SIGNATURE: "bad_signature";
  readonly TIMESTAMP_OUT_OF_TOLERANCE: "timestamp_out_of_tolerance";
  readonly MALFORMED_PAYLOAD: "malformed_payload";
  readonly LINK_EXPIRED: "link_expired";
  readonly UNKNOWN_RECORDING: "unknown_recording";
  readonly RANGE_NOT_SATISFIABLE: "range_not_satisfiable";
  readonly CONSULTANT_UNAVAILABLE: "consultant_unavailable";
  readonly UNKNOWN_CALL: "unknown_call";
  readonly CALL_NOT_RINGING: "call_not_ringing";
  readonly ALREADY_IN_CALL: "already_in_call";
  readonly RESUME_FAILED: "resume_failed";
  readonly RESUME_NOT_FIRST: "resume_not_first";
  readonly PAYMENT_DECLINED: "payment_declined";
  readonly PAYMENT_ACTION_REQUIRED: "payment_action_required";
  readonly PREMIUM_REQUIRED: "premium_required";
  readonly RECORDING_NOT_ALLOWED: "recording_not_allowed";
  readonly UNKNOWN_TIME_ZONE: "unknown_time_zone";
  readonly UNSUPPORTED_CURRENCY: "unsupported_currency";
  readonly INVALID_PRICE: "invalid_price";
  readonly SLOT_IN_PAST: "slot_in_past";
  readonly SLOT_UNAVAILABLE: "slot_unavailable";
  readonly SLOT_TAKEN: "slot_taken";
  readonly UNKNOWN_BOOKING: "unknown_booking";
  readonly BOOKING_NOT_PENDING: "booking_not_pending";
  readonly ROOM_NOT_OPEN: "room_not_open";
  readonly REVIEW_EXISTS: "review_exists";
  readonly SESSION_NOT_COMPLETED: "session_not_completed";
  readonly UNKNOWN_REVIEW: "unknown_review";
  readonly UNKNOWN_PACKAGE: "unknown_package";
  readonly UNKNOWN_DISPUTE: "unknown_dispute";
  readonly DISPUTE_EXISTS: "dispute_exists";
  readonly DISPUTE_WINDOW_CLOSED: "dispute_window_closed";
  readonly DISPUTE_ANSWERED: "dispute_answered";
  readonly DISPUTE_DECIDED: "dispute_decided";
  readonly UNKNOWN_ENGAGEMENT: "unknown_engagement";
  readonly ENGAGEMENT_STATE: "engagement_state";
  readonly PAYOUT_ACCOUNT_REQUIRED: "payout_account_required";
  readonly MISSING_TOKEN: "missing_token";
  readonly INVALID_TOKEN: "invalid_token";
  readonly TOKEN_EXPIRED: "token_expired";
  readonly UNKNOWN_TICKET: "unknown_ticket";
  readonly TICKET_USED: "ticket_used";
  readonly TICKET_EXPIRED: "ticket_expired";
  readonly REPLACED: "replaced";
  readonly ROLE_NOT_ALLOWED: "role_not_allowed";
  readonly RECORDER_CONNECTED: "recorder_connected";
  readonly PAYLOAD_TOO_LARGE: "payload_too_large";
  readonly UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type";
  readonly METHOD_NOT_ALLOWED: "method_not_allowed";
  readonly UNKNOWN_ROUTE: "unknown_route";
  readonly UNAVAILABLE: "unavailable";
  readonly INTERNAL: "internal";
};

/** Failures the SDK reports itself (never sent by the server). */
export type ClientErrorCode = "network" | "timeout" | "closed" | "protocol";
export declare const ClientErrorCode: {
  readonly NETWORK: "network";
  readonly TIMEOUT: "timeout";
  readonly CLOSED: "closed";
  readonly PROTOCOL: "protocol";
};

export declare class ParleyError extends Error {
  constructor(code: ErrorCode | ClientErrorCode | string, message?: string, status?: number);
  readonly name: "ParleyError";
  /** A stable code: match on this, not on `message`. */
  code: ErrorCode | ClientErrorCode;
  message: string;
  /** The HTTP status for REST failures; 0 for signaling and network failures. */
  status: number;
}

// ---------------------------------------------------------------------------
// Client → server messages (docs/protocol.md §6; ClientMessage::TYPES)

/** Every message may carry a request `id` (≤ 64 bytes), echoed in its ack or error. */
interface Envelope {
  id?: string;
}

export interface PresenceSetMessage extends Envelope {
  type: "presence.set";
  status: "available" | "offline";
}
export interface CallRequestMessage extends Envelope {
  type: "call.request";
  consultant_id: UserId;
  payment_method?: string;
  /** Ask for the session to be recorded: premium seekers, consultants who allow it. */
  record?: boolean;
}
export interface CallAcceptMessage extends Envelope {
  type: "call.accept";
  call_id: CallId;
}
export interface CallDeclineMessage extends Envelope {
  type: "call.decline";
  call_id: CallId;
  reason?: string;
}
export interface CallCancelMessage extends Envelope {
  type: "call.cancel";
  call_id: CallId;
}
export interface RoomJoinMessage extends Envelope {
  type: "room.join";
  session_id: SessionId;
}
export interface RoomLeaveMessage extends Envelope {
  type: "room.leave";
  session_id: SessionId;
}
export interface SdpOfferMessage extends Envelope {
  type: "sdp.offer";
  session_id: SessionId;
  sdp: string;
  /** Absent: the other participant. The recorder's id: the recorder's connection. The recorder always sets it. */
  to?: UserId;
}
export interface SdpAnswerMessage extends Envelope {
  type: "sdp.answer";
  session_id: SessionId;
  sdp: string;
  /** As in `sdp.offer`. */
  to?: UserId;
}
export interface IceCandidateMessage extends Envelope {
  type: "ice.candidate";
  session_id: SessionId;
  candidate: IceCandidate;
  /** As in `sdp.offer`. */
  to?: UserId;
}
export interface MediaStateMessage extends Envelope {
  type: "media.state";
  session_id: SessionId;
  state: MediaState;
}
export interface ChatSendMessage extends Envelope {
  type: "chat.send";
  session_id: SessionId;
  /** 1–4096 bytes (MAX_CHAT_BYTES), not only whitespace. */
  text: string;
  /** Default "chat". */
  kind?: ChatKind;
}
export interface SessionEndMessage extends Envelope {
  type: "session.end";
  session_id: SessionId;
}
export interface ResumeMessage extends Envelope {
  type: "resume";
  resume_token: string;
  last_seq: number;
}
export interface PingMessage extends Envelope {
  type: "ping";
}
/** Fresh STUN/TURN servers (TURN credentials valid for the server's TTL from now). */
export interface IceServersMessage extends Envelope {
  type: "ice.servers";
}

export type ClientMessage =
  | PresenceSetMessage
  | CallRequestMessage
  | CallAcceptMessage
  | CallDeclineMessage
  | CallCancelMessage
  | RoomJoinMessage
  | RoomLeaveMessage
  | SdpOfferMessage
  | SdpAnswerMessage
  | IceCandidateMessage
  | MediaStateMessage
  | ChatSendMessage
  | SessionEndMessage
  | ResumeMessage
  | PingMessage
  | IceServersMessage;

export type ClientMessageType = ClientMessage["type"];
export declare const CLIENT_MESSAGE_TYPES: readonly ClientMessageType[];

// ---------------------------------------------------------------------------
// Ack results (docs/protocol.md §7.2)

export interface CallResult {
  kind: "call";
  call_id: CallId;
  session_id: SessionId;
  /** Unix ms, server time. */
  ring_deadline_ms: number;
}
export interface RoomResult {
  kind: "room";
  session_id: SessionId;
  /** The other participant if present (for the recorder: the participants present). */
  participants: UserInfo[];
  ice_servers: IceServer[];
  /** true (the seeker, and the recorder): make the first offer. */
  offerer: boolean;
  /** The session's meter as of the join; absent if not metered, and for the recorder. */
  meter?: MeterStatus;
  /** Where the media runs when not peer to peer (`PARLEY_MEDIA=livekit`); absent for peer to peer. */
  media?: MediaJoin;
}
/** A LiveKit server and an access token for exactly this session's room and user. */
export interface MediaJoin {
  backend: "livekit";
  /** The LiveKit server (`wss://…`). */
  url: string;
  /** A LiveKit access token (HS256 JWT). */
  token: string;
}
/** A session's meter as a participant joins (DESIGN.md M8). */
export interface MeterStatus {
  /** The free window F, seconds. */
  free_window_secs: number;
  /** Billable seconds so far (both present), rounded down. */
  billable_secs: number;
  /** Whether billable time reached F. */
  billing_started: boolean;
}
export interface ResumedResult {
  kind: "resumed";
  replayed: number;
  /** Fresh STUN/TURN servers (absent when the server has none). */
  ice_servers?: IceServer[];
}
export interface IceServersResult {
  kind: "ice_servers";
  ice_servers: IceServer[];
}
export interface PongResult {
  kind: "pong";
  server_time_ms: number;
}
export type AckResult = CallResult | RoomResult | ResumedResult | IceServersResult | PongResult;

// ---------------------------------------------------------------------------
// Server → client messages (docs/protocol.md §7; ServerMessage::TYPES)

/** Every server message carries `seq`: 1, 2, 3, … per connection, continued by `resume`. */
interface Sequenced {
  seq: number;
}

export interface HelloMessage extends Sequenced {
  type: "hello";
  protocol_version: number;
  user: UserInfo;
  resume_token: string;
  resume_window_secs: number;
  ping_interval_secs: number;
  /** Consultants only. */
  presence?: PresenceStatus;
}
export interface AckMessage extends Sequenced {
  type: "ack";
  id: string;
  result?: AckResult;
}
export interface ErrorMessage extends Sequenced {
  type: "error";
  id?: string;
  code: ErrorCode;
  message: string;
}
export interface PresenceUpdatedMessage extends Sequenced {
  type: "presence.updated";
  status: PresenceStatus;
}
export interface CallIncomingMessage extends Sequenced {
  type: "call.incoming";
  call_id: CallId;
  session_id: SessionId;
  seeker: UserInfo;
  ring_deadline_ms: number;
  /** The seeker asked for recording; accepting consents to it. */
  recording?: boolean;
}
export interface CallAcceptedMessage extends Sequenced {
  type: "call.accepted";
  call_id: CallId;
  session_id: SessionId;
}
export interface CallEndedMessage extends Sequenced {
  type: "call.ended";
  call_id: CallId;
  reason: CallEndReason;
  message?: string;
}
export interface ParticipantJoinedMessage extends Sequenced {
  type: "participant.joined";
  session_id: SessionId;
  user: UserInfo;
}
export interface ParticipantLeftMessage extends Sequenced {
  type: "participant.left";
  session_id: SessionId;
  user_id: UserId;
  reason: LeaveReason;
  grace_secs: number;
}
/** `from` is the other participant, or the recorder (its id from `recording.started`). */
export interface SdpOfferRelayed extends Sequenced {
  type: "sdp.offer";
  session_id: SessionId;
  from: UserId;
  sdp: string;
}
export interface SdpAnswerRelayed extends Sequenced {
  type: "sdp.answer";
  session_id: SessionId;
  from: UserId;
  sdp: string;
}
export interface IceCandidateRelayed extends Sequenced {
  type: "ice.candidate";
  session_id: SessionId;
  from: UserId;
  candidate: IceCandidate;
}
export interface ChatMessage extends Sequenced {
  type: "chat.message";
  session_id: SessionId;
  from: UserId;
  text: string;
  kind: ChatKind;
  /** Server time it was received, Unix ms. */
  at_ms: number;
}
/** The recorder joined: answer its offer (`from` = recorder_id) on a second, send-only connection. */
export interface RecordingStartedMessage extends Sequenced {
  type: "recording.started";
  session_id: SessionId;
  recorder_id: UserId;
}
export interface RecordingStoppedMessage extends Sequenced {
  type: "recording.stopped";
  session_id: SessionId;
  reason: RecordingStopReason;
}
/** Recorders only: join this session's room and record it. */
export interface RecordingAssignedMessage extends Sequenced {
  type: "recording.assigned";
  session_id: SessionId;
}
/** A confirmed booking starts soon: 24 h before, and when its room opens (10 min before). */
export interface BookingReminderMessage extends Sequenced {
  type: "booking.reminder";
  booking_id: string;
  session_id: SessionId;
  /** Unix ms. */
  start_ms: number;
  /** Unix ms; `room.join` before it gets `room_not_open`. */
  opens_at_ms: number;
}
/** A booking the user is party to changed: the booking as stored now, to both sides (replaces polling). */
export interface BookingUpdatedMessage extends Sequenced {
  type: "booking.updated";
  booking: Booking;
}
/** A dispute of one of your sessions was opened, answered or decided: `GET /v1/disputes/{id}`. */
export interface DisputeUpdatedMessage extends Sequenced {
  type: "dispute.updated";
  dispute_id: string;
  session_id: SessionId;
  status: "open" | "answered" | "decided";
}
export interface SessionEndedMessage extends Sequenced {
  type: "session.ended";
  session_id: SessionId;
  reason: SessionEndReason;
  /** Only for `hangup`. */
  ended_by?: UserId;
  bill?: SessionBill;
}
export interface MeterFreeWindowEndingMessage extends Sequenced {
  type: "meter.free_window_ending";
  session_id: SessionId;
  billable_secs: number;
  free_window_secs: number;
}
export interface MeterBillingStartedMessage extends Sequenced {
  type: "meter.billing_started";
  session_id: SessionId;
  billable_secs: number;
}
export interface MeterTickMessage extends Sequenced {
  type: "meter.tick";
  session_id: SessionId;
  billable_secs: number;
}
export interface MeterHoldEndingMessage extends Sequenced {
  type: "meter.hold_ending";
  session_id: SessionId;
  billable_secs: number;
  ends_at_billable_secs: number;
}
export interface ServerShutdownMessage extends Sequenced {
  type: "server.shutdown";
  message: string;
}

export type ServerMessage =
  | HelloMessage
  | AckMessage
  | ErrorMessage
  | PresenceUpdatedMessage
  | CallIncomingMessage
  | CallAcceptedMessage
  | CallEndedMessage
  | ParticipantJoinedMessage
  | ParticipantLeftMessage
  | SdpOfferRelayed
  | SdpAnswerRelayed
  | IceCandidateRelayed
  | ChatMessage
  | RecordingStartedMessage
  | RecordingStoppedMessage
  | RecordingAssignedMessage
  | BookingReminderMessage
  | BookingUpdatedMessage
  | DisputeUpdatedMessage
  | SessionEndedMessage
  | MeterFreeWindowEndingMessage
  | MeterBillingStartedMessage
  | MeterTickMessage
  | MeterHoldEndingMessage
  | ServerShutdownMessage;

export type ServerMessageType = ServerMessage["type"];
export declare const SERVER_MESSAGE_TYPES: readonly ServerMessageType[];

export declare const PROTOCOL_VERSION: 1;
export declare const REQUEST_TIMEOUT_MS: number;
/** The longest `chat.send` text, UTF-8 bytes. */
export declare const MAX_CHAT_BYTES: 4096;

// ---------------------------------------------------------------------------
// REST shapes (docs/protocol.md §13; parley_domain::protocol::rest)

export interface DevLoginRequest {
  user_id: string;
  name?: string;
  role?: "seeker" | "consultant";
}
export interface DevLoginResponse {
  token: string;
  user: UserInfo;
}
export interface ConsultantPrice {
  model: PriceModel;
  amount: Money;
}
export interface ConsultantSummary {
  id: UserId;
  name: string;
  presence: PresenceStatus;
  /** Absent: calls to them are free. */
  price?: ConsultantPrice;
}
export interface HoldInfo {
  status: "held" | "requires_action" | "declined" | "failed" | "captured" | "released" | "expired" | string;
  amount: Money;
  intent_id?: string;
  provider: "sandbox" | "stripe" | string;
  expires_at_ms?: number;
}
export interface LedgerItem {
  kind: string;
  amount: Money;
  at_ms: number;
  provider_ref?: string;
}
export interface TimelineItem {
  at_ms: number;
  kind: string;
  user_id?: UserId;
  detail?: string;
}
export interface SessionDetails {
  session_id: SessionId;
  call_id: CallId;
  seeker_id: UserId;
  consultant_id: UserId;
  state: "open" | "ended" | string;
  opened_at_ms: number;
  ended_at_ms?: number;
  end_reason?: string;
  billable_secs: number;
  outcome?: Outcome;
  settlement_status?: "pending" | "done" | "failed" | string;
  hold?: HoldInfo;
  captured?: Money;
  fee?: Money;
  payout?: Money;
  refunded?: Money;
  ledger: LedgerItem[];
  timeline: TimelineItem[];
}
export interface EarningsItem {
  session_id: SessionId;
  at_ms: number;
  captured: Money;
  fee: Money;
  earnings: Money;
}
export interface EarningsTotal {
  earnings: Money;
  sessions: number;
}
export interface Earnings {
  consultant_id: UserId;
  totals: EarningsTotal[];
  sessions: EarningsItem[];
}
export interface Receipt {
  session_id: SessionId;
  consultant_id: UserId;
  at_ms: number;
  hold: Money;
  outcome?: Outcome;
  billable_secs?: number;
  charged: Money;
  refunded: Money;
}
export interface PayoutLinkRequest {
  refresh_url?: string;
  return_url?: string;
}
export interface PayoutLink {
  account_id: string;
  url: string;
}
export interface RefundRequest {
  amount_minor?: number;
  reason?: string;
}
export interface RefundResponse {
  refund_id: string;
  amount: Money;
}
/** One file of a session's recording, with an expiring signed link. */
export interface RecordingFile {
  /** `rec_…` */
  id: string;
  /** Whose track; absent for the manifest. */
  participant_id?: UserId;
  kind: "audio" | "video" | "manifest" | string;
  /** opus (Ogg), vp8 (IVF), json (the manifest). */
  codec: "opus" | "vp8" | "json" | string;
  content_type: string;
  bytes: number;
  duration_ms: number;
  /** Relative to the server's base URL; valid until `url_expires_at_ms` (15 min). */
  url: string;
  url_expires_at_ms: number;
}
export interface RecordingList {
  session_id: SessionId;
  recordings: RecordingFile[];
}
export interface TalkTime {
  user_id: UserId;
  speech_ms: number;
  /** Share of all speech, percent, rounded down. */
  share_percent: number;
}
export interface ChatLine {
  at_ms: number;
  from: UserId;
  kind: ChatKind;
  text: string;
}
export interface Recap {
  /** Its timeline has no `chat` and `note` items: they are in `chat` and `notes`. */
  session: SessionDetails;
  participants: UserInfo[];
  recorded: boolean;
  talk_time: TalkTime[];
  chat: ChatLine[];
  notes: ChatLine[];
  recordings: RecordingFile[];
}
export interface PremiumRequest {
  premium: boolean;
}
export interface RecordingConsent {
  allowed: boolean;
}

/** `PUT /v1/consultants/me/profile`: the whole profile (fields left out get their default). */
export interface ProfileUpdate {
  /** 1–100 bytes after trimming. */
  display_name: string;
  /** ≤ 160 bytes; default empty. */
  headline?: string;
  /** ≤ 5000 bytes; default empty. */
  bio?: string;
  /** ≤ 20, each 1–40 bytes; stored lower-case. */
  tags?: string[];
  /** BCP 47-style codes (`en`, `pt-BR`), ≤ 20. */
  languages?: string[];
  /** IANA, e.g. `Europe/Berlin` (else `unknown_time_zone`). */
  time_zone: string;
  /** 1–6 lengths, each 15–240 minutes. */
  session_minutes: number[];
}
/** A consultant's reviews summed up. */
export interface ConsultantRating {
  count: number;
  /** The plain mean of the stars; absent with no reviews. */
  mean?: number;
  /** Bayesian average `(5 × 3.5 + Σ stars) / (5 + count)`; 3.5 with no reviews. */
  score: number;
}
export interface ConsultantProfile {
  consultant_id: UserId;
  display_name: string;
  headline: string;
  bio: string;
  tags: string[];
  languages: string[];
  time_zone: string;
  /** Ascending. */
  session_minutes: number[];
  updated_at_ms: number;
  /** Absent: calls to them are free. */
  price?: ConsultantPrice;
  /** What a booked mentorship session and an interview cost; absent: free. */
  purpose_prices: PurposePrices;
  recording_allowed: boolean;
  payout_ready: boolean;
  rating: ConsultantRating;
  /** While promoted: when the featured placement ends, Unix ms. */
  featured_until_ms?: number;
  presence: PresenceStatus;
}
export interface PurposePrices {
  /** Its own price, else the consultation price. */
  mentorship?: ConsultantPrice;
  /** Its own price, else free. */
  interview?: ConsultantPrice;
}
/** `GET /v1/policy`: the terms calls and bookings run under. Durations in seconds. */
export interface Policy {
  free_window_secs: number;
  free_window_warning_secs: number;
  instant_max_minutes: number;
  grace_secs: number;
  free_cancel_before_secs: number;
  late_cancel_fee_percent: number;
  hold_at_confirmation_within_secs: number;
  hold_before_secs: number;
  room_opens_before_secs: number;
  no_show_after_secs: number;
  respond_within_secs: number;
}
/** `POST /v1/ws-tickets`: opens `/v1/signal?ticket=` once, within 30 s. */
export interface WsTicket {
  ticket: string;
  /** Unix ms, server time. */
  expires_at_ms: number;
}
export type DirectorySort = "relevance" | "rating" | "price";
/** `GET /v1/directory` query parameters, all optional. */
export interface DirectoryQuery {
  /** Keywords: every word must match the name, headline, bio or tags (≤ 200 bytes). */
  q?: string;
  tag?: string;
  /** `pt` also matches `pt-BR`. */
  language?: string;
  /** One of `PARLEY_CURRENCIES`; required with `min_price` / `max_price`. */
  currency?: string;
  /** Minor units of `currency`; no price counts as 0. */
  min_price?: number;
  max_price?: number;
  available_now?: boolean;
  /** Lowest rating `score`, 1–5. */
  min_rating?: number;
  /** `relevance` needs `q` (and is the default with it); `rating` otherwise. */
  sort?: DirectorySort;
  /** 1–50, default 20. */
  limit?: number;
  /** The previous page's `next_cursor` (send the same other parameters). */
  cursor?: string;
}
export interface DirectoryItem {
  id: UserId;
  display_name: string;
  headline: string;
  tags: string[];
  languages: string[];
  /** Absent: free. */
  price?: ConsultantPrice;
  rating: ConsultantRating;
  presence: PresenceStatus;
  /** Promoted now: featured consultants come first in every sort. */
  featured: boolean;
}
export interface DirectoryPage {
  items: DirectoryItem[];
  /** Absent on the last page. Opaque. */
  next_cursor?: string;
}
export interface PromotionPackage {
  /** e.g. `featured_7d`. */
  id: string;
  name: string;
  duration_secs: number;
  /** Charged at once. */
  price: Money;
}
export interface PromotionPurchaseRequest {
  package_id: string;
  payment_method: string;
}
export interface PromotionReceipt {
  /** `promo_…` */
  purchase_id: string;
  package_id: string;
  amount: Money;
  provider: "sandbox" | "stripe" | string;
  /** The PaymentIntent, `pi_…`. */
  provider_ref: string;
  paid_at_ms: number;
  /** The featured window it bought (windows stack), Unix ms. */
  starts_at_ms: number;
  ends_at_ms: number;
}
export interface FeaturedWindow {
  since_ms: number;
  until_ms: number;
}
export interface MyPromotions {
  /** Paid purchases, newest first. */
  purchases: PromotionReceipt[];
  /** Absent when not featured now. */
  current?: FeaturedWindow;
}
export type Weekday = "mon" | "tue" | "wed" | "thu" | "fri" | "sat" | "sun";
/** Local times `"HH:MM"` (`"24:00"` may end a window). */
export interface TimeWindow {
  start: string;
  end: string;
}
export interface WeeklyRule {
  weekday: Weekday;
  start: string;
  end: string;
}
/** A local date (`"YYYY-MM-DD"`) whose windows replace the weekly rules; none: unavailable. */
export interface DateException {
  date: string;
  windows?: TimeWindow[];
}
/** `GET`/`PUT /v1/consultants/me/availability`. */
export interface Availability {
  /** IANA time zone the rules are in. */
  time_zone: string;
  /** 15–240 minutes, at most 6; stored sorted. */
  session_lengths_min: number[];
  /** At most 50. */
  weekly?: WeeklyRule[];
  /** At most 100. */
  exceptions?: DateException[];
}
/** `GET /v1/consultants/{id}/slots` query: defaults from now, 14 days (≤ 62), the shortest length. */
export interface SlotsQuery {
  from_ms?: number;
  to_ms?: number;
  length_min?: number;
}
export interface Slot {
  start_ms: number;
  end_ms: number;
}
export interface SlotList {
  time_zone: string;
  length_min: number;
  /** Earliest first. */
  slots: Slot[];
}
export type Purpose = "consultation" | "mentorship" | "interview";
/** `POST /v1/bookings` (seekers). */
export interface BookingRequest {
  consultant_id: UserId;
  /** 1–3 distinct future starts, Unix ms. */
  slots: number[];
  /** One of the consultant's `session_lengths_min`. */
  length_min: number;
  /** Default `consultation`. */
  purpose?: Purpose;
  /** Required when the session has a price. */
  payment_method?: string;
  record?: boolean;
}
export type BookingState = "pending" | "confirmed" | "declined" | "expired" | "cancelled" | "held";
export type BookingHoldStatus = "none" | "scheduled" | "placing" | "held" | "failed" | "released" | "captured";
export interface Booking {
  /** `bkg_…` */
  id: string;
  /** New on each reschedule. */
  session_id: SessionId;
  seeker_id: UserId;
  consultant_id: UserId;
  seeker_name: string;
  /** The profile's display name, else the name they connected with, else the id. */
  consultant_name: string;
  purpose: Purpose;
  length_min: number;
  /** Proposed starts, sorted, Unix ms. */
  proposed: number[];
  state: BookingState;
  /** The accepted start (confirmed and later). */
  start_ms: number | null;
  /** The room opens 10 minutes before the start. */
  opens_at_ms: number | null;
  /** The consultant's deadline. */
  respond_by_ms: number;
  /** null: free. */
  price: ConsultantPrice | null;
  hold_status: BookingHoldStatus | string;
  hold_error: string | null;
  record: boolean;
  /** Set by decline and cancel. */
  reason: string | null;
  cancelled_by: UserId | null;
  cancellation_fee: Money | null;
  created_ms: number;
}
export interface BookingList {
  /** Newest first, at most 200. */
  bookings: Booking[];
}
export interface ReviewRequest {
  /** 1–5. */
  stars: number;
  /** ≤ 2000 characters; default empty. */
  text?: string;
}
export interface ReviewReply {
  text: string;
  created_at_ms: number;
}
export interface Review {
  /** `rev_…` */
  id: string;
  session_id: SessionId;
  seeker_id: UserId;
  consultant_id: UserId;
  stars: number;
  text: string;
  created_at_ms: number;
  /** The consultant's reply, if any. */
  reply?: ReviewReply;
}
/** A consultant's reputation: as `ConsultantRating`, but `mean` is null (not absent) without reviews. */
export interface Reputation {
  count: number;
  mean: number | null;
  score: number;
}
export interface ReviewsQuery {
  /** 1–100, default 20. */
  limit?: number;
  /** The previous page's `next_cursor`. */
  cursor?: string;
}
export interface ReviewPage {
  consultant_id: UserId;
  /** Over all their reviews. */
  reputation: Reputation;
  /** Newest first. */
  reviews: Review[];
  /** Absent on the last page. */
  next_cursor?: string;
}
/** `GET /v1/consultants/{id}/metrics` period `[from, to)`, Unix ms; all time without. */
export interface MetricsPeriod {
  from?: number;
  to?: number;
}
export interface AcceptanceCounts {
  accepted: number;
  declined: number;
  /** An instant call rang until the ring timeout; a booking expired unanswered. */
  timed_out: number;
  /** accepted / (accepted + declined + timed_out), 0–1; null when that is 0. */
  rate: number | null;
}
/** Requests created in the period. */
export interface Acceptance {
  /** Instant calls that rang. */
  instant_calls: AcceptanceCounts;
  /** Bookings answered or expired (`accepted` also counts those later cancelled or held). */
  bookings: AcceptanceCounts;
  /** Both together. */
  all: AcceptanceCounts;
}
export interface MonthMetrics {
  /** `YYYY-MM` (UTC). */
  month: string;
  start_ms: number;
  sessions: number;
  billable_secs: number;
  billable_minutes: number;
  earnings: Money[];
}
export interface ConsultantMetrics {
  consultant_id: UserId;
  from_ms?: number;
  to_ms?: number;
  /** Sessions opened in the period. */
  sessions: number;
  billable_secs: number;
  billable_minutes: number;
  /** One per currency, net of commission and refunds. */
  earnings: Money[];
  /** Reviews written in the period. */
  rating: Reputation;
  acceptance: Acceptance;
  /** Per UTC month, oldest first. */
  months: MonthMetrics[];
}

// ---------------------------------------------------------------------------
// The SDK

/** The REST API. Failures reject with ParleyError {code, message, status}. */
/** A reason a session may be disputed for (docs/protocol.md §13.38). */
export type DisputeReason = "consultant_absent" | "session_cut_short" | "quality" | "not_as_described" | "other";
export declare const DISPUTE_REASONS: readonly DisputeReason[];
/** A fresh `Idempotency-Key` (a random UUID). */
export declare function newIdempotencyKey(): string;

/** A dispute of a charged session (docs/protocol.md §13.38). */
export interface Dispute {
  id: string;
  session_id: SessionId;
  seeker_id: UserId;
  consultant_id: UserId;
  opened_by: UserId;
  reason: DisputeReason;
  text: string;
  opened_at_ms: number;
  status: "open" | "answered" | "deciding" | "decided";
  answer?: string;
  answered_at_ms?: number;
  decision?: "uphold" | "partial_refund" | "full_refund";
  /** What the decision refunded to the seeker. */
  refunded?: Money;
  refund_id?: string;
  note?: string;
  decided_by?: UserId;
  decided_at_ms?: number;
}

/** `GET /v1/disputes/{id}`: the dispute and its evidence. */
export interface DisputeBundle {
  dispute: Dispute;
  session: SessionDetails;
  chat: unknown[];
  notes: unknown[];
  recordings: unknown[];
  history: unknown;
  chargebacks: unknown[];
}

/** A moderator's decision: `amount_minor` (≥ 1) only for `partial_refund`; `note` 1–4000 characters. */
export interface DisputeDecision {
  decision: "uphold" | "partial_refund" | "full_refund";
  amount_minor?: number;
  note: string;
}

/** Options of the requests that send an `Idempotency-Key` (a fresh one unless given). */
export interface IdempotentOptions {
  idempotencyKey?: string;
}

/** A package of booked sessions: `price` is per session. */
export interface PackageTerms {
  sessions: number;
  minutes: number;
  price: Money;
}

export interface MilestoneTerms {
  description: string;
  amount: Money;
}

/** `POST /v1/engagements`: either `package` or `milestones`. */
export interface CreateEngagement {
  consultant_id: UserId;
  title: string;
  payment_method: string;
  package?: PackageTerms;
  milestones?: MilestoneTerms[];
}

export interface Milestone {
  id: string;
  seq: number;
  description: string;
  amount: Money;
  state: "open" | "submitted" | "disputed" | "released" | "refunded" | "split";
  note?: string | null;
  links?: string[];
  release_due_ms?: number | null;
  dispute_reason?: string | null;
  released?: Money;
  refunded?: Money;
  resolution_note?: string | null;
}

/** Work funded up front, held in escrow (docs/protocol.md §13.39). Gross amounts include the commission. */
export interface Engagement {
  id: string;
  seeker_id: UserId;
  consultant_id: UserId;
  kind: "package" | "milestones";
  state: "funding" | "active" | "failed" | "cancelled" | "completed";
  title: string;
  funded: Money;
  released: Money;
  refunded: Money;
  escrowed: Money;
  package: PackageTerms | null;
  sessions_used: number;
  sessions_left: number;
  sessions: SessionId[];
  milestones: Milestone[];
  cancel_fee: Money | null;
  intent_id: string | null;
  error: string | null;
  created_at_ms: number;
}

export declare class ParleyApi {
  /** @param baseUrl e.g. "http://127.0.0.1:8080"; default: the page's origin. */
  constructor(baseUrl?: string);
  readonly baseUrl: string;
  /** `ws(s)://…/v1/signal` of this server. */
  signalUrl(): string;
  /** `text: true` resolves with the body as text instead of JSON. */
  request<T = unknown>(method: string, path: string, options?: { token?: string; body?: unknown; text?: boolean }): Promise<T>;
  devLogin(userId: string, name?: string, role?: "seeker" | "consultant"): Promise<DevLoginResponse>;
  consultants(token: string): Promise<ConsultantSummary[]>;
  myPrice(token: string): Promise<ConsultantPrice | null>;
  setPrice(token: string, price: ConsultantPrice): Promise<ConsultantPrice>;
  deletePrice(token: string): Promise<null>;
  session(token: string, sessionId: SessionId): Promise<SessionDetails>;
  earnings(token: string, consultantId: UserId): Promise<Earnings>;
  receipts(token: string): Promise<Receipt[]>;
  payoutLink(token: string, options?: PayoutLinkRequest): Promise<PayoutLink>;
  /** The session's consultant, or its seeker if premium (else `premium_required` / `forbidden`). */
  recordings(token: string, sessionId: SessionId): Promise<RecordingList>;
  recap(token: string, sessionId: SessionId): Promise<Recap>;
  /** The recap as Markdown text. */
  recapMarkdown(token: string, sessionId: SessionId): Promise<string>;
  /** Moderator tokens (the operator's platform). */
  setPremium(token: string, seekerId: UserId, premium: boolean): Promise<PremiumRequest>;
  /** Consultants. */
  recordingConsent(token: string): Promise<RecordingConsent>;
  /** Consultants. */
  setRecordingConsent(token: string, allowed: boolean): Promise<RecordingConsent>;
  /** Consultants. */
  setProfile(token: string, profile: ProfileUpdate): Promise<ConsultantProfile>;
  /** Consultants; `unknown_consultant` before the first `setProfile`. */
  myProfile(token: string): Promise<ConsultantProfile>;
  profile(token: string, consultantId: UserId): Promise<ConsultantProfile>;
  directory(token: string, query?: DirectoryQuery): Promise<DirectoryPage>;
  promotionPackages(token: string): Promise<PromotionPackage[]>;
  /** Consultants with a profile; charged at once. */
  buyPromotion(token: string, packageId: string, paymentMethod: string): Promise<PromotionReceipt>;
  /** Consultants. */
  myPromotions(token: string): Promise<MyPromotions>;
  /** Consultants; null if never set. */
  myAvailability(token: string): Promise<Availability | null>;
  /** Consultants. */
  setAvailability(token: string, availability: Availability): Promise<Availability>;
  /** Consultants; an amount of 0 makes those sessions free. */
  setPurposePrice(token: string, purpose: "mentorship" | "interview", price: ConsultantPrice): Promise<ConsultantPrice>;
  /** Consultants: back to the default (mentorship at the consultation price, interviews free). */
  deletePurposePrice(token: string, purpose: "mentorship" | "interview"): Promise<null>;
  slots(token: string, consultantId: UserId, query?: SlotsQuery): Promise<SlotList>;
  /** Seekers. */
  proposeBooking(token: string, request: BookingRequest): Promise<Booking>;
  bookings(token: string): Promise<BookingList>;
  booking(token: string, bookingId: string): Promise<Booking>;
  /** The booking's consultant; `startMs` is one of `proposed`. */
  acceptBooking(token: string, bookingId: string, startMs: number): Promise<Booking>;
  /** The booking's consultant. */
  declineBooking(token: string, bookingId: string, reason?: string): Promise<Booking>;
  cancelBooking(token: string, bookingId: string, reason?: string): Promise<Booking>;
  rescheduleBooking(token: string, bookingId: string, slots: number[]): Promise<Booking>;
  /** The session's seeker, once, after it ended. */
  review(token: string, sessionId: SessionId, stars: number, text?: string): Promise<Review>;
  /** The review's consultant, once. */
  replyToReview(token: string, reviewId: string, text: string): Promise<Review>;
  reviews(token: string, consultantId: UserId, query?: ReviewsQuery): Promise<ReviewPage>;
  /** That consultant, or a moderator. */
  metrics(token: string, consultantId: UserId, period?: MetricsPeriod): Promise<ConsultantMetrics>;
  /** Any role. */
  policy(token: string): Promise<Policy>;
  /** Seekers, consultants, recorders: a one-time WebSocket ticket. */
  wsTicket(token: string): Promise<WsTicket>;

  /** The session's seeker or consultant: disputes an ended, charged session. */
  openDispute(token: string, sessionId: SessionId, reason: DisputeReason, text: string): Promise<Dispute>;
  /** Moderators: every dispute; others: those of their sessions. Newest first. */
  disputes(token: string): Promise<Dispute[]>;
  /** Its parties and moderators. */
  dispute(token: string, disputeId: string): Promise<DisputeBundle>;
  /** The bundle as one Markdown page. */
  disputeBundleMarkdown(token: string, disputeId: string): Promise<string>;
  /** The side that did not open it, once. */
  answerDispute(token: string, disputeId: string, text: string): Promise<Dispute>;
  /** Moderators; sends an Idempotency-Key. */
  decideDispute(token: string, disputeId: string, decision: DisputeDecision, options?: IdempotentOptions): Promise<Dispute>;
  /** Seekers: funds a package or milestones (charged at once, held in escrow); sends an Idempotency-Key. */
  createEngagement(token: string, request: CreateEngagement, options?: IdempotentOptions): Promise<Engagement>;
  /** Yours, newest first. */
  engagements(token: string): Promise<Engagement[]>;
  engagement(token: string, engagementId: string): Promise<Engagement>;
  /** Either party or a moderator: refunds what is unreleased, once; sends an Idempotency-Key. */
  cancelEngagement(token: string, engagementId: string, reason?: string | null, options?: IdempotentOptions): Promise<Engagement>;
  /** Its consultant. */
  submitMilestone(token: string, milestoneId: string, note: string, links?: string[]): Promise<Engagement>;
  /** Its seeker: released to the consultant; sends an Idempotency-Key. */
  approveMilestone(token: string, milestoneId: string, options?: IdempotentOptions): Promise<Engagement>;
  /** Either party. */
  disputeMilestone(token: string, milestoneId: string, reason: string): Promise<Engagement>;
  /** Moderators: `releaseMinor` released, the rest refunded; sends an Idempotency-Key. */
  resolveMilestone(token: string, milestoneId: string, releaseMinor: number, note: string, options?: IdempotentOptions): Promise<Engagement>;
}

/** Events the SDK adds to the server's messages. */
export interface ReconnectingEvent {
  type: "reconnecting";
}
export interface ResumedEvent {
  type: "resumed";
  replayed: number;
  /** Fresh STUN/TURN servers from the resume's ack (may be empty). */
  ice_servers: IceServer[];
}
/** After a refused resume the client joined this room again by itself. */
export interface RejoinedEvent {
  type: "rejoined";
  room: RoomResult;
}
/** After a refused resume, rejoining this room failed (e.g. `session_ended`); it is forgotten. */
export interface RejoinFailedEvent {
  type: "rejoin_failed";
  session_id: SessionId;
  error: ParleyError;
}
export interface ResumeFailedEvent {
  type: "resume_failed";
  reason: string;
  code: ErrorCode;
  /** The fresh connection's hello: a new sequence; rejoin your rooms. */
  hello: HelloMessage;
}
export interface ClosedEvent {
  type: "closed";
  reason: string;
  /** 4000: replaced by a newer connection; 1000: closed by this client. */
  code: number;
}

export type ServerEventMap = { [T in ServerMessageType]: Extract<ServerMessage, { type: T }> };
export interface SignalingEventMap extends ServerEventMap {
  reconnecting: ReconnectingEvent;
  resumed: ResumedEvent;
  resume_failed: ResumeFailedEvent;
  rejoined: RejoinedEvent;
  rejoin_failed: RejoinFailedEvent;
  closed: ClosedEvent;
  "*": ServerMessage | ReconnectingEvent | ResumedEvent | ResumeFailedEvent | RejoinedEvent | RejoinFailedEvent | ClosedEvent;
}

declare class Emitter<M> {
  /** Subscribes; returns the unsubscribe function. "*" receives every event. */
  on<K extends keyof M & string>(type: K, fn: (event: M[K], type: string) => void): () => void;
  once<K extends keyof M & string>(type: K, fn: (event: M[K], type: string) => void): () => void;
  off<K extends keyof M & string>(type: K, fn: (event: M[K], type: string) => void): void;
  addEventListener<K extends keyof M & string>(type: K, fn: (event: M[K], type: string) => void): void;
  removeEventListener<K extends keyof M & string>(type: K, fn: (event: M[K], type: string) => void): void;
}

/**
 * One WebSocket to `/v1/signal`, opened with a one-time ticket the token buys
 * (`POST /v1/ws-tickets`; the token never goes in a URL). Requests resolve
 * with their ack's `result` (null when there is none) or reject with
 * ParleyError. After a drop the client reconnects and sends `resume` within
 * `resumeWindowSecs`; frames sent meanwhile are queued.
 */
export declare class SignalingClient extends Emitter<SignalingEventMap> {
  /** `autoRejoin: false`: do not rejoin rooms after a refused resume (default true). */
  static connect(wsUrl: string, token: string, options?: { timeoutMs?: number; requestTimeoutMs?: number; autoRejoin?: boolean }): Promise<SignalingClient>;
  /** The rooms rejoined after a refused resume: joined, not left or ended. */
  readonly joinedRooms: SessionId[];
  /** `ice.servers`: fresh STUN/TURN servers. */
  iceServers(): Promise<IceServer[]>;
  readonly url: string;
  readonly hello: HelloMessage;
  readonly user: UserInfo;
  readonly resumeToken: string;
  readonly resumeWindowSecs: number;
  readonly pingIntervalSecs: number;
  /** Consultants: the last presence the server reported. */
  readonly presence?: PresenceStatus;
  /** The `seq` of the last message processed. */
  readonly lastSeq: number;
  readonly state: "open" | "reconnecting" | "closed";
  request(msg: ClientMessage): Promise<AckResult | null>;
  send(msg: ClientMessage): void;
  /** Closes for good (a close frame: not resumable). */
  close(): void;
  setAvailable(available: boolean): Promise<null>;
  /** `record: true` asks for the session to be recorded. */
  call(consultantId: UserId, paymentMethod?: string, options?: { record?: boolean }): Promise<CallResult>;
  accept(callId: CallId): Promise<null>;
  decline(callId: CallId, reason?: string): Promise<null>;
  cancel(callId: CallId): Promise<null>;
  join(sessionId: SessionId): Promise<RoomResult>;
  leave(sessionId: SessionId): Promise<null>;
  endSession(sessionId: SessionId): Promise<null>;
  mediaState(sessionId: SessionId, state: MediaState): Promise<null>;
  /** `chat.send`; the other participant gets `chat.message` (you get no copy). */
  chat(sessionId: SessionId, text: string, kind?: ChatKind): Promise<null>;
  ping(): Promise<PongResult>;
  /** The recorder's id while `sessionId` is being recorded (from `recording.started`). */
  recorderOf(sessionId: SessionId): UserId | undefined;
}

/** Recording went on (`recording.started`) or off (`recording.stopped`). */
export interface RecordingEvent {
  active: boolean;
  recorder_id?: UserId;
  reason?: RecordingStopReason;
}

export interface CallEventMap {
  track: RTCTrackEvent;
  remotestream: MediaStream;
  connectionstatechange: RTCPeerConnectionState;
  recording: RecordingEvent;
  error: Error;
  "*": unknown;
}

/**
 * The send-only connection answering the recorder's offer with the call's
 * local tracks (answer and candidates sent `to` the recorder). Made by Call.
 */
export declare class RecorderLink {
  readonly call: Call;
  readonly recorderId: UserId;
  readonly pc: RTCPeerConnection;
  readonly closed: boolean;
  answer(sdp: string, stream?: MediaStream): Promise<void>;
  addCandidate(candidate: IceCandidate): Promise<void>;
  useStream(stream: MediaStream): void;
  close(): void;
}

/**
 * The peer connection of one session. The room's offerer (the seeker) offers
 * once the other participant is present; perfect negotiation with the
 * consultant as the polite peer; remote candidates buffered until a remote
 * description is set; ICE restart on `failed`; `media.state` reported.
 * While recorded, the recorder's offers are answered by `recorder`, a
 * separate send-only connection; they never reach `pc`.
 */
export declare class Call extends Emitter<CallEventMap> {
  constructor(
    client: SignalingClient,
    room: RoomResult,
    options?: { localStream?: MediaStream; rtcConfig?: RTCConfiguration; connectTimeoutMs?: number },
  );
  /** Offerer: ms after an offer before an ICE restart if still not connected (default 10000). */
  connectTimeoutMs: number;
  readonly client: SignalingClient;
  readonly sessionId: SessionId;
  readonly offerer: boolean;
  readonly polite: boolean;
  readonly pc: RTCPeerConnection;
  readonly remoteStream: MediaStream;
  readonly localStream?: MediaStream;
  readonly closed: boolean;
  readonly connectionState: RTCPeerConnectionState;
  /** The recorder's id while the session is recorded, else null. */
  readonly recorderId: UserId | null;
  /** The connection to the recorder, once it has offered; null otherwise. */
  readonly recorder: RecorderLink | null;
  addStream(stream: MediaStream): void;
  start(): void;
  renegotiate(options?: { iceRestart?: boolean }): void;
  restartIce(): void;
  /** After this client's resume failed and it joined the room again. */
  rejoined(room: RoomResult): void;
  /** Sum of `bytesReceived` over `inbound-rtp` stats. */
  inboundBytes(): Promise<number>;
  close(): void;
  /**
   * The call of a joined room, whichever backend carries its media: a `Call`
   * (peer to peer) or, when `room.media.backend == "livekit"`, a connected
   * `LiveKitCall` (the vendored `livekit-client`, loaded on demand).
   */
  static forRoom(
    client: SignalingClient,
    room: RoomResult,
    options?: { localStream?: MediaStream; rtcConfig?: RTCConfiguration; connectTimeoutMs?: number; livekitModule?: string },
  ): Promise<Call | LiveKitCall>;
}

/** The vendored `livekit-client` version. */
export declare const LIVEKIT_CLIENT_VERSION: string;

/** A session's call through a LiveKit SFU; the same events as `Call`. */
export declare class LiveKitCall extends Emitter<CallEventMap> {
  constructor(client: SignalingClient, room: RoomResult, lk: unknown, options?: { localStream?: MediaStream });
  readonly client: SignalingClient;
  readonly sessionId: SessionId;
  readonly media: MediaJoin;
  /** The `livekit-client` Room. */
  readonly room: unknown;
  readonly remoteStream: MediaStream;
  readonly localStream: MediaStream | null;
  readonly closed: boolean;
  readonly connectionState: "new" | "connecting" | "connected" | "reconnecting" | "disconnected" | "failed";
  connect(): Promise<void>;
  addStream(stream: MediaStream): Promise<void>;
  rejoined(): void;
  close(): void;
}

/** Minor-unit digits of an ISO 4217 currency (2 for EUR, 0 for JPY), from `Intl`. */
export declare function currencyDigits(currency: string): number;
/** Money for people, by `Intl.NumberFormat` in `locale` (default: the browser's): "€30.00" in en-US. */
export declare function formatMoney(money: Money, locale?: string): string;
/** The amount in major units for a form field: 3000 EUR → "30.00". */
export declare function majorUnits(money: Money): string;
/** Money from an amount typed in major units ("30", "30,50"); null if it is not one. */
export declare function moneyFromMajor(text: string, currency: string): Money | null;
