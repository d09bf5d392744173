/** Pieces the session views share: badges, the error panel, the delete confirmation. */

import { ApiError, explain } from "../api";
import { h } from "../dom";

export function stateBadge(kind: "state" | "worker", value: string): HTMLElement {
  return h("span", { class: `badge ${kind}-${value}` }, value);
}

/** Fills a `role="alert"` element with what went wrong and what to do; empties it for null. */
export function showError(target: HTMLElement, error: unknown, doing: string | null = null): void {
  target.replaceChildren();
  if (error === null) {
    target.hidden = true;
    return;
  }
  target.hidden = false;
  const detail = error instanceof ApiError && error.status !== 0 ? error.message : null;
  target.append(
    h("strong", {}, doing === null ? explain(error) : `${doing}: ${explain(error)}`),
    detail !== null && detail !== explain(error) ? h("span", { class: "detail" }, ` (${detail})`) : "",
  );
}

/** A modal confirmation (native <dialog>: focus stays inside, Escape cancels). Resolves true on confirm. */
export function confirmDialog(title: string, text: string, confirmLabel: string): Promise<boolean> {
  const confirm = h("button", { type: "button", id: "confirm-delete", class: "danger" }, confirmLabel);
  const cancel = h("button", { type: "button", id: "confirm-cancel" }, "Cancel");
  const dialog = h(
    "dialog",
    { "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" },
    h("h2", { id: "confirm-title" }, title),
    h("p", { id: "confirm-text" }, text),
    h("div", { class: "actions" }, cancel, confirm),
  );
  document.body.append(dialog);
  return new Promise((resolve) => {
    const finish = (answer: boolean): void => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    confirm.addEventListener("click", () => {
      finish(true);
    });
    cancel.addEventListener("click", () => {
      finish(false);
    });
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      finish(false);
    });
    dialog.showModal();
    cancel.focus();
  });
}
