/** The app shell: configuration, sign-in, routes (`#/`, `#/sessions/<id>`), the live-connection banner. */

import { Api, ApiError, type TokenKind, explain } from "./api";
import { type SignIn, currentSignIn, forgetToken, saveSignIn, takeSignInFromFragment } from "./auth";
import { type DashboardConfig, loadConfig } from "./config";
import type { Access, AppContext, View } from "./context";
import { h } from "./dom";
import { LiveConnection, type LiveStatus } from "./live";
import { SessionView } from "./views/session";
import { SessionsView } from "./views/sessions";
import { VIEWER_NEEDS_SESSION, signInView } from "./views/signin";

const UNAUTHORIZED = "Your token was not accepted (wrong or expired). Sign in again.";
const VIEWER_UNAUTHORIZED =
  "This watch-only link no longer works: it was revoked, it expired, or its session was deleted. " +
  "Ask the session's owner for a new link.";

class App implements AppContext {
  private view: View | null = null;
  private session: { api: Api; live: LiveConnection; access: Access } | null = null;
  /** Bumped on every sign-in and sign-out: an answer for an older one is ignored. */
  private generation = 0;
  private readonly banner = h("div", { id: "live-banner", class: "banner", role: "status", "aria-live": "polite", hidden: true });
  private readonly signOutButton = h("button", { type: "button", id: "sign-out" }, "Sign out");
  private readonly nav = h("nav", { "aria-label": "Main" }, h("a", { href: "#/" }, "Sessions"));
  private readonly watchOnly = h(
    "span",
    { id: "watch-only", class: "badge watch-only", title: "This token can only watch one session", hidden: true },
    "Watch-only",
  );
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
        this.watchOnly,
        this.signOutButton,
      ),
      this.banner,
      this.outlet,
    );
    window.addEventListener("hashchange", () => {
      if (window.location.hash.startsWith("#token=")) {
        // a sign-in link opened in this tab
        this.endSession();
        const signIn = takeSignInFromFragment();
        if (signIn === null) {
          this.showSignIn(null);
        } else {
          void this.signIn(signIn);
        }
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

  get access(): Access {
    return this.requireSession().access;
  }

  start(): void {
    const signIn = takeSignInFromFragment() ?? currentSignIn();
    if (signIn === null) {
      this.showSignIn(null);
      return;
    }
    void this.signIn(signIn);
  }

  navigate(hash: string): void {
    if (window.location.hash === hash || (hash === "#/" && window.location.hash === "")) {
      this.route();
    } else {
      window.location.hash = hash;
    }
  }

  private requireSession(): { api: Api; live: LiveConnection; access: Access } {
    if (this.session === null) {
      throw new Error("not signed in");
    }
    return this.session;
  }

  /**
   * Signs in with a token, asking the API what it may do unless the sign-in form already did (`kind`). A
   * viewer token is taken to the one session its link names; a user token to that session or the list.
   */
  private async signIn(signIn: SignIn, kind?: TokenKind): Promise<void> {
    const generation = ++this.generation;
    const api = new Api(this.config.apiUrl, signIn.token);
    let unauthorized = UNAUTHORIZED;
    api.onUnauthorized((error: ApiError) => {
      if (generation === this.generation) {
        console.warn(`signed out: ${error.status}`);
        this.signOut(unauthorized);
      }
    });
    if (kind === undefined) {
      this.showPending(signIn);
      try {
        kind = await api.tokenKind();
      } catch (error) {
        if (generation === this.generation && !(error instanceof ApiError && error.status === 401)) {
          this.showPending(signIn, error); // the API is unreachable, busy or rate-limited: say so, offer a retry
        }
        return; // a 401 has signed out already
      }
      if (generation !== this.generation) {
        return;
      }
    }
    let access: Access;
    if (kind === "viewer") {
      if (signIn.session === null) {
        this.signOut(VIEWER_NEEDS_SESSION);
        return;
      }
      access = { kind: "viewer", session: signIn.session };
      unauthorized = VIEWER_UNAUTHORIZED;
    } else {
      access = { kind: "user" };
    }
    saveSignIn(kind === "viewer" ? signIn : { token: signIn.token, session: null });
    const live = new LiveConnection(this.config.webSocketUrl, signIn.token, (status) => {
      if (generation === this.generation) {
        this.liveStatus(status, unauthorized);
      }
    });
    this.session = { api, live, access };
    this.watchOnly.hidden = access.kind !== "viewer";
    live.start();
    if (signIn.session !== null && access.kind === "user") {
      this.navigate(`#/sessions/${signIn.session}`); // an owner opening a watch link sees the session too
    } else {
      this.route();
    }
  }

  /** "Signing in…" while the API is asked what the token may do; with a Retry button when that failed. */
  private showPending(signIn: SignIn, error?: unknown): void {
    this.replaceView(null);
    this.signOutButton.hidden = true;
    this.nav.hidden = true;
    this.watchOnly.hidden = true;
    const card = h("section", { id: "signing-in", class: "card narrow" }, h("h1", {}, "Signing in…"));
    if (error !== undefined) {
      const retry = h("button", { type: "button", id: "signin-retry", class: "primary" }, "Try again");
      retry.addEventListener("click", () => void this.signIn(signIn));
      const other = h("button", { type: "button", id: "signin-other" }, "Use another token");
      other.addEventListener("click", () => {
        this.signOut(null);
      });
      card.append(
        h("p", { id: "signin-pending-error", class: "error", role: "alert" }, `The sign-in could not be checked: ${explain(error)}`),
        h("div", { class: "actions" }, retry, other),
      );
    } else {
      card.append(h("p", { class: "help", role: "status" }, "Checking the token with the API."));
    }
    this.outlet.replaceChildren(h("main", {}, card));
    document.title = "Signing in · emotion-stream";
  }

  private endSession(): void {
    this.generation++;
    this.session?.live.close();
    this.session = null;
  }

  private signOut(message: string | null): void {
    forgetToken();
    this.endSession();
    this.banner.hidden = true;
    this.showSignIn(message);
  }

  private showSignIn(message: string | null): void {
    this.replaceView(null);
    this.signOutButton.hidden = true;
    this.nav.hidden = true;
    this.watchOnly.hidden = true;
    this.outlet.replaceChildren(
      signInView(this.config.apiUrl, message, (signIn, kind) => {
        void this.signIn(signIn, kind);
      }),
    );
    document.title = "Sign in · emotion-stream";
  }

  private route(): void {
    if (this.session === null) {
      return;
    }
    const access = this.session.access;
    this.signOutButton.hidden = false;
    this.nav.hidden = access.kind === "viewer"; // a viewer token has no list to go to
    const match = /^#\/sessions\/([^/]+)$/.exec(window.location.hash);
    const id = match?.[1];
    if (access.kind === "viewer") {
      const own = `#/sessions/${access.session}`;
      if (id === undefined) {
        window.history.replaceState(null, "", own); // its one session is its home page
        this.replaceView(new SessionView(this, access.session));
        document.title = "Session (watch-only) · emotion-stream";
      } else if (decodeURIComponent(id) === access.session) {
        this.replaceView(new SessionView(this, access.session));
        document.title = "Session (watch-only) · emotion-stream";
      } else {
        this.replaceView(outOfScopeView(own));
        document.title = "Not part of this link · emotion-stream";
      }
      return;
    }
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

  private liveStatus(status: LiveStatus, unauthorized: string): void {
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
          this.signOut(unauthorized);
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

/** A viewer token asked for another page than its session's: said in words, with the way back. */
function outOfScopeView(own: string): View {
  return {
    element: h(
      "main",
      {},
      h(
        "section",
        { id: "out-of-scope", class: "card narrow", role: "alert" },
        h("h1", {}, "Not part of this watch-only link"),
        h(
          "p",
          {},
          "You are signed in with a watch-only token: it shows one session and cannot list, create, stop or delete sessions.",
        ),
        h("p", {}, h("a", { href: own }, "Back to your session")),
      ),
    ),
    destroy: () => undefined,
  };
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
