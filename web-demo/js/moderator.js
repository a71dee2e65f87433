// The moderator's screen (dev mode): dev sign-in refuses moderators, so the
// page takes a pasted moderator token (minted by the operator's platform).
// Lists every dispute, opens one with its evidence bundle (the server's
// Markdown shown as plain text, never as HTML) and decides it: uphold, a
// partial refund or a full refund, with a note (rules D3–D4; the SDK sends
// an Idempotency-Key).

import { moneyFromMajor, newIdempotencyKey } from "/sdk/js/parley.js";
import { api, state } from "./state.js";
import { $, h, show, setStatus, showErr, showError, clearError } from "./ui.js";
import { formatMoney, dateTime } from "./format.js";
import { REASON_WORDS, STATUS_WORDS, decisionWords } from "./disputes.js";

/** The dispute open in the panel: `{id, currency, key}` (`key`: the decision's Idempotency-Key, kept for retries). */
let open = null;

/** Signs in with a pasted moderator token: checked by listing the disputes. */
async function signInModerator(ev) {
  ev.preventDefault();
  const token = $("#moderator-token").value.trim();
  if (!token) return $("#moderator-token").focus();
  const button = $("#moderator-submit");
  button.disabled = true;
  try {
    await api.disputes(token);
    $("#moderator-token").value = "";
    state.token = token;
    state.user = { id: "moderator", name: "Moderator", role: "moderator" };
    document.body.dataset.role = "moderator";
    document.body.dataset.user = "moderator";
    $("#account").hidden = false;
    $("#account-name").textContent = "Moderator";
    $("#account-role").textContent = "Moderator";
    clearError();
    show("moderator-home");
    await refreshModerator();
  } catch (err) {
    showErr(err);
  } finally {
    button.disabled = false;
  }
}

/** Re-reads every dispute. */
export async function refreshModerator() {
  if (state.user?.role !== "moderator") return;
  try {
    const all = await api.disputes(state.token);
    $("#moderator-disputes").replaceChildren(
      ...all.map((d) =>
        h(
          "li",
          { class: "dispute", dataset: { disputeId: d.id, status: d.status } },
          h("p", {}, h("strong", {}, REASON_WORDS[d.reason] || d.reason), ` · ${d.seeker_id} and ${d.consultant_id} · opened ${dateTime(d.opened_at_ms)}`),
          h("p", { class: "dispute-status" }, STATUS_WORDS[d.status] || d.status),
          h("button", { type: "button", class: "btn btn-secondary btn-small dispute-open", onclick: () => openDispute(d.id) }, "Open the bundle"),
        ),
      ),
    );
    $("#moderator-disputes-empty").hidden = all.length > 0;
  } catch (err) {
    showErr(err);
  }
}

async function openDispute(id) {
  try {
    const [bundle, markdown] = await Promise.all([api.dispute(state.token, id), api.disputeBundleMarkdown(state.token, id)]);
    const d = bundle.dispute;
    const charged = bundle.session?.captured || bundle.session?.hold?.amount;
    open = { id, currency: charged?.currency || "EUR", key: null };
    const panel = $("#moderator-dispute");
    panel.dataset.disputeId = id;
    panel.dataset.status = d.status;
    panel.hidden = false;
    $("#bundle-md").textContent = markdown;
    $("#decision-result").textContent = decisionWords(d);
    $("#decision-form").hidden = d.status === "decided" || d.status === "deciding";
    $("#decision-currency").textContent = open.currency;
    $("#decision-charged").textContent = charged ? `Charged: ${formatMoney(charged)}.` : "";
    renderDecisionKind();
    $("#moderator-dispute-title").focus();
  } catch (err) {
    showErr(err);
  }
}

function renderDecisionKind() {
  $("#decision-amount-field").hidden = $("#decision-kind").value !== "partial_refund";
}

async function decide(ev) {
  ev.preventDefault();
  if (!open) return;
  const decision = $("#decision-kind").value;
  const note = $("#decision-note").value.trim();
  if (!note) {
    showError("missing_field", "Write a note for both sides: why this decision.");
    return $("#decision-note").focus();
  }
  const body = { decision, note };
  if (decision === "partial_refund") {
    const amount = moneyFromMajor($("#decision-amount").value, open.currency);
    if (!amount || amount.amount_minor < 1) {
      showError("invalid_field", "Enter the amount to refund, e.g. 10 or 12.50.");
      return $("#decision-amount").focus();
    }
    body.amount_minor = amount.amount_minor;
  }
  // The same key for a retry of the same decision (a lost answer refunds once).
  const key = JSON.stringify(body);
  if (!open.key || open.key.body !== key) open.key = { body: key, value: newIdempotencyKey() };
  const button = $("#decision-submit");
  button.disabled = true;
  try {
    const d = await api.decideDispute(state.token, open.id, body, { idempotencyKey: open.key.value });
    clearError();
    $("#moderator-dispute").dataset.status = d.status;
    $("#decision-result").textContent = decisionWords(d);
    $("#decision-form").hidden = true;
    setStatus("Decision recorded; both sides are told.");
    await refreshModerator();
  } catch (err) {
    showErr(err);
  } finally {
    button.disabled = false;
  }
}

export function initModerator() {
  $("#moderator-form").addEventListener("submit", signInModerator);
  $("#decision-kind").addEventListener("change", renderDecisionKind);
  $("#decision-form").addEventListener("submit", decide);
  $("#moderator-refresh").addEventListener("click", refreshModerator);
}
