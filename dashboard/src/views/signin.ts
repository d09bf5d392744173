/** Sign in: paste a token (checked against the API before it is kept), with a session id for a watch-only one. */

import { Api, ApiError, type TokenKind, explain } from "../api";
import { type SignIn, isSessionId } from "../auth";
import { h } from "../dom";

export const VIEWER_NEEDS_SESSION =
  "This is a watch-only token: it shows one session only. Enter that session's id below (the part after " +
  "“session=” in the link you were given), or open the whole link.";

export function signInView(
  apiUrl: string,
  message: string | null,
  onSignedIn: (signIn: SignIn, kind: TokenKind) => void,
): HTMLElement {
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "token-help signin-error",
  });
  const sessionInput = h("input", {
    id: "signin-session",
    name: "session",
    type: "text",
    autocomplete: "off",
    spellcheck: "false",
    pattern: "[0-9a-f]{24}",
    "aria-describedby": "signin-session-help signin-error",
  });
  const error = h("p", { id: "signin-error", class: "error", role: "alert" }, message ?? "");
  error.hidden = message === null;
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { id: "signin-form", class: "card narrow", "aria-labelledby": "signin-title", novalidate: true },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("label", { for: "token" }, "API token"),
    input,
    h(
      "p",
      { id: "token-help", class: "help" },
      "A bearer token for the emotion-stream API (locally: ",
      h("code", {}, "emotionctl token create --user NAME"),
      "). It is kept in this browser tab only and forgotten when you sign out or close the tab.",
    ),
    h("label", { for: "signin-session" }, "Session id (for a watch-only token)"),
    sessionInput,
    h(
      "p",
      { id: "signin-session-help", class: "help" },
      "Only needed for a watch-only token, which shows one session: 24 characters, 0–9 and a–f. Leave empty otherwise.",
    ),
    error,
    button,
  );
  const fail = (text: string, focus: HTMLInputElement): void => {
    error.textContent = text;
    error.hidden = false;
    button.disabled = false;
    focus.focus();
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    const session = sessionInput.value.trim().toLowerCase();
    if (token === "") {
      fail("Paste a token first.", input);
      return;
    }
    if (session !== "" && !isSessionId(session)) {
      fail("A session id is 24 characters, 0–9 and a–f.", sessionInput);
      return;
    }
    button.disabled = true;
    error.hidden = true;
    const api = new Api(apiUrl, token);
    const signIn: SignIn = { token, session: session === "" ? null : session };
    void (async () => {
      let kind: TokenKind;
      try {
        kind = await api.tokenKind();
        if (kind === "viewer" && signIn.session === null) {
          fail(VIEWER_NEEDS_SESSION, sessionInput);
          return;
        }
        if (signIn.session !== null) {
          await api.getSession(signIn.session); // a 404 here is said next to the field, not on a page
        }
      } catch (failure) {
        if (failure instanceof ApiError && failure.status === 401) {
          fail("This token was not accepted (wrong or expired). Check it and try again.", input);
        } else if (failure instanceof ApiError && failure.status === 404) {
          fail("No such session for this token: check the session id.", sessionInput);
        } else {
          fail(explain(failure), input);
        }
        return;
      }
      onSignedIn(signIn, kind);
    })();
  });
  queueMicrotask(() => {
    if (message === VIEWER_NEEDS_SESSION) {
      sessionInput.focus();
    } else {
      input.focus();
    }
  });
  return h("main", { id: "signin-view" }, form);
}
