/*
 * The composer: the character counter against the server's limit, and sending a message with
 * an Idempotency-Key of its own (posted again with the same key while no answer comes back;
 * handed back with its key when it still fails, so sending it again is a retry).
 */

import { newIdempotencyKey, postOnce } from "./api.js";
import {
  $,
  appendToLog,
  hideNotice,
  messageBubble,
  setChatTitle,
  showNotice,
  updateComposer,
} from "./render.js";
import { SessionView } from "./session.js";
import { refreshSessions, updateDeleteButton } from "./sessions.js";
import { EventStream } from "./sse.js";
import { page } from "./state.js";

// The longest message the API takes, filled in by the server from MAX_MESSAGE_CHARS.
const MAX_MESSAGE_CHARS = Number(document.body.dataset.maxMessageChars) || 4000;

// The message handed back to the composer after its post failed, with its key: sending the
// same text to the same place again is a retry of that post, not a second message.
let unsent = null;

/** Send the composer's text: into the open session, or as the first message of a new one. */
export async function send(event) {
  event.preventDefault();
  const input = $("message-input");
  const text = input.value.trim();
  if (!text || page.sending) return;
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
  page.sending = true;
  updateComposer();
  hideNotice();
  const bubble = messageBubble("user", text, null);
  bubble.classList.add("pending");
  appendToLog(bubble);
  const sent = { text, el: bubble };
  input.value = "";
  onComposerInput();
  // The view the message was written in; the user may switch to another while it posts.
  const view = page.current;
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
      if (page.current === null) startedSession(started, sent);
    }
    refreshSessions();
  } catch (err) {
    if (err.status === 0 || err.status >= 500) unsent = { text, target, key };
    bubble.remove();
    if (view) view.pending = view.pending.filter((p) => p !== sent);
    if (page.current === view) {
      input.value = text;
      onComposerInput();
    }
    if (err.status !== 401) showNotice(err.message);
  } finally {
    page.sending = false;
    updateComposer();
  }
}

/** Show the session the first message just created, and read its stream from the start. */
function startedSession(started, sent) {
  page.current = new SessionView(started.session_id);
  page.current.pending.push(sent);
  page.current.confirm(sent, started.message.message);
  page.current.lastId = "0-0";
  setChatTitle(sent.text);
  history.replaceState(null, "", `#${started.session_id}`);
  updateDeleteButton();
  page.current.stream = new EventStream(page.current);
  page.current.stream.start();
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

export function updateCharCount() {
  const length = messageLength($("message-input").value);
  const over = length > MAX_MESSAGE_CHARS;
  const counter = $("char-count");
  counter.textContent = `${formatCount(length)} / ${formatCount(MAX_MESSAGE_CHARS)}`;
  counter.classList.toggle("over", over);
  counter.dataset.over = String(over);
  if (over) $("message-input").setAttribute("aria-invalid", "true");
  else $("message-input").removeAttribute("aria-invalid");
}

export function onComposerInput() {
  autoGrow();
  updateCharCount();
}
