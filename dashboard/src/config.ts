/** Where the API lives: read once from /config.json, which the local stack or the deploy step writes. */

export interface DashboardConfig {
  /** Base URL of the REST API; `/v1/sessions` is appended. */
  readonly apiUrl: string;
  /** The real-time API, e.g. `ws://127.0.0.1:3000/ws/v1`. */
  readonly webSocketUrl: string;
}

function requireUrl(value: unknown, name: string, protocols: readonly string[]): string {
  if (typeof value !== "string" || value === "") {
    throw new Error(`config.json: "${name}" is missing`);
  }
  const url = new URL(value, window.location.href);
  if (!protocols.includes(url.protocol)) {
    throw new Error(`config.json: "${name}" must be a ${protocols.join(" or ")} URL, not ${value}`);
  }
  return url.href.replace(/\/$/, "");
}

export async function loadConfig(): Promise<DashboardConfig> {
  const response = await fetch("config.json", { cache: "no-store", credentials: "omit" });
  if (!response.ok) {
    throw new Error(`config.json could not be loaded (HTTP ${response.status})`);
  }
  const raw = (await response.json()) as Record<string, unknown>;
  return {
    apiUrl: requireUrl(raw.apiUrl, "apiUrl", ["http:", "https:"]),
    webSocketUrl: requireUrl(raw.webSocketUrl, "webSocketUrl", ["ws:", "wss:"]),
  };
}
