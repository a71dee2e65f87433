// Seeker: the directory (keyword search and filters over GET /v1/directory),
// a consultant's profile page with reviews and free slots, and the booking form.

import { moneyFromMajor } from "/sdk/js/parley.js";
import { api, state, hooks, serverNow } from "./state.js";
import { $, h, show, showErr, setStatus, setAvatar, PRESENCE_WORDS, currentScreen, busy, clearError } from "./ui.js";
import {
  formatMoney,
  priceText,
  ratingText,
  languagesText,
  dateTime,
  dayLabel,
  timeOfDay,
  viewerZone,
  bookingHold,
  minutesText,
} from "./format.js";
import { refreshBookings } from "./bookings.js";
import { showEngageForm } from "./escrow.js";

const POLL_MS = 4000;
const PAGE = 20;
const MAX_SLOTS = 3;

const dir = {
  items: [],
  next: null,
  tag: null,
  tagsSeen: new Set(),
  timer: null,
  searchTimer: null,
  seq: 0,
};

/** The directory query of the form (`GET /v1/directory` parameters). */
function query() {
  const q = {};
  const text = $("#consultant-search").value.trim();
  if (/[\p{L}\p{N}]/u.test(text)) q.q = text;
  if (dir.tag) q.tag = dir.tag;
  const lang = $("#filter-language").value;
  if (lang) q.language = lang;
  const max = $("#filter-max-price").value.trim();
  if (max) {
    const money = moneyFromMajor(max, "EUR");
    if (money) Object.assign(q, { currency: "EUR", min_price: 0, max_price: money.amount_minor });
  }
  const rating = $("#filter-min-rating").value;
  if (rating) q.min_rating = rating;
  if ($("#filter-available").checked) q.available_now = true;
  const sort = $("#filter-sort").value;
  if (sort) q.sort = sort;
  return q;
}

/** Loads the first page (or, for a refresh, as many items as are shown now). */
export async function refreshDirectory({ keep = false } = {}) {
  if (!state.token || state.user?.role !== "seeker") return;
  const seq = ++dir.seq;
  const limit = keep ? Math.min(50, Math.max(PAGE, dir.items.length)) : PAGE;
  try {
    const page = await api.directory(state.token, { ...query(), limit });
    if (seq !== dir.seq) return; // a newer search is under way
    dir.items = page.items;
    dir.next = page.next_cursor || null;
    renderDirectory();
  } catch (err) {
    if (seq === dir.seq) showErr(err);
  }
}

async function loadMore() {
  if (!dir.next) return;
  const seq = ++dir.seq;
  try {
    const page = await api.directory(state.token, { ...query(), limit: PAGE, cursor: dir.next });
    if (seq !== dir.seq) return;
    dir.items = dir.items.concat(page.items);
    dir.next = page.next_cursor || null;
    renderDirectory();
  } catch (err) {
    showErr(err);
  }
}

function consultantCard(c) {
  const li = h(
    "li",
    { class: "consultant card", dataset: { consultantId: c.id, presence: c.presence, featured: String(!!c.featured) } },
    h("div", { class: "avatar", "aria-hidden": "true" }),
    h(
      "div",
      { class: "consultant-main" },
      h(
        "h2",
        { class: "consultant-name" },
        h("button", { type: "button", class: "link open-profile", onclick: () => openProfile(c.id) }, c.display_name),
        c.featured ? h("span", { class: "featured-badge" }, "Featured") : null,
      ),
      c.headline ? h("p", { class: "consultant-headline" }, c.headline) : null,
      h(
        "p",
        { class: "consultant-presence" },
        h("span", { class: "dot", dataset: { presence: c.presence } }),
        h("span", { class: "presence-text" }, PRESENCE_WORDS[c.presence] || c.presence),
        h("span", { class: "muted" }, ` · ${ratingText(c.rating)}`),
      ),
      h("p", { class: "consultant-price" }, priceText(c.price)),
      c.tags.length ? h("ul", { class: "chips chips-small", "aria-label": "Expertise" }, c.tags.map((t) => h("li", {}, t))) : null,
    ),
    h(
      "button",
      {
        type: "button",
        class: "btn btn-primary call-now",
        disabled: c.presence !== "available",
        "aria-label": `Call ${c.display_name} now`,
        onclick: () => hooks.placeCall({ id: c.id, name: c.display_name, price: c.price }),
      },
      c.presence === "available" ? "Call now" : c.presence === "busy" ? "In a call" : "Offline",
    ),
  );
  setAvatar(li.querySelector(".avatar"), c.display_name);
  return li;
}

let lastKey = "";

function renderDirectory() {
  const list = $("#consultants");
  const key = JSON.stringify([dir.items, dir.next, dir.tag]);
  if (key === lastKey && list.childElementCount) return;
  lastKey = key;
  // Keep keyboard focus on the same control across a refresh.
  const focused = document.activeElement;
  const focusKey = focused && list.contains(focused) ? [focused.closest("[data-consultant-id]")?.dataset.consultantId, focused.className] : null;
  list.replaceChildren(...dir.items.map(consultantCard));
  list.setAttribute("aria-busy", "false");
  if (focusKey) list.querySelector(`[data-consultant-id="${CSS.escape(focusKey[0])}"] [class="${focusKey[1]}"]`)?.focus();
  $("#consultants-empty").hidden = dir.items.length > 0;
  const n = dir.items.length;
  $("#directory-count").textContent = n ? `${n}${dir.next ? "+" : ""} consultant${n === 1 && !dir.next ? "" : "s"} found.` : "";
  $("#directory-more").hidden = !dir.next;
  for (const c of dir.items) for (const t of c.tags) dir.tagsSeen.add(t);
  renderCategories();
}

function renderCategories() {
  const nav = $("#categories");
  const tags = [...dir.tagsSeen].sort().slice(0, 12);
  nav.replaceChildren(
    ...tags.map((t) =>
      h(
        "button",
        {
          type: "button",
          class: "chip",
          "aria-pressed": String(dir.tag === t),
          dataset: { tag: t },
          onclick: () => {
            dir.tag = dir.tag === t ? null : t;
            refreshDirectory();
          },
        },
        t,
      ),
    ),
  );
}

export function startDirectoryPolling() {
  stopDirectoryPolling();
  dir.timer = setInterval(() => {
    if (document.hidden) return;
    // Presence changes are not pushed to seekers: the directory is re-read.
    // Bookings are pushed (booking.updated), not polled.
    if (currentScreen() === "seeker-home") refreshDirectory({ keep: true });
  }, POLL_MS);
}

export function stopDirectoryPolling() {
  clearInterval(dir.timer);
  dir.timer = null;
}


// ---------------------------------------------------------------------------
// Profile page and booking

const profile = {
  current: null,
  /** The booking whose times are being changed, or null. */
  reschedule: null,
  slots: [],
  names: new Map(),
};

/**
 * Opens the profile page of `consultantId`; with `reschedule` (a booking of theirs), the booking form proposes new
 * times for it instead of a new booking.
 */
export async function openProfile(consultantId, { reschedule = null } = {}) {
  clearError();
  try {
    const [p, reviews] = await Promise.all([api.profile(state.token, consultantId), api.reviews(state.token, consultantId)]);
    profile.current = p;
    profile.reschedule = reschedule;
    profile.names.set(p.consultant_id, p.display_name);
    renderProfile(p, reviews);
    const form = $("#book-form");
    form.dataset.mode = reschedule ? "reschedule" : "book";
    $("#book-title").textContent = reschedule ? "Propose new times" : "Book a session";
    if (reschedule) {
      $("#book-length").value = String(reschedule.length_min);
      $("#book-purpose").value = reschedule.purpose;
    }
    $("#book-length").disabled = $("#book-purpose").disabled = !!reschedule;
    $("#profile-back").textContent = state.user.role === "seeker" ? "← Back to the directory" : "← Back to your desk";
    show("profile-view");
    await loadSlots();
  } catch (err) {
    showErr(err);
  }
}

function renderProfile(p, reviews) {
  const view = $("#profile-view");
  view.dataset.consultantId = p.consultant_id;
  setAvatar($("#profile-avatar"), p.display_name);
  $("#profile-name").textContent = p.display_name;
  $("#profile-headline").textContent = p.headline;
  $("#profile-dot").dataset.presence = p.presence;
  $("#profile-presence").textContent = PRESENCE_WORDS[p.presence] || p.presence;
  $("#profile-featured").hidden = !p.featured_until_ms;
  $("#profile-price").textContent = priceText(p.price);
  const purposes = p.purpose_prices || {};
  $("#profile-price-mentorship").textContent = priceText(purposes.mentorship);
  $("#profile-price-interview").textContent = priceText(purposes.interview);
  $("#profile-rating").textContent = ratingText(reviews.reputation || p.rating);
  $("#profile-languages").textContent = p.languages.length ? languagesText(p.languages) : "—";
  $("#profile-zone").textContent = p.time_zone;
  $("#profile-tags").replaceChildren(...p.tags.map((t) => h("li", { class: "chip" }, t)));
  $("#profile-bio").textContent = p.bio;
  // A consultant sees their own profile only to propose new times: no call button.
  $("#profile-call-row").hidden = $("#profile-hold").hidden = state.user.role !== "seeker";
  const call = $("#profile-call");
  call.disabled = p.presence !== "available";
  call.textContent = p.presence === "available" ? `Call ${p.display_name} now` : `${p.display_name} is ${PRESENCE_WORDS[p.presence].toLowerCase()}`;
  call.onclick = () => hooks.placeCall({ id: p.consultant_id, name: p.display_name, price: p.price });
  $("#profile-hold").textContent = holdWords(p.price);
  $("#profile-policy").textContent = policyWords();
  showEngageForm(p);
  const list = $("#profile-reviews");
  list.replaceChildren(
    ...reviews.reviews.map((r) =>
      h(
        "li",
        { class: "review", dataset: { reviewId: r.id } },
        h("p", { class: "review-stars", "aria-label": `${r.stars} out of 5 stars` }, "★".repeat(r.stars) + "☆".repeat(5 - r.stars)),
        r.text ? h("p", { class: "review-text" }, r.text) : null,
        h("p", { class: "muted" }, dateTime(r.created_at_ms)),
        r.reply ? h("blockquote", { class: "review-reply" }, h("strong", {}, `${p.display_name} replied: `), r.reply.text) : null,
      ),
    ),
  );
  $("#profile-reviews-empty").hidden = reviews.reviews.length > 0;
  const lengths = $("#book-length");
  lengths.replaceChildren(...p.session_minutes.map((m) => h("option", { value: String(m) }, `${m} minutes`)));
}

/** What an instant call holds, in words, from the server's terms (GET /v1/policy). */
export function holdWords(price) {
  if (!price) return "Calls with this consultant are free: no card hold.";
  const policy = state.policy;
  const free = policy ? `the free ${minutesText(policy.free_window_secs)}` : "the free window";
  if (price.model === "fixed")
    return `Calling holds ${formatMoney(price.amount)} on your card. You pay it only if the call goes past ${free}; hang up within it and the hold is released in full.`;
  if (!policy)
    return `Calling holds ${formatMoney(price.amount)} × the longest a call may last on your card. Past the free window you pay ${formatMoney(price.amount)} per started minute, at most the hold; within it, nothing.`;
  const hold = bookingHold(price, policy.instant_max_minutes);
  return `Calling holds ${formatMoney(hold)} on your card (${formatMoney(price.amount)} × ${policy.instant_max_minutes} minutes, the longest a call may last). Past ${free} you pay ${formatMoney(price.amount)} per started minute, at most the hold; within it, nothing.`;
}

/** The terms of every call, in words (GET /v1/policy). */
export function policyWords() {
  const p = state.policy;
  if (!p) return "";
  return `The first ${minutesText(p.free_window_secs)} of every call are free: ${minutesText(p.free_window_warning_secs)} before they end you choose to continue (and pay) or end it free. A call lasts at most ${p.instant_max_minutes} minutes.`;
}

/** The cancellation terms of a booking, in words (GET /v1/policy). */
export function cancelWords() {
  const p = state.policy;
  if (!p) return "Cancelling more than 24 hours before the start is free; later, a late-cancellation fee of part of the hold is charged.";
  const before = p.free_cancel_before_secs % 3600 ? minutesText(p.free_cancel_before_secs) : `${p.free_cancel_before_secs / 3600} hours`;
  return `Cancelling or rescheduling more than ${before} before the start is free. Later, cancelling costs a late-cancellation fee of ${p.late_cancel_fee_percent}% of the hold.`;
}

async function loadSlots() {
  const p = profile.current;
  if (!p) return;
  const length = Number($("#book-length").value) || p.session_minutes[0];
  const box = $("#profile-slots");
  try {
    // The server's "now" is the default start (never the browser's clock).
    const res = await api.slots(state.token, p.consultant_id, { length_min: length });
    // A slot starting this very minute cannot be booked any more.
    const soonest = serverNow() + 60e3;
    profile.slots = res.slots.filter((s) => s.start_ms > soonest).slice(0, 40);
    const zone = viewerZone();
    $("#book-zones").textContent =
      zone === res.time_zone ? `(times in ${zone})` : `(times in your zone, ${zone}; ${p.display_name} is in ${res.time_zone})`;
    const groups = new Map();
    for (const s of profile.slots) {
      const day = dayLabel(s.start_ms, zone);
      if (!groups.has(day)) groups.set(day, []);
      groups.get(day).push(s);
    }
    box.replaceChildren(
      ...[...groups].map(([day, slots]) =>
        h(
          "div",
          { class: "slot-day" },
          h("h3", { class: "slot-day-title" }, day),
          h(
            "div",
            { class: "slot-row" },
            slots.map((s) => {
              const theirs = zone === res.time_zone ? "" : ` (${timeOfDay(s.start_ms, res.time_zone)} for ${p.display_name})`;
              return h(
                "label",
                { class: "slot" },
                h("input", { type: "checkbox", value: String(s.start_ms), dataset: { startMs: String(s.start_ms) }, onchange: onSlotPick }),
                ` ${timeOfDay(s.start_ms, zone)}`,
                theirs ? h("span", { class: "muted" }, theirs) : null,
              );
            }),
          ),
        ),
      ),
    );
    $("#profile-slots-empty").hidden = profile.slots.length > 0;
  } catch (err) {
    box.replaceChildren();
    $("#profile-slots-empty").hidden = false;
    $("#profile-slots-empty").textContent = "This consultant hasn't opened their calendar yet.";
    if (err.code !== "slot_unavailable") showErr(err);
  }
  onSlotPick();
}

function pickedSlots() {
  return [...$("#profile-slots").querySelectorAll("input:checked")].map((i) => Number(i.value));
}

/** At most three picks; the summary states price, hold timing and the cancellation policy. */
function onSlotPick() {
  const picked = pickedSlots();
  for (const i of $("#profile-slots").querySelectorAll("input")) i.disabled = !i.checked && picked.length >= MAX_SLOTS;
  $("#book-submit").disabled = picked.length === 0;
  const verb = profile.reschedule ? "Propose new times" : "Request booking";
  $("#book-submit").textContent = picked.length > 1 ? `${verb} (${picked.length} times)` : verb;
  const p = profile.current;
  if (!p) return;
  const length = Number($("#book-length").value);
  const purpose = $("#book-purpose").value;
  const lines = [];
  const price = purpose === "consultation" ? p.price : (p.purpose_prices || {})[purpose];
  {
    const hold = bookingHold(price, length);
    lines.push(
      price
        ? price.model === "fixed"
          ? `Price: ${formatMoney(price.amount)} for the session.`
          : `Price: ${formatMoney(price.amount)} a minute past the free window, at most ${formatMoney(hold)} (${length} minutes).`
        : "Price: free.",
    );
    const pol = state.policy;
    const atOnce = pol ? Math.round(pol.hold_at_confirmation_within_secs / 86400) : 6;
    const before = pol ? Math.round(pol.hold_before_secs / 3600) : 24;
    const free = pol ? `the free ${minutesText(pol.free_window_secs)}` : "the free window";
    if (hold)
      lines.push(
        `When ${p.display_name} accepts, we hold ${formatMoney(hold)} on your card — at once if the session is within ${atOnce} days, otherwise ${before} hours before it. You pay only if the session goes past ${free}.`,
      );
  }
  lines.push(cancelWords());
  if (picked.length)
    lines.push(`${p.display_name} picks one of: ${picked.map((ms) => dateTime(ms)).join("; ")}. They have until the first of these to answer.`);
  $("#book-summary").replaceChildren(...lines.map((l) => h("p", {}, l)));
}

async function submitBooking(ev) {
  ev.preventDefault();
  const p = profile.current;
  const slots = pickedSlots();
  if (!p || !slots.length) return;
  if (profile.reschedule) {
    await busy($("#book-submit"), async () => {
      try {
        await api.rescheduleBooking(state.token, profile.reschedule.id, slots);
        setStatus(
          state.user.role === "seeker"
            ? `New times proposed: ${p.display_name} will pick one of them.`
            : `New times proposed to ${profile.reschedule.seeker_name}: the booking is pending again.`,
        );
        profile.reschedule = null;
        hooks.home();
        refreshBookings();
      } catch (err) {
        showErr(err, { consultantName: p.display_name });
        if (err.code === "slot_taken" || err.code === "slot_unavailable" || err.code === "slot_in_past") loadSlots();
      }
    });
    return;
  }
  await busy($("#book-submit"), async () => {
    try {
      const booking = await api.proposeBooking(state.token, {
        consultant_id: p.consultant_id,
        slots,
        length_min: Number($("#book-length").value),
        purpose: $("#book-purpose").value,
        payment_method: $("#payment-method").value,
        record: $("#record-request").checked,
      });
      const price = booking.price ? ` Price: ${priceText(booking.price)}.` : "";
      setStatus(`Booking requested: ${p.display_name} will pick one of your times.${price}`);
      hooks.home();
      refreshBookings();
    } catch (err) {
      showErr(err, { consultantName: p.display_name });
      if (err.code === "slot_taken" || err.code === "slot_unavailable" || err.code === "slot_in_past") loadSlots();
    }
  });
}

export function initDirectory() {
  $("#directory-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    refreshDirectory();
  });
  $("#consultant-search").addEventListener("input", () => {
    clearTimeout(dir.searchTimer);
    dir.searchTimer = setTimeout(() => refreshDirectory(), 250);
  });
  for (const id of ["#filter-language", "#filter-min-rating", "#filter-sort", "#filter-available", "#filter-max-price"]) {
    $(id).addEventListener("change", () => refreshDirectory());
  }
  $("#directory-more").addEventListener("click", loadMore);
  $("#profile-back").addEventListener("click", () => hooks.home());
  $("#book-length").addEventListener("change", loadSlots);
  $("#book-purpose").addEventListener("change", onSlotPick);
  $("#book-form").addEventListener("submit", submitBooking);
}
