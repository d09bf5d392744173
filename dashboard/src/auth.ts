/**
 * The bearer token: kept in sessionStorage only (this tab, this origin; never a cookie, never logged).
 * A link `…/#token=<token>` signs in directly; the fragment is removed from the address bar at once.
 */

const KEY = "emotion-stream.token";

export function currentToken(): string | null {
  return window.sessionStorage.getItem(KEY);
}

export function saveToken(token: string): void {
  window.sessionStorage.setItem(KEY, token);
}

export function forgetToken(): void {
  window.sessionStorage.removeItem(KEY);
}

/** Takes a `#token=` fragment out of the address (replacing the history entry) and returns the token. */
export function takeTokenFromFragment(): string | null {
  const hash = window.location.hash;
  if (!hash.startsWith("#token=")) {
    return null;
  }
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  let token: string;
  try {
    token = decodeURIComponent(hash.slice("#token=".length)).trim(); // not URLSearchParams: "+" stays "+"
  } catch {
    return null; // malformed %-escape: treated as no token, the sign-in form shows
  }
  return token === "" ? null : token;
}
