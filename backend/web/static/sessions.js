/*
 * The session list in the sidebar, and opening, starting and deleting a session. At phone
 * width the sidebar is a drawer behind the menu button.
 */

import { api } from "./api.js";
import {
  $,
  clearMessages,
  hideNotice,
  setChatTitle,
  setConnection,
  showNotice,
  updateComposer,
} from "./render.js";
import { SessionView } from "./session.js";
import { page } from "./state.js";

function formatWhen(iso) {
  const when = new Date(iso);
  const sameDay = when.toDateString() === new Date().toDateString();
  return sameDay
    ? when.toLocaleTimeString("pt-BR", { hour: "2-digit", minute: "2-digit" })
    : when.toLocaleDateString("pt-BR", { day: "2-digit", month: "short" });
}

export async function refreshSessions() {
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
    if (page.current && page.current.sessionId === item.session_id) {
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

export async function openSession(sessionId) {
  closeSidebar();
  if (page.current) page.current.close();
  hideNotice();
  page.current = new SessionView(sessionId);
  markCurrentSession();
  history.replaceState(null, "", `#${sessionId}`);
  try {
    await page.current.open();
  } catch (err) {
    if (err.status === 404) page.current.gone();
    else if (err.status !== 401) showNotice(err.message);
  }
}

export function newSession() {
  closeSidebar();
  if (page.current) page.current.close();
  page.current = null;
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
    const on = page.current !== null && button.dataset.sessionId === page.current.sessionId;
    if (on) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
}

// ---------------------------------------------------------------------- deleting a session

export function updateDeleteButton() {
  $("delete-session").hidden = page.current === null;
}

/** Ask first; then DELETE the open session and start a new conversation. */
export function askDeleteSession() {
  if (page.current === null) return;
  $("delete-dialog").showModal();
  $("delete-cancel").focus();
}

export async function deleteSession() {
  $("delete-dialog").close();
  const view = page.current;
  if (view === null) return;
  // Stop its stream first: the server ends it on delete, and that is not news to show.
  view.close();
  try {
    await api(`/api/conversations/sessions/${view.sessionId}`, { method: "DELETE" });
  } catch (err) {
    if (err.status === 401) return;
    if (err.status !== 404) {
      // Still there: show it again (unless another one was opened meanwhile), with the reason.
      if (page.current === view) await openSession(view.sessionId);
      showNotice(`Não foi possível apagar a conversa: ${err.message}`);
      return;
    }
  }
  if (page.current === view) newSession();
  showNotice("Conversa apagada.", { transient: true });
  refreshSessions();
}

// ---------------------------------------------------------------------- phone-width menu

export function toggleSidebar() {
  const open = !document.body.classList.contains("sidebar-open");
  document.body.classList.toggle("sidebar-open", open);
  $("menu-button").setAttribute("aria-expanded", String(open));
}

export function closeSidebar() {
  document.body.classList.remove("sidebar-open");
  $("menu-button").setAttribute("aria-expanded", "false");
}
