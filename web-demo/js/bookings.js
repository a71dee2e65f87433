// Scheduled sessions for both sides (GET /v1/bookings): pending requests,
// upcoming sessions, past ones; cancel (with the late fee stated), accept
// one proposed time or decline (consultants), Join once the room is open.

import { api, state, hooks, serverNow, syncClock } from "./state.js";
import { $, h, showErr, setStatus, busy, clearError } from "./ui.js";
import { formatMoney, priceText, dateTime, relative, bookingHold } from "./format.js";

/** Cancelling closer than this to the start costs the seeker a fee (docs/protocol.md §13.30). */
const LATE_CANCEL_MS = 24 * 3600e3;

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
      await render(bookings);
    } catch (err) {
      console.warn("bookings", err);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
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
  const other = await Promise.all(
    bookings.map((b) => (isSeeker ? nameOf(b.consultant_id, true) : nameOf(b.seeker_id, false))),
  );
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
  if (isSeeker && (b.state === "pending" || (b.state === "confirmed" && b.start_ms - now > LATE_CANCEL_MS))) {
    actions.push(
      h(
        "button",
        { type: "button", class: "btn btn-ghost booking-reschedule", onclick: () => hooks.openProfile(b.consultant_id, { reschedule: b }) },
        "Propose new times…",
      ),
    );
  }
  if (b.state === "pending" || b.state === "confirmed") {
    const late = isSeeker && b.state === "confirmed" && b.start_ms - now < LATE_CANCEL_MS && b.price;
    const feeNote = late
      ? `Cancelling now is late (less than 24 hours before): a fee of part of the ${formatMoney(bookingHold(b.price, b.length_min))} hold is charged.`
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

async function accept(b, startMs, button) {
  await busy(button, async () => {
    try {
      await api.acceptBooking(state.token, b.id, startMs);
      clearError();
      setStatus(`Booking confirmed for ${dateTime(startMs)}.`);
    } catch (err) {
      showErr(err);
    }
    await refreshBookings();
  });
}

async function decline(b, button) {
  await busy(button, async () => {
    try {
      await api.declineBooking(state.token, b.id);
      setStatus("Booking declined.");
    } catch (err) {
      showErr(err);
    }
    await refreshBookings();
  });
}

async function cancel(b, button) {
  await busy(button, async () => {
    try {
      const out = await api.cancelBooking(state.token, b.id);
      const fee = out.cancellation_fee && out.cancellation_fee.amount_minor > 0 ? ` A late-cancellation fee of ${formatMoney(out.cancellation_fee)} was charged.` : "";
      setStatus(`Booking cancelled.${fee}`);
    } catch (err) {
      showErr(err);
    }
    await refreshBookings();
  });
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
