/*
 * Signing in and out. In development the page gets a token from POST /api/dev/token for the
 * name typed; elsewhere the user pastes one. The token lives in sessionStorage (api.js).
 */

import { api, clearToken, getToken, setToken } from "./api.js";
import { $, setConnection } from "./render.js";
import { newSession, openSession, refreshSessions } from "./sessions.js";
import { page } from "./state.js";

const USER_KEY = "triagem.user";
// Which form to show: set by the server on <body> (the dev token route exists only in
// development, so the page never probes a route it may not have).
const DEV_LOGIN = document.body.dataset.devLogin === "true";

export function showLogin(message = "") {
  if (page.current) page.current.close();
  page.current = null;
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

export function onUnauthorized() {
  clearToken();
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
  setToken(token);
  // Check the token before showing the app: a wrong one is refused here, with its reason.
  await api("/api/conversations/sessions?limit=1");
  showApp();
}

export async function onDevLogin(event) {
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

export async function onTokenLogin(event) {
  event.preventDefault();
  const token = $("token-input").value.trim().replace(/^Bearer\s+/i, "");
  try {
    await signIn(token);
  } catch (err) {
    clearToken();
    $("login-error").textContent = err.message;
  }
}

export function showApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("menu-button").hidden = false;
  $("who").textContent = tokenSubject(getToken());
  refreshSessions();
  const fromUrl = location.hash.slice(1);
  if (/^[A-Za-z0-9_-]{1,64}$/.test(fromUrl)) openSession(fromUrl);
  else newSession();
}

export function signOut() {
  clearToken();
  history.replaceState(null, "", location.pathname);
  showLogin();
}
