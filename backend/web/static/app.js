/*
 * Triagem inteligente: the browser chat client (plain ES module, no build step).
 *
 * How the page talks to the API, and why:
 *
 * - Events are read with fetch() and a stream reader, not EventSource. EventSource cannot send
 *   an Authorization header (the token would have to travel in the URL, and URLs end up in
 *   server logs and browser history) and it reconnects on its own terms. With fetch the page
 *   sends the bearer token and Last-Event-ID headers itself, parses the SSE wire format
 *   (`readSse`), shows the connection state and reconnects with backoff.
 *
 * - One event stream per open session: GET /api/conversations/sessions/{id}/events. Messages
 *   are posted with POST .../messages (202) and their reply arrives on that same stream. One
 *   ordered stream is the single source of truth: every event id is a position in the
 *   session's Redis stream, the page applies an event only when its id is greater than the
 *   last id it applied, and it reconnects (to whichever replica answers) after that id. So a
 *   reply cut in the middle goes on exactly where it stopped. The chat POST
 *   (/api/agents/chat) streams one reply only; reading it next to the session stream would
 *   give the page two sources to merge, and a window where an event could fall between them.
 *
 * - On `message.completed` the reply bubble is replaced by the stored message, the source of
 *   truth: a gap or a duplicate can never outlive a completed reply. The text streamed before
 *   is compared with it and the bubble records the result (data-streamed = exact | corrected).
 *
 * - A `reload` event (the server no longer holds the events after our id) re-reads the history
 *   over REST and goes on from the id the event carries.
 *
 * - Every message is posted with an Idempotency-Key of its own. When the answer does not arrive
 *   (the connection dropped, a replica died: the page cannot know whether the message was
 *   stored), the post is sent again with the same key, a few times with backoff; the server
 *   answers a repeat with the first answer and never stores the message twice. If it still
 *   fails, the text goes back to the composer with its key, so sending it again is still a retry.
 *
 * - The token lives in sessionStorage (this tab only), never in a URL. In development the page
 *   gets one from POST /api/dev/token for the name typed; elsewhere the user pastes one.
 *
 * - The longest message the API takes comes from the page itself (`data-max-message-chars` on
 *   <body>, filled in by the server from MAX_MESSAGE_CHARS). The page counts characters as the
 *   server does (code points, after trimming) and refuses a longer message with the count,
 *   rather than a textarea `maxlength`, which would cut a pasted text without a word.
 *
 * Everything users or the model wrote is rendered with textContent, never as HTML.
 */

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "triagem.token";
const USER_KEY = "triagem.user";
const DEV_LOGIN = document.body.dataset.devLogin === "true";
const MAX_MESSAGE_CHARS = Number(document.body.dataset.maxMessageChars) || 4000;
// Silence longer than this on an open stream means a dead connection (the server pings every
// 15 s by default): abort it and reconnect instead of waiting for TCP to notice.
const STALL_MS = 45_000;
const BACKOFF_MIN_MS = 300;
const BACKOFF_MAX_MS = 8_000;
// Attempts at posting one message before the page gives up and hands the text back.
const POST_ATTEMPTS = 4;

const AREAS = {
  trabalhista: "Direito trabalhista",
  consumidor: "Direito do consumidor",
  familia: "Direito de família",
  previdenciario: "Direito previdenciário",
  criminal: "Direito criminal",
  civil: "Direito civil",
  tributario: "Direito tributário",
  imobiliario: "Direito imobiliário",
  indefinida: "A definir",
};
const URGENCIES = { baixa: "Baixa", media: "Média", alta: "Alta", urgente: "Urgente" };
const CONNECTION_TEXT = {
  idle: "",
  connecting: "conectando…",
  connected: "conectado",
  reconnecting: "reconectando…",
  offline: "offline",
};

// ------------------------------------------------------------------------------ API calls

// The API's messages are written for developers, in English; a person reads these instead
// (the API's own message still goes to the console).
const ERROR_TEXT = {
  rate_limited: "Muitas mensagens em pouco tempo. Espere um pouco e tente de novo.",
  invalid_message: "A mensagem está vazia ou é longa demais.",
  body_too_large: "A mensagem é longa demais.",
  invalid_request: "O pedido não foi aceito: confira o que foi digitado.",
  session_not_found: "Esta conversa não existe mais (foi apagada ou expirou).",
  store_unavailable: "O serviço está indisponível no momento. Tente de novo em instantes.",
  unauthorized: "Token recusado: confira se copiou o token inteiro e se ele ainda vale.",
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(ERROR_TEXT[code] || message);
    this.status = status;
    this.code = code;
    this.detail = message;
  }
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** JSON call to the API; errors become ApiError with the server's message (one shape). */
async function api(path, { method = "GET", body, signal, headers: extra = {} } = {}) {
  const headers = { Accept: "application/json", ...authHeaders(), ...extra };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network", "Sem conexão com o servidor. Tente de novo.");
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    const message =
      error.message ||
      (response.status >= 500
        ? `O servidor não conseguiu responder (HTTP ${response.status}). Tente de novo.`
        : `Pedido recusado (HTTP ${response.status}).`);
    console.warn(`${method} ${path}: ${response.status} ${message}`);
    if (response.status === 401) onUnauthorized();
    throw new ApiError(response.status, error.code || "http", String(message));
  }
  return data;
}

// ----------------------------------------------------------------------- SSE over fetch

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
function compareIds(a, b) {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = b.split("-").map(Number);
  return am - bm || as - bs;
}

/**
 * The session's event stream, kept open: reconnects with jittered exponential backoff after
 * any break, resuming after the last id the view applied (view.lastId). Stops on stop(), on
 * 401 (sign in again) and on 404 (the session is gone).
 */
class EventStream {
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
      onUnauthorized();
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

// ------------------------------------------------------------------------ the open session

/**
 * What the page shows of one session, and how each event changes it. Messages are keyed by
 * `seq` (the history and the stream may both carry one), replies by `reply_id`.
 */
class SessionView {
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
    if (current === this) newSession();
    showNotice("Esta conversa não existe mais (foi apagada ou expirou).");
    refreshSessions();
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
    refreshSessions();
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

// ------------------------------------------------------------------------------ rendering

function messageBubble(role, text, seq) {
  const el = document.createElement("article");
  el.className = `bubble ${role}`;
  if (seq !== null) el.dataset.seq = String(seq);
  const who = document.createElement("span");
  who.className = "visually-hidden";
  who.textContent = role === "user" ? "Você: " : "Assistente: ";
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  el.append(who, body);
  return el;
}

function finishBubble(bubble, content) {
  // The stored message is the truth; record whether the streamed text already matched it.
  bubble.el.dataset.streamed = bubble.text.trim() === content ? "exact" : "corrected";
  if (bubble.el.dataset.streamed === "corrected") {
    console.warn("streamed reply differed from the stored one; showing the stored one");
  }
  bubble.el.querySelector(".text").textContent = content;
  bubble.el.classList.remove("streaming");
  bubble.el.removeAttribute("aria-busy");
  bubble.el.dataset.complete = "true";
}

function errorBubble(message) {
  const el = messageBubble("error", `Não foi possível responder: ${message}`, null);
  el.setAttribute("role", "alert");
  return el;
}

function showTriage(result) {
  const card = $("triage-template").content.firstElementChild.cloneNode(true);
  const area = AREAS[result.area] || result.area;
  card.querySelector('[data-field="area"]').textContent = result.sub_area
    ? `${area} · ${result.sub_area}`
    : area;
  const urgency = card.querySelector('[data-field="urgency"]');
  urgency.textContent = URGENCIES[result.urgency] || result.urgency;
  urgency.dataset.level = result.urgency;
  card.querySelector('[data-field="urgency_reason"]').textContent = result.urgency_reason;
  card.querySelector('[data-field="recommended_next_step"]').textContent =
    result.recommended_next_step;
  const missing = card.querySelector('[data-field="missing_information"]');
  const items = result.missing_information.length
    ? result.missing_information
    : ["Nada: as informações essenciais foram dadas."];
  for (const item of items) {
    const li = document.createElement("li");
    li.textContent = item;
    missing.append(li);
  }
  // One card: an update replaces it, below the latest message (the case as known now).
  const old = $("messages").querySelector(".triage-card");
  if (old) old.remove();
  card.id = "triage-card";
  appendToLog(card);
}

function clearMessages() {
  const log = $("messages");
  for (const el of [...log.children]) if (el.id !== "welcome") el.remove();
  $("welcome").hidden = false;
  hideNotice();
}

function appendToLog(el) {
  $("welcome").hidden = true;
  const log = $("messages");
  log.append(el);
  keepScrolledDown(true);
}

function keepScrolledDown(force = false) {
  const log = $("messages");
  const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 120;
  if (force || nearBottom) log.scrollTop = log.scrollHeight;
}

function setChatTitle(title) {
  $("chat-title").textContent = title || "Nova conversa";
}

function setConnection(state) {
  const el = $("connection");
  el.dataset.state = state;
  $("connection-text").textContent = CONNECTION_TEXT[state];
}

let noticeTimer = null;
function showNotice(text, { transient = false } = {}) {
  const el = $("notice");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(noticeTimer);
  if (transient) noticeTimer = setTimeout(hideNotice, 6_000);
}

function hideNotice() {
  $("notice").hidden = true;
}

// --------------------------------------------------------------------------- the sessions

let current = null; // the open SessionView
let sending = false;

function formatWhen(iso) {
  const when = new Date(iso);
  const sameDay = when.toDateString() === new Date().toDateString();
  return sameDay
    ? when.toLocaleTimeString("pt-BR", { hour: "2-digit", minute: "2-digit" })
    : when.toLocaleDateString("pt-BR", { day: "2-digit", month: "short" });
}

async function refreshSessions() {
  let page;
  try {
    page = await api("/api/conversations/sessions?limit=50");
  } catch (err) {
    if (err.status !== 401) showNotice(err.message);
    return;
  }
  const list = $("session-list");
  list.replaceChildren();
  for (const item of page.items) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "session";
    button.dataset.sessionId = item.session_id;
    if (current && current.sessionId === item.session_id) {
      button.setAttribute("aria-current", "true");
    }
    const title = document.createElement("span");
    title.className = "session-title";
    title.textContent = item.title || "Conversa sem mensagens";
    const meta = document.createElement("span");
    meta.className = "session-meta";
    const count = item.message_count === 1 ? "1 mensagem" : `${item.message_count} mensagens`;
    meta.textContent = `${formatWhen(item.updated_at)} · ${count}`;
    button.append(title, meta);
    button.addEventListener("click", () => openSession(item.session_id));
    li.append(button);
    list.append(li);
  }
  $("session-empty").hidden = page.items.length > 0;
}

async function openSession(sessionId) {
  closeSidebar();
  if (current) current.close();
  hideNotice();
  current = new SessionView(sessionId);
  markCurrentSession();
  history.replaceState(null, "", `#${sessionId}`);
  try {
    await current.open();
  } catch (err) {
    if (err.status === 404) current.gone();
    else if (err.status !== 401) showNotice(err.message);
  }
}

function newSession() {
  closeSidebar();
  if (current) current.close();
  current = null;
  hideNotice();
  history.replaceState(null, "", location.pathname);
  clearMessages();
  setChatTitle(null);
  setConnection("idle");
  markCurrentSession();
  updateComposer();
  $("message-input").focus();
}

function markCurrentSession() {
  updateDeleteButton();
  for (const button of $("session-list").querySelectorAll("button.session")) {
    const on = current !== null && button.dataset.sessionId === current.sessionId;
    if (on) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
}

/** A fresh Idempotency-Key (crypto.randomUUID needs a secure context; this does not). */
function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** POST with an Idempotency-Key, again with the same key while no answer comes back. */
async function postOnce(path, body, key) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await api(path, { method: "POST", body, headers: { "Idempotency-Key": key } });
    } catch (err) {
      const unanswered = err.status === 0 || err.status >= 500;
      if (!unanswered || attempt >= POST_ATTEMPTS) throw err;
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
      await new Promise((resolve) => setTimeout(resolve, base / 2 + Math.random() * (base / 2)));
    }
  }
}

// The message handed back to the composer after its post failed, with its key: sending the
// same text to the same place again is a retry of that post, not a second message.
let unsent = null;

/** Send the composer's text: into the open session, or as the first message of a new one. */
async function send(event) {
  event.preventDefault();
  const input = $("message-input");
  const text = input.value.trim();
  if (!text || sending) return;
  const length = messageLength(text);
  if (length > MAX_MESSAGE_CHARS) {
    // Refused here, text untouched: the server would answer 422 anyway.
    showNotice(
      `A mensagem tem ${formatCount(length)} caracteres; o limite é ` +
        `${formatCount(MAX_MESSAGE_CHARS)}. Encurte-a para enviar.`,
    );
    input.focus();
    return;
  }
  sending = true;
  updateComposer();
  hideNotice();
  const bubble = messageBubble("user", text, null);
  bubble.classList.add("pending");
  appendToLog(bubble);
  const sent = { text, el: bubble };
  input.value = "";
  onComposerInput();
  // The view the message was written in; the user may switch to another while it posts.
  const view = current;
  const target = view ? view.sessionId : null;
  const key =
    unsent && unsent.text === text && unsent.target === target ? unsent.key : newIdempotencyKey();
  unsent = null;
  try {
    if (view) {
      view.pending.push(sent);
      const path = `/api/conversations/sessions/${view.sessionId}/messages`;
      const posted = await postOnce(path, { message: text }, key);
      view.confirm(sent, posted.message);
    } else {
      const started = await postOnce("/api/triage", { message: text }, key);
      if (current === null) startedSession(started, sent);
    }
    refreshSessions();
  } catch (err) {
    if (err.status === 0 || err.status >= 500) unsent = { text, target, key };
    bubble.remove();
    if (view) view.pending = view.pending.filter((p) => p !== sent);
    if (current === view) {
      input.value = text;
      onComposerInput();
    }
    if (err.status !== 401) showNotice(err.message);
  } finally {
    sending = false;
    updateComposer();
  }
}

/** Show the session the first message just created, and read its stream from the start. */
function startedSession(started, sent) {
  current = new SessionView(started.session_id);
  current.pending.push(sent);
  current.confirm(sent, started.message.message);
  current.lastId = "0-0";
  setChatTitle(sent.text);
  history.replaceState(null, "", `#${started.session_id}`);
  updateDeleteButton();
  current.stream = new EventStream(current);
  current.stream.start();
}

function updateComposer() {
  // A reply being written keeps the button busy: the next message would only queue behind it.
  const streaming = current !== null && $("messages").querySelector(".bubble.streaming");
  $("send").disabled = sending || Boolean(streaming);
  $("send").title = streaming ? "Aguarde o fim da resposta" : "";
}

function autoGrow() {
  const input = $("message-input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
}

/** Characters as the server counts them: code points (an emoji is one), after trimming. */
function messageLength(text) {
  return [...text.trim()].length;
}

function formatCount(n) {
  return n.toLocaleString("pt-BR");
}

function updateCharCount() {
  const length = messageLength($("message-input").value);
  const over = length > MAX_MESSAGE_CHARS;
  const counter = $("char-count");
  counter.textContent = `${formatCount(length)} / ${formatCount(MAX_MESSAGE_CHARS)}`;
  counter.classList.toggle("over", over);
  counter.dataset.over = String(over);
  if (over) $("message-input").setAttribute("aria-invalid", "true");
  else $("message-input").removeAttribute("aria-invalid");
}

function onComposerInput() {
  autoGrow();
  updateCharCount();
}

// ------------------------------------------------------------------ deleting a session

function updateDeleteButton() {
  $("delete-session").hidden = current === null;
}

/** Ask first; then DELETE the open session and start a new conversation. */
function askDeleteSession() {
  if (current === null) return;
  $("delete-dialog").showModal();
  $("delete-cancel").focus();
}

async function deleteSession() {
  $("delete-dialog").close();
  const view = current;
  if (view === null) return;
  // Stop its stream first: the server ends it on delete, and that is not news to show.
  view.close();
  try {
    await api(`/api/conversations/sessions/${view.sessionId}`, { method: "DELETE" });
  } catch (err) {
    if (err.status === 401) return;
    if (err.status !== 404) {
      // Still there: show it again (unless another one was opened meanwhile), with the reason.
      if (current === view) await openSession(view.sessionId);
      showNotice(`Não foi possível apagar a conversa: ${err.message}`);
      return;
    }
  }
  if (current === view) newSession();
  showNotice("Conversa apagada.", { transient: true });
  refreshSessions();
}

// ------------------------------------------------------------------------- signing in/out

function showLogin(message = "") {
  if (current) current.close();
  current = null;
  setConnection("idle");
  $("app").hidden = true;
  $("menu-button").hidden = true;
  $("login").hidden = false;
  $("dev-login").hidden = !DEV_LOGIN;
  $("token-login").hidden = DEV_LOGIN;
  $("login-error").textContent = message;
  const field = DEV_LOGIN ? $("dev-user") : $("token-input");
  field.value = DEV_LOGIN ? localStorage.getItem(USER_KEY) || "" : "";
  field.focus();
}

function onUnauthorized() {
  sessionStorage.removeItem(TOKEN_KEY);
  // While signing in, the sign-in form reports the refusal itself.
  if (!$("app").hidden) showLogin("Sua sessão expirou ou o token não é válido. Entre de novo.");
}

/** Who the token names (display only: the server checks the signature). */
function tokenSubject(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    // atob gives bytes as Latin-1 characters: decode them as UTF-8 ("João", not "JoÃ£o").
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return `${claims.name || claims.sub} (${claims.tenant})`;
  } catch {
    return "";
  }
}

async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  // Check the token before showing the app: a wrong one is refused here, with its reason.
  await api("/api/conversations/sessions?limit=1");
  showApp();
}

async function onDevLogin(event) {
  event.preventDefault();
  const user = $("dev-user").value.trim();
  try {
    const issued = await api("/api/dev/token", { method: "POST", body: { user } });
    localStorage.setItem(USER_KEY, user);
    await signIn(issued.access_token);
  } catch (err) {
    $("login-error").textContent = err.message;
  }
}

async function onTokenLogin(event) {
  event.preventDefault();
  const token = $("token-input").value.trim().replace(/^Bearer\s+/i, "");
  try {
    await signIn(token);
  } catch (err) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("login-error").textContent = err.message;
  }
}

function showApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("menu-button").hidden = false;
  $("who").textContent = tokenSubject(sessionStorage.getItem(TOKEN_KEY));
  refreshSessions();
  const fromUrl = location.hash.slice(1);
  if (/^[A-Za-z0-9_-]{1,64}$/.test(fromUrl)) openSession(fromUrl);
  else newSession();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  history.replaceState(null, "", location.pathname);
  showLogin();
}

// ---------------------------------------------------------------------- phone-width menu

function toggleSidebar() {
  const open = !document.body.classList.contains("sidebar-open");
  document.body.classList.toggle("sidebar-open", open);
  $("menu-button").setAttribute("aria-expanded", String(open));
}

function closeSidebar() {
  document.body.classList.remove("sidebar-open");
  $("menu-button").setAttribute("aria-expanded", "false");
}

// ------------------------------------------------------------------------------- wiring

function init() {
  $("dev-login").addEventListener("submit", onDevLogin);
  $("token-login").addEventListener("submit", onTokenLogin);
  $("composer").addEventListener("submit", send);
  $("new-session").addEventListener("click", newSession);
  $("logout").addEventListener("click", signOut);
  $("menu-button").addEventListener("click", toggleSidebar);
  $("delete-session").addEventListener("click", askDeleteSession);
  $("delete-confirm").addEventListener("click", deleteSession);
  $("delete-cancel").addEventListener("click", () => $("delete-dialog").close());
  // The open drawer (phone width) closes on Escape or a tap outside it.
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeSidebar();
  });
  $("app").addEventListener("click", (event) => {
    if (!$("sidebar").contains(event.target)) closeSidebar();
  });
  const input = $("message-input");
  input.addEventListener("input", onComposerInput);
  updateCharCount();
  input.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter breaks the line (as in every chat app).
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  window.addEventListener("offline", () => {
    if (current && current.stream) setConnection("offline");
  });
  if (sessionStorage.getItem(TOKEN_KEY)) showApp();
  else showLogin();
}

init();
