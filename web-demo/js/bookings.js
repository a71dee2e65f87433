// Scheduled sessions for both sides: pending requests, upcoming sessions,
// past ones; cancel (with the late fee stated), propose new times (either
// side), accept one proposed time or decline (consultants), Join once the
// room is open. The list is read once (GET /v1/bookings) after connecting
// and kept up to date from the server's `booking.updated` pushes; a slow
// refresh and every reconnection read it again (pushes missed while away).

import { api, state, hooks, serverNow, syncClock } from "./state.js";
import { $, h, showErr, setStatus, busy, clearError } from "./ui.js";
import { formatMoney, priceText, dateTime, relative, bookingHold } from "./format.js";

/** Cancelling closer than this to the start costs the seeker a fee (GET /v1/policy; docs/protocol.md §13.30). */
const lateCancelMs = () => (state.policy ? state.policy.free_cancel_before_secs * 1000 : 24 * 3600e3);

const names = new Map();

/** A display name for a user id: consultants from their profile; others as their id. */
export async function nameOf(id, isConsultant) {
  if (names.has(id)) return names.get(id);
  let name = id;
  if (isConsultant) {
    try {
      name = (await api.profile(state.token, id)).display_name;
    } catch {
      /* keep the id */
    }
  }
  names.set(id, name);
  return name;
}

/** Remembers a name learnt elsewhere (the directory, an incoming call). */
export function rememberName(id, name) {
  if (id && name) names.set(id, name);
}

function groupOf(b, now) {
  if (b.state === "pending") return "pending";
  if (b.state === "confirmed") return "upcoming";
  if (b.state === "held" && b.start_ms + (b.length_min + 15) * 60e3 > now) return "upcoming";
  return "past";
}

const GROUPS = [
  ["pending", "Waiting for an answer"],
  ["upcoming", "Upcoming"],
  ["past", "Past and cancelled"],
];

const STATE_WORDS = {
  pending: "Requested",
  confirmed: "Confirmed",
  held: "Room open",
  declined: "Declined",
  expired: "Expired (no answer)",
  cancelled: "Cancelled",
};

/** The bookings shown, by id (newest first when listed, as the API lists them). */
const known = new Map();

let refreshing = null;
/** Choices being made survive a redraw: the time picked to accept, the cancellations being confirmed. */
const chosenStart = new Map();
const confirming = new Set();

/** Re-reads the bookings and redraws the list of the signed-in side. */
export function refreshBookings() {
  if (!state.token) return Promise.resolve();
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      await syncClock();
      const { bookings } = await api.bookings(state.token);
      known.clear();
      for (const b of bookings) known.set(b.id, b);
      await render(listed());
    } catch (err) {
      console.warn("bookings", err);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** Forgets the bookings of the user who signed out. */
export function forgetBookings() {
  known.clear();
  lastKey = "";
}

function listed() {
  return [...known.values()].sort((a, b) => b.created_ms - a.created_ms || (a.id < b.id ? 1 : -1));
}

/** What happened, in words, for a change the other side made. */
function changeWords(b, before) {
  const isSeeker = state.user.role === "seeker";
  const other = isSeeker ? b.consultant_name : b.seeker_name;
  if (before && before.state === b.state && before.session_id === b.session_id) return null;
  switch (b.state) {
    case "pending":
      if (before && before.session_id !== b.session_id) return `New times proposed for your session with ${other}.`;
      return isSeeker ? null : `New booking request from ${other}.`;
    case "confirmed":
      return isSeeker ? `${other} accepted: your session is on ${dateTime(b.start_ms)}.` : null;
    case "declined":
      return isSeeker ? `${other} declined your booking${b.reason ? `: “${b.reason}”` : "."}` : null;
    case "cancelled":
      return b.cancelled_by && b.cancelled_by !== state.user.id ? `${other} cancelled the session on ${dateTime(b.start_ms ?? b.proposed[0])}.` : null;
    case "expired":
      return `The booking with ${other} expired without an answer.`;
    default:
      return null;
  }
}

/** `booking.updated`: one booking changed; redraw from what is known (no request). */
export async function onBookingUpdated(m) {
  if (!state.user) return;
  const b = m.booking;
  const before = known.get(b.id);
  known.set(b.id, b);
  const words = changeWords(b, before);
  if (words) setStatus(words);
  await render(listed());
}

let lastKey = "";

async function render(bookings) {
  const isSeeker = state.user.role === "seeker";
  const root = isSeeker ? $("#my-bookings .bookings-groups") : $("#consultant-bookings");
  const now = serverNow();
  // Redraw only when something changed (a redraw would reset a choice being made).
  const key = `${state.user.id}|${Math.floor(now / 60000)}|${JSON.stringify(bookings)}`;
  if (key === lastKey && root.childElementCount) return;
  lastKey = key;
  const other = bookings.map((b) => (isSeeker ? b.consultant_name : b.seeker_name) || (isSeeker ? b.consultant_id : b.seeker_id));
  // Keep focus where it was across the redraw.
  const focused = document.activeElement;
  const focusKey = root.contains(focused) ? [focused.closest("[data-booking-id]")?.dataset.bookingId, focused.className] : null;
  const lists = GROUPS.map(([key, title]) => {
    const items = bookings
      .map((b, i) => [b, other[i]])
      .filter(([b]) => groupOf(b, now) === key)
      .sort(([a], [b]) => (key === "past" ? 0 : (a.start_ms ?? a.proposed[0]) - (b.start_ms ?? b.proposed[0])))
      .map(([b, name]) => bookingItem(b, name, isSeeker, now));
    return h(
      "section",
      { class: "bookings-group", dataset: { group: key } },
      h("h3", { class: "bookings-group-title" }, `${title} (${items.length})`),
      items.length
        ? h("ul", { class: "plain-list bookings", id: `bookings-${key}` }, items)
        : h("p", { class: "empty", id: `bookings-${key}` }, "None."),
    );
  });
  root.replaceChildren(...lists);
  if (focusKey?.[0]) root.querySelector(`[data-booking-id="${CSS.escape(focusKey[0])}"] [class="${focusKey[1]}"]`)?.focus();
}

function bookingItem(b, name, isSeeker, now) {
  const who = isSeeker ? `with ${name}` : `${name} (seeker)`;
  const lines = [];
  if (b.state === "pending") {
    lines.push(`Proposed: ${b.proposed.map((ms) => dateTime(ms)).join(" · ")}`);
    lines.push(`${isSeeker ? "They answer" : "Answer"} by ${dateTime(b.respond_by_ms)}.`);
  } else if (b.start_ms != null) {
    lines.push(`${dateTime(b.start_ms)} (${relative(b.start_ms, now)}), ${b.length_min} min`);
    if (b.state === "confirmed") lines.push(`The room opens at ${dateTime(b.opens_at_ms)}, 10 minutes before the start.`);
  }
  if (b.price) {
    const hold = bookingHold(b.price, b.length_min);
    const holdWords = {
      scheduled: `the hold of ${formatMoney(hold)} is placed 24 hours before the start`,
      placing: `the hold of ${formatMoney(hold)} is being placed`,
      held: `${formatMoney(hold)} on hold`,
      failed: `the hold was refused${b.hold_error ? `: ${b.hold_error}` : ""}`,
      released: "hold released",
      captured: "charged",
    };
    lines.push(`${priceText(b.price)}${holdWords[b.hold_status] ? ` · ${holdWords[b.hold_status]}` : ""}`);
  } else lines.push("Free session");
  if (b.cancellation_fee && b.cancellation_fee.amount_minor > 0) lines.push(`Late-cancellation fee: ${formatMoney(b.cancellation_fee)}`);
  if (b.reason) lines.push(`“${b.reason}”`);
  if (b.state === "cancelled" && b.cancelled_by) lines.push(b.cancelled_by === state.user.id ? "You cancelled." : "Cancelled by the other side.");

  const actions = [];
  if (b.state === "held") {
    actions.push(
      h(
        "button",
        {
          type: "button",
          class: "btn btn-success booking-join",
          onclick: () =>
            hooks.enterSession(b.session_id, { peer: { id: isSeeker ? b.consultant_id : b.seeker_id, name, price: b.price } }),
        },
        "Join",
      ),
    );
  } else if (b.state === "confirmed") {
    actions.push(h("span", { class: "muted booking-wait" }, `Join opens ${relative(b.opens_at_ms, now)}`));
  }
  if (!isSeeker && b.state === "pending") {
    const select = h(
      "select",
      { class: "booking-slot", "aria-label": "Time to accept", onchange: (ev) => chosenStart.set(b.id, ev.currentTarget.value) },
      b.proposed.filter((ms) => ms > now).map((ms) => h("option", { value: String(ms) }, dateTime(ms))),
    );
    if (chosenStart.has(b.id)) select.value = chosenStart.get(b.id);
    actions.push(
      select,
      h("button", { type: "button", class: "btn btn-success booking-accept", onclick: (ev) => accept(b, Number(select.value), ev.currentTarget) }, "Accept"),
      h("button", { type: "button", class: "btn btn-ghost booking-decline", onclick: (ev) => decline(b, ev.currentTarget) }, "Decline"),
    );
  }
  if (b.state === "pending" || (b.state === "confirmed" && b.start_ms - now > lateCancelMs())) {
    actions.push(
      h(
        "button",
        { type: "button", class: "btn btn-ghost booking-reschedule", onclick: () => hooks.openProfile(b.consultant_id, { reschedule: b }) },
        "Propose new times…",
      ),
    );
  }
  if (b.state === "pending" || b.state === "confirmed") {
    const late = isSeeker && b.state === "confirmed" && b.start_ms - now < lateCancelMs() && b.price;
    const hold = b.price ? bookingHold(b.price, b.length_min) : null;
    const percent = state.policy?.late_cancel_fee_percent;
    const feeNote = late
      ? percent != null
        ? `Cancelling now is late (less than ${Math.round(lateCancelMs() / 3600e3)} hours before): a fee of ${percent}% of the ${formatMoney(hold)} hold, ${formatMoney({ amount_minor: Math.floor((hold.amount_minor * percent) / 100), currency: hold.currency })}, is charged.`
        : `Cancelling now is late (less than 24 hours before): a fee of part of the ${formatMoney(hold)} hold is charged.`
      : isSeeker
        ? "Cancelling now is free."
        : "Cancelling never costs the seeker anything.";
    const confirmRow = h(
      "div",
      { class: "booking-confirm", hidden: !confirming.has(b.id) },
      h("p", { class: "booking-fee" }, feeNote),
      h("button", { type: "button", class: "btn btn-danger booking-cancel-confirm", onclick: (ev) => cancel(b, ev.currentTarget) }, "Yes, cancel"),
      h(
        "button",
        {
          type: "button",
          class: "btn btn-ghost booking-cancel-keep",
          onclick: () => {
            confirming.delete(b.id);
            confirmRow.hidden = true;
          },
        },
        "Keep it",
      ),
    );
    actions.push(
      h(
        "button",
        {
          type: "button",
          class: "btn btn-ghost booking-cancel",
          onclick: () => {
            confirming.add(b.id);
            confirmRow.hidden = false;
            confirmRow.querySelector(".booking-cancel-confirm").focus();
          },
        },
        "Cancel…",
      ),
      confirmRow,
    );
  }
  return h(
    "li",
    {
      class: "booking",
      dataset: { bookingId: b.id, state: b.state, sessionId: b.session_id, startMs: b.start_ms ?? "", opensAtMs: b.opens_at_ms ?? "" },
    },
    h("p", {}, h("strong", {}, `${b.length_min}-minute ${b.purpose} ${who}`), " ", h("span", { class: "state-chip" }, STATE_WORDS[b.state] || b.state)),
    ...lines.map((l) => h("p", { class: "muted" }, l)),
    actions.length ? h("div", { class: "button-row booking-actions" }, actions) : null,
  );
}

/** Shows a booking an action of ours returned (the push that follows changes nothing). */
async function applyBooking(b) {
  known.set(b.id, b);
  await render(listed());
}

/** Runs one booking action; on success shows the booking it returned, on failure re-reads the list. */
async function act(button, run, done) {
  await busy(button, async () => {
    try {
      const out = await run();
      clearError();
      done(out);
      await applyBooking(out);
    } catch (err) {
      showErr(err);
      await refreshBookings();
    }
  });
}

function accept(b, startMs, button) {
  return act(button, () => api.acceptBooking(state.token, b.id, startMs), () => setStatus(`Booking confirmed for ${dateTime(startMs)}.`));
}

function decline(b, button) {
  return act(button, () => api.declineBooking(state.token, b.id), () => setStatus("Booking declined."));
}

function cancel(b, button) {
  return act(
    button,
    () => api.cancelBooking(state.token, b.id),
    (out) => {
      const fee = out.cancellation_fee && out.cancellation_fee.amount_minor > 0 ? ` A late-cancellation fee of ${formatMoney(out.cancellation_fee)} was charged.` : "";
      setStatus(`Booking cancelled.${fee}`);
    },
  );
}

/** `booking.reminder`: the start is near, or the room just opened. */
export async function onReminder(m) {
  await syncClock();
  await refreshBookings();
  const open = m.opens_at_ms <= serverNow() + 1000;
  setStatus(open ? `Your session's room is open: join now (starts ${dateTime(m.start_ms)}).` : `Reminder: a session starts ${dateTime(m.start_ms)}.`, {
    sticky: open,
  });
}
