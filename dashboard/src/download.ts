/** Downloads built in the page (the timeline as CSV or JSON). */

import { EMOTIONS, type Timeline } from "./api";

export function timelineCsv(timeline: Timeline): string {
  const header = ["start", "end", "detectedFaces"];
  for (const emotion of EMOTIONS) {
    header.push(`${emotion}_people`, `${emotion}_intensity`, `${emotion}_quantity`);
  }
  const lines = [header.join(",")];
  for (const entry of timeline.timeline) {
    const row: (string | number)[] = [entry.start, entry.end, entry.detectedFaces];
    for (const emotion of EMOTIONS) {
      const stats = entry.emotions[emotion];
      row.push(stats.people, stats.intensity, stats.quantity);
    }
    lines.push(row.join(","));
  }
  return lines.join("\r\n") + "\r\n";
}

/** Points a download link at ``content`` (an object URL; the previous one is released). */
export function setDownload(link: HTMLAnchorElement, filename: string, type: string, content: string): void {
  if (link.href.startsWith("blob:")) {
    URL.revokeObjectURL(link.href);
  }
  link.href = URL.createObjectURL(new Blob([content], { type }));
  link.download = filename;
}
