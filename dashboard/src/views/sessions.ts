/** The sessions page: create, list (filter, pages, live refresh), stop, delete. */

import { ApiError, type Session, type SessionState } from "../api";
import { clock } from "../charts";
import { type AppContext, Poller, type View } from "../context";
import { formatDate, h } from "../dom";
import { splitMessage } from "../validation";
import { confirmDialog, showError, stateBadge } from "./common";

const PAGE_SIZE = 10;
const REFRESH_SECONDS = 5;
const FIELDS = ["name", "streamUri", "analysisFps"] as const;
type Field = (typeof FIELDS)[number];
const splitByField = (message: string): { byField: Map<Field, string[]>; other: string[] } =>
  splitMessage(message, FIELDS);

export class SessionsView implements View {
  readonly element: HTMLElement;
  private readonly poller: Poller;
  private offset = 0;
  private filter: SessionState | "" = "";
  private readonly rows: HTMLTableSectionElement;
  private readonly listError: HTMLElement;
  private readonly pageInfo: HTMLElement;
  private readonly newer: HTMLButtonElement;
  private readonly older: HTMLButtonElement;
  private readonly refreshed: HTMLElement;

  constructor(private readonly app: AppContext) {
    this.rows = h("tbody", { id: "session-rows" });
    this.listError = h("p", { id: "list-error", class: "error", role: "alert", hidden: true });
    this.pageInfo = h("span", { id: "page-info" });
    this.newer = h("button", { type: "button", id: "page-newer" }, "← Newer");
    this.older = h("button", { type: "button", id: "page-older" }, "Older →");
    this.refreshed = h("span", { class: "help", "aria-live": "off" });
    this.newer.addEventListener("click", () => {
      this.offset = Math.max(0, this.offset - PAGE_SIZE);
      this.poller.now();
    });
    this.older.addEventListener("click", () => {
      this.offset += PAGE_SIZE;
      this.poller.now();
    });
    const filter = h(
      "select",
      { id: "state-filter", name: "state" },
      h("option", { value: "" }, "all"),
      h("option", { value: "active" }, "active"),
      h("option", { value: "finished" }, "finished"),
      h("option", { value: "failed" }, "failed"),
    );
    filter.addEventListener("change", () => {
      this.filter = filter.value as SessionState | "";
      this.offset = 0;
      this.poller.now();
    });
    this.element = h(
      "main",
      { id: "sessions-view" },
      h("h1", {}, "Sessions"),
      this.createForm(),
      h(
        "section",
        { class: "card", "aria-labelledby": "list-title" },
        h(
          "div",
          { class: "toolbar" },
          h("h2", { id: "list-title" }, "Your sessions"),
          h("label", { for: "state-filter", class: "inline" }, "State ", filter),
        ),
        this.listError,
        h(
          "div",
          { class: "table-scroll" },
          h(
            "table",
            { id: "sessions-table" },
            h("caption", { class: "visually-hidden" }, "Sessions, newest first"),
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                ...["Name", "State", "Worker", "Duration", "Created", "Actions"].map((title) =>
                  h("th", { scope: "col" }, title),
                ),
              ),
            ),
            this.rows,
          ),
        ),
        h("nav", { class: "pager", "aria-label": "Pages" }, this.newer, this.pageInfo, this.older),
        this.refreshed,
      ),
    );
    this.poller = new Poller(() => this.refresh(), REFRESH_SECONDS);
    this.poller.start();
  }

  destroy(): void {
    this.poller.stop();
  }

  private createForm(): HTMLElement {
    const field = (id: Field, label: string, attributes: Record<string, string | boolean>, help: string): HTMLElement =>
      h(
        "div",
        { class: "field" },
        h("label", { for: `new-${id}` }, label),
        h("input", { id: `new-${id}`, name: id, "aria-describedby": `new-${id}-help new-${id}-error`, ...attributes }),
        h("p", { id: `new-${id}-help`, class: "help" }, help),
        h("p", { id: `new-${id}-error`, class: "error field-error", role: "alert", hidden: true }),
      );
    const formError = h("div", { id: "create-error", class: "error", role: "alert", hidden: true });
    const submit = h("button", { type: "submit", class: "primary", id: "create-session" }, "Create session");
    const form = h(
      "form",
      { id: "create-form", class: "card", "aria-labelledby": "create-title", novalidate: true },
      h("h2", { id: "create-title" }, "New session"),
      h(
        "div",
        { class: "fields" },
        field("name", "Name", { type: "text", required: true, maxlength: "256" }, "Shown in the list."),
        field(
          "streamUri",
          "Stream URI",
          { type: "text", required: true, spellcheck: "false", autocomplete: "off", placeholder: "rtmp://host/app/key" },
          "rtmp://, rtmps:// or rtsp://. Never shown again: it may hold a stream key.",
        ),
        field(
          "analysisFps",
          "Analyses per second",
          { type: "number", min: "0.1", max: "60", step: "any", value: "5", inputmode: "decimal" },
          "Frames analysed each second (default 5).",
        ),
      ),
      formError,
      submit,
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = (id: Field): string => (form.querySelector<HTMLInputElement>(`#new-${id}`)?.value ?? "").trim();
      for (const id of FIELDS) {
        this.fieldError(form, id, null);
      }
      showError(formError, null);
      const fps = value("analysisFps");
      const body = {
        name: value("name"),
        streamUri: value("streamUri"),
        ...(fps === "" ? {} : { config: { analysisFps: Number(fps) } }),
      };
      submit.disabled = true;
      this.app.api
        .createSession(body)
        .then((session) => {
          form.reset();
          this.app.navigate(`#/sessions/${session._id}`);
        })
        .catch((error: unknown) => {
          const parts = error instanceof ApiError && error.status === 400 ? splitByField(error.message) : null;
          if (parts === null) {
            showError(formError, error, "The session was not created");
            return;
          }
          for (const [field, messages] of parts.byField) {
            this.fieldError(form, field, messages.join("; "));
          }
          if (parts.other.length > 0) {
            showError(formError, new ApiError(400, parts.other.join("; ")), "The session was not created");
          }
        })
        .finally(() => {
          submit.disabled = false;
        });
    });
    return form;
  }

  private fieldError(form: HTMLElement, field: Field, message: string | null): void {
    const input = form.querySelector<HTMLInputElement>(`#new-${field}`);
    const target = form.querySelector<HTMLElement>(`#new-${field}-error`);
    if (!input || !target) {
      return;
    }
    target.textContent = message ?? "";
    target.hidden = message === null;
    input.setAttribute("aria-invalid", message === null ? "false" : "true");
    if (message !== null) {
      input.focus();
    }
  }

  private async refresh(): Promise<number | null> {
    try {
      const page = await this.app.api.listSessions({
        limit: PAGE_SIZE,
        offset: this.offset,
        ...(this.filter === "" ? {} : { state: this.filter }),
      });
      if (page.data.length === 0 && this.offset > 0) {
        this.offset = Math.max(0, this.offset - PAGE_SIZE); // the page emptied (deletes): step back
        return 0.2;
      }
      showError(this.listError, null);
      this.render(page.data);
      const first = page.data.length === 0 ? 0 : this.offset + 1;
      this.pageInfo.textContent =
        page.data.length === 0 ? "no sessions" : `${first}–${this.offset + page.data.length}`;
      this.newer.disabled = this.offset === 0;
      this.older.disabled = !page.hasMore;
      this.refreshed.textContent = `Refreshed ${new Date().toLocaleTimeString()} (every ${REFRESH_SECONDS} s).`;
      return null;
    } catch (error) {
      showError(this.listError, error, "The list could not be refreshed");
      return error instanceof ApiError ? error.retryAfter : null;
    }
  }

  private render(sessions: Session[]): void {
    if (sessions.length === 0) {
      const text = this.filter === "" ? "No sessions yet: create one above." : `No ${this.filter} sessions.`;
      this.rows.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "empty" }, text)));
      return;
    }
    this.rows.replaceChildren(...sessions.map((session) => this.row(session)));
  }

  private row(session: Session): HTMLTableRowElement {
    const actions = h("td", { class: "actions" });
    if (session.state === "active") {
      const stop = h("button", { type: "button", "aria-label": `Stop ${session.name}` }, "Stop");
      stop.addEventListener("click", () => {
        stop.disabled = true;
        this.app.api
          .stopSession(session._id)
          .then(() => {
            this.poller.now();
          })
          .catch((error: unknown) => {
            showError(this.listError, error, `"${session.name}" was not stopped`);
            stop.disabled = false;
          });
      });
      actions.append(stop);
    } else {
      const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete ${session.name}` }, "Delete");
      remove.addEventListener("click", () => {
        void this.delete(session);
      });
      actions.append(remove);
    }
    return h(
      "tr",
      {},
      h("td", {}, h("a", { href: `#/sessions/${session._id}` }, session.name)),
      h("td", {}, stateBadge("state", session.state)),
      h("td", {}, stateBadge("worker", session.meta.workerState)),
      h("td", { class: "number" }, clock(session.duration)),
      h("td", {}, h("time", { datetime: session.timestamp }, formatDate(session.timestamp))),
      actions,
    );
  }

  private async delete(session: Session): Promise<void> {
    const sure = await confirmDialog(
      "Delete this session?",
      `"${session.name}" and all its emotion data will be deleted permanently.`,
      "Delete permanently",
    );
    if (!sure) {
      return;
    }
    try {
      await this.app.api.deleteSession(session._id);
      this.poller.now();
    } catch (error) {
      showError(this.listError, error, `"${session.name}" was not deleted`);
    }
  }
}
