// Parley web app: the entry module. Sign-in, the signaling client, instant
// calls, the in-call view and the summary with the review. The other screens
// are modules of their own: directory.js (seeker: search, profile, booking),
// bookings.js (both: My sessions), desk.js (consultant: profile, prices,
// availability, earnings), disputes.js (both: disputes), escrow.js (packages
// and milestones), moderator.js (the moderator's disputes). DOM contract:
// web-demo/README.md.

import { SignalingClient, Call, ParleyError, ErrorCode, ClientErrorCode } from "/sdk/js/parley.js";
import { api, state, hooks, serverNow, syncClock, loadPolicy } from "./state.js";
import { $, h, show, setStatus, showError, clearError, showErr, setAvatar, currentScreen, busy } from "./ui.js";
import { formatMoney, priceText, clock, duration, dateTime } from "./format.js";
import { initDirectory, refreshDirectory, startDirectoryPolling, stopDirectoryPolling, openProfile } from "./directory.js";
import { refreshBookings, onReminder, onBookingUpdated, forgetBookings, rememberName, nameOf } from "./bookings.js";
import { showRecap } from "./recap.js";
import { initDesk, loadDesk, refreshEarnings, refreshAfterSession, refreshDeskExtras } from "./desk.js";
import { initDisputes, refreshDisputes, forgetDisputes, disputedSessions, disputeButton } from "./disputes.js";
import { initEscrow, refreshEngagements, startEngagementPolling, stopEngagementPolling } from "./escrow.js";
import { initModerator, refreshModerator } from "./moderator.js";

/** Assumed free window if the server's terms could not be read (the `room.join` ack corrects it). */
const DEFAULT_FREE_WINDOW_SECS = 600;
/**
 * Bookings come pushed (`booking.updated`); this slow re-read is only a
 * fallback (and moves "starts in …" texts along).
 */
const BOOKINGS_FALLBACK_MS = 60000;
/** The consultant desk's reviews and numbers are re-read this often while it shows. */
const DESK_EXTRAS_MS = 15000;
/** sessionStorage keys: the sign-in, and the session being talked in (a reload rejoins it). */
const LOGIN_KEY = "parley.login";
const SESSION_KEY = "parley.session";

Object.assign(state, {
  // Seeker ringing: {callId, sessionId, consultant, deadline}
  outgoing: null,
  // Consultant ringing: {callId, sessionId, seeker, deadline}
  incoming: null,
  ringTimer: null,
  // In a session
  session: null,
  localStream: null,
  call: null,
  // The session the summary is about: {id, peer}
  lastSession: null,
  // Consultant desk poll (reviews, numbers)
  deskTimer: null,
  // The slow fallback re-read of the bookings
  bookingsTimer: null,
});

function home() {
  if (!state.user) return show("login-view");
  if (state.user.role === "moderator") {
    show("moderator-home");
    refreshModerator();
    return;
  }
  if (state.user.role === "consultant") {
    show("consultant-home");
    refreshEarnings();
    refreshBookings();
  } else {
    show("seeker-home");
    refreshDirectory({ keep: true });
    refreshBookings();
    refreshReceipts();
  }
  refreshDisputes();
  refreshEngagements();
}

// ---------------------------------------------------------------------------
// Sign in and out

async function signIn(userId, name, role) {
  clearError();
  const submit = $("#login-submit");
  submit.disabled = true;
  submit.textContent = "Signing in…";
  try {
    const login = await api.devLogin(userId, name, role);
    sessionStorage.setItem(LOGIN_KEY, JSON.stringify({ token: login.token, user: login.user }));
    await startSession(login.token, login.user);
  } catch (err) {
    sessionStorage.removeItem(LOGIN_KEY);
    if (err instanceof ParleyError && err.code === ErrorCode.MISSING_FIELD) {
      showError(err.code, "That user id is new: enter a display name and choose a role to create the account.");
      $("#login-name").focus();
    } else if (err instanceof ParleyError && err.code === ErrorCode.INVALID_FIELD) {
      showError(err.code, `Check the form: ${err.message}`);
    } else {
      showErr(err);
    }
  } finally {
    submit.disabled = false;
    submit.textContent = "Sign in";
  }
}

async function startSession(token, user) {
  const client = await SignalingClient.connect(api.signalUrl(), token);
  state.token = token;
  state.user = client.user || user;
  state.client = client;
  wireClient(client);
  document.body.dataset.role = state.user.role;
  document.body.dataset.user = state.user.id;
  $("#account").hidden = false;
  $("#account-name").textContent = state.user.name;
  $("#account-role").textContent = state.user.role === "consultant" ? "Consultant" : "Seeker";
  await Promise.all([syncClock(), loadPolicy()]);
  clearInterval(state.bookingsTimer);
  state.bookingsTimer = setInterval(() => {
    if (!document.hidden) refreshBookings();
  }, BOOKINGS_FALLBACK_MS);
  if (state.user.role === "consultant") {
    renderPresence(client.presence || "offline");
    loadDesk();
    clearInterval(state.deskTimer);
    state.deskTimer = setInterval(() => {
      if (document.hidden || currentScreen() !== "consultant-home") return;
      refreshDeskExtras();
    }, DESK_EXTRAS_MS);
  } else {
    startDirectoryPolling();
  }
  startEngagementPolling();
  // A reload (or a restored phone tab) in the middle of a session: back into its room.
  const open = readOpenSession();
  if (open) {
    setStatus("Rejoining your call…");
    enterSession(open.id, { peer: open.peer, callId: open.callId });
    return;
  }
  home();
}

function readOpenSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    return saved && saved.user === state.user.id ? saved : null;
  } catch {
    return null;
  }
}

function signOut() {
  stopDirectoryPolling();
  stopEngagementPolling();
  forgetDisputes();
  $("#moderator-dispute").hidden = true;
  clearInterval(state.deskTimer);
  clearInterval(state.bookingsTimer);
  forgetBookings();
  endCallLocally();
  if (state.client) state.client.close();
  state.client = null;
  state.token = null;
  state.user = null;
  state.outgoing = state.incoming = null;
  sessionStorage.removeItem(LOGIN_KEY);
  sessionStorage.removeItem(SESSION_KEY);
  delete document.body.dataset.role;
  delete document.body.dataset.user;
  $("#account").hidden = true;
  clearError();
  setStatus("You're signed out.");
  show("login-view");
}

// ---------------------------------------------------------------------------
// Signaling events

function wireClient(client) {
  client.on("presence.updated", (m) => renderPresence(m.status));
  client.on("call.incoming", onIncoming);
  client.on("call.accepted", (m) => enterSession(m.session_id, { callId: m.call_id }));
  client.on("booking.reminder", onReminder);
  client.on("booking.updated", onBookingUpdated);
  client.on("dispute.updated", () => refreshDisputes());
  client.on("call.ended", onCallEnded);
  client.on("participant.joined", (m) => onPeerPresence(m.session_id, true, m.user));
  client.on("participant.left", (m) => onPeerPresence(m.session_id, false, null, m));
  client.on("session.ended", onSessionEnded);
  client.on("meter.tick", (m) => onMeter(m));
  client.on("meter.free_window_ending", (m) => onMeter(m, { freeWindow: m.free_window_secs }));
  client.on("meter.billing_started", (m) => onMeter(m, { billing: true }));
  client.on("meter.hold_ending", (m) => {
    onMeter(m);
    if (state.session && m.session_id === state.session.id) {
      const warning = $("#hold-warning");
      warning.textContent = `The payment hold runs out in ${duration(m.ends_at_billable_secs - m.billable_secs)}: the call ends then.`;
      warning.hidden = false;
    }
  });
  client.on("error", (m) => console.warn("parley: server error", m.code, m.message));
  client.on("server.shutdown", () => setStatus("Parley is restarting…", { sticky: true }));
  client.on("reconnecting", () => {
    showError("connection_lost", "Reconnecting… Your connection to Parley dropped; we're getting it back.");
    setStatus("Reconnecting…", { sticky: true });
  });
  client.on("resumed", () => {
    clearError("connection_lost");
    clearError(ClientErrorCode.NETWORK);
    setStatus("Connection restored.");
    refreshBookings();
  });
  client.on("resume_failed", async () => {
    clearError("connection_lost");
    clearError(ClientErrorCode.NETWORK);
    setStatus("Connection restored.");
    // Pushes sent while we were away are lost: read the bookings again.
    refreshBookings();
    if (state.user?.role === "consultant") renderPresence(client.presence || "offline");
    // Our missed messages are gone: the SDK rejoins the room of an open
    // session by itself ("rejoined" / "rejoin_failed" below).
    if (!(state.session && !state.session.ended) && (state.outgoing || state.incoming)) {
      // The ringing call may have ended while we were away.
      clearRinging();
      home();
    }
  });
  client.on("rejoined", ({ room }) => {
    if (!state.session || state.session.ended || room.session_id !== state.session.id) return;
    // The call (state.call) takes the fresh ICE servers and renegotiates by itself.
    state.session.peerPresent = room.participants.length > 0;
    applyRoomMeter(room);
    renderPeer();
  });
  client.on("rejoin_failed", ({ session_id, error }) => {
    if (!state.session || state.session.ended || session_id !== state.session.id) return;
    if (error.code === ErrorCode.SESSION_ENDED || error.code === ErrorCode.UNKNOWN_SESSION) {
      showSummary({ reason: "abandoned", bill: null });
    } else showErr(error);
  });
  client.on("closed", (ev) => {
    if (!state.client || state.client !== client) return;
    if (ev.code === 4000) {
      showError(ErrorCode.REPLACED, "You opened Parley somewhere else, so this window stopped. Reload to use it here.");
    } else if (ev.code !== 1000) {
      showError("connection_lost", "We lost the connection to Parley and couldn't get it back. Reload the page to continue.");
    }
    setStatus("");
  });
}

// ---------------------------------------------------------------------------
// Consultant: availability toggle, incoming calls

function renderPresence(status) {
  const btn = $("#availability-toggle");
  btn.setAttribute("aria-pressed", status === "offline" ? "false" : "true");
  $("#availability-state .dot").dataset.presence = status;
  $("#availability-text").textContent =
    status === "available"
      ? "Available — seekers can call you now."
      : status === "busy"
        ? "Busy — you're in a call."
        : "Offline — nobody can call you.";
}

async function toggleAvailability() {
  const btn = $("#availability-toggle");
  const want = btn.getAttribute("aria-pressed") !== "true";
  btn.disabled = true;
  try {
    await state.client.setAvailable(want);
    clearError();
  } catch (err) {
    showErr(err);
  } finally {
    btn.disabled = false;
  }
}

function onIncoming(m) {
  rememberName(m.seeker.id, m.seeker.name);
  state.incoming = { callId: m.call_id, sessionId: m.session_id, seeker: m.seeker, deadline: m.ring_deadline_ms };
  $("#incoming-name").textContent = m.seeker.name;
  setAvatar($("#incoming-avatar"), m.seeker.name);
  show("incoming-call", { focus: false });
  $("#accept-call").focus();
  startRingTimer($("#incoming-timer"), m.ring_deadline_ms, "Rings for");
  prepareMedia(); // ask for the camera early
}

async function acceptCall() {
  if (!state.incoming) return;
  const { callId } = state.incoming;
  $("#accept-call").disabled = $("#decline-call").disabled = true;
  try {
    await prepareMedia();
    await state.client.accept(callId);
  } catch (err) {
    showErr(err);
    clearRinging();
    home();
  } finally {
    $("#accept-call").disabled = $("#decline-call").disabled = false;
  }
}

async function declineCall() {
  if (!state.incoming) return;
  const { callId } = state.incoming;
  try {
    await state.client.decline(callId);
  } catch (err) {
    if (err.code !== ErrorCode.CALL_NOT_RINGING) showErr(err);
  }
  clearRinging();
  stopLocalMedia();
  home();
}

// ---------------------------------------------------------------------------
// Ringing

async function cancelCall() {
  if (!state.outgoing) return;
  const { callId } = state.outgoing;
  $("#cancel-call").disabled = true;
  try {
    await state.client.cancel(callId);
  } catch (err) {
    if (err.code !== ErrorCode.CALL_NOT_RINGING) showErr(err);
  } finally {
    $("#cancel-call").disabled = false;
  }
}

function startRingTimer(el, deadlineMs, label) {
  clearInterval(state.ringTimer);
  const tick = () => {
    const left = Math.max(0, Math.ceil((deadlineMs - serverNow()) / 1000));
    el.textContent = `${label} · ${left} s left`;
  };
  tick();
  state.ringTimer = setInterval(tick, 1000);
}

function clearRinging() {
  clearInterval(state.ringTimer);
  state.outgoing = null;
  state.incoming = null;
}

function onCallEnded(m) {
  const outgoing = state.outgoing && state.outgoing.callId === m.call_id ? state.outgoing : null;
  const incoming = state.incoming && state.incoming.callId === m.call_id ? state.incoming : null;
  if (!outgoing && !incoming) return;
  clearRinging();
  if (outgoing) {
    const name = outgoing.consultant.name;
    const words = {
      declined: `${name} declined the call${m.message ? `: “${m.message}”` : "."} Your card hold was released.`,
      timeout: `${name} didn't answer. Your card hold was released — try again later or pick someone else.`,
      consultant_unavailable: `${name} went offline before answering. Your card hold was released.`,
      server_shutdown: "Parley restarted while the call was ringing. Nothing was charged — please call again.",
      seeker_gone: "The call ended because your connection dropped. Nothing was charged.",
    };
    if (m.reason === "cancelled") setStatus("Call cancelled. Your card hold was released.");
    else showError(m.reason, words[m.reason] || "The call ended before it started. Nothing was charged.");
    stopLocalMedia();
    home();
  } else {
    const who = incoming.seeker.name;
    const words = {
      cancelled: `${who} hung up before you answered.`,
      timeout: `You missed a call from ${who}.`,
      seeker_gone: `${who}'s connection dropped before you answered.`,
      declined: "Call declined.",
    };
    setStatus(words[m.reason] || "The call ended.");
    stopLocalMedia();
    home();
  }
}

// ---------------------------------------------------------------------------
// Local media

let mediaPromise = null;
async function prepareMedia() {
  if (state.localStream) return state.localStream;
  if (mediaPromise) return mediaPromise;
  mediaPromise = (async () => {
    if (!navigator.mediaDevices?.getUserMedia) return null;
    try {
      return await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: { ideal: 1280 }, height: { ideal: 720 } } });
    } catch (err) {
      console.warn("camera", err);
      try {
        const audio = await navigator.mediaDevices.getUserMedia({ audio: true });
        setStatus("We couldn't use your camera; the call will be audio only.");
        return audio;
      } catch {
        setStatus("We couldn't use your camera or microphone; you'll only see and hear the other side.");
        return null;
      }
    }
  })();
  try {
    state.localStream = await mediaPromise;
    $("#local-video").srcObject = state.localStream;
    return state.localStream;
  } finally {
    mediaPromise = null;
  }
}

function stopLocalMedia() {
  if (state.localStream) for (const t of state.localStream.getTracks()) t.stop();
  state.localStream = null;
  $("#local-video").srcObject = null;
}

// ---------------------------------------------------------------------------
// Seeker: calling, receipts

let receiptsKey = "";
let receiptsSeq = 0;

async function refreshReceipts() {
  if (!state.token || state.user?.role !== "seeker") return;
  const seq = ++receiptsSeq;
  try {
    const [receipts, { bookings }] = await Promise.all([api.receipts(state.token), api.bookings(state.token)]);
    const booked = new Set(bookings.map((b) => b.session_id));
    const shown = receipts.slice(0, 8);
    const disputed = disputedSessions();
    // Redraw only on a change (a button must not be replaced under the pointer).
    const key = JSON.stringify([shown, [...booked], [...disputed]]);
    const names = await Promise.all(shown.map((r) => nameOf(r.consultant_id, true)));
    if (seq !== receiptsSeq) return; // a newer refresh is under way
    // A charge is captured in the background: look again while one is being settled.
    const settling = shown.some((r) => r.outcome === "charged" && r.charged.amount_minor === 0);
    if (settling && currentScreen() === "seeker-home") setTimeout(refreshReceipts, 1500);
    if (key === receiptsKey && $("#receipts").childElementCount) return;
    receiptsKey = key;
    const list = $("#receipts");
    list.replaceChildren(
      ...shown.map((r, i) => {
        const li = document.createElement("li");
        li.dataset.sessionId = r.session_id;
        const what = booked.has(r.session_id) ? "Booked session" : "Call";
        let outcome;
        if (r.outcome === "charged")
          outcome = r.charged.amount_minor > 0 ? `Charged ${formatMoney(r.charged)}` : "Charged — the payment is being settled";
        else if (r.outcome === "free" && r.billable_secs === 0) outcome = "Not answered or not started — hold released, nothing charged";
        else if (r.outcome === "free") outcome = `Free (within the free window) — hold of ${formatMoney(r.hold)} released`;
        else if (booked.has(r.session_id)) outcome = `${formatMoney(r.hold)} on hold for the session`;
        else outcome = `Being settled — ${formatMoney(r.hold)} on hold`;
        const a = document.createElement("span");
        a.textContent = `${what} with ${names[i]} · ${outcome}`;
        const b = document.createElement("span");
        b.className = "muted";
        b.textContent = dateTime(r.at_ms) + (r.billable_secs ? ` · ${duration(r.billable_secs)} talked` : "");
        const open = document.createElement("button");
        open.type = "button";
        open.className = "btn btn-ghost btn-small receipt-open";
        open.textContent = r.outcome ? "Bill, recap, review" : "Details";
        open.setAttribute("aria-label", `${what} with ${names[i]}: bill, recap and review`);
        open.addEventListener("click", () => openPastSession(r.session_id, { id: r.consultant_id, name: names[i] }));
        li.append(a, b);
        if (r.refunded && r.refunded.amount_minor > 0) {
          li.append(h("span", { class: "receipt-refunded", dataset: { minor: String(r.refunded.amount_minor) } }, `Refunded ${formatMoney(r.refunded)}`));
        }
        if (r.billable_secs || r.outcome === "charged") li.append(open);
        // A charged session may be disputed, once (D1).
        if (r.outcome === "charged" && r.charged.amount_minor > 0 && !disputed.has(r.session_id)) {
          li.append(disputeButton(r.session_id, `the ${what.toLowerCase()} with ${names[i]} on ${dateTime(r.at_ms)}`));
        }
        return li;
      }),
    );
    $("#receipts-empty").hidden = receipts.length > 0;
  } catch (err) {
    console.warn("receipts", err);
  }
}

/** The hold placed for `sessionId`, read back from the seeker's receipts (the server's figure, never a guess). */
async function placedHold(sessionId) {
  for (let i = 0; i < 5; i++) {
    try {
      const r = (await api.receipts(state.token)).find((x) => x.session_id === sessionId);
      if (r) return r.hold;
    } catch (err) {
      console.warn("receipts", err);
    }
    await new Promise((res) => setTimeout(res, 200 * (i + 1)));
  }
  return null;
}

/** The words of the ringing screen about money: the hold placed and the free window. */
function holdDetail(price, hold) {
  if (!price) return "This consultant's calls are free: no card hold.";
  const free = "Nothing is charged if you hang up within the free window: the hold is then released in full.";
  if (!hold) return `A hold is on your card. ${free}`;
  const held = formatMoney(hold);
  if (price.model === "fixed")
    return `${held} is on hold on your card. ${free} Past it, the session costs ${held}.`;
  const minutes = Math.round(hold.amount_minor / price.amount.amount_minor);
  return `${held} is on hold on your card (${formatMoney(price.amount)} a minute × ${minutes} minutes, the longest a call may last). ${free} Past it you pay ${formatMoney(price.amount)} per started minute, at most ${held}.`;
}

async function placeCall(consultant) {
  clearError();
  const pm = $("#payment-method").value;
  const buttons = document.querySelectorAll(".call-now");
  buttons.forEach((b) => (b.disabled = true));
  try {
    await prepareMedia();
    const ringing = await state.client.call(consultant.id, pm, { record: $("#record-request").checked });
    state.outgoing = {
      callId: ringing.call_id,
      sessionId: ringing.session_id,
      consultant,
      deadline: ringing.ring_deadline_ms,
    };
    $("#outgoing-name").textContent = consultant.name;
    setAvatar($("#outgoing-avatar"), consultant.name);
    $("#outgoing-call").dataset.sessionId = ringing.session_id;
    const detail = $("#outgoing-detail");
    detail.textContent = consultant.price ? "Placing the hold on your card…" : holdDetail(null);
    delete detail.dataset.holdMinor;
    show("outgoing-call", { focus: false });
    $("#cancel-call").focus();
    startRingTimer($("#outgoing-timer"), ringing.ring_deadline_ms, "Ringing");
    if (consultant.price) {
      const hold = await placedHold(ringing.session_id);
      if (state.outgoing && state.outgoing.sessionId === ringing.session_id) {
        state.outgoing.hold = hold;
        detail.textContent = holdDetail(consultant.price, hold);
        if (hold) detail.dataset.holdMinor = String(hold.amount_minor);
      }
    }
  } catch (err) {
    stopLocalMedia();
    showErr(err, { consultantName: consultant.name });
    refreshDirectory({ keep: true });
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    if (currentScreen() === "seeker-home") refreshDirectory({ keep: true });
  }
}

// ---------------------------------------------------------------------------
// In call

/**
 * Enters the room of `sessionId`: an accepted instant call, a booked session
 * whose room is open, or the open session of this tab after a reload.
 */
async function enterSession(sessionId, { callId = null, peer = null } = {}) {
  if (state.session && state.session.id === sessionId && !state.session.ended) return show("call-view", { focus: false });
  if (state.outgoing && state.outgoing.sessionId === sessionId) peer = state.outgoing.consultant;
  if (state.incoming && state.incoming.sessionId === sessionId) peer = state.incoming.seeker;
  const saved = readOpenSession();
  const hold = state.outgoing?.sessionId === sessionId ? (state.outgoing.hold ?? null) : saved?.id === sessionId ? saved.hold : null;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({ id: sessionId, callId, peer, hold, user: state.user.id }));
  clearRinging();
  endCallLocally();
  state.session = {
    id: sessionId,
    callId,
    peer,
    peerPresent: false,
    freeWindow: state.policy?.free_window_secs ?? DEFAULT_FREE_WINDOW_SECS,
    billable: 0, // local estimate, re-synced by meter events
    lastMeterSecs: 0,
    billing: false,
    ended: false,
    timer: null,
    mediaState: "new",
    // The price and hold of this session, when known (the seeker's view).
    price: state.user.role === "seeker" ? (peer?.price ?? null) : state.price,
    hold,
  };
  $("#free-window-choice").hidden = true;
  $("#hold-warning").hidden = true;
  $("#recording-indicator").hidden = !state.client.recorderOf(sessionId);
  const view = $("#call-view");
  view.dataset.sessionId = sessionId;
  $("#call-peer-name").textContent = peer?.name || "your consultant";
  setAvatar($("#call-avatar"), peer?.name || "?");
  $("#remote-video").srcObject = null;
  $("#mute-toggle").setAttribute("aria-pressed", "false");
  $("#camera-toggle").setAttribute("aria-pressed", "false");
  $("#meter-billing").hidden = true;
  $("#meter-countdown").hidden = false;
  const price = state.user.role === "seeker" ? peer?.price : state.price;
  $("#meter-billing-price").textContent = price ? priceText(price) : "free call";
  renderMeter();
  renderPeer();
  show("call-view", { focus: false });
  $("#hangup").focus();
  clearError();

  const stream = await prepareMedia();
  $("#local-video").srcObject = stream;
  applyToggles();
  let room;
  try {
    room = await state.client.join(sessionId);
  } catch (err) {
    if (err.code === ErrorCode.SESSION_ENDED || err.code === ErrorCode.UNKNOWN_SESSION || err.code === ErrorCode.FORBIDDEN) {
      sessionStorage.removeItem(SESSION_KEY);
      if (state.session?.id === sessionId) showSummaryFromServer(sessionId);
      return;
    }
    showErr(err);
    if (err.code === ErrorCode.ROOM_NOT_OPEN) {
      endCallLocally();
      state.session = null;
      sessionStorage.removeItem(SESSION_KEY);
      stopLocalMedia();
      home();
    }
    return;
  }
  if (!state.session || state.session.id !== sessionId || state.session.ended) return;
  if (!peer && room.participants[0]) state.session.peer = room.participants[0];
  state.session.peerPresent = room.participants.length > 0;
  applyRoomMeter(room);
  // Peer to peer, or through LiveKit when the server's ack says so (media.backend).
  let call;
  try {
    call = await Call.forRoom(state.client, room, { localStream: stream || undefined });
  } catch (err) {
    showErr(err);
    return;
  }
  if (!state.session || state.session.id !== sessionId || state.session.ended) {
    call.close();
    return;
  }
  state.call = call;
  window.parleyDemo.call = call;
  call.on("remotestream", (s) => {
    const video = $("#remote-video");
    if (video.srcObject !== s) video.srcObject = s;
    video.play?.().catch(() => {});
  });
  call.on("recording", (ev) => {
    $("#recording-indicator").hidden = !ev.active;
    setStatus(ev.active ? "This call is being recorded." : "Recording stopped.");
  });
  call.on("connectionstatechange", (s) => {
    if (!state.session) return;
    state.session.mediaState = s;
    renderPeer();
  });
  state.session.timer = setInterval(meterTick, 1000);
  renderPeer();
}

function onPeerPresence(sessionId, present, user, left) {
  const s = state.session;
  if (!s || s.id !== sessionId) return;
  s.peerPresent = present;
  if (user && !s.peer) s.peer = user;
  if (!present && left) {
    setStatus(
      left.reason === "dropped"
        ? `${s.peer?.name || "The other participant"} lost their connection. Waiting up to ${left.grace_secs} s for them to come back…`
        : `${s.peer?.name || "The other participant"} left. Waiting up to ${left.grace_secs} s…`,
      { sticky: true },
    );
  } else if (present) {
    setStatus(`${s.peer?.name || "The other participant"} is here.`);
  }
  renderPeer();
}

function renderPeer() {
  const s = state.session;
  if (!s) return;
  const name = s.peer?.name || "the other participant";
  $("#call-peer-name").textContent = name;
  let text;
  let dot = "offline";
  if (!s.peerPresent) text = `Waiting for ${name} to join…`;
  else if (s.mediaState === "connected") {
    text = `In a call with ${name}`;
    dot = "available";
  } else if (s.mediaState === "disconnected" || s.mediaState === "failed") {
    text = `Reconnecting the video with ${name}…`;
    dot = "busy";
  } else text = `Connecting to ${name}…`;
  $("#call-peer-label").textContent = text;
  $("#call-peer-dot").dataset.presence = dot;
  $("#call-state-text").textContent = text;
  $("#stage-overlay").hidden = s.mediaState === "connected" && !!$("#remote-video").srcObject;
}

/** Each second: billable time runs locally while both are in the room. */
function meterTick() {
  const s = state.session;
  if (!s || s.ended) return;
  if (s.peerPresent) s.billable += 1;
  renderMeter();
}

/** The `room.join` ack tells the free window and billable time so far. */
function applyRoomMeter(room) {
  const s = state.session;
  if (!s || !room.meter) return;
  s.freeWindow = room.meter.free_window_secs;
  s.billable = room.meter.billable_secs;
  s.lastMeterSecs = room.meter.billable_secs;
  s.billing = room.meter.billing_started;
  renderMeter();
}

function onMeter(m, { freeWindow, billing } = {}) {
  const s = state.session;
  if (!s || s.id !== m.session_id) return;
  if (freeWindow) s.freeWindow = freeWindow;
  s.billable = m.billable_secs;
  s.lastMeterSecs = m.billable_secs;
  if (billing) {
    s.billing = true;
    $("#free-window-choice").hidden = true;
    setStatus("The free window is over: this call is now billed.");
  } else if (freeWindow) {
    setStatus(`${duration(freeWindow - m.billable_secs)} of free time left.`);
    offerChoice(freeWindow - m.billable_secs);
  }
  renderMeter();
}

/** What the session costs past the free window, in words (the seeker's view). */
function costWords(s) {
  const p = s.price;
  if (!p) return "This call is free: nothing is charged either way.";
  if (p.model === "fixed") return `If you continue past the free window, ${formatMoney(p.amount)} is charged.`;
  const cap = s.hold ? `, at most ${formatMoney(s.hold)}` : "";
  return `If you continue past the free window, you pay ${formatMoney(p.amount)} per started minute${cap}.`;
}

/** `F` − 60 s: the seeker chooses to continue (and be charged) or end now, free. */
function offerChoice(secsLeft) {
  const s = state.session;
  if (!s || s.billing) return;
  const box = $("#free-window-choice");
  $("#choice-title").textContent = `Your free time ends in ${duration(secsLeft)}`;
  if (state.user.role === "seeker") {
    $("#choice-text").textContent = `${costWords(s)} End now and nothing is charged.`;
    $("#choice-end").hidden = $("#choice-continue").hidden = false;
  } else {
    $("#choice-text").textContent = "The seeker is asked whether to continue past the free window.";
    $("#choice-end").hidden = true;
    $("#choice-continue").hidden = true;
  }
  box.hidden = false;
  if (state.user.role === "seeker") $("#choice-continue").focus();
}

function renderMeter() {
  const s = state.session;
  if (!s) return;
  const left = Math.max(0, s.freeWindow - s.billable);
  const countdown = $("#meter-countdown");
  countdown.dataset.seconds = String(left);
  $("#meter-countdown-text").textContent = clock(left);
  countdown.hidden = s.billing;
  countdown.classList.toggle("meter-warning", !s.billing && left <= 60);
  $("#meter-billing").hidden = !s.billing;
  const billable = $("#meter-billable");
  billable.dataset.seconds = String(s.lastMeterSecs);
  $("#meter-billable-text").textContent = clock(s.billable);
  // Per minute: the running amount once billing started (started minutes beyond F, at most the hold).
  const amount = $("#meter-amount");
  const p = s.price;
  if (s.billing && p && p.model === "per_minute") {
    let minor = p.amount.amount_minor * Math.ceil(Math.max(0, s.billable - s.freeWindow) / 60);
    if (s.hold) minor = Math.min(minor, s.hold.amount_minor);
    amount.dataset.minor = String(minor);
    $("#meter-amount-text").textContent = formatMoney({ amount_minor: minor, currency: p.amount.currency });
    amount.hidden = false;
  } else amount.hidden = true;
}

function applyToggles() {
  const stream = state.localStream;
  const muted = $("#mute-toggle").getAttribute("aria-pressed") === "true";
  const camOff = $("#camera-toggle").getAttribute("aria-pressed") === "true";
  if (stream) {
    for (const t of stream.getAudioTracks()) t.enabled = !muted;
    for (const t of stream.getVideoTracks()) t.enabled = !camOff;
  }
  $("#mute-toggle").setAttribute("aria-label", muted ? "Unmute microphone" : "Mute microphone");
  $("#camera-toggle").setAttribute("aria-label", camOff ? "Turn camera on" : "Turn camera off");
  $("#local-video").classList.toggle("camera-off", camOff);
}

function toggle(btn) {
  btn.setAttribute("aria-pressed", btn.getAttribute("aria-pressed") === "true" ? "false" : "true");
  applyToggles();
}

async function hangUp() {
  const s = state.session;
  if (!s || s.ended) return;
  const btn = $("#hangup");
  btn.disabled = true;
  try {
    await state.client.endSession(s.id);
  } catch (err) {
    if (err.code === ErrorCode.SESSION_ENDED) showSummary({ reason: "hangup", bill: null });
    else showErr(err);
  } finally {
    btn.disabled = false;
  }
}

function onSessionEnded(m) {
  const s = state.session;
  if (!s || s.id !== m.session_id) return;
  showSummary(m);
}

function endCallLocally() {
  if (state.call) state.call.close();
  state.call = null;
  if (window.parleyDemo) window.parleyDemo.call = null;
  if (state.session) {
    clearInterval(state.session.timer);
    state.session.ended = true;
  }
  $("#remote-video").srcObject = null;
}

const END_REASONS = {
  hangup: null,
  abandoned: "The call ended because a participant lost their connection and didn't come back in time.",
  length_reached: "The call reached its maximum length.",
  hold_used_up: "The call ended because the payment hold was used up.",
  moderator: "A moderator ended the call.",
};

/** After a reload the `session.ended` of a session may be gone: the bill from `GET /v1/sessions/{id}`. */
async function showSummaryFromServer(sessionId) {
  try {
    const d = await api.session(state.token, sessionId);
    const zero = { amount_minor: 0, currency: d.hold?.amount?.currency || "EUR" };
    // A charge not captured yet is still being settled: no amount to state.
    const charge = d.captured || (d.outcome === "charged" ? null : zero);
    showSummary({
      reason: d.end_reason,
      bill: d.outcome ? { outcome: d.outcome, charge, billable_secs: d.billable_secs } : null,
    });
  } catch {
    showSummary({ reason: "abandoned", bill: null });
  }
}

/** A past session from the receipts: its bill, recap and (if not given yet) the review form. */
async function openPastSession(sessionId, peer) {
  state.lastSession = { id: sessionId, peer };
  await showSummaryFromServer(sessionId);
}

function showSummary(m) {
  const s = state.session;
  sessionStorage.removeItem(SESSION_KEY);
  state.lastSession = s ? { id: s.id, peer: s.peer } : state.lastSession;
  const peerName = state.lastSession?.peer?.name || "the other participant";
  endCallLocally();
  stopLocalMedia();
  setStatus("");
  clearError("connection_lost");
  const bill = m.bill;
  const summary = $("#summary");
  summary.dataset.outcome = bill ? bill.outcome : "unknown";
  if (state.lastSession) summary.dataset.sessionId = state.lastSession.id;
  const isSeeker = state.user?.role === "seeker";
  let reason = END_REASONS[m.reason] ?? "";
  if (m.reason === "hangup" && m.ended_by) {
    reason = m.ended_by === state.user?.id ? `You ended the call with ${peerName}.` : `${peerName} ended the call.`;
  }
  $("#summary-reason").textContent = reason;
  if (bill) {
    $("#summary-outcome").textContent = bill.outcome === "charged" ? "Charged" : "Free";
    const charged = bill.charge ? formatMoney(bill.charge) : "being settled";
    $("#summary-amount").textContent = charged;
    $("#summary-billable").textContent = duration(bill.billable_secs);
    $("#summary-billable").dataset.seconds = String(bill.billable_secs);
    $("#summary-note").textContent =
      bill.outcome === "charged"
        ? isSeeker
          ? `The call went past the free window, so it is charged to your card (${charged}).`
          : `The call went past the free window: the seeker pays (${charged}); your share shows in your earnings.`
        : isSeeker
          ? "The call stayed within the free window: nothing is charged and your card hold is released."
          : "The call stayed within the free window, so it was free for the seeker.";
  } else {
    $("#summary-outcome").textContent = "—";
    $("#summary-amount").textContent = "—";
    $("#summary-billable").textContent = "—";
    $("#summary-note").textContent = "";
  }
  $("#review-form").hidden = !isSeeker;
  $("#review-thanks").hidden = true;
  $("#review-form").reset();
  state.session = null;
  show("summary");
  $("#recap").hidden = true;
  if (state.lastSession) showRecap(state.lastSession.id);
  if (isSeeker) refreshReceipts();
  else {
    refreshAfterSession();
    refreshBookings();
  }
}

/** Posts the review (`POST /v1/sessions/{id}/review`); it then shows on the consultant's profile. */
async function submitReview(ev) {
  ev.preventDefault();
  const last = state.lastSession;
  if (!last) return;
  const stars = Number($("#review-stars").value);
  const text = $("#review-text").value.trim();
  await busy($("#review-submit"), async () => {
    try {
      await api.review(state.token, last.id, stars, text || undefined);
    } catch (err) {
      if (err.code !== ErrorCode.REVIEW_EXISTS) {
        showErr(err);
        return;
      }
    }
    clearError();
    $("#review-form").hidden = true;
    $("#review-thanks").hidden = false;
    const name = last.peer?.name || "the consultant";
    $("#review-thanks-text").textContent = `Thanks! Your ${stars}-star review is now on ${name}'s profile.`;
    $("#review-profile").hidden = !last.peer?.id;
    $("#review-profile").focus();
  });
}

// ---------------------------------------------------------------------------
// Wiring

window.parleyDemo = {
  call: null,
  state,
  /** Total inbound-rtp bytesReceived of the current peer connection (0 if none). */
  inboundBytes: async () => (state.call?.inboundBytes ? state.call.inboundBytes() : 0),
};

Object.assign(hooks, { placeCall, enterSession: (id, opts) => enterSession(id, opts), home, openProfile: (id, opts) => openProfile(id, opts) });

function init() {
  $("#login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const user = $("#login-user").value.trim();
    if (!user) {
      showError(ErrorCode.MISSING_FIELD, "Enter a user id to sign in.");
      $("#login-user").focus();
      return;
    }
    signIn(user, $("#login-name").value.trim(), $("#login-role").value);
  });
  for (const btn of document.querySelectorAll("[data-quick-login]")) {
    btn.addEventListener("click", () => {
      $("#login-user").value = btn.dataset.quickLogin;
      signIn(btn.dataset.quickLogin);
    });
  }
  $("#sign-out").addEventListener("click", signOut);
  $("#error-dismiss").addEventListener("click", () => clearError());
  $("#availability-toggle").addEventListener("click", toggleAvailability);
  $("#accept-call").addEventListener("click", acceptCall);
  $("#decline-call").addEventListener("click", declineCall);
  $("#cancel-call").addEventListener("click", cancelCall);
  $("#mute-toggle").addEventListener("click", (e) => toggle(e.currentTarget));
  $("#camera-toggle").addEventListener("click", (e) => toggle(e.currentTarget));
  $("#hangup").addEventListener("click", hangUp);
  $("#choice-end").addEventListener("click", hangUp);
  $("#choice-continue").addEventListener("click", () => {
    $("#free-window-choice").hidden = true;
    setStatus("You're continuing: billing starts when the free time is over.");
    $("#hangup").focus();
  });
  $("#review-form").addEventListener("submit", submitReview);
  $("#review-profile").addEventListener("click", () => {
    const id = state.lastSession?.peer?.id;
    if (id) openProfile(id);
  });
  $("#summary-close").addEventListener("click", () => {
    clearError();
    home();
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !$("#error-banner").hidden) clearError();
  });
  window.addEventListener("online", () => clearError(ClientErrorCode.NETWORK));
  initDirectory();
  initDesk();
  initDisputes(() => {
    if (state.user?.role === "seeker") refreshReceipts();
    else if (state.user?.role === "consultant") refreshEarnings();
  });
  initEscrow();
  initModerator();

  const params = new URLSearchParams(location.search);
  if (params.get("payout") === "done") setStatus("Your payout account is set up.");
  if (params.get("payout") === "refresh") setStatus("The payout link expired: open it again from your desk.");
  if (params.has("payout")) history.replaceState(null, "", location.pathname);

  const saved = sessionStorage.getItem(LOGIN_KEY);
  if (saved) {
    try {
      const { token, user } = JSON.parse(saved);
      startSession(token, user).catch((err) => {
        sessionStorage.removeItem(LOGIN_KEY);
        showErr(err);
        show("login-view");
      });
      return;
    } catch {
      sessionStorage.removeItem(LOGIN_KEY);
    }
  }
  show("login-view", { focus: false });
}

init();
