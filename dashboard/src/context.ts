/** What every view gets from the app shell. */

import type { Api } from "./api";
import type { LiveConnection } from "./live";

/** What the signed-in token may do: everything with the user's own sessions, or watch one session. */
export type Access = { readonly kind: "user" } | { readonly kind: "viewer"; readonly session: string };

export interface AppContext {
  readonly api: Api;
  readonly live: LiveConnection;
  readonly access: Access;
  /** Goes to a route, e.g. `#/sessions/<id>` or `#/`. */
  navigate(hash: string): void;
}

export interface View {
  readonly element: HTMLElement;
  /** Stops timers and subscriptions; called when the view is replaced. */
  destroy(): void;
}

/** Every `seconds` (and once now), while the view lives; skipped while the tab is hidden. */
export class Poller {
  private timer: number | undefined;
  private stopped = false;

  constructor(
    private readonly task: () => Promise<number | null>,
    private readonly seconds: number,
  ) {}

  start(): void {
    void this.tick();
  }

  /** Runs the task now (after a user action) and restarts the period. */
  now(): void {
    window.clearTimeout(this.timer);
    void this.tick();
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.timer);
  }

  private async tick(): Promise<void> {
    if (this.stopped) {
      return;
    }
    let wait = this.seconds;
    if (!document.hidden) {
      // the task may ask for a longer wait (a 429's Retry-After)
      wait = Math.max(wait, (await this.task()) ?? 0);
    }
    // stop() may have been called while the task ran
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
    if (!this.stopped) {
      window.clearTimeout(this.timer);
      this.timer = window.setTimeout(() => void this.tick(), wait * 1000);
    }
  }
}
