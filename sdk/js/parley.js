// Parley JavaScript SDK: the REST API, the signaling WebSocket and a WebRTC
// call for one session (and the send-only connection to the recorder when
// the session is recorded). An ES module with no dependencies and no build
// step.
//
// The wire truth is `domain/src/protocol.rs` (parley_domain::protocol) and
// docs/protocol.md. Types: parley.d.ts next to this file.

/** Protocol version this SDK speaks (`hello.protocol_version`). */
export const PROTOCOL_VERSION = 1;

/**
 * Every stable error code the server sends (`ErrorCode::ALL` in
 * domain/src/protocol.rs), by constant name.
 */
export const ErrorCode = Object.freeze({
  MALFORMED_JSON: "malformed_json",
  UNKNOWN_TYPE: "unknown_type",
  MISSING_FIELD: "missing_field",
  INVALID_FIELD: "invalid_field",
  FRAME_TOO_LARGE: "frame_too_large",
  SDP_TOO_LARGE: "sdp_too_large",
  RATE_LIMITED: "rate_limited",
  BINARY_NOT_SUPPORTED: "binary_not_supported",
  NOT_IN_ROOM: "not_in_room",
  FORBIDDEN: "forbidden",
  WRONG_ROLE: "wrong_role",
  UNKNOWN_SESSION: "unknown_session",
  SESSION_ENDED: "session_ended",
  UNKNOWN_CONSULTANT: "unknown_consultant",
  NOT_CHARGED: "not_charged",
  REFUND_EXCEEDS_CAPTURE: "refund_exceeds_capture",
  IDEMPOTENCY_KEY_REUSED: "idempotency_key_reused",
  IDEMPOTENCY_KEY_IN_USE: "idempotency_key_in_use",
  PAYMENT_PROVIDER_ERROR: "payment_provider_error",
  MISSING_SIGNATURE: "missing_signature",
  BAD_SIGNATURE: "bad_signature",
  TIMESTAMP_OUT_OF_TOLERANCE: "timestamp_out_of_tolerance",
  MALFORMED_PAYLOAD: "malformed_payload",
  LINK_EXPIRED: "link_expired",
  UNKNOWN_RECORDING: "unknown_recording",
  RANGE_NOT_SATISFIABLE: "range_not_satisfiable",
  CONSULTANT_UNAVAILABLE: "consultant_unavailable",
  UNKNOWN_CALL: "unknown_call",
  CALL_NOT_RINGING: "call_not_ringing",
  ALREADY_IN_CALL: "already_in_call",
  RESUME_FAILED: "resume_failed",
  RESUME_NOT_FIRST: "resume_not_first",
  PAYMENT_DECLINED: "payment_declined",
  PAYMENT_ACTION_REQUIRED: "payment_action_required",
  PREMIUM_REQUIRED: "premium_required",
  RECORDING_NOT_ALLOWED: "recording_not_allowed",
  UNKNOWN_TIME_ZONE: "unknown_time_zone",
  UNSUPPORTED_CURRENCY: "unsupported_currency",
  INVALID_PRICE: "invalid_price",
  SLOT_IN_PAST: "slot_in_past",
  SLOT_UNAVAILABLE: "slot_unavailable",
  SLOT_TAKEN: "slot_taken",
  UNKNOWN_BOOKING: "unknown_booking",
  BOOKING_NOT_PENDING: "booking_not_pending",
  ROOM_NOT_OPEN: "room_not_open",
  REVIEW_EXISTS: "review_exists",
  SESSION_NOT_COMPLETED: "session_not_completed",
  UNKNOWN_REVIEW: "unknown_review",
  UNKNOWN_PACKAGE: "unknown_package",
  UNKNOWN_DISPUTE: "unknown_dispute",
  DISPUTE_EXISTS: "dispute_exists",
  DISPUTE_WINDOW_CLOSED: "dispute_window_closed",
  DISPUTE_ANSWERED: "dispute_answered",
  DISPUTE_DECIDED: "dispute_decided",
  UNKNOWN_ENGAGEMENT: "unknown_engagement",
  ENGAGEMENT_STATE: "engagement_state",
  PAYOUT_ACCOUNT_REQUIRED: "payout_account_required",
  MISSING_TOKEN: "missing_token",
  INVALID_TOKEN: "invalid_token",
  TOKEN_EXPIRED: "token_expired",
  UNKNOWN_TICKET: "unknown_ticket",
  TICKET_USED: "ticket_used",
  TICKET_EXPIRED: "ticket_expired",
  REPLACED: "replaced",
  ROLE_NOT_ALLOWED: "role_not_allowed",
  RECORDER_CONNECTED: "recorder_connected",
  PAYLOAD_TOO_LARGE: "payload_too_large",
  UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
  METHOD_NOT_ALLOWED: "method_not_allowed",
  UNKNOWN_ROUTE: "unknown_route",
  UNAVAILABLE: "unavailable",
  INTERNAL: "internal",
});

/**
 * Codes the SDK itself uses for failures that never reached the server (not
 * part of the protocol).
 */
export const ClientErrorCode = Object.freeze({
  NETWORK: "network",
  TIMEOUT: "timeout",
  CLOSED: "closed",
  PROTOCOL: "protocol",
});

/** Every client → server message type (`ClientMessage::TYPES`). */
export const CLIENT_MESSAGE_TYPES = Object.freeze([
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
]);

/** Every server → client message type (`ServerMessage::TYPES`). */
export const SERVER_MESSAGE_TYPES = Object.freeze([
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
  "session.ended",
  "meter.free_window_ending",
  "meter.billing_started",
  "meter.tick",
  "meter.hold_ending",
  "server.shutdown",
]);

/** How long a request waits for its `ack` or `error`. */
export const REQUEST_TIMEOUT_MS = 15000;

/** The longest `chat.send` text, in UTF-8 bytes (`MAX_CHAT_BYTES`). */
export const MAX_CHAT_BYTES = 4096;

/** A failed request: a stable `code`, words for humans, and the HTTP status for REST. */
export class ParleyError extends Error {
  constructor(code, message, status = 0) {
    super(message || code);
    this.name = "ParleyError";
    this.code = code;
    this.status = status;
  }
}

// ---------------------------------------------------------------------------
// A tiny event emitter shared by SignalingClient and Call.

class Emitter {
  constructor() {
    this._handlers = new Map();
  }

  /** Subscribes `fn` to `type` ("*" for every event). Returns an unsubscribe function. */
  on(type, fn) {
    let set = this._handlers.get(type);
    if (!set) this._handlers.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  /** Like `on`, but only for the next event. */
  once(type, fn) {
    const off = this.on(type, (ev) => {
      off();
      fn(ev);
    });
    return off;
  }

  off(type, fn) {
    this._handlers.get(type)?.delete(fn);
  }

  addEventListener(type, fn) {
    this.on(type, fn);
  }

  removeEventListener(type, fn) {
    this.off(type, fn);
  }

  _emit(type, ev) {
    for (const key of [type, "*"]) {
      for (const fn of [...(this._handlers.get(key) || [])]) {
        try {
          fn(ev, type);
        } catch (err) {
          console.error(`parley: a handler of ${type} threw`, err);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// REST

/** `?a=1&b=x` from an object's entries, skipping undefined and null; "" when none is left. */
function queryString(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null) q.append(key, String(value));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** The reasons a session may be disputed for (docs/protocol.md §13.38). */
export const DISPUTE_REASONS = Object.freeze([
  "consultant_absent",
  "session_cut_short",
  "quality",
  "not_as_described",
  "other",
]);

/** A fresh `Idempotency-Key` (a random UUID). */
export function newIdempotencyKey() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  return `k-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}

/** The REST API (docs/protocol.md §13). Bearer tokens go in the Authorization header. */
export class ParleyApi {
  /** @param {string} [baseUrl] e.g. "http://127.0.0.1:8080"; default: this page's origin. */
  constructor(baseUrl = "") {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
  }

  /** The signaling WebSocket URL of this server (`ws(s)://…/v1/signal`). */
  signalUrl() {
    const base = this.baseUrl || (typeof location !== "undefined" ? location.origin : "");
    return base.replace(/^http/, "ws") + "/v1/signal";
  }

  /**
   * `text: true` resolves with the body as text instead of JSON (errors are still JSON). `idempotencyKey` is sent as
   * the `Idempotency-Key` header (docs/protocol.md §13: a retry with the same key does the work once).
   */
  async request(method, path, { token, body, text: asText = false, idempotencyKey } = {}) {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (idempotencyKey) headers["idempotency-key"] = idempotencyKey;
    if (body !== undefined) headers["content-type"] = "application/json";
    let res;
    try {
      res = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ParleyError(ClientErrorCode.NETWORK, `could not reach the server: ${err.message || err}`, 0);
    }
    const text = await res.text();
    let json = null;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
    }
    if (!res.ok) {
      if (json && typeof json.code === "string") throw new ParleyError(json.code, json.message, res.status);
      throw new ParleyError(
        res.status >= 500 ? ErrorCode.INTERNAL : ClientErrorCode.PROTOCOL,
        `HTTP ${res.status}${text && json === undefined ? `: ${text.slice(0, 200)}` : ""}`,
        res.status,
      );
    }
    if (asText) return text;
    if (json === undefined) throw new ParleyError(ClientErrorCode.PROTOCOL, "the server's answer is not JSON", res.status);
    return json;
  }

  /** `POST /v1/dev/login` (dev mode): a token for a known user, or a new one with `name` and `role`. */
  devLogin(userId, name, role) {
    const body = { user_id: userId };
    if (name) body.name = name;
    if (role) body.role = role;
    return this.request("POST", "/v1/dev/login", { body });
  }

  /** `GET /v1/consultants`: every consultant, with presence and price. */
  consultants(token) {
    return this.request("GET", "/v1/consultants", { token });
  }

  /** `GET /v1/consultants/me/price`: your price, or null (consultants). */
  myPrice(token) {
    return this.request("GET", "/v1/consultants/me/price", { token });
  }

  /** `PUT /v1/consultants/me/price` with `{model, amount: {amount_minor, currency}}` (consultants). */
  setPrice(token, price) {
    return this.request("PUT", "/v1/consultants/me/price", { token, body: price });
  }

  /** `DELETE /v1/consultants/me/price`: calls become free (consultants). */
  deletePrice(token) {
    return this.request("DELETE", "/v1/consultants/me/price", { token });
  }

  /** `GET /v1/sessions/{id}`: a session's state, meter, bill and ledger. */
  session(token, sessionId) {
    return this.request("GET", `/v1/sessions/${encodeURIComponent(sessionId)}`, { token });
  }

  /** `GET /v1/consultants/{id}/earnings`. */
  earnings(token, consultantId) {
    return this.request("GET", `/v1/consultants/${encodeURIComponent(consultantId)}/earnings`, { token });
  }

  /** `GET /v1/seekers/me/receipts` (seekers). */
  receipts(token) {
    return this.request("GET", "/v1/seekers/me/receipts", { token });
  }

  /** `POST /v1/consultants/me/payout-account`: `{account_id, url}` of the onboarding link (consultants). */
  payoutLink(token, options = {}) {
    return this.request("POST", "/v1/consultants/me/payout-account", { token, body: options });
  }

  /** `GET /v1/sessions/{id}/recordings`: the files, with links valid 15 minutes (the consultant; a premium seeker). */
  recordings(token, sessionId) {
    return this.request("GET", `/v1/sessions/${encodeURIComponent(sessionId)}/recordings`, { token });
  }

  /** `GET /v1/sessions/{id}/recap`: timeline, billing, talk time, chat, notes, recordings (the consultant; a premium seeker). */
  recap(token, sessionId) {
    return this.request("GET", `/v1/sessions/${encodeURIComponent(sessionId)}/recap`, { token });
  }

  /** `GET /v1/sessions/{id}/recap?format=markdown`: the recap as Markdown text. */
  recapMarkdown(token, sessionId) {
    return this.request("GET", `/v1/sessions/${encodeURIComponent(sessionId)}/recap?format=markdown`, { token, text: true });
  }

  /** `PUT /v1/seekers/{id}/premium` (moderator tokens: the operator's platform). */
  setPremium(token, seekerId, premium) {
    return this.request("PUT", `/v1/seekers/${encodeURIComponent(seekerId)}/premium`, { token, body: { premium: !!premium } });
  }

  /** `GET /v1/consultants/me/recording`: `{allowed}` (consultants; default false). */
  recordingConsent(token) {
    return this.request("GET", "/v1/consultants/me/recording", { token });
  }

  /** `PUT /v1/consultants/me/recording`: allow seekers to ask for recording, or not (consultants). */
  setRecordingConsent(token, allowed) {
    return this.request("PUT", "/v1/consultants/me/recording", { token, body: { allowed: !!allowed } });
  }

  /** `PUT /v1/consultants/me/profile` with the whole profile (a `ProfileUpdate`): what the directory shows (consultants). */
  setProfile(token, profile) {
    return this.request("PUT", "/v1/consultants/me/profile", { token, body: profile });
  }

  /** `GET /v1/consultants/me/profile`: your profile (consultants; 404 `unknown_consultant` before the first `setProfile`). */
  myProfile(token) {
    return this.request("GET", "/v1/consultants/me/profile", { token });
  }

  /** `GET /v1/consultants/{id}/profile`: a consultant's profile with price, rating, promotion and presence (any role). */
  profile(token, consultantId) {
    return this.request("GET", `/v1/consultants/${encodeURIComponent(consultantId)}/profile`, { token });
  }

  /**
   * `GET /v1/directory`: one page of consultants with a profile (any role). `query`: `{q, tag, language, currency,
   * min_price, max_price, available_now, min_rating, sort, limit, cursor}`, all optional; `cursor` is the previous
   * page's `next_cursor`.
   */
  directory(token, query = {}) {
    return this.request("GET", `/v1/directory${queryString(query)}`, { token });
  }

  /** `GET /v1/promotions/packages`: the promotion packages on sale (any role). */
  promotionPackages(token) {
    return this.request("GET", "/v1/promotions/packages", { token });
  }

  /** `POST /v1/consultants/me/promotions`: buys featured placement, charged at once (consultants with a profile). */
  buyPromotion(token, packageId, paymentMethod) {
    return this.request("POST", "/v1/consultants/me/promotions", {
      token,
      body: { package_id: packageId, payment_method: paymentMethod },
    });
  }

  /** `GET /v1/consultants/me/promotions`: `{purchases, current?}` (consultants). */
  myPromotions(token) {
    return this.request("GET", "/v1/consultants/me/promotions", { token });
  }

  /** `GET /v1/consultants/me/availability`: your availability, or null if never set (consultants). */
  myAvailability(token) {
    return this.request("GET", "/v1/consultants/me/availability", { token });
  }

  /** `PUT /v1/consultants/me/availability` with `{time_zone, session_lengths_min, weekly, exceptions}` (consultants). */
  setAvailability(token, availability) {
    return this.request("PUT", "/v1/consultants/me/availability", { token, body: availability });
  }

  /** `PUT /v1/consultants/me/prices/{purpose}` (`mentorship` or `interview`) with `{model, amount}` (consultants). */
  setPurposePrice(token, purpose, price) {
    return this.request("PUT", `/v1/consultants/me/prices/${encodeURIComponent(purpose)}`, { token, body: price });
  }

  /** `DELETE /v1/consultants/me/prices/{purpose}`: back to the default price of that purpose (consultants). */
  deletePurposePrice(token, purpose) {
    return this.request("DELETE", `/v1/consultants/me/prices/${encodeURIComponent(purpose)}`, { token });
  }

  /** `GET /v1/consultants/{id}/slots` with optional `{from_ms, to_ms, length_min}`: free slots of one length (any role). */
  slots(token, consultantId, query = {}) {
    return this.request("GET", `/v1/consultants/${encodeURIComponent(consultantId)}/slots${queryString(query)}`, {
      token,
    });
  }

  /** `POST /v1/bookings` with `{consultant_id, slots, length_min, purpose?, payment_method?, record?}` (seekers). */
  proposeBooking(token, request) {
    return this.request("POST", "/v1/bookings", { token, body: request });
  }

  /** `GET /v1/bookings`: `{bookings}`, yours as seeker or consultant, newest first (any role). */
  bookings(token) {
    return this.request("GET", "/v1/bookings", { token });
  }

  /** `GET /v1/bookings/{id}` (its seeker, its consultant, moderators). */
  booking(token, bookingId) {
    return this.request("GET", `/v1/bookings/${encodeURIComponent(bookingId)}`, { token });
  }

  /** `POST /v1/bookings/{id}/accept`: confirms one of the proposed starts (the booking's consultant). */
  acceptBooking(token, bookingId, startMs) {
    return this.request("POST", `/v1/bookings/${encodeURIComponent(bookingId)}/accept`, {
      token,
      body: { start_ms: startMs },
    });
  }

  /** `POST /v1/bookings/{id}/decline` with an optional reason (≤ 200 bytes; the booking's consultant). */
  declineBooking(token, bookingId, reason) {
    return this.request("POST", `/v1/bookings/${encodeURIComponent(bookingId)}/decline`, {
      token,
      body: reason == null ? {} : { reason },
    });
  }

  /** `POST /v1/bookings/{id}/cancel` with an optional reason (either side; a seeker's late cancellation costs a fee). */
  cancelBooking(token, bookingId, reason) {
    return this.request("POST", `/v1/bookings/${encodeURIComponent(bookingId)}/cancel`, {
      token,
      body: reason == null ? {} : { reason },
    });
  }

  /** `POST /v1/bookings/{id}/reschedule` with 1–3 new starts (either side; pending again). */
  rescheduleBooking(token, bookingId, slots) {
    return this.request("POST", `/v1/bookings/${encodeURIComponent(bookingId)}/reschedule`, {
      token,
      body: { slots },
    });
  }

  /** `GET /v1/policy`: the free window, the instant-call maximum, the late-cancellation fee and booking timings (any role). */
  policy(token) {
    return this.request("GET", "/v1/policy", { token });
  }

  /** `POST /v1/ws-tickets`: a one-time ticket for `/v1/signal?ticket=` (one connection, 30 s). */
  wsTicket(token) {
    return this.request("POST", "/v1/ws-tickets", { token });
  }

  /** `POST /v1/sessions/{id}/review`: 1–5 stars and an optional text (the session's seeker, once, after it ended). */
  review(token, sessionId, stars, text) {
    const body = { stars };
    if (text != null) body.text = text;
    return this.request("POST", `/v1/sessions/${encodeURIComponent(sessionId)}/review`, { token, body });
  }

  /** `POST /v1/reviews/{id}/reply`: a public reply, once (the review's consultant). */
  replyToReview(token, reviewId, text) {
    return this.request("POST", `/v1/reviews/${encodeURIComponent(reviewId)}/reply`, { token, body: { text } });
  }

  /** `GET /v1/consultants/{id}/reviews` with optional `{limit, cursor}`: a page, newest first, and the reputation (any role). */
  reviews(token, consultantId, query = {}) {
    return this.request("GET", `/v1/consultants/${encodeURIComponent(consultantId)}/reviews${queryString(query)}`, {
      token,
    });
  }

  /** `GET /v1/consultants/{id}/metrics` with optional `{from, to}` (Unix ms): figures (that consultant; moderators). */
  metrics(token, consultantId, period = {}) {
    return this.request("GET", `/v1/consultants/${encodeURIComponent(consultantId)}/metrics${queryString(period)}`, {
      token,
    });
  }

  // Disputes (docs/protocol.md §13.38, rules D1–D4)

  /**
   * `POST /v1/sessions/{id}/disputes` with `{reason, text}`: disputes an ended, charged session (its seeker or
   * consultant). `reason`: one of {@link DISPUTE_REASONS}; `text` 1–4000 characters.
   */
  openDispute(token, sessionId, reason, text) {
    return this.request("POST", `/v1/sessions/${encodeURIComponent(sessionId)}/disputes`, {
      token,
      body: { reason, text },
    });
  }

  /** `GET /v1/disputes`: an array: moderators get every dispute, others those of their sessions; newest first, at most 200. */
  disputes(token) {
    return this.request("GET", "/v1/disputes", { token });
  }

  /** `GET /v1/disputes/{id}`: the evidence bundle `{dispute, session, chat, notes, recordings, history, chargebacks}`. */
  dispute(token, disputeId) {
    return this.request("GET", `/v1/disputes/${encodeURIComponent(disputeId)}`, { token });
  }

  /** `GET /v1/disputes/{id}/bundle.md`: the evidence bundle as one Markdown page (text). */
  disputeBundleMarkdown(token, disputeId) {
    return this.request("GET", `/v1/disputes/${encodeURIComponent(disputeId)}/bundle.md`, { token, text: true });
  }

  /** `POST /v1/disputes/{id}/answer` with `{text}`: the other side answers, once. */
  answerDispute(token, disputeId, text) {
    return this.request("POST", `/v1/disputes/${encodeURIComponent(disputeId)}/answer`, { token, body: { text } });
  }

  /**
   * `POST /v1/disputes/{id}/decision` (moderators) with `{decision, amount_minor?, note}`: `uphold`, `partial_refund`
   * (`amount_minor` ≥ 1, minor units of the charge's currency) or `full_refund`. Sends an `Idempotency-Key` (a fresh
   * one unless `idempotencyKey` is given: pass the same one to retry).
   */
  decideDispute(token, disputeId, decision, { idempotencyKey = newIdempotencyKey() } = {}) {
    return this.request("POST", `/v1/disputes/${encodeURIComponent(disputeId)}/decision`, {
      token,
      body: decision,
      idempotencyKey,
    });
  }

  // Escrow: engagements, packages and milestones (docs/protocol.md §13.39, rules E1–E8)

  /**
   * `POST /v1/engagements` (seekers): funds a package (`package: {sessions, minutes, price}`, price per session) or
   * milestones (`milestones: [{description, amount}]`) with `{consultant_id, title, payment_method}`; the total is
   * charged at once and held in escrow. Sends an `Idempotency-Key` (fresh unless given).
   */
  createEngagement(token, request, { idempotencyKey = newIdempotencyKey() } = {}) {
    return this.request("POST", "/v1/engagements", { token, body: request, idempotencyKey });
  }

  /** `GET /v1/engagements`: an array of yours (as seeker or consultant), newest first, at most 100. */
  engagements(token) {
    return this.request("GET", "/v1/engagements", { token });
  }

  /** `GET /v1/engagements/{id}` (its parties and moderators). */
  engagement(token, engagementId) {
    return this.request("GET", `/v1/engagements/${encodeURIComponent(engagementId)}`, { token });
  }

  /** `POST /v1/engagements/{id}/cancel` with an optional reason: refunds what is unreleased, once (less a fee when the seeker cancels). */
  cancelEngagement(token, engagementId, reason, { idempotencyKey = newIdempotencyKey() } = {}) {
    return this.request("POST", `/v1/engagements/${encodeURIComponent(engagementId)}/cancel`, {
      token,
      body: reason == null ? {} : { reason },
      idempotencyKey,
    });
  }

  /** `POST /v1/milestones/{id}/submit` with `{note, links?}` (its consultant): submitted, released on its own later. */
  submitMilestone(token, milestoneId, note, links = []) {
    return this.request("POST", `/v1/milestones/${encodeURIComponent(milestoneId)}/submit`, {
      token,
      body: { note, links },
    });
  }

  /** `POST /v1/milestones/{id}/approve` (its seeker): released to the consultant, less the commission. */
  approveMilestone(token, milestoneId, { idempotencyKey = newIdempotencyKey() } = {}) {
    return this.request("POST", `/v1/milestones/${encodeURIComponent(milestoneId)}/approve`, { token, idempotencyKey });
  }

  /** `POST /v1/milestones/{id}/dispute` with `{reason}` (either party): waits for a moderator. */
  disputeMilestone(token, milestoneId, reason) {
    return this.request("POST", `/v1/milestones/${encodeURIComponent(milestoneId)}/dispute`, {
      token,
      body: { reason },
    });
  }

  /** `POST /v1/milestones/{id}/resolve` with `{release_minor, note}` (moderators): that much released, the rest refunded. */
  resolveMilestone(token, milestoneId, releaseMinor, note, { idempotencyKey = newIdempotencyKey() } = {}) {
    return this.request("POST", `/v1/milestones/${encodeURIComponent(milestoneId)}/resolve`, {
      token,
      body: { release_minor: releaseMinor, note },
      idempotencyKey,
    });
  }
}

// ---------------------------------------------------------------------------
// Signaling

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The REST base URL of a signaling URL (`ws(s)://host/v1/signal` → `http(s)://host`). */
function httpBaseOf(wsUrl) {
  return wsUrl.replace(/^ws/, "http").replace(/\/v1\/signal.*$/, "");
}

/**
 * Opens a WebSocket and waits for `hello`. Resolves `{ws, hello, seq}`.
 * The token never goes in the URL (URLs end up in logs): it buys a one-time
 * ticket (`POST /v1/ws-tickets`, with the Authorization header) that opens
 * this one connection (docs/protocol.md §2.1).
 */
async function openSocket(url, token, timeoutMs = REQUEST_TIMEOUT_MS) {
  const { ticket } = await new ParleyApi(httpBaseOf(url)).wsTicket(token);
  return openWithTicket(url, ticket, timeoutMs);
}

function openWithTicket(url, ticket, timeoutMs) {
  return new Promise((resolve, reject) => {
    const sep = url.includes("?") ? "&" : "?";
    let ws;
    try {
      ws = new WebSocket(`${url}${sep}ticket=${encodeURIComponent(ticket)}`);
    } catch (err) {
      reject(new ParleyError(ClientErrorCode.NETWORK, String(err.message || err)));
      return;
    }
    let done = false;
    const timer = setTimeout(() => fail(new ParleyError(ClientErrorCode.TIMEOUT, "no hello from the server")), timeoutMs);
    function fail(err) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close();
      } catch {
        /* already closed */
      }
      reject(err);
    }
    ws.onerror = () => {};
    ws.onclose = (ev) =>
      fail(new ParleyError(ClientErrorCode.NETWORK, `the connection closed before hello (code ${ev.code})`));
    ws.onmessage = (ev) => {
      let env;
      try {
        env = JSON.parse(ev.data);
      } catch {
        return fail(new ParleyError(ClientErrorCode.PROTOCOL, "unreadable first message"));
      }
      if (env.type !== "hello") {
        return fail(new ParleyError(ClientErrorCode.PROTOCOL, `expected hello, got ${env.type}`));
      }
      done = true;
      clearTimeout(timer);
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      resolve({ ws, hello: env, seq: env.seq });
    };
  });
}

/**
 * The signaling client: one WebSocket to `/v1/signal`, requests answered by
 * `ack` (the Promise resolves with its `result`) or `error` (it rejects with
 * a ParleyError), events for every server message, and an automatic `resume`
 * when the connection drops.
 *
 * Events: every server message type ("call.incoming", "meter.tick",
 * "chat.message", "recording.started", …, also "ack" and "error" that answer
 * no pending request), plus the SDK's own:
 * "reconnecting", "resumed" `{replayed, ice_servers}`, "resume_failed" `{reason, hello}`,
 * "rejoined" `{room}`, "rejoin_failed" `{session_id, error}`, "closed" `{reason, code}`.
 * "*" receives all of them.
 *
 * Rejoin: the client remembers the rooms it joined (not left or ended). When a
 * `resume` is refused (the server restarted), it joins them again by itself
 * (`room.join`, docs/protocol.md 8.13) and emits "rejoined" with the fresh room
 * (fresh ICE servers) or "rejoin_failed"; a `Call` of that session restores its
 * negotiation. `options.autoRejoin: false` turns this off.
 */
export class SignalingClient extends Emitter {
  /**
   * Connects and waits for `hello`.
   * @param {string} wsUrl e.g. "ws://127.0.0.1:8080/v1/signal"
   * @param {string} token a bearer JWT (it buys a one-time ticket for each connection; never put in the URL)
   */
  static async connect(wsUrl, token, options = {}) {
    let opened;
    try {
      opened = await openSocket(wsUrl, token, options.timeoutMs);
    } catch (err) {
      // Browsers hide the body of a refused upgrade: ask REST why (§2.1).
      const why = await explainRefusal(wsUrl, token);
      throw why || err;
    }
    const client = new SignalingClient(wsUrl, token, opened.hello, options);
    client._attach(opened.ws);
    return client;
  }

  constructor(wsUrl, token, hello, options = {}) {
    super();
    this.url = wsUrl;
    this.token = token;
    this.requestTimeoutMs = options.requestTimeoutMs || REQUEST_TIMEOUT_MS;
    this._applyHello(hello);
    this.resumeToken = hello.resume_token;
    this.lastSeq = hello.seq;
    this.state = "open"; // "open" | "reconnecting" | "closed"
    this._nextId = 1;
    this._pending = new Map();
    this._queue = []; // frames sent while reconnecting
    this._ws = null;
    this._recorders = new Map(); // session id → the recorder's id while recording
    this._rooms = new Set(); // rooms joined and not left or ended: rejoined after a refused resume
    this.autoRejoin = options.autoRejoin !== false;
  }

  /** The recorder's user id while `sessionId` is being recorded (from `recording.started`), else undefined. */
  recorderOf(sessionId) {
    return this._recorders.get(sessionId);
  }

  _applyHello(hello) {
    this.hello = hello;
    this.user = hello.user;
    this.resumeWindowSecs = hello.resume_window_secs;
    this.pingIntervalSecs = hello.ping_interval_secs;
    if (hello.presence !== undefined) this.presence = hello.presence;
  }

  _attach(ws) {
    this._ws = ws;
    ws.onmessage = (ev) => this._dispatch(ev.data);
    ws.onerror = () => {};
    ws.onclose = (ev) => this._onClose(ev);
  }

  _dispatch(text) {
    let env;
    try {
      env = JSON.parse(text);
    } catch {
      console.warn("parley: unreadable server message", text);
      return;
    }
    if (typeof env.seq === "number") this.lastSeq = env.seq;
    if (env.type === "presence.updated") this.presence = env.status;
    if (env.type === "recording.started") this._recorders.set(env.session_id, env.recorder_id);
    if (env.type === "recording.stopped" || env.type === "session.ended") this._recorders.delete(env.session_id);
    if (env.type === "session.ended") this._rooms.delete(env.session_id);
    if ((env.type === "ack" || env.type === "error") && env.id != null && this._pending.has(env.id)) {
      const pending = this._pending.get(env.id);
      this._pending.delete(env.id);
      clearTimeout(pending.timer);
      if (env.type === "ack") pending.resolve(env.result ?? null);
      else pending.reject(new ParleyError(env.code, env.message));
      return;
    }
    this._emit(env.type, env);
  }

  _onClose(ev) {
    this._ws = null;
    if (this.state === "closed") return;
    if (ev.code === 4000) {
      // Replaced by a newer connection of ours: resuming would fight it.
      this._final(ev.reason || "replaced by a newer connection", ev.code);
      return;
    }
    this._reconnect();
  }

  async _reconnect() {
    this.state = "reconnecting";
    this._emit("reconnecting", { type: "reconnecting" });
    const deadline = Date.now() + this.resumeWindowSecs * 1000;
    let backoff = 100;
    while (Date.now() < deadline && this.state === "reconnecting") {
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 2000);
      if (this.state !== "reconnecting") return;
      let opened;
      try {
        opened = await openSocket(this.url, this.token, 5000);
      } catch {
        continue;
      }
      if (this.state !== "reconnecting") {
        opened.ws.close();
        return;
      }
      const outcome = await this._resumeOn(opened);
      if (outcome) return;
    }
    if (this.state === "reconnecting") this._final("could not reconnect within the resume window", 1006);
  }

  /** Sends `resume` on a fresh connection; true once this connection is ours. */
  _resumeOn({ ws, hello }) {
    return new Promise((resolve) => {
      const id = "resume";
      ws.onerror = () => {};
      ws.onclose = () => resolve(false);
      ws.onmessage = (ev) => {
        let env;
        try {
          env = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (env.type === "ack" && env.id === id) {
          this.lastSeq = env.seq;
          this._attach(ws);
          this.state = "open";
          this._flush();
          const iceServers = env.result?.ice_servers || [];
          this._emit("resumed", { type: "resumed", replayed: env.result?.replayed ?? 0, ice_servers: iceServers });
          resolve(true);
        } else if (env.type === "error" && env.id === id) {
          // A fresh start: new sequence and resume token; requests in flight are lost.
          this._applyHello(hello);
          this.resumeToken = hello.resume_token;
          this.lastSeq = env.seq;
          this._failPending(new ParleyError(ClientErrorCode.CLOSED, "the connection was lost"));
          this._recorders.clear(); // a rejoin brings recording.started again
          this._attach(ws);
          this.state = "open";
          this._flush();
          this._emit("resume_failed", { type: "resume_failed", reason: env.message, code: env.code, hello });
          this._rejoinRooms();
          resolve(true);
        } else {
          this._dispatch(ev.data); // a replayed message
        }
      };
      ws.send(JSON.stringify({ id, type: "resume", resume_token: this.resumeToken, last_seq: this.lastSeq }));
    });
  }

  _flush() {
    const queue = this._queue;
    this._queue = [];
    for (const frame of queue) this._ws.send(frame);
  }

  _failPending(err) {
    for (const [, pending] of this._pending) {
      clearTimeout(pending.timer);
      pending.reject(err);
    }
    this._pending.clear();
  }

  _final(reason, code) {
    this.state = "closed";
    this._queue = [];
    this._failPending(new ParleyError(ClientErrorCode.CLOSED, reason));
    this._emit("closed", { type: "closed", reason, code });
  }

  _sendFrame(obj) {
    if (this.state === "closed") throw new ParleyError(ClientErrorCode.CLOSED, "the client is closed");
    const frame = JSON.stringify(obj);
    if (this.state === "open" && this._ws && this._ws.readyState === WebSocket.OPEN) this._ws.send(frame);
    else this._queue.push(frame);
  }

  /** Sends a message with an `id`; resolves with the ack's `result` (or null), rejects with ParleyError. */
  request(msg) {
    return new Promise((resolve, reject) => {
      const id = `r${this._nextId++}`;
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new ParleyError(ClientErrorCode.TIMEOUT, `no answer to ${msg.type}`));
      }, this.requestTimeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      try {
        this._sendFrame({ ...msg, id });
      } catch (err) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(err);
      }
    });
  }

  /** Sends a message without an `id`: no ack; a failure arrives as an "error" event. */
  send(msg) {
    const { id: _ignored, ...rest } = msg;
    this._sendFrame(rest);
  }

  /** Closes the connection for good (a close frame: the server will not keep it resumable). */
  close() {
    if (this.state === "closed") return;
    const ws = this._ws;
    this._final("closed by the client", 1000);
    if (ws) {
      ws.onclose = null;
      ws.close(1000, "bye");
    }
  }

  /** Consultants: `presence.set` available (true) or offline (false). */
  setAvailable(available) {
    return this.request({ type: "presence.set", status: available ? "available" : "offline" });
  }

  /**
   * Seekers: `call.request`. Resolves `{kind:"call", call_id, session_id, ring_deadline_ms}` once ringing.
   * `{record: true}` asks for the session to be recorded (premium seekers; `premium_required`,
   * `recording_not_allowed`).
   */
  call(consultantId, paymentMethod, { record = false } = {}) {
    const msg = { type: "call.request", consultant_id: consultantId };
    if (paymentMethod) msg.payment_method = paymentMethod;
    if (record) msg.record = true;
    return this.request(msg);
  }

  /** Consultants: `call.accept`. */
  accept(callId) {
    return this.request({ type: "call.accept", call_id: callId });
  }

  /** Consultants: `call.decline`, with optional words for the seeker (≤ 200 bytes). */
  decline(callId, reason) {
    const msg = { type: "call.decline", call_id: callId };
    if (reason) msg.reason = reason;
    return this.request(msg);
  }

  /** Seekers: `call.cancel` while ringing. */
  cancel(callId) {
    return this.request({ type: "call.cancel", call_id: callId });
  }

  /**
   * `room.join`. Resolves `{kind:"room", session_id, participants, ice_servers, offerer}`.
   * The room is remembered and rejoined after a refused `resume`.
   */
  join(sessionId) {
    return this._remembered(this.request({ type: "room.join", session_id: sessionId }));
  }

  /** `room.leave` (the session goes on; rejoin within the grace period). */
  leave(sessionId) {
    return this._forgotten(sessionId, this.request({ type: "room.leave", session_id: sessionId }));
  }

  /** `session.end`: hang up for both. `session.ended` (with the bill) arrives before this resolves. */
  endSession(sessionId) {
    return this._forgotten(sessionId, this.request({ type: "session.end", session_id: sessionId }));
  }

  /**
   * `ice.servers`: resolves fresh STUN/TURN servers (TURN credentials valid for the server's TTL
   * from now). Ask before an ICE restart late in a session.
   */
  async iceServers() {
    const result = await this.request({ type: "ice.servers" });
    return (result && result.ice_servers) || [];
  }

  /** The rooms this client rejoins after a refused `resume`. */
  get joinedRooms() {
    return [...this._rooms];
  }

  _remembered(joined) {
    return joined.then((room) => {
      if (room && room.session_id) this._rooms.add(room.session_id);
      return room;
    });
  }

  _forgotten(sessionId, request) {
    return request.then((result) => {
      this._rooms.delete(sessionId);
      return result;
    });
  }

  /** After a refused `resume`: `room.join` every remembered room again, reporting each. */
  _rejoinRooms() {
    if (!this.autoRejoin) return;
    for (const sessionId of this._rooms) {
      this.request({ type: "room.join", session_id: sessionId }).then(
        (room) => this._emit("rejoined", { type: "rejoined", room }),
        (error) => {
          if (error && error.code === ClientErrorCode.CLOSED) return; // dropped again: the next resume decides
          this._rooms.delete(sessionId);
          this._emit("rejoin_failed", { type: "rejoin_failed", session_id: sessionId, error });
        },
      );
    }
  }

  /** `media.state`: report the peer connection state (stored in the session timeline). */
  mediaState(sessionId, state) {
    return this.request({ type: "media.state", session_id: sessionId, state });
  }

  /**
   * `chat.send`: a chat line (`kind` "chat") or a note ("note") for the other participant, stored in the
   * session's timeline and relayed as `chat.message`. 1–4096 bytes. You get no copy of your own line.
   */
  chat(sessionId, text, kind = "chat") {
    return this.request({ type: "chat.send", session_id: sessionId, text, kind });
  }

  /** `ping`: resolves `{kind:"pong", server_time_ms}`. */
  ping() {
    return this.request({ type: "ping" });
  }
}

/** Why a WebSocket upgrade was refused: the same token against REST (§2.1). */
async function explainRefusal(wsUrl, token) {
  try {
    await new ParleyApi(httpBaseOf(wsUrl)).consultants(token);
    return null;
  } catch (err) {
    return err instanceof ParleyError && err.status ? err : null;
  }
}

// ---------------------------------------------------------------------------
// Call

/**
 * The WebRTC side of one session: an RTCPeerConnection signaled through a
 * SignalingClient (`sdp.offer`, `sdp.answer`, `ice.candidate` for
 * `room.session_id`).
 *
 * - The room's `offerer` (the seeker) makes the first offer as soon as the
 *   other participant is in the room (room `participants`, or
 *   `participant.joined`); the server relays only to present participants.
 * - Renegotiation uses perfect negotiation; the consultant (not the offerer)
 *   is the polite peer.
 * - Remote candidates are buffered until a remote description is set.
 * - On `failed`, the offerer restarts ICE; when the other participant joins
 *   again, the offerer makes a new offer (with an ICE restart if the
 *   connection is not connected).
 * - Connection state changes are reported as `media.state`.
 * - While the session is recorded (`recording.started`), the recorder's
 *   signals (`from` = its id) never reach this connection: its offers are
 *   answered by a separate send-only RTCPeerConnection (`recorder`) that
 *   sends the local stream, addressed `to` the recorder. A new offer
 *   replaces it; `recording.stopped` closes it.
 *
 * Events: "track" (RTCTrackEvent), "remotestream" (MediaStream),
 * "connectionstatechange" (state string), "recording" ({active,
 * recorder_id?, reason?}), "error" (Error).
 */
export class Call extends Emitter {
  /**
   * @param {SignalingClient} client
   * @param {{session_id: string, participants: object[], ice_servers: object[], offerer: boolean}} room the `room.join` result
   * @param {{localStream?: MediaStream, rtcConfig?: RTCConfiguration, connectTimeoutMs?: number}} [options]
   */
  constructor(client, room, options = {}) {
    super();
    this.client = client;
    this.sessionId = room.session_id;
    this.offerer = !!room.offerer;
    this.polite = !this.offerer;
    this.closed = false;
    this.remoteStream = new MediaStream();
    this._makingOffer = false;
    this._ignoreOffer = false;
    this._settingRemoteAnswerPending = false;
    this._pendingCandidates = [];
    this._queue = Promise.resolve();
    this._negotiated = false; // a first offer/answer exchange has completed
    this._peerPresent = (room.participants || []).length > 0;
    this._started = false;
    this._lastReported = null;
    this._watchdog = null;
    /** Offerer: how long after an offer the connection may take before an ICE restart. */
    this.connectTimeoutMs = options.connectTimeoutMs || 10000;
    /** The recorder's id while the session is recorded; its signals go to `recorder`, never to `pc`. */
    this.recorderId = client.recorderOf(this.sessionId) || null;
    /** The send-only connection answering the recorder (a RecorderLink), or null. */
    this.recorder = null;
    this._recorders = new Set(this.recorderId ? [this.recorderId] : []); // every recorder seen
    this._recorderQueue = Promise.resolve();

    this._pcConfig = { ...(options.rtcConfig || {}), iceServers: room.ice_servers || [] };
    const pc = new RTCPeerConnection(this._pcConfig);
    this.pc = pc;

    pc.onicecandidate = ({ candidate }) => {
      if (!candidate || this.closed) return;
      this._signal({ type: "ice.candidate", session_id: this.sessionId, candidate: candidateInit(candidate) });
    };

    pc.ontrack = (ev) => {
      const stream = ev.streams && ev.streams[0];
      if (stream && stream !== this.remoteStream) {
        this.remoteStream = stream;
      } else if (!this.remoteStream.getTracks().includes(ev.track)) {
        this.remoteStream.addTrack(ev.track);
      }
      this._emit("track", ev);
      this._emit("remotestream", this.remoteStream);
    };

    pc.onnegotiationneeded = () => {
      if (!this._mayOffer()) return;
      this._offer();
    };

    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      if (this.closed) return;
      this._emit("connectionstatechange", state);
      if (state !== "new" && state !== "closed" && state !== this._lastReported) {
        this._lastReported = state;
        this._signal({ type: "media.state", session_id: this.sessionId, state });
      }
      if (state === "failed" && this.offerer) this.restartIce();
    };

    this._unsubscribe = [
      client.on("sdp.offer", (m) => this._onRelay(m)),
      client.on("sdp.answer", (m) => this._onRelay(m)),
      client.on("ice.candidate", (m) => this._onRelay(m)),
      client.on("participant.joined", (m) => {
        if (m.session_id !== this.sessionId) return;
        const wasStarted = this._started;
        this._peerPresent = true;
        if (!this.offerer) return;
        if (!wasStarted) this.start();
        else this.renegotiate({ iceRestart: pc.connectionState !== "connected" });
      }),
      client.on("participant.left", (m) => {
        if (m.session_id === this.sessionId) this._peerPresent = false;
      }),
      client.on("recording.started", (m) => {
        if (m.session_id !== this.sessionId || this.closed) return;
        this.recorderId = m.recorder_id;
        this._recorders.add(m.recorder_id);
        this._emit("recording", { active: true, recorder_id: m.recorder_id });
      }),
      client.on("recording.stopped", (m) => {
        if (m.session_id !== this.sessionId || this.closed) return;
        this.recorderId = null;
        this._closeRecorder();
        this._emit("recording", { active: false, reason: m.reason });
      }),
      ...this._rejoinListeners(client),
    ];

    if (options.localStream) this.addStream(options.localStream);
    // Queue the first offer after the tracks are in (negotiationneeded is async).
    if (this.offerer && this._peerPresent) queueMicrotask(() => this.start());
  }

  /** The connection state (`RTCPeerConnection.connectionState`). */
  get connectionState() {
    return this.pc.connectionState;
  }

  /**
   * Adds every track of `stream` to the connection (before or during the call). The recorder's
   * connection, if any, switches to the new tracks of the kinds it already sends.
   */
  addStream(stream) {
    this.localStream = stream;
    for (const track of stream.getTracks()) {
      const sender = this.pc.getSenders().find((s) => s.track && s.track.kind === track.kind);
      if (sender) sender.replaceTrack(track);
      else this.pc.addTrack(track, stream);
    }
    if (this.recorder) this.recorder.useStream(stream);
  }

  /** Offerer: sends the first offer (called automatically once the other participant is present). */
  start() {
    if (this.closed || !this.offerer || this._started) return;
    this._started = true;
    // Make sure there is something to receive even without local media.
    const kinds = new Set(this.pc.getTransceivers().map((t) => t.receiver.track.kind));
    for (const kind of ["audio", "video"]) {
      if (!kinds.has(kind)) this.pc.addTransceiver(kind, { direction: "recvonly" });
    }
    this._offer();
  }

  /** Sends a new offer now (after the other side came back, or to change media). */
  renegotiate({ iceRestart = false } = {}) {
    if (this.closed) return;
    if (!this._started && this.offerer) return this.start();
    if (iceRestart) this.pc.restartIce();
    this._offer();
  }

  /**
   * Restarts ICE: a new offer with fresh credentials (perfect negotiation resolves collisions).
   * With TURN servers, fresh ones are fetched first (`ice.servers`): the room's may have expired.
   */
  restartIce() {
    if (this.closed) return;
    const restart = () => {
      if (this.closed) return;
      this.pc.restartIce(); // fires negotiationneeded
      if (this._mayOffer()) this._offer();
    };
    if (!this._usesTurn()) return restart();
    this.client
      .iceServers()
      .then((servers) => this._useIceServers(servers))
      .catch(() => {}) // keep the servers we have
      .then(restart);
  }

  /** The client's "rejoined" (this session) and "resumed" events: fresh ICE servers, renegotiation. */
  _rejoinListeners(client) {
    return [
      client.on("rejoined", ({ room }) => {
        if (this.closed || !room || room.session_id !== this.sessionId) return;
        this._useIceServers(room.ice_servers);
        this.rejoined(room);
      }),
      client.on("resumed", ({ ice_servers }) => {
        if (!this.closed) this._useIceServers(ice_servers);
      }),
    ];
  }

  _usesTurn() {
    return (this._pcConfig.iceServers || []).some((s) => s.credential);
  }

  /** Switches to `servers` (fresh TURN credentials) for the next ICE gathering. */
  _useIceServers(servers) {
    if (!servers || !servers.length) return;
    this._pcConfig = { ...this._pcConfig, iceServers: servers };
    try {
      this.pc.setConfiguration(this._pcConfig);
    } catch (err) {
      this._emit("error", err);
    }
  }

  /**
   * After this client's own `resume` failed and it joined the room again:
   * anything relayed meanwhile is lost, so the offerer offers again.
   */
  rejoined(room) {
    if (room && room.participants && room.participants.length) this._peerPresent = true;
    if (this.offerer && this._peerPresent) this.renegotiate({ iceRestart: this.pc.connectionState !== "connected" });
  }

  /** Total `bytesReceived` over the `inbound-rtp` stats (0 once closed). */
  async inboundBytes() {
    if (this.closed) return 0;
    const stats = await this.pc.getStats();
    let total = 0;
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && typeof s.bytesReceived === "number") total += s.bytesReceived;
    });
    return total;
  }

  /** Closes the peer connection (and the recorder's) and stops listening to the signaling client. Idempotent. */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this._watchdog);
    for (const off of this._unsubscribe) off();
    this._closeRecorder();
    this._pendingCandidates = [];
    try {
      this.pc.close();
    } catch {
      /* already closed */
    }
  }

  _mayOffer() {
    if (this.closed || !this._peerPresent) return false;
    // The offerer offers once started; the answerer only renegotiates after
    // the first exchange (its tracks ride on the first answer).
    return this.offerer ? this._started : this._negotiated;
  }

  async _offer() {
    if (this._makingOffer || this.closed) return;
    if (this.pc.signalingState !== "stable") return; // answering, or an offer is out: negotiationneeded comes back
    try {
      this._makingOffer = true;
      await this.pc.setLocalDescription();
      if (this.closed) return;
      const desc = this.pc.localDescription;
      if (desc && desc.type === "offer") {
        this._signal({ type: "sdp.offer", session_id: this.sessionId, sdp: desc.sdp });
        this._armWatchdog();
      }
    } catch (err) {
      this._fail(err);
    } finally {
      this._makingOffer = false;
    }
  }

  /**
   * Offerer: if the connection is not up some seconds after an offer (the
   * offer or its answer was lost, or ICE found no path), offer again with an
   * ICE restart instead of waiting for `failed`.
   */
  _armWatchdog() {
    if (!this.offerer) return;
    clearTimeout(this._watchdog);
    this._watchdog = setTimeout(async () => {
      if (this.closed || !this._peerPresent || this.pc.connectionState === "connected") return;
      try {
        if (this.pc.signalingState === "have-local-offer") await this.pc.setLocalDescription({ type: "rollback" });
      } catch (err) {
        this._fail(err);
        return;
      }
      this.renegotiate({ iceRestart: true });
    }, this.connectTimeoutMs);
  }

  _onRelay(m) {
    if (m.session_id !== this.sessionId || this.closed) return;
    if (this._recorders.has(m.from)) {
      // The recorder's own connection: never the call's.
      this._recorderQueue = this._recorderQueue.then(() => this._handleRecorder(m)).catch((err) => this._fail(err));
      return;
    }
    // One at a time, in arrival order.
    this._queue = this._queue.then(() => this._handle(m)).catch((err) => this._fail(err));
  }

  /** A signal from the recorder: an offer (re)starts the send-only connection; candidates feed it. */
  async _handleRecorder(m) {
    if (this.closed || m.from !== this.recorderId) return; // a recorder that has left
    if (m.type === "sdp.offer") {
      this._closeRecorder(); // a new offer replaces the connection
      this.recorder = new RecorderLink(this, m.from);
      await this.recorder.answer(m.sdp, this.localStream);
    } else if (m.type === "ice.candidate" && this.recorder && this.recorder.recorderId === m.from) {
      await this.recorder.addCandidate(m.candidate);
    }
    // The recorder always offers, so an sdp.answer from it is stale: ignored.
  }

  _closeRecorder() {
    if (this.recorder) this.recorder.close();
    this.recorder = null;
  }

  async _handle(m) {
    if (this.closed) return;
    const pc = this.pc;
    if (m.type === "ice.candidate") {
      if (!pc.remoteDescription) {
        this._pendingCandidates.push(m.candidate);
        return;
      }
      await this._addCandidate(m.candidate);
      return;
    }
    const type = m.type === "sdp.offer" ? "offer" : "answer";
    const readyForOffer = !this._makingOffer && (pc.signalingState === "stable" || this._settingRemoteAnswerPending);
    const collision = type === "offer" && !readyForOffer;
    this._ignoreOffer = !this.polite && collision;
    if (this._ignoreOffer) return;
    if (type === "answer" && pc.signalingState !== "have-local-offer") return; // a stale answer
    this._settingRemoteAnswerPending = type === "answer";
    try {
      await pc.setRemoteDescription({ type, sdp: m.sdp }); // rolls back our own offer if polite
    } finally {
      this._settingRemoteAnswerPending = false;
    }
    if (this.closed) return;
    const buffered = this._pendingCandidates;
    this._pendingCandidates = [];
    for (const c of buffered) await this._addCandidate(c);
    if (type === "offer") {
      await pc.setLocalDescription();
      if (this.closed) return;
      this._signal({ type: "sdp.answer", session_id: this.sessionId, sdp: pc.localDescription.sdp });
    }
    this._negotiated = true;
  }

  async _addCandidate(c) {
    try {
      await this.pc.addIceCandidate(c);
    } catch (err) {
      if (!this._ignoreOffer) console.warn("parley: a remote ICE candidate was refused", err);
    }
  }

  _signal(msg) {
    try {
      this.client.send(msg);
    } catch (err) {
      this._fail(err);
    }
  }

  _fail(err) {
    if (this.closed) return;
    console.warn("parley: call", err);
    this._emit("error", err);
  }
}

/** An RTCIceCandidate as the protocol's `IceCandidate` (W3C `RTCIceCandidateInit` names). */
function candidateInit(candidate) {
  const init = candidate.toJSON ? candidate.toJSON() : candidate;
  const out = { candidate: init.candidate || "" };
  if (init.sdpMid != null) out.sdpMid = init.sdpMid;
  if (init.sdpMLineIndex != null) out.sdpMLineIndex = init.sdpMLineIndex;
  if (init.usernameFragment != null) out.usernameFragment = init.usernameFragment;
  return out;
}

/** The vendored `livekit-client` (sdk/js/vendor/livekit-client/). */
export const LIVEKIT_CLIENT_VERSION = "2.23.0";

/**
 * Starts the call of a joined room, whichever backend carries its media:
 * peer to peer (a {@link Call}) or, when the `room.join` ack says
 * `media.backend == "livekit"`, a {@link LiveKitCall} connected to the
 * LiveKit server with the ack's token. Both have the same API: `on(...)`
 * with "track", "remotestream", "connectionstatechange", "error";
 * `addStream`, `connectionState`, `rejoined`, `close`.
 *
 * @param {SignalingClient} client
 * @param {object} room the `room.join` result
 * @param {{localStream?: MediaStream, rtcConfig?: RTCConfiguration, connectTimeoutMs?: number, livekitModule?: string}} [options]
 *   `livekitModule`: another URL of the `livekit-client` ES module (default: the vendored one next to this file)
 * @returns {Promise<Call | LiveKitCall>}
 */
Call.forRoom = async function forRoom(client, room, options = {}) {
  const media = room && room.media;
  if (!media || media.backend !== "livekit") return new Call(client, room, options);
  const url = options.livekitModule || new URL("./vendor/livekit-client/livekit-client.esm.mjs", import.meta.url).href;
  const lk = await import(url);
  const call = new LiveKitCall(client, room, lk, options);
  await call.connect();
  return call;
};

/**
 * A session's call through a LiveKit SFU (`PARLEY_MEDIA=livekit`): connects
 * with the `room.join` ack's `media.url` and `media.token`, publishes the
 * local stream's tracks, and gathers the other participant's tracks into
 * `remoteStream`. No SDP or ICE goes through Parley's signaling; the
 * connection state is still reported as `media.state` (M11). Recording is
 * LiveKit's egress (no recorder connection). Same events as {@link Call}.
 */
export class LiveKitCall extends Emitter {
  /**
   * @param {SignalingClient} client
   * @param {object} room the `room.join` result, with `media: {backend: "livekit", url, token}`
   * @param {object} lk the `livekit-client` module
   * @param {{localStream?: MediaStream}} [options]
   */
  constructor(client, room, lk, options = {}) {
    super();
    this.client = client;
    this.sessionId = room.session_id;
    this.media = room.media;
    this.closed = false;
    this.remoteStream = new MediaStream();
    this.localStream = options.localStream || null;
    this._lk = lk;
    this._state = "new";
    this._lastReported = null;
    this.room = new lk.Room();
    const E = lk.RoomEvent;
    this.room.on(E.TrackSubscribed, (track) => {
      const t = track.mediaStreamTrack;
      if (t && !this.remoteStream.getTracks().includes(t)) this.remoteStream.addTrack(t);
      this._emit("track", { track: t, streams: [this.remoteStream] });
      this._emit("remotestream", this.remoteStream);
    });
    this.room.on(E.TrackUnsubscribed, (track) => {
      const t = track.mediaStreamTrack;
      if (t) this.remoteStream.removeTrack(t);
    });
    this.room.on(E.ConnectionStateChanged, (s) => this._report(s === "signalReconnecting" ? "reconnecting" : s));
    this.room.on(E.Disconnected, () => this._report("disconnected"));
  }

  /** Connects to the LiveKit room and publishes the local stream, if any. */
  async connect() {
    try {
      await this.room.connect(this.media.url, this.media.token);
    } catch (err) {
      this._report("failed");
      this._emit("error", err);
      throw err;
    }
    if (this.localStream) await this.addStream(this.localStream);
  }

  /** The connection state: `new`, `connecting`, `connected`, `reconnecting`, `disconnected`, `failed`. */
  get connectionState() {
    return this._state;
  }

  /** Publishes every track of `stream` (before or during the call). */
  async addStream(stream) {
    this.localStream = stream;
    if (this._state !== "connected") return;
    const published = new Set(
      [...this.room.localParticipant.trackPublications.values()].map((p) => p.track && p.track.mediaStreamTrack),
    );
    for (const track of stream.getTracks()) {
      if (!published.has(track)) await this.room.localParticipant.publishTrack(track);
    }
  }

  /** Nothing to renegotiate: LiveKit reconnects on its own. */
  rejoined() {}

  /** Leaves the LiveKit room. Idempotent. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.room.disconnect();
  }

  _report(state) {
    this._state = state;
    if (this.closed) return;
    this._emit("connectionstatechange", state);
    const wire = { connected: "connected", reconnecting: "disconnected", disconnected: "disconnected", failed: "failed", connecting: "connecting" }[state];
    if (wire && wire !== this._lastReported) {
      this._lastReported = wire;
      try {
        this.client.send({ type: "media.state", session_id: this.sessionId, state: wire });
      } catch (err) {
        this._emit("error", err);
      }
    }
  }
}

/**
 * The send-only peer connection a participant keeps with the recorder while
 * the session is recorded (docs/protocol.md §8.14): it answers the
 * recorder's receive-only offer with the call's local tracks, and its answer
 * and candidates go `to` the recorder. Made by Call; one per recorder offer.
 */
export class RecorderLink {
  constructor(call, recorderId) {
    this.call = call;
    this.recorderId = recorderId;
    this.closed = false;
    this.pc = new RTCPeerConnection(call._pcConfig);
    this.pc.onicecandidate = ({ candidate }) => {
      if (!candidate || this.closed) return;
      this._send({ type: "ice.candidate", candidate: candidateInit(candidate) });
    };
  }

  /** Answers the recorder's offer, sending `stream`'s tracks on the m-lines it offered to receive. */
  async answer(sdp, stream) {
    await this.pc.setRemoteDescription({ type: "offer", sdp });
    // addTrack reuses the offer's transceivers: against a recvonly offer the answer is sendonly.
    if (stream) for (const track of stream.getTracks()) this.pc.addTrack(track, stream);
    await this.pc.setLocalDescription();
    if (this.closed) return;
    this._send({ type: "sdp.answer", sdp: this.pc.localDescription.sdp });
  }

  async addCandidate(candidate) {
    if (this.closed) return;
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (err) {
      console.warn("parley: a recorder ICE candidate was refused", err);
    }
  }

  /** Sends `stream`'s tracks instead, for the kinds already being sent. */
  useStream(stream) {
    for (const sender of this.pc.getSenders()) {
      const track = sender.track && stream.getTracks().find((t) => t.kind === sender.track.kind);
      if (track) sender.replaceTrack(track).catch((err) => console.warn("parley: recorder track", err));
    }
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    try {
      this.pc.close();
    } catch {
      /* already closed */
    }
  }

  _send(msg) {
    if (!this.closed) this.call._signal({ ...msg, session_id: this.call.sessionId, to: this.recorderId });
  }
}

/** The number of minor-unit digits of an ISO 4217 currency (2 for EUR, 0 for JPY, 3 for KWD), from `Intl`. */
export function currencyDigits(currency) {
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
  } catch {
    return 2;
  }
}

/**
 * Formats money for people with `Intl.NumberFormat` in `locale` (default: the
 * browser's), e.g. "€30.00" in en-US, "30,00 €" in de-DE. Integer minor units
 * are never passed through floating point rounding beyond the currency's digits.
 */
export function formatMoney(money, locale) {
  if (!money) return "";
  const digits = currencyDigits(money.currency);
  const major = Math.trunc(money.amount_minor) / 10 ** digits;
  try {
    return new Intl.NumberFormat(locale, {
      style: "currency",
      currency: money.currency,
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    }).format(major);
  } catch {
    return `${money.currency} ${major.toFixed(digits)}`;
  }
}

/** The amount in major units as a plain decimal string for a form field: 3000 EUR → "30.00", 500 JPY → "500". */
export function majorUnits(money) {
  if (!money) return "";
  const digits = currencyDigits(money.currency);
  const minor = Math.trunc(money.amount_minor);
  const sign = minor < 0 ? "-" : "";
  const abs = Math.abs(minor);
  if (digits === 0) return `${sign}${abs}`;
  return `${sign}${Math.floor(abs / 10 ** digits)}.${String(abs % 10 ** digits).padStart(digits, "0")}`;
}

/**
 * Money from an amount typed in major units ("30", "30.5", "30,50", "1 200.00") in `currency`: `{amount_minor,
 * currency}`, or null when the text is not a non-negative amount with at most the currency's decimals.
 */
export function moneyFromMajor(text, currency) {
  const clean = String(text ?? "").trim().replace(/[\s\u00a0\u202f']/g, "");
  const m = /^(\d+)(?:[.,](\d*))?$/.exec(clean);
  if (!m) return null;
  const digits = currencyDigits(currency);
  const frac = m[2] || "";
  if (frac.length > digits) return null;
  const minor = Number(m[1]) * 10 ** digits + Number(frac.padEnd(digits, "0") || 0);
  if (!Number.isSafeInteger(minor)) return null;
  return { amount_minor: minor, currency };
}
