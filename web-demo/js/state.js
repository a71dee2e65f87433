// Shared state of the app and the one API client (the SDK's ParleyApi).

import { ParleyApi, ClientErrorCode } from "/sdk/js/parley.js";
import { clearError } from "./ui.js";

/**
 * The SDK's ParleyApi; a request that succeeds clears a stale "can't reach
 * Parley" banner (the connection is back).
 */
class AppApi extends ParleyApi {
  async request(...args) {
    const out = await super.request(...args);
    clearError(ClientErrorCode.NETWORK);
    return out;
  }
}

export const api = new AppApi();

export const state = {
  token: null,
  user: null,
  client: null,
  /** Server time − local time, in ms (from `ping`). */
  clockOffsetMs: 0,
  /** The consultant's own price (consultants). */
  price: null,
  /** The server's terms (GET /v1/policy): free window, instant-call maximum, late-cancellation fee. */
  policy: null,
  screen: "login-view",
};

/** Server time now, in Unix ms. */
export const serverNow = () => Date.now() + state.clockOffsetMs;

/** Re-reads the server's clock (after a reminder, or before deciding anything time-based). */
export async function syncClock() {
  if (!state.client) return;
  try {
    const t0 = Date.now();
    const pong = await state.client.ping();
    const t1 = Date.now();
    state.clockOffsetMs = pong.server_time_ms - (t0 + t1) / 2;
  } catch {
    /* keep the last offset */
  }
}

/** Reads the server's terms once per sign-in (GET /v1/policy). */
export async function loadPolicy() {
  try {
    state.policy = await api.policy(state.token);
  } catch (err) {
    console.warn("policy", err);
  }
  return state.policy;
}

/** Functions one screen calls on another (set by app.js; avoids import cycles). */
export const hooks = {
  placeCall: async (_consultant) => {},
  enterSession: async (_sessionId, _peer) => {},
  home: () => {},
  openProfile: async (_consultantId) => {},
};
