/*
 * The session's event stream, read with fetch() and a stream reader rather than EventSource
 * (why: see the top of app.js): the SSE wire format parser, stream id order, and the
 * connection that resumes after the last applied id with jittered backoff.
 */

import { BACKOFF_MAX_MS, BACKOFF_MIN_MS, authHeaders } from "./api.js";
import { setConnection } from "./render.js";
import { hooks } from "./state.js";

// Silence longer than this on an open stream means a dead connection (the server pings every
// 15 s by default): abort it and reconnect instead of waiting for TCP to notice.
const STALL_MS = 45_000;

/**
 * Read a text/event-stream body and call onEvent({event, id, data}) per event, in order.
 * Follows the WHATWG parsing rules that matter here: CRLF/LF/CR line ends, `data` lines
 * joined by "\n", comments (pings) ignored but still counted as life on the connection.
 * Resolves when the server ends the stream; rejects when the connection breaks.
 */
async function readSse(body, onEvent, onActivity) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { event: "message", id: null, data: [] };
  const dispatch = () => {
    if (event.data.length > 0) {
      onEvent({ event: event.event, id: event.id, data: event.data.join("\n") });
    }
    event = { event: "message", id: null, data: [] };
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onActivity();
    buffer += value;
    // A trailing CR may be the first half of a CRLF split across chunks: hold it back.
    const end = buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
    const lines = buffer.slice(0, end).split(/\r\n|\n|\r/);
    buffer = lines.pop() + buffer.slice(end); // the last piece is a partial line
    for (const line of lines) {
      if (line === "") {
        dispatch();
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let text = colon === -1 ? "" : line.slice(colon + 1);
      if (text.startsWith(" ")) text = text.slice(1);
      if (field === "event") event.event = text;
      else if (field === "data") event.data.push(text);
      else if (field === "id" && !text.includes("\0")) event.id = text;
    }
  }
}

/** Stream ids are "<ms>-<seq>"; compare them as numbers (ms stays below 2^53). */
export function compareIds(a, b) {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = b.split("-").map(Number);
  return am - bm || as - bs;
}

/**
 * The session's event stream, kept open: reconnects with jittered exponential backoff after
 * any break, resuming after the last id the view applied (view.lastId). Stops on stop(), on
 * 401 (sign in again) and on 404 (the session is gone).
 */
export class EventStream {
  constructor(view) {
    this.view = view;
    this.controller = null;
    this.stopped = false;
    this.failures = 0;
    this.stallTimer = null;
  }

  start() {
    this.loop();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.stallTimer);
    if (this.controller) this.controller.abort();
  }

  async loop() {
    while (!this.stopped) {
      let outcome;
      try {
        outcome = await this.connectOnce();
      } catch (err) {
        console.warn("event stream:", err);
        outcome = "retry";
      }
      if (this.stopped || outcome === "final") return;
      // Reset by the first bytes of a connection, so a server that keeps accepting and
      // closing at once is retried ever more slowly, not in a tight loop.
      this.failures += 1;
      setConnection(navigator.onLine === false ? "offline" : "reconnecting");
      await this.backoff();
    }
  }

  /** One connection, until it ends: "retry", or "final" (do not reconnect). */
  async connectOnce() {
    this.controller = new AbortController();
    const headers = { Accept: "text/event-stream", ...authHeaders() };
    if (this.view.lastId) headers["Last-Event-ID"] = this.view.lastId;
    if (this.failures === 0) setConnection("connecting");
    let response;
    try {
      response = await fetch(`/api/conversations/sessions/${this.view.sessionId}/events`, {
        headers,
        signal: this.controller.signal,
        cache: "no-store",
      });
    } catch {
      return "retry"; // no answer (network down, balancer gone)
    }
    if (!response.ok) return this.refused(response);
    setConnection("connected");
    this.armStallTimer();
    try {
      await readSse(
        response.body,
        (ev) => this.view.apply(ev),
        () => {
          this.failures = 0;
          this.armStallTimer();
        },
      );
    } catch {
      // Cut off (replica gone, network lost, stalled): resume from view.lastId.
    } finally {
      clearTimeout(this.stallTimer);
    }
    return "retry";
  }

  async refused(response) {
    const data = await response.json().catch(() => ({}));
    const message = (data.error && data.error.message) || `HTTP ${response.status}`;
    if (response.status === 401) {
      hooks.unauthorized();
      return "final";
    }
    if (response.status === 404) {
      this.view.gone();
      return "final";
    }
    if (response.status === 400 && data.error && data.error.code === "invalid_last_event_id") {
      // Our position is unusable: start over from a fresh history.
      await this.view.reload(null);
      return "retry";
    }
    console.warn("event stream refused:", response.status, message);
    return "retry";
  }

  armStallTimer() {
    clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(() => this.controller && this.controller.abort(), STALL_MS);
  }

  backoff() {
    // Jittered, so the clients of a replica that died do not all come back at the same instant.
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(this.failures, 6));
    const delay = base / 2 + Math.random() * (base / 2);
    return new Promise((resolve) => {
      const timer = setTimeout(done, delay);
      // Back online: try at once instead of waiting out the backoff.
      window.addEventListener("online", done, { once: true });
      function done() {
        clearTimeout(timer);
        window.removeEventListener("online", done);
        resolve();
      }
    });
  }
}
