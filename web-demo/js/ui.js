// Screens, messages and a small element builder shared by every screen.

import { ParleyError, ErrorCode } from "/sdk/js/parley.js";

export const $ = (sel, root = document) => root.querySelector(sel);

/**
 * Builds an element: `h("li", {class: "x", dataset: {id: 1}, onclick}, "text", child)`. Text is always set as
 * text (never HTML); `null`/`false` children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else if (k in e && typeof v !== "string") e[k] = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c != null && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

export const SCREENS = [
  "login-view",
  "seeker-home",
  "profile-view",
  "consultant-home",
  "moderator-home",
  "outgoing-call",
  "incoming-call",
  "call-view",
  "summary",
];

let current = "login-view";
export const currentScreen = () => current;

/** Shows one screen; moves focus to its heading (or `[data-autofocus]`) for screen readers and keyboards. */
export function show(screenId, { focus = true } = {}) {
  current = screenId;
  for (const id of SCREENS) document.getElementById(id).hidden = id !== screenId;
  if (focus) {
    const root = document.getElementById(screenId);
    const target = root.querySelector("[data-autofocus]") || root.querySelector("h1");
    if (target) {
      if (!target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
      target.focus({ preventScroll: false });
    }
  }
}

let statusTimer = null;
/** The polite live status line. */
export function setStatus(text, { sticky = false } = {}) {
  const el = $("#status");
  clearTimeout(statusTimer);
  el.textContent = text;
  el.classList.toggle("visible", !!text);
  if (text && !sticky) statusTimer = setTimeout(() => setStatus(""), 5000);
}

export function showError(code, text) {
  const banner = $("#error-banner");
  banner.dataset.code = code || "error";
  $("#error-text").textContent = text;
  banner.hidden = false;
}

/** Hides the banner (only if it shows `code`, when given). */
export function clearError(code) {
  const banner = $("#error-banner");
  if (code && banner.dataset.code !== code) return;
  banner.hidden = true;
  delete banner.dataset.code;
}

/** Plain words for an error from the server or the SDK. */
export function explain(err, context = {}) {
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
      return `${who} isn't available right now — they're offline or in another call. Try again in a few minutes, or book a time.`;
    case ErrorCode.ALREADY_IN_CALL:
      return "You already have a call in progress. Finish it before starting another.";
    case ErrorCode.UNKNOWN_CONSULTANT:
      return "That consultant isn't listed any more.";
    case ErrorCode.MISSING_FIELD:
      if (/payment_method/.test(message)) return "Choose a card to pay with: this consultant charges for calls.";
      return `Something was missing: ${message}`;
    case ErrorCode.INVALID_FIELD:
    case ErrorCode.INVALID_PRICE:
    case ErrorCode.UNKNOWN_TIME_ZONE:
    case ErrorCode.UNSUPPORTED_CURRENCY:
      return `That doesn't look right: ${message}`;
    case ErrorCode.SLOT_TAKEN:
      return "Someone else just booked that time. Pick another.";
    case ErrorCode.SLOT_UNAVAILABLE:
    case ErrorCode.SLOT_IN_PAST:
      return "That time isn't available any more. Pick another.";
    case ErrorCode.BOOKING_NOT_PENDING:
      return "This booking has changed in the meantime; the list is refreshed.";
    case ErrorCode.ROOM_NOT_OPEN:
      return "The room isn't open yet: it opens 10 minutes before the start.";
    case ErrorCode.REVIEW_EXISTS:
      return "You've already reviewed this session.";
    case ErrorCode.CALL_NOT_RINGING:
      return "This call isn't ringing any more.";
    case ErrorCode.SESSION_ENDED:
      return "This call has already ended.";
    case ErrorCode.PREMIUM_REQUIRED:
      return "Recording is for premium members.";
    case ErrorCode.RECORDING_NOT_ALLOWED:
      return `${who} doesn't allow recording. Call without recording.`;
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

export function showErr(err, context) {
  console.warn("parley app:", err);
  showError(err instanceof ParleyError ? err.code : "network", explain(err, context));
}

export function initials(name) {
  return (name || "?")
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w[0].toUpperCase())
    .join("");
}

/** Initials on a colour derived from the name. */
export function setAvatar(el, name) {
  el.textContent = initials(name);
  let hash = 0;
  for (const ch of name || "") hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  el.style.setProperty("--avatar-hue", String(hash % 360));
}

export const PRESENCE_WORDS = { available: "Available now", busy: "In a call", offline: "Offline" };

/** Disables `button` while `fn` runs. */
export async function busy(button, fn) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } finally {
    if (button) button.disabled = false;
  }
}
