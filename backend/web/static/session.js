/*
 * The open session: its history (REST) and its event stream, and how each event changes what
 * the page shows. Events apply at most once, in stream order; `message.completed` replaces the
 * streamed text with the stored message; `reload` re-reads the history (see app.js).
 */

import { api } from "./api.js";
import {
  $,
  appendToLog,
  clearMessages,
  errorBubble,
  finishBubble,
  keepScrolledDown,
  messageBubble,
  setChatTitle,
  showNotice,
  showTriage,
  updateComposer,
} from "./render.js";
import { EventStream, compareIds } from "./sse.js";
import { hooks, page } from "./state.js";

/**
 * What the page shows of one session, and how each event changes it. Messages are keyed by
 * `seq` (the history and the stream may both carry one), replies by `reply_id`.
 */
export class SessionView {
  constructor(sessionId) {
    this.sessionId = sessionId;
    this.lastId = null;
    this.seqs = new Set();
    this.doneReplies = new Set();
    this.bubbles = new Map(); // reply_id -> {el, text}
    this.pending = []; // user messages sent, not yet confirmed by the server
    // A triage result that came while a reply was streaming: shown below it once it ends,
    // so the reader can follow the reply as it grows.
    this.heldTriage = null;
    // Replaying from the stream start (a reply was in progress): events up to `replayUntil`
    // are already in the history, except those of the reply in progress.
    this.replayUntil = null;
    this.replayReply = null;
    // Events that arrive while a `reload` re-reads the history wait here, then apply.
    this.held = null;
    this.stream = null;
    this.closed = false;
  }

  /** Load the history and the triage status, render them, then open the event stream. */
  async open() {
    await this.reload(null);
    if (this.closed) return;
    this.stream = new EventStream(this);
    this.stream.start();
  }

  close() {
    this.closed = true;
    if (this.stream) this.stream.stop();
  }

  /** Re-read the history over REST (on open, or on a `reload` event with its id). */
  async reload(reloadId) {
    const [saved, triage] = await Promise.all([
      api(`/api/conversations/sessions/${this.sessionId}`),
      api(`/api/triage/${this.sessionId}`),
    ]);
    if (this.closed) return;
    clearMessages();
    this.pending = []; // their bubbles are gone; the history (or the 202) brings them back
    this.seqs.clear();
    this.doneReplies.clear();
    this.bubbles.clear();
    this.heldTriage = null;
    setChatTitle(saved.title);
    for (const message of saved.messages) this.showMessage(message);
    if (saved.truncated) showNotice("Mensagens mais antigas não são mostradas aqui.");
    if (triage.triage_result) showTriage(triage.triage_result);
    if (reloadId !== null) {
      this.lastId = reloadId;
    } else if (saved.generating && this.lastId === null) {
      // A reply is being written: replay the stream from its start so its bubble shows the
      // whole text, not only what follows the history's position.
      this.lastId = "0-0";
      this.replayUntil = saved.last_event_id;
      this.replayReply = saved.generating.reply_id;
    } else {
      this.lastId = saved.last_event_id;
    }
    updateComposer();
  }

  /** Apply one SSE event, at most once, in stream order. */
  apply(ev) {
    if (this.closed) return;
    let data;
    try {
      data = JSON.parse(ev.data);
    } catch {
      console.warn("ignored an event whose data is not JSON", ev);
      return;
    }
    if (this.held !== null) {
      this.held.push(ev);
      return;
    }
    if (ev.event === "reload") {
      this.reloadAt(ev.id);
      return;
    }
    if (ev.id === null) {
      this.transientError(data); // not stored in the stream: nothing to resume from
      return;
    }
    if (this.lastId !== null && compareIds(ev.id, this.lastId) <= 0) return; // seen already
    this.lastId = ev.id;
    if (this.replayUntil !== null) {
      if (compareIds(ev.id, this.replayUntil) > 0) {
        this.replayUntil = null;
      } else if (data.reply_id !== this.replayReply) {
        return; // already in the history
      }
    }
    const handler = EVENT_HANDLERS[ev.event];
    if (handler) handler(this, data);
  }

  /** The server lost the events after our id: re-read the history, then go on from `id`. */
  async reloadAt(id) {
    this.held = [];
    this.lastId = id;
    try {
      await this.reload(id);
    } catch (err) {
      showNotice(err.message);
    }
    const held = this.held;
    this.held = null;
    for (const ev of held) this.apply(ev);
  }

  showMessage(message) {
    if (this.seqs.has(message.seq)) return;
    this.seqs.add(message.seq);
    const replyId = message.metadata && message.metadata.reply_id;
    if (replyId) {
      this.doneReplies.add(replyId);
      const bubble = this.bubbles.get(replyId);
      if (bubble) {
        finishBubble(bubble, message.content);
        return;
      }
    }
    if (message.role === "user") {
      const index = this.pending.findIndex((p) => p.text === message.content);
      if (index !== -1) {
        const [sent] = this.pending.splice(index, 1);
        sent.el.classList.remove("pending");
        sent.el.dataset.seq = String(message.seq);
        return;
      }
    }
    appendToLog(messageBubble(message.role, message.content, message.seq));
  }

  /** The server stored `sent` as `message` (the 202 answer): settle its pending bubble. */
  confirm(sent, message) {
    const index = this.pending.indexOf(sent);
    if (index === -1) return; // already matched by its message.created event
    this.pending.splice(index, 1);
    if (this.seqs.has(message.seq)) {
      sent.el.remove(); // the stream showed it first (its text differed from what we sent)
      return;
    }
    this.seqs.add(message.seq);
    sent.el.classList.remove("pending");
    sent.el.dataset.seq = String(message.seq);
  }

  bubble(replyId) {
    let bubble = this.bubbles.get(replyId);
    if (!bubble) {
      const el = messageBubble("assistant", "", null);
      el.classList.add("streaming");
      el.setAttribute("aria-busy", "true");
      el.dataset.replyId = replyId;
      bubble = { el, text: "" };
      this.bubbles.set(replyId, bubble);
      appendToLog(el);
    }
    return bubble;
  }

  showHeldTriage() {
    if (this.heldTriage === null || $("messages").querySelector(".bubble.streaming")) return;
    showTriage(this.heldTriage);
    this.heldTriage = null;
  }

  transientError(data) {
    if (data.code === "session_not_found") {
      this.gone();
    } else {
      console.warn("stream error:", data.code, data.message); // the stream reconnects
    }
  }

  /** The session was deleted or expired: say so and start over with an empty conversation. */
  gone() {
    this.close();
    if (page.current === this) hooks.newSession();
    showNotice("Esta conversa não existe mais (foi apagada ou expirou).");
    hooks.sessionsChanged();
  }
}

const EVENT_HANDLERS = {
  "message.created": (view, data) => view.showMessage(data.message),
  "message.started": (view, data) => {
    if (!view.doneReplies.has(data.reply_id)) view.bubble(data.reply_id);
    updateComposer();
  },
  "message.delta": (view, data) => {
    if (view.doneReplies.has(data.reply_id)) return;
    const bubble = view.bubble(data.reply_id);
    bubble.text += data.delta;
    bubble.el.querySelector(".text").textContent = bubble.text;
    keepScrolledDown();
  },
  "message.completed": (view, data) => {
    view.showMessage(data.message);
    view.showHeldTriage();
    updateComposer();
    hooks.sessionsChanged();
  },
  error: (view, data) => {
    const bubble = data.reply_id ? view.bubbles.get(data.reply_id) : null;
    if (bubble) {
      // This attempt is over; with `retrying` a new attempt (a new reply_id) follows.
      view.bubbles.delete(data.reply_id);
      bubble.el.remove();
    }
    if (data.retrying) {
      showNotice("A resposta foi interrompida; gerando de novo…", { transient: true });
    } else {
      appendToLog(errorBubble(data.message));
    }
    view.showHeldTriage();
    updateComposer();
  },
  "triage.updated": (view, data) => {
    if (!data.triage_result) return;
    view.heldTriage = data.triage_result;
    view.showHeldTriage();
  },
};
