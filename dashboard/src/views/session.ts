/** One session: its state and sources; live emotions while active; timeline, totals and downloads afterwards. */

import {
  ApiError,
  EMOTIONS,
  type Emotion,
  type EmotionCounts,
  type EmotionStatsByName,
  type Session,
  type Timeline,
  type ViewerToken,
} from "../api";
import { watchLink } from "../auth";
import { EmotionSeriesChart, clock, renderTotalsBars } from "../charts";
import { type AppContext, Poller, type View } from "../context";
import { formatDate, h } from "../dom";
import { setDownload, timelineCsv } from "../download";
import { confirmDialog, showError, stateBadge } from "./common";

const REFRESH_SECONDS = 3;
const FREQUENCIES = ["1s", "3s", "5s", "10s", "30s", "1m"] as const;
const GRANULARITIES = [5, 10, 30, 60, 300, 900, 3600] as const;
type Measure = "intensity" | "count";

interface LivePeriod {
  intensities?: EmotionStatsByName;
  counts?: EmotionCounts;
}

export class SessionView implements View {
  readonly element: HTMLElement;
  private session: Session | null = null;
  private readonly poller: Poller;
  private readonly header = h("div", { class: "session-header" });
  private readonly facts = h("dl", { id: "session-facts", class: "facts" });
  private readonly sources = h("section", { id: "sources", class: "card", "aria-labelledby": "sources-title" });
  private readonly body = h("div", { class: "session-body" });
  private readonly error = h("div", { id: "session-error", class: "error", role: "alert", hidden: true });
  private workerState: string | null = null;
  /** When the last worker state arrived over the WebSocket (performance.now()), to order it against a poll. */
  private workerStateAt = -Infinity;
  private unsubscribeWorker: (() => void) | null = null;
  private live: LivePanel | null = null;
  private afterwards: AfterwardsPanel | null = null;
  private share: SharePanel | null = null;
  private readonly viewer: boolean;

  constructor(
    private readonly app: AppContext,
    private readonly id: string,
  ) {
    this.viewer = app.access.kind === "viewer";
    this.element = h(
      "main",
      { id: "session-view" },
      this.viewer
        ? h("p", { id: "watch-only-note", class: "help" }, "Watch-only: this link shows this session and nothing else.")
        : h("p", {}, h("a", { href: "#/" }, "← All sessions")),
      this.error,
      this.header,
      h("section", { class: "card", "aria-label": "Session facts" }, this.facts),
      this.body,
      this.sources,
    );
    this.poller = new Poller(() => this.refresh(), REFRESH_SECONDS);
    this.poller.start();
  }

  destroy(): void {
    this.poller.stop();
    this.unsubscribeWorker?.();
    this.unsubscribeWorker = null;
    this.live?.destroy();
    this.live = null;
    this.afterwards?.destroy();
    this.afterwards = null;
    this.share = null;
  }

  private async refresh(): Promise<number | null> {
    if (this.session !== null && this.session.state !== "active") {
      return null; // an ended session does not change
    }
    try {
      const asked = performance.now();
      this.show(await this.app.api.getSession(this.id), asked);
      showError(this.error, null);
      return null;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        this.notFound();
        return null;
      }
      showError(this.error, error, "The session could not be loaded");
      return error instanceof ApiError ? error.retryAfter : null;
    }
  }

  private notFound(): void {
    this.poller.stop();
    this.destroy();
    this.element.replaceChildren(
      h(
        "section",
        { id: "not-found", class: "card", role: "alert" },
        h("h1", {}, "Session not found"),
        ...(this.viewer
          ? [h("p", {}, "This watch-only link names a session that is not there (any more): ask its owner for a new link.")]
          : [
              h("p", {}, "It does not exist, was deleted, or belongs to another user."),
              h("p", {}, h("a", { href: "#/" }, "Back to your sessions")),
            ]),
      ),
    );
  }

  /** ``asked``: when the request that answered ``session`` was sent; a worker state pushed after that is newer. */
  private show(session: Session, asked: number = performance.now()): void {
    const first = this.session === null;
    this.session = session;
    if (first) {
      this.unsubscribeWorker = this.app.live.subscribe("session_worker_state", session._id, (_ts, data) => {
        if (typeof data === "string") {
          this.setWorkerState(data);
        }
      });
    }
    // the poll's worker state, unless a push arrived while it was on its way: a change made between the first
    // poll and the subscription taking effect is never pushed, so the poll must be able to correct the page
    if (this.workerStateAt < asked || session.state !== "active") {
      this.workerState = session.meta.workerState;
    }
    this.renderHeader(session);
    this.renderFacts(session);
    this.renderSources(session);
    if (!this.viewer && this.share === null) {
      this.share = new SharePanel(this.app, session._id);
      this.sources.after(this.share.element);
    }
    if (session.state === "active") {
      this.live ??= this.mount(new LivePanel(this.app, session));
    } else {
      if (this.live !== null) {
        this.live.destroy();
        this.live.element.remove();
        this.live = null;
      }
      this.afterwards ??= this.mount(new AfterwardsPanel(this.app, session));
    }
  }

  private mount<T extends { element: HTMLElement }>(panel: T): T {
    this.body.append(panel.element);
    return panel;
  }

  private setWorkerState(state: string): void {
    this.workerState = state;
    this.workerStateAt = performance.now();
    const badge = this.facts.querySelector("#worker-state");
    badge?.replaceChildren(stateBadge("worker", state));
    if (state === "stopped" || state === "error") {
      // the worker has written its last second: the session's end and the final numbers are readable now
      this.poller.now();
      this.afterwards?.reload();
    }
  }

  private renderHeader(session: Session): void {
    const actions = h("div", { class: "actions" });
    if (this.viewer) {
      // a viewer token only reads: no stop, no delete (the API would answer 403)
    } else if (session.state === "active") {
      const stop = h("button", { type: "button", id: "stop-session" }, "Stop session");
      stop.addEventListener("click", () => {
        stop.disabled = true;
        this.app.api
          .stopSession(session._id)
          .then((stopped) => {
            this.show(stopped);
          })
          .catch((error: unknown) => {
            showError(this.error, error, "The session was not stopped");
            stop.disabled = false;
          });
      });
      actions.append(stop);
    } else {
      const remove = h("button", { type: "button", id: "delete-session", class: "danger" }, "Delete session");
      remove.addEventListener("click", () => {
        void this.delete(session);
      });
      actions.append(remove);
    }
    this.header.replaceChildren(h("h1", { id: "session-name" }, session.name), actions);
  }

  private renderFacts(session: Session): void {
    const item = (term: string, ...value: (Node | string)[]): Node[] => [h("dt", {}, term), h("dd", {}, ...value)];
    const stats = session.meta.stats;
    this.facts.replaceChildren(
      ...item("State", h("span", { id: "session-state" }, stateBadge("state", session.state))),
      ...item("Worker", h("span", { id: "worker-state", "aria-live": "polite" }, stateBadge("worker", this.workerState ?? session.meta.workerState))),
      ...item("Duration", h("span", { id: "duration" }, clock(session.duration))),
      ...item("Created", h("time", { datetime: session.timestamp }, formatDate(session.timestamp))),
      ...item("Analyses per second", String(session.config.analysisFps)),
      ...(session.meta.stopReason ? item("Stop reason", session.meta.stopReason) : []),
      ...(session.meta.error ? item("Error", session.meta.error) : []),
      ...(stats ? item("Frames", `${stats.analysedFrames ?? 0} analysed, ${stats.droppedFrames ?? 0} dropped`) : []),
      ...item("Id", h("code", {}, session._id)),
    );
  }

  private renderSources(session: Session): void {
    const rows = session.sources.map((source) =>
      h(
        "tr",
        {},
        h("td", {}, source.name ?? source.id),
        h("td", {}, source.type),
        h("td", {}, source.codec ?? "–"),
        h("td", { class: "number" }, source.width && source.height ? `${source.width}×${source.height}` : "–"),
        h(
          "td",
          { class: "number" },
          source.type === "video"
            ? source.fps
              ? `${source.fps} fps`
              : "–"
            : `${source.sampleRate ?? "?"} Hz, ${source.channels ?? "?"} ch`,
        ),
      ),
    );
    this.sources.replaceChildren(
      h("h2", { id: "sources-title" }, "Sources"),
      rows.length === 0
        ? h("p", { class: "help" }, "Not probed yet: the worker lists the stream's tracks once it connects.")
        : h(
            "div",
            { class: "table-scroll" },
            h(
              "table",
              { id: "sources-table" },
              h(
                "thead",
                {},
                h("tr", {}, ...["Track", "Type", "Codec", "Resolution", "Rate"].map((t) => h("th", { scope: "col" }, t))),
              ),
              h("tbody", {}, ...rows),
            ),
          ),
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
      this.app.navigate("#/");
    } catch (error) {
      showError(this.error, error, "The session was not deleted");
    }
  }
}

/** Live: a point per period on the chart, the dominant emotion, the number of faces. */
class LivePanel {
  readonly element: HTMLElement;
  private readonly chart: EmotionSeriesChart;
  private readonly periods = new Map<number, LivePeriod>();
  private readonly dominant = h("p", { id: "dominant", class: "dominant" }, "waiting for the first second…");
  private readonly faces = h("p", { id: "faces", class: "faces" });
  private readonly points = h("p", { id: "live-points", class: "help" }, "0 points");
  private readonly chartHost = h("div", { id: "live-chart", class: "chart" });
  private unsubscribe: (() => void)[] = [];
  private frequency: (typeof FREQUENCIES)[number] = "1s";
  private measure: Measure = "intensity";
  private readonly origin: number;

  constructor(
    private readonly app: AppContext,
    private readonly session: Session,
  ) {
    this.origin = Date.parse(session.timestamp);
    const frequency = h(
      "select",
      { id: "live-frequency" },
      ...FREQUENCIES.map((f) => h("option", { value: f, selected: f === this.frequency }, f)),
    );
    const measure = h(
      "select",
      { id: "live-measure" },
      h("option", { value: "intensity", selected: true }, "intensity (0–1)"),
      h("option", { value: "count" }, "observations (count)"),
    );
    frequency.addEventListener("change", () => {
      this.frequency = frequency.value as (typeof FREQUENCIES)[number];
      this.resubscribe();
    });
    measure.addEventListener("change", () => {
      this.measure = measure.value as Measure;
      this.chart.replace([...this.periods.keys()].sort((a, b) => a - b).map((x) => this.row(x)));
    });
    this.element = h(
      "section",
      { id: "live", class: "card", "aria-labelledby": "live-title" },
      h("h2", { id: "live-title" }, "Live"),
      h(
        "div",
        { class: "live-summary" },
        h("div", {}, h("p", { class: "help" }, "Dominant emotion"), this.dominant),
        h("div", {}, h("p", { class: "help" }, "Faces in view"), this.faces),
      ),
      h(
        "div",
        { class: "toolbar" },
        h("label", { for: "live-measure", class: "inline" }, "Show ", measure),
        h("label", { for: "live-frequency", class: "inline" }, "One point every ", frequency),
      ),
      h("figure", {}, this.chartHost, h("figcaption", {}, "Each emotion per period since the session started; faces dashed (right axis)."), this.points),
    );
    this.chart = new EmotionSeriesChart(this.chartHost, { valueLabel: "value", valueRange: null });
    this.resubscribe();
  }

  destroy(): void {
    for (const unsubscribe of this.unsubscribe) {
      unsubscribe();
    }
    this.unsubscribe = [];
    this.chart.destroy();
  }

  private resubscribe(): void {
    for (const unsubscribe of this.unsubscribe) {
      unsubscribe();
    }
    this.periods.clear();
    this.chart.replace([]);
    this.points.textContent = "0 points";
    const key = `${this.session._id}:${this.frequency}`;
    this.unsubscribe = [
      this.app.live.subscribe("session_emotions_intensities", key, (ts, data) => {
        this.receive(ts, { intensities: data as EmotionStatsByName });
      }),
      this.app.live.subscribe("session_emotions_counts", key, (ts, data) => {
        this.receive(ts, { counts: data as EmotionCounts });
      }),
    ];
  }

  private receive(timestampMs: number, part: LivePeriod): void {
    const x = Math.round((timestampMs - this.origin) / 1000);
    const period = { ...this.periods.get(x), ...part };
    this.periods.set(x, period);
    const row = this.row(x);
    this.chart.push(x, row.values, row.faces);
    this.points.textContent = `${this.chart.length} points, last at ${clock(x)}`;
    const latest = Math.max(...this.periods.keys());
    if (x === latest && period.intensities) {
      this.summarise(period.intensities);
    }
  }

  private row(x: number): { x: number; values: Record<Emotion, number>; faces: number } {
    const period = this.periods.get(x) ?? {};
    const values = {} as Record<Emotion, number>;
    for (const emotion of EMOTIONS) {
      values[emotion] =
        this.measure === "intensity" ? (period.intensities?.[emotion].intensity ?? 0) : (period.counts?.[emotion] ?? 0);
    }
    return { x, values, faces: facesOf(period.intensities) };
  }

  private summarise(stats: EmotionStatsByName): void {
    const faces = facesOf(stats);
    this.faces.textContent = String(faces);
    if (faces === 0) {
      this.dominant.textContent = "no face in view";
      return;
    }
    const top = EMOTIONS.reduce((best, emotion) => (stats[emotion].quantity > stats[best].quantity ? emotion : best));
    this.dominant.textContent = `${top} ${stats[top].intensity.toFixed(2)}`;
  }
}

/** The largest per-emotion `people` of a period: exact for one face, a lower bound for several. */
function facesOf(stats: EmotionStatsByName | undefined): number {
  return stats ? Math.max(...EMOTIONS.map((emotion) => stats[emotion].people)) : 0;
}

/** Afterwards: the REST timeline (granularity picker), the totals, downloads. */
class AfterwardsPanel {
  readonly element: HTMLElement;
  private readonly chartHost = h("div", { id: "timeline-chart", class: "chart" });
  private readonly chart: EmotionSeriesChart;
  private readonly totals = h("div", { id: "totals", "aria-live": "polite" });
  private readonly status = h("p", { id: "timeline-status", class: "help" });
  private readonly error = h("div", { class: "error", role: "alert", hidden: true });
  private readonly csv = h("a", { id: "download-csv", class: "button", href: "#" }, "Download CSV");
  private readonly json = h("a", { id: "download-json", class: "button", href: "#" }, "Download JSON");
  private granularity: number;

  constructor(
    private readonly app: AppContext,
    private readonly session: Session,
  ) {
    this.granularity = GRANULARITIES.find((g) => session.duration / g <= 120) ?? 3600;
    const picker = h(
      "select",
      { id: "granularity" },
      ...GRANULARITIES.map((g) => h("option", { value: g, selected: g === this.granularity }, g < 60 ? `${g} s` : `${g / 60} min`)),
    );
    picker.addEventListener("change", () => {
      this.granularity = Number(picker.value);
      void this.loadTimeline();
    });
    const refresh = h("button", { type: "button", id: "reload-after" }, "Reload");
    refresh.addEventListener("click", () => {
      this.reload();
    });
    this.element = h(
      "section",
      { id: "afterwards", class: "card", "aria-labelledby": "after-title" },
      h("h2", { id: "after-title" }, "Timeline and totals"),
      this.error,
      h(
        "div",
        { class: "toolbar" },
        h("label", { for: "granularity", class: "inline" }, "Interval ", picker),
        refresh,
        this.csv,
        this.json,
      ),
      h(
        "figure",
        {},
        this.chartHost,
        h("figcaption", {}, "Mean intensity of each emotion per interval, for the faces it dominated; faces dashed (right axis). Intervals without a face are left out."),
        this.status,
      ),
      h("h3", {}, "Totals: observations in which each emotion was dominant"),
      this.totals,
    );
    this.chart = new EmotionSeriesChart(this.chartHost, { valueLabel: "intensity", valueRange: [0, 1] });
    this.reload();
  }

  reload(): void {
    void this.loadTimeline();
    void this.loadTotals();
  }

  destroy(): void {
    this.chart.destroy();
  }

  private async loadTimeline(): Promise<void> {
    try {
      const timeline: Timeline = await this.app.api.timeline(this.session._id, this.granularity);
      this.chart.replace(
        timeline.timeline.map((entry) => ({
          x: entry.start,
          values: Object.fromEntries(EMOTIONS.map((e) => [e, entry.emotions[e].intensity])) as Record<Emotion, number>,
          faces: entry.detectedFaces,
        })),
      );
      this.status.textContent =
        timeline.timeline.length === 0
          ? "No face was seen in this session."
          : `${timeline.timeline.length} intervals of ${this.granularity} s with faces.`;
      const base = `session-${this.session._id}-timeline-${this.granularity}s`;
      setDownload(this.csv, `${base}.csv`, "text/csv", timelineCsv(timeline));
      setDownload(this.json, `${base}.json`, "application/json", JSON.stringify(timeline, null, 2));
      showError(this.error, null);
    } catch (error) {
      showError(this.error, error, "The timeline could not be loaded");
    }
  }

  private async loadTotals(): Promise<void> {
    try {
      const totals = await this.app.api.totals(this.session._id);
      renderTotalsBars(this.totals, totals.emotions);
    } catch (error) {
      showError(this.error, error, "The totals could not be loaded");
    }
  }
}

const SHARE_LIFETIMES = [
  [3600, "1 hour"],
  [86_400, "1 day"],
  [604_800, "7 days"],
  [2_592_000, "30 days"],
] as const;

/**
 * The owner's "share a watch-only link": mints a viewer token (POST …/viewer-tokens), shows the link that signs
 * a browser in with it and opens this session, lists the live ones and revokes them (DELETE …/{tokenId}).
 */
class SharePanel {
  readonly element: HTMLElement;
  private readonly list = h("ul", { id: "share-tokens", class: "share-tokens" });
  private readonly result = h("div", { id: "share-result", hidden: true });
  /** The token whose link is shown (once, after it was created). */
  private shown: string | null = null;
  private readonly error = h("div", { id: "share-error", class: "error", role: "alert", hidden: true });
  private readonly lifetime = h(
    "select",
    { id: "share-lifetime" },
    ...SHARE_LIFETIMES.map(([seconds, label]) => h("option", { value: seconds, selected: seconds === 86_400 }, label)),
  );

  constructor(
    private readonly app: AppContext,
    private readonly session: string,
  ) {
    const create = h("button", { type: "button", id: "share-create" }, "Create a watch-only link");
    create.addEventListener("click", () => {
      create.disabled = true;
      void this.create().finally(() => {
        create.disabled = false;
      });
    });
    this.element = h(
      "section",
      { id: "share", class: "card", "aria-labelledby": "share-title" },
      h("h2", { id: "share-title" }, "Share a watch-only link"),
      h(
        "p",
        { class: "help" },
        "Whoever opens the link sees this session live, its timeline and totals — nothing else, and cannot change " +
          "anything. At most 10 links live at a time; a revoked link stops working within the API's token cache time (a minute by default).",
      ),
      h("div", { class: "toolbar" }, h("label", { for: "share-lifetime", class: "inline" }, "Valid for ", this.lifetime), create),
      this.error,
      this.result,
      h("h3", {}, "Live watch-only links"),
      this.list,
    );
    void this.load();
  }

  private async create(): Promise<void> {
    showError(this.error, null);
    try {
      const minted = await this.app.api.createViewerToken(this.session, Number(this.lifetime.value));
      const link = watchLink(window.location.href, minted.token, this.session);
      const field = h("input", { id: "share-link", type: "text", readonly: true, value: link, "aria-describedby": "share-link-help" });
      const copy = h("button", { type: "button", id: "share-copy" }, "Copy");
      copy.addEventListener("click", () => {
        field.select();
        navigator.clipboard.writeText(link).then(
          () => {
            copy.textContent = "Copied";
          },
          () => {
            copy.textContent = "Select and copy";
          },
        );
      });
      this.result.replaceChildren(
        h("label", { for: "share-link" }, "The link (shown once: copy it now)"),
        h("div", { class: "share-link" }, field, copy),
        h("p", { id: "share-link-help", class: "help" }, `Valid until ${formatDate(minted.expiresAt)}. It holds a secret: send it only to whom it is for.`),
      );
      this.result.hidden = false;
      this.shown = minted.tokenId;
      field.focus();
      field.select();
      await this.load();
    } catch (error) {
      showError(this.error, error, "No link was created");
    }
  }

  private async load(): Promise<void> {
    try {
      this.render(await this.app.api.listViewerTokens(this.session));
    } catch (error) {
      showError(this.error, error, "The watch-only links could not be listed");
    }
  }

  private render(tokens: ViewerToken[]): void {
    if (tokens.length === 0) {
      this.list.replaceChildren(h("li", { class: "help" }, "None."));
      return;
    }
    this.list.replaceChildren(
      ...tokens.map((token) => {
        const revoke = h(
          "button",
          { type: "button", class: "danger", "data-token-id": token.tokenId, "aria-label": `Revoke link ${token.tokenId}` },
          "Revoke",
        );
        revoke.addEventListener("click", () => {
          revoke.disabled = true;
          void this.revoke(token.tokenId).finally(() => {
            revoke.disabled = false;
          });
        });
        return h(
          "li",
          { "data-token-id": token.tokenId },
          h("code", {}, token.tokenId),
          ` · until ${formatDate(token.expiresAt)} · `,
          token.lastUsedAt === null ? "not used yet" : `last used ${formatDate(token.lastUsedAt)}`,
          " ",
          revoke,
        );
      }),
    );
  }

  private async revoke(tokenId: string): Promise<void> {
    showError(this.error, null);
    try {
      await this.app.api.revokeViewerToken(this.session, tokenId);
      if (this.shown === tokenId) {
        this.shown = null;
        this.result.hidden = true;
        this.result.replaceChildren();
      }
    } catch (error) {
      showError(this.error, error, "The link was not revoked");
    }
    await this.load();
  }
}
