/** The app shell: configuration, sign-in, routes (`#/`, `#/sessions/<id>`), the live-connection banner. */

import { Api, type ApiError } from "./api";
import { currentToken, forgetToken, saveToken, takeTokenFromFragment } from "./auth";
import { type DashboardConfig, loadConfig } from "./config";
import type { AppContext, View } from "./context";
import { h } from "./dom";
import { LiveConnection, type LiveStatus } from "./live";
import { SessionView } from "./views/session";
import { SessionsView } from "./views/sessions";
import { signInView } from "./views/signin";

const UNAUTHORIZED = "Your token was not accepted (wrong or expired). Sign in again.";

class App implements AppContext {
  private view: View | null = null;
  private session: { api: Api; live: LiveConnection } | null = null;
  private readonly banner = h("div", { id: "live-banner", class: "banner", role: "status", "aria-live": "polite", hidden: true });
  private readonly signOutButton = h("button", { type: "button", id: "sign-out" }, "Sign out");
  private readonly nav = h("nav", { "aria-label": "Main" }, h("a", { href: "#/" }, "Sessions"));
  private readonly outlet = h("div", { id: "outlet" });

  constructor(
    private readonly root: HTMLElement,
    private readonly config: DashboardConfig,
  ) {
    this.signOutButton.addEventListener("click", () => {
      this.signOut(null);
    });
    root.replaceChildren(
      h("a", { href: "#outlet", class: "skip" }, "Skip to content"),
      h(
        "header",
        { class: "top" },
        h("a", { href: "#/", class: "brand" }, "emotion-stream"),
        this.nav,
        this.signOutButton,
      ),
      this.banner,
      this.outlet,
    );
    window.addEventListener("hashchange", () => {
      const token = takeTokenFromFragment(); // a sign-in link opened in this tab
      if (token !== null) {
        this.session?.live.close();
        this.session = null;
        this.signIn(token);
      } else {
        this.route();
      }
    });
  }

  get api(): Api {
    return this.requireSession().api;
  }

  get live(): LiveConnection {
    return this.requireSession().live;
  }

  start(): void {
    const token = takeTokenFromFragment() ?? currentToken();
    if (token === null) {
      this.showSignIn(null);
      return;
    }
    this.signIn(token);
  }

  navigate(hash: string): void {
    if (window.location.hash === hash || (hash === "#/" && window.location.hash === "")) {
      this.route();
    } else {
      window.location.hash = hash;
    }
  }

  private requireSession(): { api: Api; live: LiveConnection } {
    if (this.session === null) {
      throw new Error("not signed in");
    }
    return this.session;
  }

  private signIn(token: string): void {
    saveToken(token);
    const api = new Api(this.config.apiUrl, token);
    api.onUnauthorized((error: ApiError) => {
      console.warn(`signed out: ${error.status}`);
      this.signOut(UNAUTHORIZED);
    });
    const live = new LiveConnection(this.config.webSocketUrl, token, (status) => {
      this.liveStatus(status);
    });
    this.session = { api, live };
    live.start();
    this.route();
  }

  private signOut(message: string | null): void {
    forgetToken();
    this.session?.live.close();
    this.session = null;
    this.banner.hidden = true;
    this.showSignIn(message);
  }

  private showSignIn(message: string | null): void {
    this.replaceView(null);
    this.signOutButton.hidden = true;
    this.nav.hidden = true;
    this.outlet.replaceChildren(
      signInView(this.config.apiUrl, message, (token) => {
        this.signIn(token);
      }),
    );
    document.title = "Sign in · emotion-stream";
  }

  private route(): void {
    if (this.session === null) {
      return;
    }
    this.signOutButton.hidden = false;
    this.nav.hidden = false;
    const match = /^#\/sessions\/([^/]+)$/.exec(window.location.hash);
    const id = match?.[1];
    if (id !== undefined) {
      this.replaceView(new SessionView(this, decodeURIComponent(id)));
      document.title = "Session · emotion-stream";
    } else {
      this.replaceView(new SessionsView(this));
      document.title = "Sessions · emotion-stream";
    }
  }

  private replaceView(view: View | null): void {
    this.view?.destroy();
    this.view = view;
    if (view !== null) {
      this.outlet.replaceChildren(view.element);
      const heading = view.element.querySelector("h1");
      heading?.setAttribute("tabindex", "-1");
      heading?.focus({ preventScroll: true });
    }
  }

  private liveStatus(status: LiveStatus): void {
    switch (status.kind) {
      case "open":
        if (!this.banner.hidden) {
          this.showBanner("ok", "Live updates reconnected.");
          window.setTimeout(() => {
            if (this.banner.dataset.kind === "ok") {
              this.banner.hidden = true;
            }
          }, 4000);
        }
        break;
      case "connecting":
        break;
      case "reconnecting":
        this.showBanner(
          "warning",
          `Live updates disconnected (${status.reason}). Reconnecting in ${status.inSeconds} s (attempt ${status.attempt})…`,
        );
        break;
      case "rejected":
        if (status.status === 401) {
          this.signOut(UNAUTHORIZED);
        } else {
          this.showBanner("error", `Live updates refused (${status.status}): ${status.message}`);
        }
        break;
    }
  }

  private showBanner(kind: "ok" | "warning" | "error", text: string): void {
    this.banner.dataset.kind = kind;
    this.banner.textContent = text;
    this.banner.hidden = false;
  }
}

async function main(): Promise<void> {
  const root = document.getElementById("app");
  if (root === null) {
    return;
  }
  try {
    const config = await loadConfig();
    new App(root, config).start();
  } catch (error) {
    root.replaceChildren(
      h(
        "main",
        { class: "card narrow", role: "alert" },
        h("h1", {}, "The dashboard cannot start"),
        h("p", {}, error instanceof Error ? error.message : String(error)),
      ),
    );
  }
}

void main();
