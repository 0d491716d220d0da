/*
 * The page's shared state, and the calls that go back up from the lower modules.
 *
 * `page.current` is the open SessionView (null for a new, unsaved conversation); `page.sending`
 * is true while the composer's message is being posted. `hooks` are the page-level actions a
 * lower module must trigger without importing the module that imports it (the API client
 * signs the user out on a 401, an open session that vanished starts a new conversation): the
 * entry module (app.js) fills them in at start, so the imports stay one-way, without cycles.
 */

export const page = { current: null, sending: false };

export const hooks = {
  /** The token was refused (401): back to the sign-in form. */
  unauthorized: () => {},
  /** The session list may have changed (a reply completed, a session is gone). */
  sessionsChanged: () => {},
  /** The open session is gone (deleted or expired): start over with a new conversation. */
  newSession: () => {},
};
