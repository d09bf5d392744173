// The page's pure helpers: validation messages by field, the CSV download, the time format.
import assert from "node:assert/strict";
import { test } from "node:test";
import { EMOTIONS, type EmotionStatsByName } from "../src/api";
import { parseSignInFragment, watchLink } from "../src/auth";
import { timelineCsv } from "../src/download";
import { splitMessage } from "../src/validation";

const FIELDS = ["name", "streamUri", "analysisFps"] as const;

test("a 400 message is split over the fields it names", () => {
  const { byField, other } = splitMessage(
    "body field 'name' must not be empty; streamUri must use one of the protocols rtmp, rtsp or rtmps; " +
      "body field 'config.analysisFps' must be less than or equal to 60; body field 'colour' is not allowed (unknown field)",
    FIELDS,
  );
  assert.deepEqual(byField.get("name"), ["body field 'name' must not be empty"]);
  assert.deepEqual(byField.get("streamUri"), ["streamUri must use one of the protocols rtmp, rtsp or rtmps"]);
  assert.deepEqual(byField.get("analysisFps"), ["body field 'config.analysisFps' must be less than or equal to 60"]);
  assert.deepEqual(other, ["body field 'colour' is not allowed (unknown field)"]);
});

test("a message about no field stays whole", () => {
  const { byField, other } = splitMessage("request body is not valid JSON (syntax error)", FIELDS);
  assert.equal(byField.size, 0);
  assert.deepEqual(other, ["request body is not valid JSON (syntax error)"]);
});

test("the timeline CSV has one column per emotion and number, one row per interval", () => {
  const stats = Object.fromEntries(
    EMOTIONS.map((e) => [e, e === "happiness" ? { people: 1, intensity: 0.98, quantity: 0.98 } : { people: 0, intensity: 0, quantity: 0 }]),
  ) as EmotionStatsByName;
  const csv = timelineCsv({
    session: "s",
    timeline: [
      { start: 0, end: 5, detectedFaces: 1, emotions: stats },
      { start: 10, end: 15, detectedFaces: 1, emotions: stats },
    ],
  });
  const [header = "", first, second, end] = csv.split("\r\n");
  assert.equal(header.split(",").length, 3 + 3 * EMOTIONS.length);
  assert.ok(header.startsWith("start,end,detectedFaces,anger_people,anger_intensity,anger_quantity,"));
  const row = (first ?? "").split(",");
  assert.deepEqual(row.slice(0, 3), ["0", "5", "1"]);
  const happiness = 3 + 3 * EMOTIONS.indexOf("happiness");
  assert.deepEqual(row.slice(happiness, happiness + 3), ["1", "0.98", "0.98"]);
  assert.ok(second?.startsWith("10,15,1,"));
  assert.equal(end, "");
});

test("a sign-in fragment: the token, and the session a watch-only link names", () => {
  const session = "6b0000000000000000000001";
  assert.deepEqual(parseSignInFragment("#token=emo_a+b%2Fc"), { token: "emo_a+b/c", session: null });
  assert.deepEqual(parseSignInFragment(`#token=emo_x&session=${session}`), { token: "emo_x", session });
  assert.deepEqual(parseSignInFragment(`#session=${session}&token=emo_x`), null); // not a sign-in link
  for (const bad of ["#token=", "#token=emo_x&session=nope", "#token=emo_x&who=me", "#token=%E0%A4%A", "#token=a&token=b", "#/sessions/x"]) {
    assert.equal(parseSignInFragment(bad), null, bad);
  }
});

test("a watch link signs in with the token and opens the session, whatever the page's own fragment", () => {
  const link = watchLink("http://127.0.0.1:3000/#/sessions/6b0000000000000000000001", "emo_a-b_c", "6b0000000000000000000001");
  assert.equal(link, "http://127.0.0.1:3000/#token=emo_a-b_c&session=6b0000000000000000000001");
  assert.deepEqual(parseSignInFragment(new URL(link).hash), { token: "emo_a-b_c", session: "6b0000000000000000000001" });
});
