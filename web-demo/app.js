// Parley web demo: the seeker and consultant journeys over the JavaScript SDK.
// DOM contract: web-demo/README.md (the browser tests rely on those ids).

import { ParleyApi, SignalingClient, Call, ParleyError, ErrorCode, formatMoney } from "/sdk/js/parley.js";

const $ = (sel) => document.querySelector(sel);
const api = new ParleyApi();

/** Assumed free window until the server tells us (meter.free_window_ending). */
const DEFAULT_FREE_WINDOW_SECS = 600;
const CONSULTANT_POLL_MS = 4000;

const state = {
  token: null,
  user: null,
  client: null,
  consultants: [],
  consultantTimer: null,
  clockOffsetMs: 0, // server time − local time
  price: null,
  // Seeker ringing: {callId, sessionId, consultant, deadline}
  outgoing: null,
  // Consultant ringing: {callId, sessionId, seeker, deadline}
  incoming: null,
  ringTimer: null,
  // In a session
  session: null,
  localStream: null,
  call: null,
  screen: "login",
};

// ---------------------------------------------------------------------------
// Screens

const SCREENS = ["login-view", "seeker-home", "consultant-home", "outgoing-call", "incoming-call", "call-view", "summary"];

function show(screenId, { focus = true } = {}) {
  state.screen = screenId;
  for (const id of SCREENS) document.getElementById(id).hidden = id !== screenId;
  if (focus) {
    const target =
      document.getElementById(screenId).querySelector("[data-autofocus]") ||
      document.getElementById(screenId).querySelector("h1");
    if (target) {
      if (!target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
      target.focus({ preventScroll: false });
    }
  }
}

function home() {
  if (!state.user) return show("login-view");
  if (state.user.role === "consultant") {
    show("consultant-home");
    refreshEarnings();
  } else {
    show("seeker-home");
    refreshConsultants();
    refreshReceipts();
  }
}

// ---------------------------------------------------------------------------
// Messages

let statusTimer = null;
function setStatus(text, { sticky = false } = {}) {
  const el = $("#status");
  clearTimeout(statusTimer);
  el.textContent = text;
  el.classList.toggle("visible", !!text);
  if (text && !sticky) statusTimer = setTimeout(() => setStatus(""), 5000);
}

function showError(code, text) {
  const banner = $("#error-banner");
  banner.dataset.code = code || "error";
  $("#error-text").textContent = text;
  banner.hidden = false;
}

function clearError(code) {
  const banner = $("#error-banner");
  if (code && banner.dataset.code !== code) return;
  banner.hidden = true;
  delete banner.dataset.code;
}

function nameOfConsultant(id) {
  return state.consultants.find((c) => c.id === id)?.name || id;
}

/** Plain words for an error from the server or the SDK. */
function explain(err, context = {}) {
  const who = context.consultantName || "The consultant";
  const code = err instanceof ParleyError ? err.code : "network";
  const message = err && err.message ? err.message : "";
  switch (code) {
    case ErrorCode.PAYMENT_DECLINED:
      if (/try again/i.test(message)) return "We couldn't reach the payment service — nothing was charged. Please try again.";
      if (/No such PaymentMethod/i.test(message)) return "That card isn't known to the payment service — nothing was charged. Try another card.";
      return "Your card was declined — nothing was charged. Try another card.";
    case ErrorCode.PAYMENT_ACTION_REQUIRED:
      return "Your bank wants to confirm this card (3-D Secure), which this demo can't do — nothing was charged. Try another card.";
    case ErrorCode.CONSULTANT_UNAVAILABLE:
      return `${who} isn't available right now — they're offline or in another call. Try again in a few minutes.`;
    case ErrorCode.ALREADY_IN_CALL:
      return "You already have a call in progress. Finish it before starting another.";
    case ErrorCode.UNKNOWN_CONSULTANT:
      return "That consultant doesn't exist any more.";
    case ErrorCode.MISSING_FIELD:
      if (/payment_method/.test(message)) return "Choose a card to pay with: this consultant charges for calls.";
      return `Something was missing from the request: ${message}`;
    case ErrorCode.INVALID_FIELD:
      return `That doesn't look right: ${message}`;
    case ErrorCode.CALL_NOT_RINGING:
      return "This call isn't ringing any more.";
    case ErrorCode.SESSION_ENDED:
      return "This call has already ended.";
    case ErrorCode.UNAVAILABLE:
      return "Parley is restarting. Try again in a moment.";
    case ErrorCode.RATE_LIMITED:
      return "Too many requests at once. Wait a second and try again.";
    case ErrorCode.MISSING_TOKEN:
    case ErrorCode.INVALID_TOKEN:
    case ErrorCode.TOKEN_EXPIRED:
      return "Your sign-in has expired. Please sign in again.";
    case ErrorCode.WRONG_ROLE:
    case ErrorCode.FORBIDDEN:
      return "Your account can't do that.";
    case "network":
      return "We can't reach Parley. Check your connection and try again.";
    case "timeout":
      return "Parley took too long to answer. Please try again.";
    case "closed":
      return "The connection to Parley was lost.";
    default:
      return "Something went wrong on our side. Please try again.";
  }
}

function showErr(err, context) {
  console.warn("parley demo:", err);
  showError(err instanceof ParleyError ? err.code : "network", explain(err, context));
}

// ---------------------------------------------------------------------------
// Formatting

function clock(secs) {
  secs = Math.max(0, Math.floor(secs));
  const m = Math.floor(secs / 60);
  const s = String(secs % 60).padStart(2, "0");
  return `${m}:${s}`;
}

function duration(secs) {
  secs = Math.max(0, Math.floor(secs));
  const m = Math.floor(secs / 60);
  const s = secs % 60;
  if (m === 0) return `${s} s`;
  return s ? `${m} min ${s} s` : `${m} min`;
}

function priceText(price) {
  if (!price) return "Free";
  const amount = formatMoney(price.amount);
  return price.model === "per_minute" ? `${amount} / min after free window` : `${amount} per session`;
}

function initials(name) {
  return (name || "?")
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w[0].toUpperCase())
    .join("");
}

function setAvatar(el, name) {
  el.textContent = initials(name);
  let hash = 0;
  for (const ch of name || "") hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  el.style.setProperty("--avatar-hue", String(hash % 360));
}

const PRESENCE_WORDS = { available: "Available now", busy: "In a call", offline: "Offline" };

// ---------------------------------------------------------------------------
// Sign in and out

async function signIn(userId, name, role) {
  clearError();
  const submit = $("#login-submit");
  submit.disabled = true;
  submit.textContent = "Signing in…";
  try {
    const login = await api.devLogin(userId, name, role);
    await startSession(login.token, login.user);
    sessionStorage.setItem("parley.login", JSON.stringify({ token: login.token, user: login.user }));
  } catch (err) {
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
  syncClock(client);
  if (state.user.role === "consultant") {
    renderPresence(client.presence || "offline");
    loadPrice();
  } else {
    startConsultantPolling();
  }
  home();
}

function signOut() {
  stopConsultantPolling();
  endCallLocally();
  if (state.client) state.client.close();
  state.client = null;
  state.token = null;
  state.user = null;
  state.outgoing = state.incoming = null;
  sessionStorage.removeItem("parley.login");
  delete document.body.dataset.role;
  delete document.body.dataset.user;
  $("#account").hidden = true;
  clearError();
  setStatus("You're signed out.");
  show("login-view");
}

async function syncClock(client) {
  try {
    const t0 = Date.now();
    const pong = await client.ping();
    const t1 = Date.now();
    state.clockOffsetMs = pong.server_time_ms - (t0 + t1) / 2;
  } catch {
    state.clockOffsetMs = 0;
  }
}

const serverNow = () => Date.now() + state.clockOffsetMs;

// ---------------------------------------------------------------------------
// Signaling events

function wireClient(client) {
  client.on("presence.updated", (m) => renderPresence(m.status));
  client.on("call.incoming", onIncoming);
  client.on("call.accepted", (m) => enterSession(m.session_id, m.call_id));
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
      setStatus(`The payment hold runs out in ${duration(m.ends_at_billable_secs - m.billable_secs)}; the call will end then.`, { sticky: true });
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
    setStatus("Connection restored.");
  });
  client.on("resume_failed", async () => {
    clearError("connection_lost");
    setStatus("Connection restored.");
    if (state.user?.role === "consultant") renderPresence(client.presence || "offline");
    // Our missed messages are gone: rejoin the room of an open session.
    if (state.session && !state.session.ended) {
      try {
        const room = await client.join(state.session.id);
        state.session.peerPresent = room.participants.length > 0;
        applyRoomMeter(room);
        renderPeer();
        if (state.call) state.call.rejoined(room);
      } catch (err) {
        if (err.code === ErrorCode.SESSION_ENDED || err.code === ErrorCode.UNKNOWN_SESSION) {
          showSummary({ reason: "abandoned", bill: null });
        } else showErr(err);
      }
    } else if (state.outgoing || state.incoming) {
      // The ringing call may have ended while we were away.
      clearRinging();
      home();
    }
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
// Consultant: availability, price, incoming calls, earnings

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

async function loadPrice() {
  try {
    const price = await api.myPrice(state.token);
    state.price = price;
    renderPrice(price);
  } catch (err) {
    showErr(err);
  }
}

function renderPrice(price) {
  if (price) {
    $("#price-amount").value = String(price.amount.amount_minor);
    $("#price-model").value = price.model;
    $("#price-currency").value = price.amount.currency;
    $("#price-current").textContent = `Now: ${priceText(price)}.`;
  } else {
    $("#price-current").textContent = "You have no price: your calls are free.";
  }
}

async function savePrice(ev) {
  ev.preventDefault();
  const amount = Number.parseInt($("#price-amount").value, 10);
  if (!Number.isFinite(amount) || amount <= 0) {
    showError(ErrorCode.INVALID_FIELD, "Enter a price above zero, in cents (3000 is 30.00).");
    $("#price-amount").focus();
    return;
  }
  const btn = $("#price-save");
  btn.disabled = true;
  try {
    const price = await api.setPrice(state.token, {
      model: $("#price-model").value,
      amount: { amount_minor: amount, currency: $("#price-currency").value },
    });
    state.price = price;
    renderPrice(price);
    clearError();
    setStatus(`Price saved: ${priceText(price)}.`);
  } catch (err) {
    showErr(err);
  } finally {
    btn.disabled = false;
  }
}

async function refreshEarnings() {
  if (!state.user || state.user.role !== "consultant") return;
  try {
    const e = await api.earnings(state.token, state.user.id);
    const totals = e.totals || [];
    const currency = state.price?.amount?.currency || "EUR";
    $("#earnings-total").textContent = totals.length
      ? totals.map((t) => formatMoney(t.earnings)).join(" · ")
      : formatMoney({ amount_minor: 0, currency });
    const count = totals.reduce((n, t) => n + t.sessions, 0);
    $("#earnings-count").textContent = count === 1 ? "From 1 paid call." : `From ${count} paid calls.`;
    const list = $("#earnings-sessions");
    list.replaceChildren(
      ...(e.sessions || []).slice(0, 5).map((s) => {
        const li = document.createElement("li");
        const when = new Date(s.at_ms).toLocaleString();
        li.innerHTML = `<span></span><span class="muted"></span>`;
        li.children[0].textContent = `${formatMoney(s.earnings)} earned`;
        li.children[1].textContent = `${when} · ${formatMoney(s.captured)} paid, ${formatMoney(s.fee)} commission`;
        return li;
      }),
    );
    return e;
  } catch (err) {
    console.warn("earnings", err);
  }
}

/** After a session: the capture is carried out in the background, so look a few times. */
function refreshEarningsSoon() {
  for (const delay of [300, 1500, 4000, 8000]) setTimeout(refreshEarnings, delay);
}

function onIncoming(m) {
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
// Seeker: consultants, calling

function startConsultantPolling() {
  stopConsultantPolling();
  state.consultantTimer = setInterval(() => {
    if (state.screen === "seeker-home" && !document.hidden) refreshConsultants();
  }, CONSULTANT_POLL_MS);
}

function stopConsultantPolling() {
  clearInterval(state.consultantTimer);
  state.consultantTimer = null;
}

async function refreshConsultants() {
  if (!state.token || state.user?.role !== "seeker") return;
  try {
    state.consultants = await api.consultants(state.token);
    renderConsultants();
  } catch (err) {
    showErr(err);
  }
}

function renderConsultants() {
  const list = $("#consultants");
  const query = $("#consultant-search").value.trim().toLowerCase();
  const existing = new Map([...list.children].map((li) => [li.dataset.consultantId, li]));
  const items = [];
  for (const c of state.consultants) {
    let li = existing.get(c.id);
    if (!li) {
      li = document.createElement("li");
      li.className = "consultant card";
      li.dataset.consultantId = c.id;
      li.innerHTML = `
        <div class="avatar" aria-hidden="true"></div>
        <div class="consultant-main">
          <h2 class="consultant-name"></h2>
          <p class="consultant-presence"><span class="dot"></span><span class="presence-text"></span></p>
          <p class="consultant-price"></p>
        </div>
        <button type="button" class="btn btn-primary call-now">Call now</button>`;
      li.querySelector(".call-now").addEventListener("click", () => placeCall(li.dataset.consultantId));
    }
    li.dataset.presence = c.presence;
    li.dataset.name = c.name.toLowerCase();
    setAvatar(li.querySelector(".avatar"), c.name);
    li.querySelector(".consultant-name").textContent = c.name;
    li.querySelector(".dot").dataset.presence = c.presence;
    li.querySelector(".presence-text").textContent = PRESENCE_WORDS[c.presence] || c.presence;
    li.querySelector(".consultant-price").textContent = priceText(c.price);
    const btn = li.querySelector(".call-now");
    btn.disabled = c.presence !== "available";
    btn.setAttribute("aria-label", `Call ${c.name} now`);
    btn.textContent = c.presence === "available" ? "Call now" : c.presence === "busy" ? "In a call" : "Offline";
    li.hidden = !!query && !c.name.toLowerCase().includes(query);
    items.push(li);
  }
  list.replaceChildren(...items);
  list.setAttribute("aria-busy", "false");
  $("#consultants-empty").hidden = items.some((li) => !li.hidden);
  if (!state.consultants.length) $("#consultants-empty").textContent = "No consultants yet.";
  else $("#consultants-empty").textContent = "No consultants match your search.";
}

async function refreshReceipts() {
  if (!state.token || state.user?.role !== "seeker") return;
  try {
    const receipts = await api.receipts(state.token);
    const list = $("#receipts");
    list.replaceChildren(
      ...receipts.slice(0, 5).map((r) => {
        const li = document.createElement("li");
        li.innerHTML = `<span></span><span class="muted"></span>`;
        const outcome =
          r.outcome === "charged" ? `Charged ${formatMoney(r.charged)}` : r.outcome === "free" ? "Free — hold released" : "Being settled";
        li.children[0].textContent = `${nameOfConsultant(r.consultant_id)} · ${outcome}`;
        li.children[1].textContent =
          new Date(r.at_ms).toLocaleString() + (r.billable_secs != null ? ` · ${duration(r.billable_secs)}` : "");
        return li;
      }),
    );
    $("#receipts-empty").hidden = receipts.length > 0;
  } catch (err) {
    console.warn("receipts", err);
  }
}

async function placeCall(consultantId) {
  const consultant = state.consultants.find((c) => c.id === consultantId) || { id: consultantId, name: consultantId };
  clearError();
  const pm = $("#payment-method").value;
  const buttons = document.querySelectorAll(".call-now");
  buttons.forEach((b) => (b.disabled = true));
  try {
    await prepareMedia();
    const ringing = await state.client.call(consultantId, pm);
    state.outgoing = {
      callId: ringing.call_id,
      sessionId: ringing.session_id,
      consultant,
      deadline: ringing.ring_deadline_ms,
    };
    $("#outgoing-name").textContent = consultant.name;
    setAvatar($("#outgoing-avatar"), consultant.name);
    $("#outgoing-detail").textContent = consultant.price
      ? `${formatMoney(consultant.price.amount)} is on hold on your card. Nothing is charged unless the call goes past the free window.`
      : "This consultant's calls are free.";
    show("outgoing-call", { focus: false });
    $("#cancel-call").focus();
    startRingTimer($("#outgoing-timer"), ringing.ring_deadline_ms, "Ringing");
  } catch (err) {
    stopLocalMedia();
    showErr(err, { consultantName: consultant.name });
    refreshConsultants();
  } finally {
    renderConsultants();
  }
}

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
// In call

async function enterSession(sessionId, callId) {
  let peer = null;
  if (state.outgoing && state.outgoing.sessionId === sessionId) peer = state.outgoing.consultant;
  if (state.incoming && state.incoming.sessionId === sessionId) peer = state.incoming.seeker;
  clearRinging();
  endCallLocally();
  state.session = {
    id: sessionId,
    callId,
    peer,
    peerPresent: false,
    freeWindow: DEFAULT_FREE_WINDOW_SECS,
    billable: 0, // local estimate, re-synced by meter events
    lastMeterSecs: 0,
    billing: false,
    ended: false,
    timer: null,
    mediaState: "new",
  };
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
    showErr(err);
    if (err.code === ErrorCode.SESSION_ENDED) showSummary({ reason: "abandoned", bill: null });
    return;
  }
  if (!state.session || state.session.id !== sessionId || state.session.ended) return;
  if (!peer && room.participants[0]) state.session.peer = room.participants[0];
  state.session.peerPresent = room.participants.length > 0;
  applyRoomMeter(room);
  const call = new Call(state.client, room, { localStream: stream || undefined });
  state.call = call;
  window.parleyDemo.call = call;
  call.on("remotestream", (s) => {
    const video = $("#remote-video");
    if (video.srcObject !== s) video.srcObject = s;
    video.play?.().catch(() => {});
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
    setStatus("The free window is over: this call is now billed.");
  } else if (freeWindow) {
    setStatus(`${duration(freeWindow - m.billable_secs)} of free time left.`);
  }
  renderMeter();
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

function showSummary(m) {
  const s = state.session;
  const peerName = s?.peer?.name || "the other participant";
  endCallLocally();
  stopLocalMedia();
  setStatus("");
  clearError("connection_lost");
  const bill = m.bill;
  const summary = $("#summary");
  summary.dataset.outcome = bill ? bill.outcome : "unknown";
  if (s) summary.dataset.sessionId = s.id;
  const isSeeker = state.user?.role === "seeker";
  let reason = END_REASONS[m.reason] ?? "";
  if (m.reason === "hangup" && m.ended_by) {
    reason = m.ended_by === state.user?.id ? `You ended the call with ${peerName}.` : `${peerName} ended the call.`;
  }
  $("#summary-reason").textContent = reason;
  if (bill) {
    $("#summary-outcome").textContent = bill.outcome === "charged" ? "Charged" : "Free";
    $("#summary-amount").textContent = formatMoney(bill.charge);
    $("#summary-billable").textContent = duration(bill.billable_secs);
    $("#summary-billable").dataset.seconds = String(bill.billable_secs);
    $("#summary-note").textContent =
      bill.outcome === "charged"
        ? isSeeker
          ? `The call went past the free window, so ${formatMoney(bill.charge)} is charged to your card.`
          : `The call went past the free window: the seeker pays ${formatMoney(bill.charge)}; your share shows in your earnings.`
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
  if (isSeeker) refreshReceipts();
  else refreshEarningsSoon();
}

function submitReview(ev) {
  ev.preventDefault();
  // No reviews API yet: thank the seeker; the review is not stored.
  $("#review-form").hidden = true;
  $("#review-thanks").hidden = false;
  $("#review-thanks").textContent = `Thanks for your ${$("#review-stars").value}-star review!`;
  $("#summary-close").focus();
}

// ---------------------------------------------------------------------------
// Wiring

window.parleyDemo = {
  call: null,
  state,
  /** Total inbound-rtp bytesReceived of the current peer connection (0 if none). */
  inboundBytes: async () => (state.call ? state.call.inboundBytes() : 0),
};

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
  $("#price-form").addEventListener("submit", savePrice);
  $("#accept-call").addEventListener("click", acceptCall);
  $("#decline-call").addEventListener("click", declineCall);
  $("#consultant-search").addEventListener("input", renderConsultants);
  $("#cancel-call").addEventListener("click", cancelCall);
  $("#mute-toggle").addEventListener("click", (e) => toggle(e.currentTarget));
  $("#camera-toggle").addEventListener("click", (e) => toggle(e.currentTarget));
  $("#hangup").addEventListener("click", hangUp);
  $("#review-form").addEventListener("submit", submitReview);
  $("#summary-close").addEventListener("click", () => {
    clearError();
    home();
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !$("#error-banner").hidden) clearError();
  });

  const params = new URLSearchParams(location.search);
  if (params.get("payout") === "done") setStatus("Your payout account is set up.");

  const saved = sessionStorage.getItem("parley.login");
  if (saved) {
    try {
      const { token, user } = JSON.parse(saved);
      startSession(token, user).catch((err) => {
        sessionStorage.removeItem("parley.login");
        showErr(err);
        show("login-view");
      });
      return;
    } catch {
      sessionStorage.removeItem("parley.login");
    }
  }
  show("login-view", { focus: false });
}

init();
