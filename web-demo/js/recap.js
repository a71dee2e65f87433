// After a session: the recap (timeline, talk time, chat, notes) and the
// recordings, played in the page and downloadable through their signed links
// (the session's consultant, or its premium seeker).

import { ErrorCode } from "/sdk/js/parley.js";
import { api, state } from "./state.js";
import { $, h } from "./ui.js";
import { duration, timeOfDay } from "./format.js";

const TIMELINE_WORDS = {
  joined: "joined",
  left: "left",
  dropped: "lost their connection",
  media_state: "media",
  ended: "ended the call",
  free_window_ending: "free time nearly over",
  billing_started: "billing started",
  hold_ending: "hold nearly used up",
  recording_started: "recording started",
  recording_stopped: "recording stopped",
};

let loading = 0;

/** Shows the recap of `sessionId` in `#recap`; waits (a few tries) for a recording still being stored. */
export async function showRecap(sessionId) {
  const seq = ++loading;
  const box = $("#recap");
  box.hidden = true;
  box.dataset.sessionId = sessionId;
  delete box.dataset.recordings;
  for (let attempt = 0; attempt < 8; attempt++) {
    let recap;
    try {
      recap = await api.recap(state.token, sessionId);
    } catch (err) {
      if (err.code === ErrorCode.PREMIUM_REQUIRED) {
        box.hidden = false;
        $("#recap-status").textContent = "Recaps and recordings are for premium members.";
        for (const id of ["#recap-talk", "#recap-recordings", "#recap-timeline", "#recap-chat"]) $(id).replaceChildren();
      } else console.warn("recap", err);
      return;
    }
    if (seq !== loading) return;
    render(recap);
    const waiting = recap.recorded && !recap.recordings.some((r) => r.kind === "audio");
    if (!waiting) return;
    $("#recap-status").textContent = "The recording is being stored…";
    await new Promise((res) => setTimeout(res, 750 * (attempt + 1)));
    if (seq !== loading) return;
  }
  $("#recap-status").textContent = "No recording files are available for this session (yet): look again later from your receipts.";
}

function render(recap) {
  const box = $("#recap");
  box.hidden = false;
  const names = new Map(recap.participants.map((p) => [p.id, p.id === state.user.id ? "You" : p.name]));
  const who = (id) => names.get(id) || id || "";
  $("#recap-status").textContent = recap.recorded ? "" : "This session was not recorded.";
  $("#recap-talk").replaceChildren(
    ...recap.talk_time.map((t) =>
      h(
        "p",
        { class: "talk-share" },
        `${who(t.user_id)}: ${duration(t.speech_ms / 1000)} of speech (${t.share_percent} %)`,
        h("meter", { min: 0, max: 100, value: t.share_percent, "aria-label": `${who(t.user_id)} talk share` }),
      ),
    ),
  );
  const audio = recap.recordings.filter((r) => r.kind !== "manifest");
  box.dataset.recordings = String(audio.length);
  $("#recap-recordings").replaceChildren(
    ...audio.map((r) =>
      h(
        "li",
        { class: "recording", dataset: { recordingId: r.id, kind: r.kind } },
        h("span", {}, `${who(r.participant_id)} — ${r.kind} (${duration(r.duration_ms / 1000)})`),
        r.kind === "audio" ? h("audio", { controls: true, preload: "metadata", src: r.url, "aria-label": `${who(r.participant_id)}'s audio` }) : null,
        h("a", { href: r.url, download: `${r.id}.${r.codec === "opus" ? "ogg" : r.codec === "vp8" ? "ivf" : "json"}`, class: "recording-download" }, "Download"),
      ),
    ),
  );
  $("#recap-timeline").replaceChildren(
    ...recap.session.timeline
      .filter((t) => t.kind !== "media_state")
      .map((t) => h("li", {}, `${timeOfDay(t.at_ms)} · ${t.user_id ? `${who(t.user_id)} ` : ""}${TIMELINE_WORDS[t.kind] || t.kind}`)),
  );
  const lines = [...recap.chat, ...recap.notes].sort((a, b) => a.at_ms - b.at_ms);
  $("#recap-chat").replaceChildren(
    ...(lines.length
      ? [h("h3", { class: "recap-subtitle" }, "Chat and notes"), h("ul", { class: "plain-list" }, lines.map((l) => h("li", {}, `${who(l.from)}${l.kind === "note" ? " (note)" : ""}: ${l.text}`)))]
      : []),
  );
}
