// Escrow (docs/protocol.md §13.39, rules E1–E8). Seeker: on a consultant's
// profile, fund a package of sessions or milestones (the total is charged
// now and held by Parley); "My engagements": sessions left, milestones and
// their state, approve a submitted milestone, dispute it, cancel (the refund
// stated). Consultant: the same list, submit a milestone. No push exists for
// engagements: re-read every few seconds while a home screen shows.

import { moneyFromMajor, majorUnits, ParleyError, ErrorCode } from "/sdk/js/parley.js";
import { api, state } from "./state.js";
import { $, h, setStatus, showErr, showError, clearError, currentScreen } from "./ui.js";
import { formatMoney, dateTime } from "./format.js";
import { nameOf } from "./bookings.js";

/** How often engagements are re-read while a home screen shows (ms). */
const POLL_MS = 3000;

const MILESTONE_WORDS = {
  open: "In progress",
  submitted: "Submitted — waiting for approval",
  disputed: "Disputed — a moderator decides",
  released: "Released to the consultant",
  refunded: "Refunded",
  split: "Split by a moderator",
};

const STATE_WORDS = {
  funding: "Being funded",
  active: "Active",
  failed: "Funding failed — nothing charged",
  cancelled: "Cancelled",
  completed: "Completed",
};

let engagements = [];
let drawnKey = "";
let timer = null;
/** The consultant whose profile shows the form: `{id, name, currency, lengths}`. */
let target = null;

const listOf = () => (state.user?.role === "consultant" ? $("#consultant-engagements") : $("#engagements"));

/** Re-reads your engagements and redraws on a change. */
export async function refreshEngagements() {
  if (!state.token || !state.user || state.user.role === "moderator") return;
  try {
    engagements = await api.engagements(state.token);
  } catch (err) {
    console.warn("engagements", err);
    return;
  }
  const list = listOf();
  const key = JSON.stringify([state.user.id, engagements]);
  if (key === drawnKey && list.childElementCount) return;
  // Never redraw under a form being filled in.
  if (list.contains(document.activeElement) && document.activeElement.matches("input, textarea")) return;
  drawnKey = key;
  const seeker = state.user.role === "seeker";
  const names = await Promise.all(engagements.map((e) => (seeker ? nameOf(e.consultant_id, true) : nameOf(e.seeker_id, false))));
  list.replaceChildren(...engagements.map((e, i) => engagementItem(e, names[i])));
  const empty = list.nextElementSibling;
  if (empty) empty.hidden = engagements.length > 0;
}

/** Re-reads every few seconds while a home screen shows (started at sign-in). */
export function startEngagementPolling() {
  clearInterval(timer);
  timer = setInterval(() => {
    if (document.hidden || !["seeker-home", "consultant-home"].includes(currentScreen())) return;
    refreshEngagements();
  }, POLL_MS);
}

export function stopEngagementPolling() {
  clearInterval(timer);
  engagements = [];
  drawnKey = "";
}

function moneyLine(e) {
  const parts = [
    h("span", { class: "engagement-funded", dataset: { minor: String(e.funded.amount_minor) } }, `Paid ${formatMoney(e.funded)}`),
    " · ",
    h("span", { class: "engagement-escrowed", dataset: { minor: String(e.escrowed.amount_minor) } }, `in escrow ${formatMoney(e.escrowed)}`),
    " · ",
    h("span", { class: "engagement-released", dataset: { minor: String(e.released.amount_minor) } }, `released ${formatMoney(e.released)}`),
  ];
  if (e.refunded.amount_minor > 0)
    parts.push(" · ", h("span", { class: "engagement-refunded", dataset: { minor: String(e.refunded.amount_minor) } }, `refunded ${formatMoney(e.refunded)}`));
  if (e.cancel_fee && e.cancel_fee.amount_minor > 0) parts.push(` (cancellation fee ${formatMoney(e.cancel_fee)})`);
  return h("p", { class: "engagement-money" }, ...parts);
}

function engagementItem(e, other) {
  const seeker = state.user.role === "seeker";
  const li = h(
    "li",
    { class: "engagement", dataset: { engagementId: e.id, state: e.state, kind: e.kind } },
    h("h3", { class: "engagement-title" }, `${e.title} — ${seeker ? "with" : "for"} ${other}`),
    h("p", { class: "engagement-state" }, STATE_WORDS[e.state] || e.state, e.error ? ` (${e.error})` : ""),
    moneyLine(e),
  );
  if (e.kind === "package" && e.package) {
    li.append(
      h(
        "p",
        { class: "engagement-left", dataset: { sessionsLeft: String(e.sessions_left) } },
        `${e.sessions_left} of ${e.package.sessions} sessions left (${e.package.minutes} min, ${formatMoney(e.package.price)} each). Book them from the profile; a session that ends free uses none.`,
      ),
    );
  }
  if (e.milestones.length) li.append(h("ol", { class: "milestones" }, ...e.milestones.map((m) => milestoneItem(e, m))));
  if (e.state === "active") li.append(cancelControls(e));
  return li;
}

function milestoneItem(e, m) {
  const seeker = state.user.role === "seeker";
  const li = h(
    "li",
    { class: "milestone", dataset: { milestoneId: m.id, state: m.state } },
    h("p", {}, h("strong", {}, m.description), ` — ${formatMoney(m.amount)} — `, h("span", { class: "milestone-state" }, MILESTONE_WORDS[m.state] || m.state)),
    m.note ? h("p", { class: "milestone-note-text muted" }, `Note: ${m.note}`) : null,
    m.state === "submitted" && m.release_due_ms
      ? h("p", { class: "muted" }, `Released on its own on ${dateTime(m.release_due_ms)} unless approved or disputed first.`)
      : null,
    m.dispute_reason ? h("p", { class: "muted" }, `Disputed: ${m.dispute_reason}`) : null,
    m.resolution_note ? h("p", { class: "muted" }, `Moderator: ${m.resolution_note}`) : null,
  );
  if (e.state !== "active") return li;
  const row = h("div", { class: "button-row" });
  if (seeker && m.state === "submitted") {
    row.append(
      h(
        "button",
        {
          type: "button",
          class: "btn btn-success btn-small milestone-approve",
          "aria-label": `Approve “${m.description}”: release ${formatMoney(m.amount)}`,
          onclick: (ev) => act(ev.currentTarget, () => api.approveMilestone(state.token, m.id), `Approved: ${formatMoney(m.amount)} released to the consultant.`),
        },
        `Approve and release ${formatMoney(m.amount)}`,
      ),
    );
  }
  if (!seeker && m.state === "open") li.append(submitForm(m));
  if (m.state === "open" || m.state === "submitted") {
    row.append(h("button", { type: "button", class: "btn btn-ghost btn-small milestone-dispute", onclick: () => disputeForm(li, m) }, "Dispute"));
  }
  if (row.childElementCount) li.append(row);
  return li;
}

function submitForm(m) {
  const id = `milestone-note-${m.id}`;
  const note = h("textarea", { id, class: "milestone-note", rows: 2, maxlength: 2000 });
  const button = h("button", { type: "submit", class: "btn btn-secondary btn-small milestone-submit" }, "Submit for approval");
  const form = h("form", { class: "form milestone-submit-form", novalidate: true }, h("div", { class: "field" }, h("label", { for: id }, `What you delivered for “${m.description}”`), note), button);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!note.value.trim()) return note.focus();
    act(button, () => api.submitMilestone(state.token, m.id, note.value.trim()), "Milestone submitted: the seeker can approve it.");
  });
  return form;
}

function disputeForm(li, m) {
  if (li.querySelector(".milestone-dispute-form")) return li.querySelector(".milestone-dispute-reason").focus();
  const id = `milestone-dispute-${m.id}`;
  const reason = h("input", { id, class: "milestone-dispute-reason", maxlength: 2000 });
  const button = h("button", { type: "submit", class: "btn btn-danger btn-small milestone-dispute-confirm" }, "Send dispute");
  const form = h(
    "form",
    { class: "form milestone-dispute-form", novalidate: true },
    h("div", { class: "field" }, h("label", { for: id }, "What is wrong? (nothing is released or refunded until a moderator decides)"), reason),
    button,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!reason.value.trim()) return reason.focus();
    act(button, () => api.disputeMilestone(state.token, m.id, reason.value.trim()), "Milestone disputed: a moderator will decide.");
  });
  li.append(form);
  reason.focus();
}

/** The money still held for what is not done: open and submitted milestones, or the package's escrow. */
function unreleased(e) {
  if (e.kind === "milestones") {
    const minor = e.milestones.filter((m) => m.state === "open" || m.state === "submitted").reduce((s, m) => s + m.amount.amount_minor, 0);
    return { amount_minor: minor, currency: e.funded.currency };
  }
  return e.escrowed;
}

function cancelControls(e) {
  const seeker = state.user.role === "seeker";
  const box = h("div", { class: "engagement-cancel-box" });
  const words = h("p", { class: "engagement-refund", hidden: true });
  const confirm = h("button", { type: "button", class: "btn btn-danger btn-small engagement-cancel-confirm", hidden: true }, "Cancel and refund");
  const keep = h("button", { type: "button", class: "btn btn-ghost btn-small engagement-cancel-keep", hidden: true }, "Keep it");
  const cancel = h("button", { type: "button", class: "btn btn-ghost btn-small engagement-cancel" }, "Cancel the engagement");
  cancel.addEventListener("click", () => {
    const back = formatMoney(unreleased(e));
    words.textContent = seeker
      ? `Cancelling refunds ${back} still in escrow to your card, less the platform's cancellation fee; released money stays with the consultant. The refund is stated once done.`
      : `Cancelling refunds ${back} still in escrow to the seeker in full; what was released stays yours.`;
    words.hidden = confirm.hidden = keep.hidden = false;
    cancel.hidden = true;
    confirm.focus();
  });
  keep.addEventListener("click", () => {
    words.hidden = confirm.hidden = keep.hidden = true;
    cancel.hidden = false;
    cancel.focus();
  });
  confirm.addEventListener("click", () =>
    act(confirm, () => api.cancelEngagement(state.token, e.id), (done) => {
      const fee = done.cancel_fee && done.cancel_fee.amount_minor > 0 ? ` (cancellation fee ${formatMoney(done.cancel_fee)})` : "";
      return `Cancelled: ${formatMoney(done.refunded)} refunded${fee}.`;
    }),
  );
  box.append(cancel, words, h("div", { class: "button-row" }, confirm, keep));
  return box;
}

async function act(button, request, said) {
  button.disabled = true;
  try {
    const done = await request();
    clearError();
    setStatus(typeof said === "function" ? said(done) : said);
    drawnKey = "";
    await refreshEngagements();
  } catch (err) {
    showErr(err);
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------
// The profile's funding form (seekers)

/** Shows the funding form for the consultant `p` (a profile): their currency and session lengths. */
export function showEngageForm(p) {
  const seeker = state.user?.role === "seeker";
  $("#engage").hidden = !seeker;
  if (!seeker) return;
  target = {
    id: p.consultant_id,
    name: p.display_name,
    currency: p.price?.amount?.currency || "EUR",
    lengths: p.session_minutes?.length ? p.session_minutes : [60],
  };
  $("#engage-minutes").replaceChildren(...target.lengths.map((m) => h("option", { value: String(m) }, `${m} min`)));
  if (p.price?.model === "fixed" && !$("#engage-price").value) $("#engage-price").value = majorUnits(p.price.amount);
  $("#engage-currency-note").textContent = `Amounts in ${target.currency}.`;
  renderTotal();
}

/** The request of the form, or an error text. */
function readForm() {
  const kind = $("#engage-kind").value;
  const title = $("#engage-title-input").value.trim();
  if (!title) return { error: "Give the engagement a title.", field: "#engage-title-input" };
  const base = { consultant_id: target.id, title, payment_method: $("#payment-method").value };
  if (kind === "package") {
    const sessions = Number($("#engage-sessions").value);
    if (!Number.isInteger(sessions) || sessions < 1 || sessions > 50) return { error: "From 1 to 50 sessions.", field: "#engage-sessions" };
    const price = moneyFromMajor($("#engage-price").value, target.currency);
    if (!price || price.amount_minor < 1) return { error: "Enter the price of one session, e.g. 50 or 49.50.", field: "#engage-price" };
    return { request: { ...base, package: { sessions, minutes: Number($("#engage-minutes").value), price } }, total: sessions * price.amount_minor };
  }
  const rows = [...document.querySelectorAll("#engage-milestones .milestone-row")];
  const milestones = [];
  for (const row of rows) {
    const description = row.querySelector(".ms-description").value.trim();
    const amountText = row.querySelector(".ms-amount").value.trim();
    if (!description && !amountText) continue;
    const amount = moneyFromMajor(amountText, target.currency);
    if (!description) return { error: "Describe every milestone.", field: row.querySelector(".ms-description") };
    if (!amount || amount.amount_minor < 1) return { error: "Enter each milestone's amount, e.g. 400.", field: row.querySelector(".ms-amount") };
    milestones.push({ description, amount });
  }
  if (!milestones.length) return { error: "Add at least one milestone.", field: "#engage-milestones .ms-description" };
  return { request: { ...base, milestones }, total: milestones.reduce((s, m) => s + m.amount.amount_minor, 0) };
}

function renderTotal() {
  const kind = $("#engage-kind").value;
  $("#engage-package").hidden = kind !== "package";
  $("#engage-milestones-box").hidden = kind !== "milestones";
  const read = target ? readForm() : { error: "" };
  const total = $("#engage-total");
  if (read.request) {
    const money = { amount_minor: read.total, currency: target.currency };
    total.dataset.totalMinor = String(read.total);
    total.textContent =
      kind === "package"
        ? `Charged now: ${formatMoney(money)} for ${read.request.package.sessions} sessions of ${read.request.package.minutes} min. Parley holds it in escrow and pays ${target.name} as each session is charged; a session that ends free uses none, and cancelling refunds what is left.`
        : `Charged now: ${formatMoney(money)} for ${read.request.milestones.length} milestones. Parley holds it in escrow; each milestone is released to ${target.name} when you approve it (or on its own a week after it is submitted, unless you dispute it). Cancelling refunds what is not released.`;
  } else {
    delete total.dataset.totalMinor;
    total.textContent = "Fill in the terms to see the total charged now.";
  }
}

/** Row `n` (from 1) of the milestones. */
function milestoneRow(n) {
  return h(
    "li",
    { class: "milestone-row form-inline" },
    h("div", { class: "field" }, h("label", { for: `ms-description-${n}` }, `Milestone ${n}`), h("input", { id: `ms-description-${n}`, class: "ms-description", maxlength: 2000 })),
    h("div", { class: "field" }, h("label", { for: `ms-amount-${n}` }, "Amount"), h("input", { id: `ms-amount-${n}`, class: "ms-amount", inputmode: "decimal", autocomplete: "off" })),
  );
}

async function fund(ev) {
  ev.preventDefault();
  const read = readForm();
  if (read.error) {
    showError("invalid_field", read.error);
    const field = typeof read.field === "string" ? $(read.field) : read.field;
    field?.focus();
    return;
  }
  const button = $("#engage-submit");
  button.disabled = true;
  try {
    const e = await api.createEngagement(state.token, read.request);
    clearError();
    setStatus(`Paid ${formatMoney(e.funded)} into escrow for “${e.title}”. See it under My engagements.`);
    $("#engage-form").reset();
    $("#engage-milestones").replaceChildren(milestoneRow(1), milestoneRow(2));
    renderTotal();
    drawnKey = "";
    await refreshEngagements();
  } catch (err) {
    if (err instanceof ParleyError && err.code === ErrorCode.PAYOUT_ACCOUNT_REQUIRED)
      showError(err.code, `${target.name} cannot receive escrow payments yet (no payout account). Nothing was charged.`);
    else showErr(err);
  } finally {
    button.disabled = false;
  }
}

export function initEscrow() {
  $("#engage-milestones").replaceChildren(milestoneRow(1), milestoneRow(2));
  $("#engage-add-milestone").addEventListener("click", () => {
    const row = milestoneRow(document.querySelectorAll("#engage-milestones .milestone-row").length + 1);
    $("#engage-milestones").append(row);
    row.querySelector("input").focus();
  });
  $("#engage-form").addEventListener("input", renderTotal);
  $("#engage-form").addEventListener("change", renderTotal);
  $("#engage-form").addEventListener("submit", fund);
}
