/*
 * Rendering: the message log, the bubbles, the triage card, the connection state and the
 * notices. Everything users or the model wrote is rendered with textContent, never as HTML.
 */

import { page } from "./state.js";

export const $ = (id) => document.getElementById(id);

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

export function messageBubble(role, text, seq) {
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

export function finishBubble(bubble, content) {
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

export function errorBubble(message) {
  const el = messageBubble("error", `Não foi possível responder: ${message}`, null);
  el.setAttribute("role", "alert");
  return el;
}

export function showTriage(result) {
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

export function clearMessages() {
  const log = $("messages");
  for (const el of [...log.children]) if (el.id !== "welcome") el.remove();
  $("welcome").hidden = false;
  hideNotice();
}

export function appendToLog(el) {
  $("welcome").hidden = true;
  const log = $("messages");
  log.append(el);
  keepScrolledDown(true);
}

export function keepScrolledDown(force = false) {
  const log = $("messages");
  const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 120;
  if (force || nearBottom) log.scrollTop = log.scrollHeight;
}

export function setChatTitle(title) {
  $("chat-title").textContent = title || "Nova conversa";
}

export function setConnection(state) {
  const el = $("connection");
  el.dataset.state = state;
  $("connection-text").textContent = CONNECTION_TEXT[state];
}

let noticeTimer = null;
export function showNotice(text, { transient = false } = {}) {
  const el = $("notice");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(noticeTimer);
  if (transient) noticeTimer = setTimeout(hideNotice, 6_000);
}

export function hideNotice() {
  $("notice").hidden = true;
}

export function updateComposer() {
  // A reply being written keeps the button busy: the next message would only queue behind it.
  const streaming = page.current !== null && $("messages").querySelector(".bubble.streaming");
  $("send").disabled = page.sending || Boolean(streaming);
  $("send").title = streaming ? "Aguarde o fim da resposta" : "";
}
