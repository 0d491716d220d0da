/*
 * The API client: the bearer token (sessionStorage: this tab only, never a URL), JSON calls
 * with the API's one error shape turned into ApiError, and posts with an Idempotency-Key that
 * are sent again with the same key while no answer comes back.
 */

import { hooks } from "./state.js";

const TOKEN_KEY = "triagem.token";
// Backoff between reconnections and post attempts (sse.js uses the same bounds).
export const BACKOFF_MIN_MS = 300;
export const BACKOFF_MAX_MS = 8_000;
// Attempts at posting one message before the page gives up and hands the text back.
const POST_ATTEMPTS = 4;

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

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

export function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** JSON call to the API; errors become ApiError with the server's message (one shape). */
export async function api(path, { method = "GET", body, signal, headers: extra = {} } = {}) {
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
    if (response.status === 401) hooks.unauthorized();
    throw new ApiError(response.status, error.code || "http", String(message));
  }
  return data;
}

/** A fresh Idempotency-Key (crypto.randomUUID needs a secure context; this does not). */
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** POST with an Idempotency-Key, again with the same key while no answer comes back. */
export async function postOnce(path, body, key) {
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
