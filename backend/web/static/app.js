/*
 * Triagem inteligente: the browser chat client (native ES modules, no build step).
 *
 * The page's modules, imported from here (relative imports, native ES modules):
 *   api.js       the token, JSON calls to the API and their errors, idempotent posts
 *   sse.js       the SSE parser and the session's event stream (reconnect and resume)
 *   session.js   the open session: its history and how each event changes the page
 *   render.js    the message log, bubbles, triage card, connection state and notices
 *   sessions.js  the session list, opening, starting and deleting a session
 *   composer.js  the character counter and sending a message
 *   auth.js      signing in and out
 *   state.js     the open session and the calls back up from the lower modules
 *
 * How the page talks to the API, and why:
 *
 * - Events are read with fetch() and a stream reader, not EventSource. EventSource cannot send
 *   an Authorization header (the token would have to travel in the URL, and URLs end up in
 *   server logs and browser history) and it reconnects on its own terms. With fetch the page
 *   sends the bearer token and Last-Event-ID headers itself, parses the SSE wire format
 *   (`readSse`, sse.js), shows the connection state and reconnects with backoff.
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

import { getToken } from "./api.js";
import { onDevLogin, onTokenLogin, onUnauthorized, showApp, showLogin, signOut } from "./auth.js";
import { onComposerInput, send, updateCharCount } from "./composer.js";
import { $, setConnection } from "./render.js";
import {
  askDeleteSession,
  closeSidebar,
  deleteSession,
  newSession,
  refreshSessions,
  toggleSidebar,
} from "./sessions.js";
import { hooks, page } from "./state.js";

function init() {
  hooks.unauthorized = onUnauthorized;
  hooks.sessionsChanged = refreshSessions;
  hooks.newSession = newSession;
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
    if (page.current && page.current.stream) setConnection("offline");
  });
  if (getToken()) showApp();
  else showLogin();
}

init();
