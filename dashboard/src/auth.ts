/**
 * The bearer token: kept in sessionStorage only (this tab, this origin; never a cookie, never logged).
 * A link `…/#token=<token>` signs in directly; `…/#token=<token>&session=<id>` also opens that session (the
 * form of a watch-only link, whose viewer token can read that one session only). The fragment is removed from
 * the address bar at once.
 */

const TOKEN_KEY = "emotion-stream.token";
const SESSION_KEY = "emotion-stream.session";
const SESSION_ID = /^[0-9a-f]{24}$/;

export interface SignIn {
  readonly token: string;
  /** The session the link names, if any: where a viewer token is taken, and an owner's token goes first. */
  readonly session: string | null;
}

export function currentSignIn(): SignIn | null {
  const token = window.sessionStorage.getItem(TOKEN_KEY);
  return token === null ? null : { token, session: window.sessionStorage.getItem(SESSION_KEY) };
}

export function saveSignIn(signIn: SignIn): void {
  window.sessionStorage.setItem(TOKEN_KEY, signIn.token);
  if (signIn.session === null) {
    window.sessionStorage.removeItem(SESSION_KEY);
  } else {
    window.sessionStorage.setItem(SESSION_KEY, signIn.session);
  }
}

export function forgetToken(): void {
  window.sessionStorage.removeItem(TOKEN_KEY);
  window.sessionStorage.removeItem(SESSION_KEY);
}

export function isSessionId(value: string): boolean {
  return SESSION_ID.test(value);
}

/**
 * Reads a sign-in fragment: `#token=<token>` with an optional `&session=<24 hex digits>`. Null when the fragment
 * is not a sign-in link, names no token, or is malformed (a bad %-escape, an unknown part, a bad session id):
 * the sign-in form then shows.
 */
export function parseSignInFragment(hash: string): SignIn | null {
  if (!hash.startsWith("#token=")) {
    return null;
  }
  const parts = new Map<string, string>();
  for (const part of hash.slice(1).split("&")) {
    const equals = part.indexOf("=");
    const name = equals < 0 ? part : part.slice(0, equals);
    if (parts.has(name) || (name !== "token" && name !== "session")) {
      return null;
    }
    try {
      parts.set(name, decodeURIComponent(part.slice(equals + 1)).trim()); // not URLSearchParams: "+" stays "+"
    } catch {
      return null; // malformed %-escape
    }
  }
  const token = parts.get("token") ?? "";
  const session = parts.get("session") ?? null;
  if (token === "" || (session !== null && !isSessionId(session))) {
    return null;
  }
  return { token, session };
}

/** Takes a sign-in fragment out of the address (replacing the history entry) and returns what it names. */
export function takeSignInFromFragment(): SignIn | null {
  const hash = window.location.hash;
  if (!hash.startsWith("#token=")) {
    return null;
  }
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  return parseSignInFragment(hash);
}

/** The link that signs a browser in with `token` and opens `session` (what an owner hands to a viewer). */
export function watchLink(pageUrl: string, token: string, session: string): string {
  const url = new URL(pageUrl);
  url.hash = `token=${encodeURIComponent(token)}&session=${encodeURIComponent(session)}`;
  return url.href;
}
