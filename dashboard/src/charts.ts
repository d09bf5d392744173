/** Charts: uPlot line charts for live and timeline numbers, plain accessible bars for the totals. */

import uPlot from "uplot";
import { EMOTIONS, type Emotion } from "./api";

/** Okabe–Ito colours: distinguishable with the common colour-vision deficiencies. */
export const EMOTION_COLOURS: Record<Emotion, string> = {
  anger: "#D55E00",
  disgust: "#009E73",
  fear: "#CC79A7",
  happiness: "#E69F00",
  sadness: "#0072B2",
  surprise: "#56B4E9",
  neutral: "#595959",
};

export function clock(seconds: number): string {
  const whole = Math.max(0, Math.round(seconds));
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

export interface SeriesChartOptions {
  /** Label of the emotion values' axis (left). */
  valueLabel: string;
  /** Fixed range of the value axis, e.g. [0, 1] for intensities; null: fit the data. */
  valueRange: [number, number] | null;
  height?: number;
}

/**
 * A chart of the seven emotions (left axis) and the number of faces (right axis, dashed) over seconds since
 * the session started. Rows are added with {@link push} or replaced with {@link replace}.
 */
export class EmotionSeriesChart {
  private readonly plot: uPlot;
  private readonly xs: number[] = [];
  private readonly values: (number | null)[][] = EMOTIONS.map(() => []);
  private readonly faces: (number | null)[] = [];
  private readonly resize: ResizeObserver;

  constructor(
    private readonly host: HTMLElement,
    options: SeriesChartOptions,
  ) {
    const range = options.valueRange;
    const opts: uPlot.Options = {
      width: Math.max(280, host.clientWidth),
      height: options.height ?? 280,
      scales: {
        x: { time: false },
        y: range ? { range: [range[0], range[1]] } : { auto: true },
        faces: { range: (_u, _min, max) => [0, Math.max(2, Math.ceil(max) + 1)] }, // faces stay below the top
      },
      axes: [
        {
          label: "time since start",
          incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200],
          values: (_u, splits) => splits.map((v) => clock(v)),
        },
        { label: options.valueLabel, size: 56 },
        // side 1 = right (uPlot.Axis.Side is an ambient const enum, which isolatedModules cannot read)
        // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment
        { label: "faces", scale: "faces", side: 1, grid: { show: false }, incrs: [1, 2, 5, 10, 20, 50] },
      ],
      series: [
        { label: "time", value: (_u, v) => clock(v) },
        ...EMOTIONS.map((emotion) => ({
          label: emotion,
          stroke: EMOTION_COLOURS[emotion],
          width: 2,
          points: { show: true, size: 5 },
          value: (_u: uPlot, v: number | null) => (v === null ? "–" : formatValue(v)),
        })),
        { label: "faces", scale: "faces", stroke: "#111", width: 1.5, dash: [6, 4], points: { show: false } },
      ],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
    this.plot = new uPlot(opts, this.data(), host);
    this.resize = new ResizeObserver(() => {
      this.plot.setSize({ width: Math.max(280, host.clientWidth), height: this.plot.height });
    });
    this.resize.observe(host);
  }

  get length(): number {
    return this.xs.length;
  }

  /** Adds or updates the row at second ``x`` (kept sorted; a repeated x replaces its row). */
  push(x: number, values: Record<Emotion, number>, faces: number): void {
    let index = this.xs.findIndex((existing) => existing >= x);
    if (index === -1) {
      index = this.xs.length;
    }
    const replace = this.xs[index] === x;
    this.xs.splice(index, replace ? 1 : 0, x);
    EMOTIONS.forEach((emotion, i) => this.values[i]?.splice(index, replace ? 1 : 0, values[emotion]));
    this.faces.splice(index, replace ? 1 : 0, faces);
    this.redraw();
  }

  replace(rows: { x: number; values: Record<Emotion, number>; faces: number }[]): void {
    this.xs.length = 0;
    this.faces.length = 0;
    for (const column of this.values) {
      column.length = 0;
    }
    for (const row of rows) {
      this.xs.push(row.x);
      EMOTIONS.forEach((emotion, i) => this.values[i]?.push(row.values[emotion]));
      this.faces.push(row.faces);
    }
    this.redraw();
  }

  destroy(): void {
    this.resize.disconnect();
    this.plot.destroy();
  }

  private redraw(): void {
    this.plot.setData(this.data());
  }

  private data(): uPlot.AlignedData {
    return [this.xs, ...this.values, this.faces];
  }
}

function formatValue(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

/** The totals as horizontal bars: one row per emotion with its name and number (readable without colour). */
export function renderTotalsBars(host: HTMLElement, totals: Record<Emotion, number>): void {
  const max = Math.max(1, ...EMOTIONS.map((emotion) => totals[emotion]));
  const list = document.createElement("ul");
  list.className = "bars";
  for (const emotion of EMOTIONS) {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.className = "bar-label";
    label.textContent = emotion;
    const track = document.createElement("span");
    track.className = "bar-track";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(100 * totals[emotion]) / max}%`;
    bar.style.backgroundColor = EMOTION_COLOURS[emotion];
    track.append(bar);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = String(totals[emotion]);
    item.append(label, track, value);
    list.append(item);
  }
  host.replaceChildren(list);
}
