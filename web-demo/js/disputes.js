// Disputes (docs/protocol.md §13.38, rules D1–D4), both sides: a "Dispute"
// button on a past charged session opens the dispute dialog (a reason from
// the fixed list and a text); "Disputes" lists yours with their status, the
// other side answers once, and the moderator's decision with any refund
// shows. Kept up to date by the server's `dispute.updated` pushes.

import { DISPUTE_REASONS } from "/sdk/js/parley.js";
import { api, state } from "./state.js";
import { $, h, setStatus, showErr, clearError } from "./ui.js";
import { formatMoney, dateTime } from "./format.js";
import { nameOf } from "./bookings.js";

/** Plain words for each reason of {@link DISPUTE_REASONS}. */
export const REASON_WORDS = {
  consultant_absent: "The consultant did not show up",
  session_cut_short: "The session was cut short",
  quality: "Poor audio or video quality",
  not_as_described: "Not as described",
  other: "Something else",
};

/** Plain words for a dispute's status. */
export const STATUS_WORDS = {
  open: "Open — waiting for the other side's answer",
  answered: "Answered — a moderator will decide",
  deciding: "A moderator is deciding",
  decided: "Decided",
};

/** The disputes last read (`GET /v1/disputes`), newest first. */
let disputes = [];
let drawnKey = "";
/** Called after disputes change (the receipts hide the button of a disputed session). */
let onChange = () => {};

/** The session ids that already have a dispute (one per session). */
export function disputedSessions() {
  return new Set(disputes.map((d) => d.session_id));
}

/** The list of the signed-in role. */
const listOf = () => (state.user?.role === "consultant" ? $("#consultant-disputes") : $("#disputes"));

/** A refund or decision in words. */
export function decisionWords(d) {
  if (d.status !== "decided") return "";
  if (d.decision === "uphold") return "Decided: the charge stands, nothing refunded.";
  const what = d.decision === "full_refund" ? "Full refund" : "Partial refund";
  return `${what}: ${d.refunded ? formatMoney(d.refunded) : "—"} refunded to the seeker's card.`;
}

/** Re-reads your disputes and redraws the list on a change. */
export async function refreshDisputes() {
  if (!state.token || !state.user || state.user.role === "moderator") return;
  try {
    disputes = await api.disputes(state.token);
  } catch (err) {
    console.warn("disputes", err);
    return;
  }
  const list = listOf();
  const key = JSON.stringify([state.user.id, disputes]);
  if (key !== drawnKey || !list.childElementCount) {
    drawnKey = key;
    const names = await Promise.all(
      disputes.map((d) => (state.user.id === d.seeker_id ? nameOf(d.consultant_id, true) : nameOf(d.seeker_id, false))),
    );
    list.replaceChildren(...disputes.map((d, i) => disputeItem(d, names[i])));
    const empty = list.nextElementSibling;
    if (empty) empty.hidden = disputes.length > 0;
  }
  onChange();
}

function disputeItem(d, other) {
  const mine = d.opened_by === state.user.id;
  const li = h(
    "li",
    { class: "dispute", dataset: { disputeId: d.id, status: d.status, sessionId: d.session_id } },
    h("p", {}, h("strong", {}, REASON_WORDS[d.reason] || d.reason), ` · session with ${other} · `, mine ? "opened by you" : `opened by ${other}`, ` on ${dateTime(d.opened_at_ms)}`),
    h("p", { class: "dispute-text" }, `“${d.text}”`),
    h("p", { class: "dispute-status" }, STATUS_WORDS[d.status] || d.status),
    d.answer ? h("p", { class: "dispute-answer" }, `Answer: “${d.answer}”`) : null,
    d.status === "decided"
      ? h(
          "p",
          { class: "dispute-outcome", dataset: { decision: d.decision, refundedMinor: String(d.refunded?.amount_minor ?? 0) } },
          decisionWords(d),
          d.note ? ` Moderator's note: “${d.note}”` : "",
        )
      : null,
  );
  if (d.status === "open" && !mine) li.append(answerForm(d));
  return li;
}

function answerForm(d) {
  const id = `dispute-answer-${d.id}`;
  const text = h("textarea", { id, class: "dispute-answer-text", rows: 3, maxlength: 4000, required: true });
  const submit = h("button", { type: "submit", class: "btn btn-secondary btn-small dispute-answer-submit" }, "Send answer");
  const form = h(
    "form",
    { class: "form dispute-answer-form", novalidate: true },
    h("div", { class: "field" }, h("label", { for: id }, "Your answer (once)"), text),
    submit,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!text.value.trim()) return text.focus();
    submit.disabled = true;
    try {
      await api.answerDispute(state.token, d.id, text.value.trim());
      clearError();
      setStatus("Answer sent. A moderator will decide.");
      await refreshDisputes();
    } catch (err) {
      showErr(err);
      submit.disabled = false;
    }
  });
  return form;
}

/** A "Dispute" button for a past charged session (`label` names it for screen readers). */
export function disputeButton(sessionId, label) {
  return h(
    "button",
    {
      type: "button",
      class: "btn btn-ghost btn-small receipt-dispute",
      "aria-label": `Dispute ${label}`,
      onclick: (ev) => openDisputeDialog(sessionId, label, ev.currentTarget),
    },
    "Dispute",
  );
}

let returnFocus = null;

function openDisputeDialog(sessionId, label, opener) {
  const dialog = $("#dispute-dialog");
  returnFocus = opener;
  $("#dispute-form").dataset.sessionId = sessionId;
  $("#dispute-about").textContent = `About: ${label}.`;
  $("#dispute-text").value = "";
  $("#dispute-reason").value = DISPUTE_REASONS[0];
  dialog.showModal();
  $("#dispute-reason").focus();
}

function closeDialog() {
  $("#dispute-dialog").close();
  if (returnFocus && returnFocus.isConnected) returnFocus.focus();
}

async function submitDispute(ev) {
  ev.preventDefault();
  const form = $("#dispute-form");
  const text = $("#dispute-text");
  if (!text.value.trim()) {
    $("#dispute-error").textContent = "Tell us what happened.";
    return text.focus();
  }
  $("#dispute-error").textContent = "";
  const submit = $("#dispute-submit");
  submit.disabled = true;
  try {
    await api.openDispute(state.token, form.dataset.sessionId, $("#dispute-reason").value, text.value.trim());
    closeDialog();
    clearError();
    setStatus("Dispute opened. The other side may answer once; then a moderator decides.");
    await refreshDisputes();
  } catch (err) {
    closeDialog();
    showErr(err);
  } finally {
    submit.disabled = false;
  }
}

/** Wires the dialog; `changed` runs after every refresh (to redraw the Dispute buttons). */
export function initDisputes(changed) {
  onChange = changed || onChange;
  $("#dispute-reason").replaceChildren(...DISPUTE_REASONS.map((r) => h("option", { value: r }, REASON_WORDS[r])));
  $("#dispute-form").addEventListener("submit", submitDispute);
  $("#dispute-cancel").addEventListener("click", closeDialog);
}

/** Forgets what was read (sign-out). */
export function forgetDisputes() {
  disputes = [];
  drawnKey = "";
}
