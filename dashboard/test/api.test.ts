// The REST client against a real HTTP server on 127.0.0.1: what reaches the server, and how answers become
// errors a person can read.
import assert from "node:assert/strict";
import { type IncomingMessage, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { Api, ApiError, explain } from "../src/api";

type Handler = (request: IncomingMessage, body: string, response: ServerResponse) => void;
let handler: Handler = (_request, _body, response) => response.end();
const server = createServer((request, response) => {
  let body = "";
  request.on("data", (chunk: Buffer) => {
    body += chunk.toString();
  });
  request.on("end", () => {
    handler(request, body, response);
  });
});
let base = "";

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  server.close();
});

function answer(status: number, body: unknown, headers: Record<string, string> = {}): Handler {
  return (_request, _body, response) => {
    response.writeHead(status, { "Content-Type": "application/json", ...headers });
    response.end(JSON.stringify(body));
  };
}

test("a create sends the bearer token, JSON and an idempotency key", async () => {
  let seen: { auth?: string; type?: string; key?: string; body?: unknown; path?: string } = {};
  handler = (request, body, response) => {
    seen = {
      auth: request.headers.authorization,
      type: request.headers["content-type"],
      key: request.headers["idempotency-key"] as string,
      body: JSON.parse(body),
      path: request.url,
    };
    answer(201, { _id: "6b0000000000000000000001", name: "n" })(request, body, response);
  };
  const session = await new Api(base, "emo_secret").createSession({ name: "n", streamUri: "rtmp://h/a" });
  assert.equal(session._id, "6b0000000000000000000001");
  assert.equal(seen.auth, "Bearer emo_secret");
  assert.equal(seen.type, "application/json");
  assert.match(seen.key ?? "", /^[0-9a-f-]{36}$/);
  assert.deepEqual(seen.body, { name: "n", streamUri: "rtmp://h/a" });
  assert.equal(seen.path, "/v1/sessions");
});

test("the list query carries the filter and the page", async () => {
  let path = "";
  handler = (request, body, response) => {
    path = request.url ?? "";
    answer(200, { hasMore: false, offset: 20, limit: 10, data: [] })(request, body, response);
  };
  await new Api(base, "t").listSessions({ state: "finished", limit: 10, offset: 20 });
  assert.equal(path, "/v1/sessions?limit=10&offset=20&state=finished");
});

test("429: the wait comes from Retry-After and is said in words", async () => {
  handler = answer(429, { error: true, status: 429, message: "rate limit exceeded; retry in 7 s" }, { "Retry-After": "7" });
  const error = await new Api(base, "t").getSession("x").catch((e: unknown) => e);
  assert.ok(error instanceof ApiError);
  assert.equal(error.status, 429);
  assert.equal(error.retryAfter, 7);
  assert.equal(error.message, "rate limit exceeded; retry in 7 s");
  assert.equal(explain(error), "Too many requests: wait 7 s, then try again.");
});

test("401 calls the sign-out listener before the call fails", async () => {
  handler = answer(401, { error: true, status: 401, message: "missing or unknown bearer token" });
  const api = new Api(base, "bad");
  const seen: number[] = [];
  api.onUnauthorized((error) => seen.push(error.status));
  await assert.rejects(api.listSessions({ limit: 1, offset: 0 }), (e: unknown) => e instanceof ApiError && e.status === 401);
  assert.deepEqual(seen, [401]);
});

test("403, 404, 503 and an unreachable API each have their sentence", async () => {
  for (const [status, words] of [
    [403, "can only view"],
    [404, "Not found"],
    [503, "at capacity"],
  ] as const) {
    handler = answer(status, { error: true, status, message: "m" });
    const error = await new Api(base, "t").stopSession("x").catch((e: unknown) => e);
    assert.ok(error instanceof ApiError && error.status === status);
    assert.ok(explain(error).includes(words), explain(error));
  }
  const unreachable = await new Api("http://127.0.0.1:9", "t").getSession("x").catch((e: unknown) => e);
  assert.ok(unreachable instanceof ApiError && unreachable.status === 0);
  assert.match(explain(unreachable), /cannot be reached/);
});

test("a 204 (delete) resolves with nothing, a body that is not JSON still gives a message", async () => {
  handler = (_request, _body, response) => {
    response.writeHead(204);
    response.end();
  };
  await new Api(base, "t").deleteSession("x"); // resolves: nothing to parse
  handler = (_request, _body, response) => {
    response.writeHead(502, { "Content-Type": "text/html" });
    response.end("<html>bad gateway</html>");
  };
  const error = await new Api(base, "t").getSession("x").catch((e: unknown) => e);
  assert.ok(error instanceof ApiError);
  assert.match(error.message, /^HTTP 502/);
});

test("the token's kind: the list answers a viewer token 404 route_not_found, other errors are thrown", async () => {
  handler = answer(200, { hasMore: false, offset: 0, limit: 1, data: [] });
  assert.equal(await new Api(base, "t").tokenKind(), "user");
  handler = answer(404, {
    error: true,
    status: 404,
    message: "this token is a viewer token: it can only read session 6b0000000000000000000001",
    code: "route_not_found",
  });
  assert.equal(await new Api(base, "t").tokenKind(), "viewer");
  handler = answer(404, { error: true, status: 404, message: "no such route" }); // no code: not taken as a viewer
  await assert.rejects(new Api(base, "t").tokenKind(), (e: unknown) => e instanceof ApiError && e.code === null);
  handler = answer(503, { error: true, status: 503, message: "busy", code: "capacity_exhausted" });
  await assert.rejects(
    new Api(base, "t").tokenKind(),
    (e: unknown) => e instanceof ApiError && e.status === 503 && e.code === "capacity_exhausted",
  );
});

test("watch-only links: mint one (count 1, the lifetime), list them, revoke one", async () => {
  const seen: { method?: string; path?: string; body: string }[] = [];
  const token = { tokenId: "57bd5cd1ddfec9b0", session: "6b0000000000000000000001", createdAt: "c", expiresAt: "e", lastUsedAt: null };
  handler = (request, body, response) => {
    seen.push({ method: request.method, path: request.url, body });
    if (request.method === "POST") {
      answer(201, { session: token.session, tokens: [{ ...token, token: "emo_viewer" }] })(request, body, response);
    } else if (request.method === "GET") {
      answer(200, { session: token.session, data: [token] })(request, body, response);
    } else {
      response.writeHead(204);
      response.end();
    }
  };
  const api = new Api(base, "t");
  const minted = await api.createViewerToken(token.session, 3600);
  assert.equal(minted.token, "emo_viewer");
  assert.deepEqual(await api.listViewerTokens(token.session), [token]);
  await api.revokeViewerToken(token.session, token.tokenId);
  const path = `/v1/sessions/${token.session}/viewer-tokens`;
  assert.deepEqual(seen, [
    { method: "POST", path, body: JSON.stringify({ count: 1, expiresIn: 3600 }) },
    { method: "GET", path, body: "" },
    { method: "DELETE", path: `${path}/${token.tokenId}`, body: "" },
  ]);
});
