/**
 * The real-time API (docs/websocket.md): one connection, authenticated with the token, subscriptions kept
 * across reconnects. A dropped connection is retried with exponential backoff (1 s doubling to 30 s, with
 * jitter), and every change is reported to the page so it can say so.
 */

export type Channel = "session_worker_state" | "session_emotions_intensities" | "session_emotions_counts";

export type LiveStatus =
  | { kind: "connecting" }
  | { kind: "open" }
  | { kind: "reconnecting"; inSeconds: number; attempt: number; reason: string }
  | { kind: "rejected"; status: number; message: string };

export type EventHandler = (timestampMs: number, data: unknown) => void;

interface Subscription {
  channel: Channel;
  key: string;
  handler: EventHandler;
  id: string | null;
}

interface Reply {
  id: number | string | null;
  path: string;
  status: number;
  body?: Record<string, unknown>;
}

const PING_SECONDS = 30; // the server closes connections silent for 65 s
const MAX_BACKOFF_SECONDS = 30;

export class LiveConnection {
  private socket: WebSocket | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, (reply: Reply) => void>();
  private readonly subscriptions = new Set<Subscription>();
  private readonly byId = new Map<string, Subscription>();
  /** Events that arrived just before their subscribe reply (the server allows that race), replayed after it. */
  private readonly early = new Map<string, [number, unknown][]>();
  private attempt = 0;
  private retryTimer: number | undefined;
  private pingTimer: number | undefined;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly token: string,
    private readonly onStatus: (status: LiveStatus) => void,
  ) {}

  start(): void {
    this.connect();
  }

  /** Subscribes now (or after the next reconnect); returns a function that unsubscribes. */
  subscribe(channel: Channel, key: string, handler: EventHandler): () => void {
    const subscription: Subscription = { channel, key, handler, id: null };
    this.subscriptions.add(subscription);
    if (this.authenticated) {
      void this.sendSubscribe(subscription);
    }
    return () => {
      if (!this.subscriptions.delete(subscription)) {
        return; // already unsubscribed
      }
      if (subscription.id !== null) {
        this.byId.delete(subscription.id);
        if (this.authenticated) {
          void this.request("channels:unsubscribe", { subscriptionId: subscription.id });
        }
        subscription.id = null;
      }
    };
  }

  close(): void {
    this.closed = true;
    window.clearTimeout(this.retryTimer);
    window.clearInterval(this.pingTimer);
    this.socket?.close(1000, "page closed");
    this.socket = null;
  }

  private authenticated = false;

  private connect(): void {
    this.onStatus({ kind: "connecting" });
    this.authenticated = false;
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.url);
    } catch (error) {
      this.scheduleReconnect(error instanceof Error ? error.message : "the address was refused");
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => void this.authenticate());
    socket.addEventListener("message", (message: MessageEvent) => {
      if (typeof message.data === "string") {
        this.receive(message.data);
      }
    });
    socket.addEventListener("close", (event: CloseEvent) => {
      if (this.socket !== socket) {
        return;
      }
      this.socket = null;
      this.authenticated = false;
      window.clearInterval(this.pingTimer);
      for (const resolve of this.pending.values()) {
        resolve({ id: null, path: "", status: 0 });
      }
      this.pending.clear();
      this.byId.clear();
      this.early.clear();
      if (!this.closed) {
        this.scheduleReconnect(event.reason || `connection closed (code ${event.code})`);
      }
    });
  }

  private scheduleReconnect(reason: string): void {
    if (this.closed) {
      return;
    }
    this.attempt += 1;
    const base = Math.min(MAX_BACKOFF_SECONDS, 2 ** (this.attempt - 1));
    const seconds = Math.max(1, Math.round(base * (0.75 + Math.random() * 0.5)));
    this.onStatus({ kind: "reconnecting", inSeconds: seconds, attempt: this.attempt, reason });
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => {
      this.connect();
    }, seconds * 1000);
  }

  private async authenticate(): Promise<void> {
    const reply = await this.request("auth:token", { token: this.token });
    if (reply.status !== 200) {
      if (reply.status === 0) {
        return; // the connection closed meanwhile: the close handler reconnects
      }
      this.closed = true;
      this.onStatus({ kind: "rejected", status: reply.status, message: messageOf(reply) });
      this.socket?.close(1000, "rejected");
      return;
    }
    this.authenticated = true;
    this.attempt = 0;
    this.onStatus({ kind: "open" });
    window.clearInterval(this.pingTimer);
    this.pingTimer = window.setInterval(() => void this.request("ping"), PING_SECONDS * 1000);
    for (const subscription of this.subscriptions) {
      void this.sendSubscribe(subscription);
    }
  }

  private async sendSubscribe(subscription: Subscription): Promise<void> {
    const reply = await this.request("channels:subscribe", { channel: subscription.channel, key: subscription.key });
    const id = reply.body?.subscriptionId;
    if (reply.status === 200 && typeof id === "string") {
      if (!this.subscriptions.has(subscription)) {
        void this.request("channels:unsubscribe", { subscriptionId: id });
        return;
      }
      subscription.id = id;
      this.byId.set(id, subscription);
      for (const [timestamp, data] of this.early.get(id) ?? []) {
        subscription.handler(timestamp, data);
      }
      this.early.delete(id);
    } else if (reply.status !== 0) {
      console.warn(`subscribing to ${subscription.channel} failed: ${reply.status} ${messageOf(reply)}`);
    }
  }

  private request(path: string, body?: Record<string, unknown>): Promise<Reply> {
    const socket = this.socket;
    if (socket?.readyState !== WebSocket.OPEN) {
      return Promise.resolve({ id: null, path, status: 0 });
    }
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      socket.send(JSON.stringify(body === undefined ? { id, path } : { id, path, body }));
    });
  }

  private receive(text: string): void {
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      console.warn("the real-time API sent something that is not JSON");
      return;
    }
    if (Array.isArray(message)) {
      // an event: [subscriptionId, eventTimestamp, type, [data]]
      const [subscriptionId, timestamp, , data] = message as [unknown, unknown, unknown, unknown];
      const subscription = typeof subscriptionId === "string" ? this.byId.get(subscriptionId) : undefined;
      if (typeof subscriptionId !== "string" || typeof timestamp !== "number" || !Array.isArray(data)) {
        console.warn("the real-time API sent an event of an unknown shape");
      } else if (subscription) {
        subscription.handler(timestamp, data[0]);
      } else if (this.early.size < 10) {
        const queued = this.early.get(subscriptionId) ?? [];
        queued.push([timestamp, data[0]]);
        this.early.set(subscriptionId, queued);
      }
      return;
    }
    if (typeof message === "object" && message !== null && "status" in message) {
      const reply = message as Reply;
      if (typeof reply.id === "number") {
        const resolve = this.pending.get(reply.id);
        this.pending.delete(reply.id);
        resolve?.(reply);
      }
    }
  }
}

function messageOf(reply: Reply): string {
  const message = reply.body?.message;
  return typeof message === "string" ? message : `status ${reply.status}`;
}
