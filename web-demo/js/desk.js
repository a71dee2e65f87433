// Consultant desk: profile editor with preview, prices in major units (per
// purpose), recording consent, the weekly availability grid, earnings.

import { ErrorCode, majorUnits, moneyFromMajor } from "/sdk/js/parley.js";
import { api, state } from "./state.js";
import { $, h, showError, showErr, setStatus, setAvatar, busy, clearError } from "./ui.js";
import { formatMoney, priceText, dateTime, languagesText, ratingText, viewerZone } from "./format.js";
import { disputedSessions, disputeButton } from "./disputes.js";

const WEEKDAYS = [
  ["mon", "Monday"],
  ["tue", "Tuesday"],
  ["wed", "Wednesday"],
  ["thu", "Thursday"],
  ["fri", "Friday"],
  ["sat", "Saturday"],
  ["sun", "Sunday"],
];

const desk = { profile: null, availability: null };

/** Loads everything the desk shows. */
export async function loadDesk() {
  for (const form of ["#profile-form", "#price-form", "#week-form"]) {
    delete $(form).dataset.dirty;
    delete $(form).dataset.loaded;
  }
  await Promise.all([loadPrice(), loadProfile(), loadConsent(), refreshEarnings(), loadPromotions(), loadMetrics(), loadMyReviews()]);
  await loadAvailability();
}

// ---------------------------------------------------------------------------
// Prices

async function loadPrice() {
  try {
    state.price = await api.myPrice(state.token);
    $("#price-form").dataset.loaded = "true";
    if ($("#price-form").dataset.dirty) return; // the consultant is already typing
    renderPrice(state.price);
  } catch (err) {
    showErr(err);
  }
}

function renderPrice(price) {
  if (price) {
    $("#price-amount").value = majorUnits(price.amount);
    $("#price-model").value = price.model;
    $("#price-currency").value = price.amount.currency;
    $("#price-current").textContent = `Now: ${priceText(price)}.`;
  } else {
    $("#price-current").textContent = "You have no price: your calls are free.";
  }
  $("#price-amount-unit").textContent = `(${$("#price-currency").value}, e.g. 30 or 1.50)`;
}

async function savePrice(ev) {
  ev.preventDefault();
  const currency = $("#price-currency").value;
  const model = $("#price-model").value;
  const amount = moneyFromMajor($("#price-amount").value, currency);
  if (!amount || amount.amount_minor <= 0) {
    showError(ErrorCode.INVALID_PRICE, `Enter a price above zero in ${currency}, e.g. 30 or 1.50.`);
    $("#price-amount").focus();
    return;
  }
  const purposes = [];
  for (const purpose of ["mentorship", "interview"]) {
    const input = $(`#price-${purpose}`);
    // The server has no way to read a purpose price back: leave it alone unless this field was edited.
    if (!input.dataset.touched) continue;
    const raw = input.value.trim();
    if (!raw) {
      purposes.push([purpose, null]);
      continue;
    }
    const m = moneyFromMajor(raw, currency);
    if (!m) {
      showError(ErrorCode.INVALID_PRICE, `Enter the ${purpose} price in ${currency} (0 for free), or leave it blank.`);
      $(`#price-${purpose}`).focus();
      return;
    }
    purposes.push([purpose, m]);
  }
  await busy($("#price-save"), async () => {
    try {
      const price = await api.setPrice(state.token, { model, amount });
      for (const [purpose, m] of purposes) {
        if (m) await api.setPurposePrice(state.token, purpose, { model, amount: m });
        else await api.deletePurposePrice(state.token, purpose);
        delete $(`#price-${purpose}`).dataset.touched;
      }
      state.price = price;
      renderPrice(price);
      renderPreview();
      clearError();
      setStatus(`Price saved: ${priceText(price)}.`);
    } catch (err) {
      showErr(err);
    }
  });
}

// ---------------------------------------------------------------------------
// Recording consent

async function loadConsent() {
  try {
    $("#recording-consent").checked = (await api.recordingConsent(state.token)).allowed;
  } catch (err) {
    console.warn("recording consent", err);
  }
}

async function saveConsent() {
  const box = $("#recording-consent");
  try {
    await api.setRecordingConsent(state.token, box.checked);
    setStatus(box.checked ? "Premium seekers may now ask to record." : "Recording is off for your sessions.");
  } catch (err) {
    box.checked = !box.checked;
    showErr(err);
  }
}

// ---------------------------------------------------------------------------
// Profile

const splitList = (text) =>
  text
    .split(/[,;\n]/)
    .map((s) => s.trim())
    .filter(Boolean);

function formProfile() {
  return {
    display_name: $("#profile-display-name").value.trim(),
    headline: $("#profile-headline-input").value.trim(),
    bio: $("#profile-bio-input").value,
    tags: splitList($("#profile-tags-input").value),
    languages: splitList($("#profile-languages-input").value),
    time_zone: $("#profile-time-zone").value.trim(),
    session_minutes: [...$("#profile-lengths").querySelectorAll("input:checked")].map((i) => Number(i.value)),
  };
}

async function loadProfile() {
  let p = null;
  try {
    p = await api.myProfile(state.token);
  } catch (err) {
    if (err.code !== ErrorCode.UNKNOWN_CONSULTANT) showErr(err);
  }
  desk.profile = p;
  $("#profile-form").dataset.loaded = "true";
  renderPayout();
  // Never overwrite what the consultant started typing while this loaded.
  if ($("#profile-form").dataset.dirty) {
    renderLive();
    return;
  }
  $("#profile-display-name").value = p?.display_name ?? state.user.name;
  $("#profile-headline-input").value = p?.headline ?? "";
  $("#profile-bio-input").value = p?.bio ?? "";
  $("#profile-tags-input").value = (p?.tags ?? []).join(", ");
  $("#profile-languages-input").value = (p?.languages ?? ["en"]).join(", ");
  $("#profile-time-zone").value = p?.time_zone ?? viewerZone();
  if (p) for (const i of $("#profile-lengths").querySelectorAll("input")) i.checked = p.session_minutes.includes(Number(i.value));
  renderLive();
  renderPreview();
  renderPayout();
}

function renderLive() {
  const p = desk.profile;
  const live = $("#profile-live");
  live.dataset.live = String(!!p);
  live.textContent = p
    ? `Live in the directory as “${p.display_name}”${p.featured_until_ms ? `, featured until ${dateTime(p.featured_until_ms)}` : ""}.`
    : "Not in the directory yet: save your profile below to be listed.";
}

function renderPreview() {
  const p = formProfile();
  const box = $("#profile-preview");
  const avatar = h("div", { class: "avatar", "aria-hidden": "true" });
  setAvatar(avatar, p.display_name);
  box.replaceChildren(
    avatar,
    h(
      "div",
      { class: "consultant-main" },
      h("p", { class: "consultant-name" }, p.display_name || "Your name"),
      p.headline ? h("p", { class: "consultant-headline" }, p.headline) : null,
      h("p", { class: "consultant-price" }, priceText(state.price)),
      h("p", { class: "muted" }, `${languagesText(p.languages)} · ${ratingText(desk.profile?.rating)}`),
      p.tags.length ? h("ul", { class: "chips chips-small" }, p.tags.map((t) => h("li", {}, t.toLowerCase()))) : null,
    ),
  );
}

async function saveProfile(ev) {
  ev.preventDefault();
  const p = formProfile();
  if (!p.display_name) {
    showError(ErrorCode.INVALID_FIELD, "Enter the name seekers will see.");
    $("#profile-display-name").focus();
    return;
  }
  if (!p.session_minutes.length) {
    showError(ErrorCode.INVALID_FIELD, "Offer at least one session length.");
    return;
  }
  await busy($("#profile-save"), async () => {
    try {
      desk.profile = await api.setProfile(state.token, p);
      clearError();
      renderLive();
      renderPreview();
      renderPayout();
      setStatus("Profile saved: you're listed in the directory.");
      if (!desk.availability) $("#week-zone").textContent = desk.profile.time_zone;
    } catch (err) {
      showErr(err);
    }
  });
}

// ---------------------------------------------------------------------------
// Weekly availability

function weekRows() {
  $("#week-rows").replaceChildren(
    ...WEEKDAYS.map(([d, name]) =>
      h(
        "tr",
        { dataset: { weekday: d } },
        h("th", { scope: "row" }, name),
        h("td", {}, h("input", { type: "checkbox", id: `avail-${d}-on`, "aria-label": `Open on ${name}` })),
        h("td", {}, h("input", { type: "time", id: `avail-${d}-start`, value: "09:00", "aria-label": `${name} from` })),
        h("td", {}, h("input", { type: "time", id: `avail-${d}-end`, value: "17:00", "aria-label": `${name} to` })),
      ),
    ),
  );
}

async function loadAvailability() {
  let a = null;
  try {
    a = await api.myAvailability(state.token);
  } catch (err) {
    console.warn("availability", err);
  }
  desk.availability = a;
  $("#week-form").dataset.loaded = "true";
  if ($("#week-form").dataset.dirty) return; // the consultant is already editing
  weekRows();
  $("#week-zone").textContent = a?.time_zone ?? desk.profile?.time_zone ?? viewerZone();
  exceptions = (a?.exceptions ?? []).map((x) => ({ date: x.date, windows: x.windows }));
  renderExceptions();
  if (!a) return;
  for (const [d] of WEEKDAYS) {
    const rule = a.weekly.find((r) => r.weekday === d);
    $(`#avail-${d}-on`).checked = !!rule;
    if (rule) {
      $(`#avail-${d}-start`).value = rule.start;
      $(`#avail-${d}-end`).value = rule.end === "24:00" ? "23:59" : rule.end;
    }
  }
}

/** The date exceptions being edited: `{date, windows: [{start, end}]}` (no windows: closed that day). */
let exceptions = [];

function renderExceptions() {
  $("#exception-rows").replaceChildren(
    ...exceptions
      .slice()
      .sort((a, b) => a.date.localeCompare(b.date))
      .map((x) =>
        h(
          "li",
          { class: "exception", dataset: { date: x.date } },
          h("span", {}, `${x.date}: ${x.windows.length ? x.windows.map((w) => `${w.start}–${w.end}`).join(", ") : "closed"}`),
          h(
            "button",
            {
              type: "button",
              class: "btn btn-ghost btn-small exception-remove",
              "aria-label": `Remove the exception of ${x.date}`,
              onclick: () => {
                exceptions = exceptions.filter((e) => e.date !== x.date);
                renderExceptions();
              },
            },
            "Remove",
          ),
        ),
      ),
  );
}

function addException() {
  const date = $("#exception-date").value;
  if (!date) {
    showError(ErrorCode.INVALID_FIELD, "Pick the date of the exception.");
    $("#exception-date").focus();
    return;
  }
  const start = $("#exception-start").value;
  const end = $("#exception-end").value;
  if ((start || end) && !(start && end && start < end)) {
    showError(ErrorCode.INVALID_FIELD, "Give both times, the first before the second, or leave both blank for a day off.");
    $("#exception-start").focus();
    return;
  }
  clearError();
  exceptions = exceptions.filter((e) => e.date !== date).concat([{ date, windows: start ? [{ start, end }] : [] }]);
  renderExceptions();
  setStatus(`Exception for ${date} added: save your availability to publish it.`);
}

async function saveAvailability(ev) {
  ev.preventDefault();
  const weekly = [];
  for (const [d] of WEEKDAYS) {
    if (!$(`#avail-${d}-on`).checked) continue;
    const end = $(`#avail-${d}-end`).value;
    weekly.push({ weekday: d, start: $(`#avail-${d}-start`).value, end: end === "23:59" ? "24:00" : end });
  }
  const zone = desk.profile?.time_zone || $("#profile-time-zone").value.trim() || viewerZone();
  const lengths = desk.profile?.session_minutes || formProfile().session_minutes;
  await busy($("#week-save"), async () => {
    try {
      desk.availability = await api.setAvailability(state.token, {
        time_zone: zone,
        session_lengths_min: lengths,
        weekly,
        exceptions,
      });
      $("#week-zone").textContent = zone;
      clearError();
      setStatus(weekly.length ? `Availability saved: ${weekly.length} day${weekly.length === 1 ? "" : "s"} a week.` : "Availability saved: no open days.");
    } catch (err) {
      showErr(err);
    }
  });
}

// ---------------------------------------------------------------------------
// Earnings

export async function refreshEarnings() {
  if (!state.user || state.user.role !== "consultant") return;
  try {
    const e = await api.earnings(state.token, state.user.id);
    const totals = e.totals || [];
    const currency = state.price?.amount?.currency || "EUR";
    $("#earnings-total").textContent = totals.length
      ? totals.map((t) => formatMoney(t.earnings)).join(" · ")
      : formatMoney({ amount_minor: 0, currency });
    const count = totals.reduce((n, t) => n + t.sessions, 0);
    $("#earnings-count").textContent = count === 1 ? "From 1 paid session." : `From ${count} paid sessions.`;
    const disputed = disputedSessions();
    $("#earnings-sessions").replaceChildren(
      ...(e.sessions || []).slice(0, 10).map((s) =>
        h(
          "li",
          { dataset: { sessionId: s.session_id } },
          h("span", {}, `${formatMoney(s.earnings)} earned`),
          h("span", { class: "muted" }, `${dateTime(s.at_ms)} · ${formatMoney(s.captured)} paid, ${formatMoney(s.fee)} commission`),
          s.captured.amount_minor > 0 && !disputed.has(s.session_id) ? disputeButton(s.session_id, `the session of ${dateTime(s.at_ms)}`) : null,
        ),
      ),
    );
    return e;
  } catch (err) {
    console.warn("earnings", err);
  }
}

/** After a session: the capture is carried out in the background, so look a few times. */
export function refreshEarningsSoon() {
  for (const delay of [300, 1500, 4000, 8000]) setTimeout(refreshEarnings, delay);
}

export function initDesk() {
  weekRows();
  $("#price-form").addEventListener("submit", savePrice);
  $("#price-currency").addEventListener("change", () => renderPrice(state.price));
  for (const purpose of ["mentorship", "interview"]) {
    $(`#price-${purpose}`).addEventListener("input", (ev) => (ev.currentTarget.dataset.touched = "true"));
  }
  $("#recording-consent").addEventListener("change", saveConsent);
  $("#profile-form").addEventListener("submit", saveProfile);
  $("#profile-form").addEventListener("input", renderPreview);
  for (const form of ["#profile-form", "#price-form", "#week-form"]) {
    $(form).addEventListener("input", (ev) => (ev.currentTarget.dataset.dirty = "true"));
    $(form).addEventListener("change", (ev) => (ev.currentTarget.dataset.dirty = "true"));
  }
  $("#week-form").addEventListener("submit", saveAvailability);
  $("#payout-setup").addEventListener("click", setUpPayouts);
  $("#exception-add").addEventListener("click", addException);
  try {
    const zones = Intl.supportedValuesOf("timeZone");
    $("#time-zones").replaceChildren(...zones.map((z) => h("option", { value: z })));
  } catch {
    /* no list: free text */
  }
}

// ---------------------------------------------------------------------------
// Payouts, promotions, metrics, reviews of you

/** The payout status from the profile (`payout_ready`); the button opens the onboarding link. */
function renderPayout() {
  const ready = !!desk.profile?.payout_ready;
  const el = $("#payout-status");
  el.dataset.ready = String(ready);
  el.textContent = ready
    ? "Your payout account is ready: your share of each charged session is paid out to it."
    : "Set up your payout account to receive your earnings (you can take calls meanwhile).";
  $("#payout-setup").textContent = ready ? "Update payout details" : "Set up payouts";
}

async function setUpPayouts() {
  await busy($("#payout-setup"), async () => {
    try {
      const back = `${location.origin}${location.pathname}`;
      const link = await api.payoutLink(state.token, { return_url: `${back}?payout=done`, refresh_url: `${back}?payout=refresh` });
      location.assign(link.url);
    } catch (err) {
      showErr(err);
    }
  });
}

async function loadPromotions() {
  try {
    const [packages, mine] = await Promise.all([api.promotionPackages(state.token), api.myPromotions(state.token)]);
    $("#promo-packages").replaceChildren(
      ...packages.map((p) =>
        h(
          "button",
          { type: "button", class: "btn btn-secondary promo-buy", dataset: { packageId: p.id }, onclick: (ev) => buyPromotion(p, ev.currentTarget) },
          `${p.name} — ${formatMoney(p.price)}`,
        ),
      ),
    );
    const current = $("#promo-current");
    current.dataset.featured = String(!!mine.current);
    current.textContent = mine.current
      ? `You're featured until ${dateTime(mine.current.until_ms)}.`
      : "Featured consultants come first in every directory search. Paid at once with your card.";
    $("#promo-receipts").replaceChildren(
      ...mine.purchases.slice(0, 5).map((r) =>
        h(
          "li",
          { class: "promo-receipt", dataset: { purchaseId: r.purchase_id } },
          h("span", {}, `${formatMoney(r.amount)} paid ${dateTime(r.paid_at_ms)}`),
          h("span", { class: "muted" }, `Featured ${dateTime(r.starts_at_ms)} – ${dateTime(r.ends_at_ms)} · receipt ${r.provider_ref}`),
        ),
      ),
    );
  } catch (err) {
    console.warn("promotions", err);
  }
}

async function buyPromotion(pkg, button) {
  if (!desk.profile) {
    showError(ErrorCode.MISSING_FIELD, "Publish your profile first: promotions feature your directory listing.");
    $("#profile-display-name").focus();
    return;
  }
  await busy(button, async () => {
    try {
      const receipt = await api.buyPromotion(state.token, pkg.id, "pm_card_visa");
      clearError();
      setStatus(`Paid ${formatMoney(receipt.amount)}: featured until ${dateTime(receipt.ends_at_ms)}.`);
      await loadPromotions();
    } catch (err) {
      showErr(err);
    }
  });
}

async function loadMetrics() {
  try {
    const m = await api.metrics(state.token, state.user.id);
    const rate = m.acceptance.all.rate;
    const facts = [
      ["Sessions", String(m.sessions)],
      ["Billable minutes", String(m.billable_minutes)],
      ["Earnings", m.earnings.length ? m.earnings.map((e) => formatMoney(e)).join(" · ") : "—"],
      ["Rating", ratingText(m.rating)],
      ["Acceptance", rate == null ? "—" : `${Math.round(rate * 100)} %`],
    ];
    $("#metrics-facts").replaceChildren(...facts.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
    renderChart(m.months);
  } catch (err) {
    console.warn("metrics", err);
  }
}

/** Bars per month (sessions), labelled with the earnings: an inline SVG, no library. */
function renderChart(months) {
  const box = $("#metrics-chart");
  box.dataset.months = String(months.length);
  if (!months.length) {
    box.replaceChildren(h("p", { class: "empty" }, "Your first month shows here after your first session."));
    return;
  }
  const NS = "http://www.w3.org/2000/svg";
  const svgEl = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text != null) e.textContent = text;
    return e;
  };
  const shown = months.slice(-12);
  const max = Math.max(1, ...shown.map((m) => m.sessions));
  const bw = 48;
  const height = 160;
  // Room for twelve months, so that one month is one narrow bar, not a wall.
  const svg = svgEl("svg", { viewBox: `0 0 ${12 * bw + 10} ${height + 40}`, class: "chart-svg" });
  shown.forEach((m, i) => {
    const bh = Math.round((m.sessions / max) * height);
    const x = 10 + i * bw;
    const bar = svgEl("rect", { x, y: height - bh + 10, width: bw - 14, height: Math.max(bh, 1), rx: 4, class: "chart-bar" });
    const money = m.earnings.map((e) => formatMoney(e)).join(", ") || "no earnings";
    bar.append(svgEl("title", {}, `${m.month}: ${m.sessions} sessions, ${m.billable_minutes} billable minutes, ${money}`));
    svg.append(bar);
    svg.append(svgEl("text", { x: x + (bw - 14) / 2, y: height - bh + 4, "text-anchor": "middle", class: "chart-value" }, m.sessions));
    svg.append(svgEl("text", { x: x + (bw - 14) / 2, y: height + 28, "text-anchor": "middle", class: "chart-label" }, m.month.slice(2)));
  });
  box.replaceChildren(svg);
  box.setAttribute("aria-label", `Sessions per month: ${shown.map((m) => `${m.month} ${m.sessions}`).join(", ")}`);
}

let reviewsKey = "";

async function loadMyReviews() {
  try {
    const page = await api.reviews(state.token, state.user.id);
    // Redraw only on a change: a reply being typed must survive the poll.
    const key = JSON.stringify(page.reviews);
    if (key === reviewsKey && $("#my-reviews").childElementCount) return;
    reviewsKey = key;
    $("#my-reviews").replaceChildren(...page.reviews.map(reviewItem));
    $("#my-reviews-empty").hidden = page.reviews.length > 0;
  } catch (err) {
    if (err.code !== ErrorCode.UNKNOWN_CONSULTANT) console.warn("reviews", err);
  }
}

function reviewItem(r) {
  const li = h(
    "li",
    { class: "review", dataset: { reviewId: r.id } },
    h("p", { class: "review-stars", "aria-label": `${r.stars} out of 5 stars` }, "★".repeat(r.stars) + "☆".repeat(5 - r.stars)),
    r.text ? h("p", { class: "review-text" }, r.text) : null,
    h("p", { class: "muted" }, dateTime(r.created_at_ms)),
  );
  if (r.reply) {
    li.append(h("blockquote", { class: "review-reply" }, h("strong", {}, "Your reply: "), r.reply.text));
    return li;
  }
  const id = `reply-${r.id}`;
  const text = h("textarea", { id, class: "reply-text", rows: 2, maxlength: 2000 });
  const form = h(
    "form",
    { class: "form reply-form", onsubmit: (ev) => reply(ev, r, text) },
    h("label", { for: id }, "Reply publicly"),
    text,
    h("button", { type: "submit", class: "btn btn-secondary btn-small reply-submit" }, "Post reply"),
  );
  li.append(form);
  return li;
}

async function reply(ev, review, textArea) {
  ev.preventDefault();
  const text = textArea.value.trim();
  if (!text) {
    textArea.focus();
    return;
  }
  await busy(ev.submitter, async () => {
    try {
      await api.replyToReview(state.token, review.id, text);
      setStatus("Reply posted: it shows under the review on your profile.");
      await loadMyReviews();
    } catch (err) {
      showErr(err);
    }
  });
}

/** What changes after a session: earnings, numbers, reviews. */
export function refreshAfterSession() {
  refreshEarningsSoon();
  for (const delay of [500, 4000]) setTimeout(() => {
    loadMetrics();
    loadMyReviews();
  }, delay);
}

/** Polled while the desk shows: reviews and numbers (a review can come any time). */
export function refreshDeskExtras() {
  loadMyReviews();
  loadMetrics();
}
