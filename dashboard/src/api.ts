/** The REST API (docs/openapi.yaml): typed calls and errors a person can read. */

export const EMOTIONS = ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"] as const;
export type Emotion = (typeof EMOTIONS)[number];

export type SessionState = "active" | "finished" | "failed";

export interface Source {
  id: string;
  name?: string;
  type: "video" | "audio";
  codec?: string;
  width?: number;
  height?: number;
  fps?: number | null;
  sampleRate?: number;
  channels?: number;
}

export interface Session {
  _id: string;
  name: string;
  state: SessionState;
  timestamp: string;
  duration: number;
  config: { removeMedia: boolean; analysisFps: number };
  sources: Source[];
  meta: {
    expires: string;
    healthCheck: string | null;
    workerState: string;
    stopReason?: string;
    error?: string;
    stats?: { analysedFrames?: number; droppedFrames?: number };
  };
  user: string;
  product: string;
}

export interface SessionPage {
  hasMore: boolean;
  offset: number;
  limit: number;
  data: Session[];
}

export interface EmotionStats {
  people: number;
  quantity: number;
  intensity: number;
}

export type EmotionStatsByName = Record<Emotion, EmotionStats>;
export type EmotionCounts = Record<Emotion, number>;

export interface TimelineEntry {
  start: number;
  end: number;
  detectedFaces: number;
  emotions: EmotionStatsByName;
}

/** A watch-only (viewer) token of a session, as the owner sees it: never the secret (docs/openapi.yaml). */
export interface ViewerToken {
  tokenId: string;
  session: string;
  createdAt: string;
  expiresAt: string;
  lastUsedAt: string | null;
}

/** A freshly minted viewer token: the secret is in this answer only. */
export interface MintedViewerToken extends ViewerToken {
  token: string;
}

export interface Timeline {
  session: string;
  timeline: TimelineEntry[];
}

export interface Totals {
  session: string;
  emotions: EmotionCounts;
}

/** An answer other than 2xx, or no answer at all (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** Seconds to wait before retrying (429), from Retry-After. */
    readonly retryAfter: number | null = null,
    /** The API's machine-readable error code (`session_not_found`, `route_not_found`, …), when it sent one. */
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** `user`: every route for the user's own sessions; `viewer`: read-only, one session. */
export type TokenKind = "user" | "viewer";

type Listener = (error: ApiError) => void;

export class Api {
  private readonly unauthorizedListeners: Listener[] = [];

  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
  ) {}

  /** Called on every 401 (token wrong or expired), before the call rejects. */
  onUnauthorized(listener: Listener): void {
    this.unauthorizedListeners.push(listener);
  }

  /**
   * What kind of token this is. A viewer (watch-only) token may read one session and nothing else: the session
   * list answers it `404` with the code `route_not_found` (docs/openapi.yaml), which a user token never gets
   * there. Any other error (401, 429, 503, no answer) is thrown.
   */
  async tokenKind(): Promise<TokenKind> {
    try {
      await this.listSessions({ limit: 1, offset: 0 });
      return "user";
    } catch (error) {
      if (error instanceof ApiError && error.status === 404 && error.code === "route_not_found") {
        return "viewer";
      }
      throw error;
    }
  }

  listSessions(query: { state?: SessionState; limit: number; offset: number }): Promise<SessionPage> {
    const params = new URLSearchParams({ limit: String(query.limit), offset: String(query.offset) });
    if (query.state) {
      params.set("state", query.state);
    }
    return this.call<SessionPage>("GET", `/v1/sessions?${params.toString()}`);
  }

  getSession(id: string): Promise<Session> {
    return this.call<Session>("GET", `/v1/sessions/${encodeURIComponent(id)}`);
  }

  createSession(body: { name: string; streamUri: string; config?: { analysisFps: number } }): Promise<Session> {
    return this.call<Session>("POST", "/v1/sessions", body, { "Idempotency-Key": crypto.randomUUID() });
  }

  stopSession(id: string): Promise<Session> {
    return this.call<Session>("POST", `/v1/sessions/${encodeURIComponent(id)}/stop`);
  }

  async deleteSession(id: string): Promise<void> {
    await this.call<null>("DELETE", `/v1/sessions/${encodeURIComponent(id)}`);
  }

  totals(id: string): Promise<Totals> {
    return this.call<Totals>("GET", `/v1/sessions/${encodeURIComponent(id)}/emotions`);
  }

  timeline(id: string, granularity: number): Promise<Timeline> {
    const path = `/v1/sessions/${encodeURIComponent(id)}/emotions/timeline?granularity=${granularity}`;
    return this.call<Timeline>("GET", path);
  }

  /** Mints one watch-only token for the session (the owner's token only; a viewer token gets 403). */
  async createViewerToken(id: string, expiresInSeconds: number): Promise<MintedViewerToken> {
    const minted = await this.call<{ tokens: MintedViewerToken[] }>(
      "POST",
      `/v1/sessions/${encodeURIComponent(id)}/viewer-tokens`,
      { count: 1, expiresIn: expiresInSeconds },
    );
    const [token] = minted.tokens;
    if (token === undefined) {
      throw new ApiError(502, "the API minted no viewer token");
    }
    return token;
  }

  /** The session's live watch-only tokens, oldest first (never their secrets). */
  async listViewerTokens(id: string): Promise<ViewerToken[]> {
    return (await this.call<{ data: ViewerToken[] }>("GET", `/v1/sessions/${encodeURIComponent(id)}/viewer-tokens`)).data;
  }

  async revokeViewerToken(id: string, tokenId: string): Promise<void> {
    const path = `/v1/sessions/${encodeURIComponent(id)}/viewer-tokens/${encodeURIComponent(tokenId)}`;
    await this.call<null>("DELETE", path);
  }

  private async call<T>(method: string, path: string, body?: unknown, extra: Record<string, string> = {}): Promise<T> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.token}`, Accept: "application/json", ...extra };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
    }
    let response: Response;
    try {
      response = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit",
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, `The API at ${this.baseUrl} cannot be reached. Check your connection; retrying may help.`);
    }
    if (response.status === 204) {
      return null as T;
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === "" ? null : JSON.parse(text);
    } catch {
      parsed = null;
    }
    if (response.ok) {
      return parsed as T;
    }
    const error = new ApiError(
      response.status,
      errorMessage(parsed, response),
      retryAfter(response, parsed),
      errorCode(parsed),
    );
    if (error.status === 401) {
      for (const listener of this.unauthorizedListeners) {
        listener(error);
      }
    }
    throw error;
  }
}

function errorMessage(parsed: unknown, response: Response): string {
  if (typeof parsed === "object" && parsed !== null && "message" in parsed) {
    const message = parsed.message;
    if (typeof message === "string" && message !== "") {
      return message;
    }
  }
  return `HTTP ${response.status} ${response.statusText}`.trim();
}

function errorCode(parsed: unknown): string | null {
  if (typeof parsed === "object" && parsed !== null && "code" in parsed && typeof parsed.code === "string") {
    return parsed.code;
  }
  return null;
}

function retryAfter(response: Response, parsed: unknown): number | null {
  const header = response.headers.get("Retry-After");
  if (header !== null && /^\d+$/.test(header)) {
    return Number(header);
  }
  if (typeof parsed === "object" && parsed !== null && "retryAfter" in parsed) {
    const value = parsed.retryAfter;
    if (typeof value === "number") {
      return value;
    }
  }
  return null;
}

/** What an error means for a person, in one sentence (the API's own message is shown next to it). */
export function explain(error: unknown): string {
  if (!(error instanceof ApiError)) {
    return error instanceof Error ? error.message : String(error);
  }
  switch (error.status) {
    case 0:
      return error.message;
    case 401:
      return "Your token was not accepted (wrong or expired). Sign in again.";
    case 403:
      return "This token can only view: creating, stopping and deleting sessions needs a token with write access.";
    case 404:
      return "Not found: the session does not exist, was deleted, or belongs to someone else.";
    case 429:
      return error.retryAfter !== null
        ? `Too many requests: wait ${error.retryAfter} s, then try again.`
        : "Too many requests: wait a moment, then try again.";
    case 503:
      return "The service is at capacity or briefly unavailable (503): every analysis slot may be in use. Stop a session or try again later.";
    default:
      return `The request failed (${error.status}): ${error.message}`;
  }
}
