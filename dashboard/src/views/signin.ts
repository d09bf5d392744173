/** Sign in: paste a token (validated against the API before it is kept). */

import { Api, ApiError, explain } from "../api";
import { h } from "../dom";

export function signInView(apiUrl: string, message: string | null, onSignedIn: (token: string) => void): HTMLElement {
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "token-help signin-error",
  });
  const error = h("p", { id: "signin-error", class: "error", role: "alert" }, message ?? "");
  error.hidden = message === null;
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { id: "signin-form", class: "card narrow", "aria-labelledby": "signin-title" },
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
    error,
    button,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (token === "") {
      return;
    }
    button.disabled = true;
    error.hidden = true;
    new Api(apiUrl, token)
      .listSessions({ limit: 1, offset: 0 })
      .then(() => {
        onSignedIn(token);
      })
      .catch((failure: unknown) => {
        error.textContent =
          failure instanceof ApiError && failure.status === 401
            ? "This token was not accepted (wrong or expired). Check it and try again."
            : explain(failure);
        error.hidden = false;
        button.disabled = false;
        input.focus();
      });
  });
  queueMicrotask(() => {
    input.focus();
  });
  return h("main", { id: "signin-view" }, form);
}
