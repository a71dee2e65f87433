// Formatting for people: money through the SDK (Intl.NumberFormat), times
// in the viewer's zone (Intl.DateTimeFormat).

import { formatMoney } from "/sdk/js/parley.js";

export { formatMoney };

/** The viewer's IANA time zone. */
export const viewerZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

/** "m:ss". */
export function clock(secs) {
  secs = Math.max(0, Math.floor(secs));
  return `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, "0")}`;
}

/** "45 s", "3 min", "3 min 5 s". */
export function duration(secs) {
  secs = Math.max(0, Math.floor(secs));
  const m = Math.floor(secs / 60);
  const s = secs % 60;
  if (m === 0) return `${s} s`;
  return s ? `${m} min ${s} s` : `${m} min`;
}

/** A price in words: "€30.00 per session", "€1.50 a minute after the free window", "Free". */
export function priceText(price) {
  if (!price) return "Free";
  const amount = formatMoney(price.amount);
  return price.model === "per_minute" ? `${amount} a minute after the free window` : `${amount} per session`;
}

/** The hold a booking of `lengthMin` minutes places: the fixed price, or rate × length (B2). */
export function bookingHold(price, lengthMin) {
  if (!price) return null;
  if (price.model === "fixed") return price.amount;
  return { amount_minor: price.amount.amount_minor * lengthMin, currency: price.amount.currency };
}

/** Minutes in words: "10 minutes", "1 minute", "90 seconds". */
export function minutesText(secs) {
  if (secs % 60) return `${secs} seconds`;
  const m = secs / 60;
  return m === 1 ? "1 minute" : `${m} minutes`;
}

/** Date and time in `zone` (default the viewer's): "Mon, 7 Jan, 09:00". */
export function dateTime(ms, zone) {
  return new Intl.DateTimeFormat(undefined, {
    weekday: "short",
    day: "numeric",
    month: "short",
    hour: "2-digit",
    minute: "2-digit",
    timeZone: zone || undefined,
  }).format(new Date(ms));
}

/** Time of day in `zone`: "09:00". */
export function timeOfDay(ms, zone) {
  return new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", timeZone: zone || undefined }).format(
    new Date(ms),
  );
}

/** The day in `zone`: "Monday 7 January". */
export function dayLabel(ms, zone) {
  return new Intl.DateTimeFormat(undefined, {
    weekday: "long",
    day: "numeric",
    month: "long",
    timeZone: zone || undefined,
  }).format(new Date(ms));
}

/** "in 3 h", "in 2 days", "5 min ago" relative to `now`. */
export function relative(ms, now) {
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const diff = ms - now;
  const abs = Math.abs(diff);
  if (abs < 3600e3) return rtf.format(Math.round(diff / 60e3), "minute");
  if (abs < 48 * 3600e3) return rtf.format(Math.round(diff / 3600e3), "hour");
  return rtf.format(Math.round(diff / 86400e3), "day");
}

/** "★★★★☆ 4.5 (2 reviews)" or "No reviews yet". */
export function ratingText(rating) {
  if (!rating || !rating.count) return "No reviews yet";
  const mean = rating.mean ?? rating.score;
  const stars = "★".repeat(Math.round(mean)) + "☆".repeat(5 - Math.round(mean));
  return `${stars} ${mean.toFixed(1)} (${rating.count} review${rating.count === 1 ? "" : "s"})`;
}

/** "English, French" from language codes. */
export function languagesText(codes) {
  let names;
  try {
    names = new Intl.DisplayNames(undefined, { type: "language" });
  } catch {
    return codes.join(", ");
  }
  return codes.map((c) => names.of(c) || c).join(", ");
}
