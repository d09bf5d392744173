"""The dashboard in a real browser: headless Chromium (Debian's, through Selenium) against `emotionctl local up`
with a live face stream (emotionctl.media).

One stack with room for one active session, so a second create is refused with 503. The test signs in through a
``#token=`` link, sees a 400 next to its field, creates a session from the form, sees the worker reach `working`
and at least five live points on the chart, sees the page say so when the WebSocket drops and carry on once it
has reconnected, sees the 503 screen for a second session, stops the first, sees its timeline and totals (and
the CSV and JSON downloads), deletes it after the confirmation, sees the 404 screen for it, the page at phone
width, the bad-token screen, and signs in again by pasting the token.

A second test pages through a list of twelve ended sessions and filters it by state.

Screenshots of every step go to ``.local/test-output/dashboard/<test>/`` (emptied first), with
``page-weight.json`` beside the end-to-end ones: the bytes of HTML, JavaScript, CSS and config the browser
fetched on first load.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import testsupport
from browser_support import chromium, missing_browser
from stack_support import REPO, StackProcess, start_stack
from websocket_support import aws_client, subscriptions_of, table

pytestmark = [pytest.mark.stack, pytest.mark.media]

OUTPUT = REPO / ".local" / "test-output" / "dashboard"
SOURCE_SECONDS = 240  # the RTMP source stops by itself
DOMINANT = re.compile(r"(anger|disgust|fear|happiness|sadness|surprise|neutral) [01]\.\d\d", re.IGNORECASE)
WAIT = 90.0  # seconds a condition may take on a loaded 2-core machine (a deadline, not a measured time)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """A stack of its own: one active session at most (the 503 screen), a roomy rate limit (the page polls)."""
    if (reason := missing_browser()) is not None:
        pytest.skip(reason)
    stack = start_stack(tmp_path_factory.mktemp("dashboard-stack"), "MaxActiveSessions=1", "RateLimitCapacity=1000")
    try:
        yield stack
    finally:
        assert stack.stop() == 0, stack.log()


@pytest.fixture
def rtmp_source() -> Iterator[str]:
    from emotionctl.media import RtmpSource
    from emotionctl.media.clips import make_face_clip

    testsupport.needs("ffmpeg")
    clip = make_face_clip(640, 360, 15, segments=(("face", 6), ("empty", 2)))
    with RtmpSource(clip, loop=True, max_lifetime=SOURCE_SECONDS) as source:
        yield source.url


@pytest.fixture(scope="module")
def outputs() -> Path:
    shutil.rmtree(OUTPUT, ignore_errors=True)
    OUTPUT.mkdir(parents=True)
    return OUTPUT


@pytest.fixture
def output(outputs: Path, request: pytest.FixtureRequest) -> Path:
    """This test's screenshot folder: .local/test-output/dashboard/<test name without test_>/."""
    folder = outputs / request.node.name.removeprefix("test_")
    folder.mkdir()
    return folder


class Page:
    """The browser plus the few things every step does: wait for a condition, read, click, screenshot."""

    def __init__(self, driver: Any, output: Path) -> None:
        self.driver = driver
        self.output = output
        self.shots: list[str] = []

    def wait(self, what: str, condition: Callable[[], Any], timeout: float = WAIT) -> Any:
        from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        # the page re-renders its list every few seconds: an element found may be replaced before it is read
        wait = WebDriverWait(self.driver, timeout, poll_frequency=0.2,
                             ignored_exceptions=(StaleElementReferenceException,))
        try:
            return wait.until(lambda _d: condition())
        except TimeoutException:
            self.shot(f"FAILED-{re.sub(r'[^a-z0-9]+', '-', what.lower())}")
            logs = "\n".join(str(entry) for entry in self.driver.get_log("browser"))
            raise AssertionError(f"gave up waiting for: {what}\nbrowser console:\n{logs}") from None

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        found = self.driver.find_elements(By.CSS_SELECTOR, css)
        return found[0] if found else None

    def text(self, css: str) -> str:
        """The rendered text of the first match, "" when there is none or it is hidden (read in one go)."""
        return str(self.script(
            "const e = document.querySelector(arguments[0]);"
            "return e && e.checkVisibility() ? e.innerText : '';", css))

    def visible(self, css: str) -> Any:
        return self.wait(f"{css} visible", lambda: (e := self.find(css)) is not None and e.is_displayed() and e)

    def fill(self, css: str, value: str) -> None:
        element = self.visible(css)
        element.clear()
        element.send_keys(value)

    def click(self, css: str) -> None:
        self.visible(css).click()

    def shot(self, name: str) -> None:
        """The whole page, not only the window (Chromium's DevTools protocol)."""
        import base64

        path = self.output / f"{len(self.shots) + 1:02d}-{name}.png"
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot",
                                           {"format": "png", "captureBeyondViewport": True, "clip": clip})
        path.write_bytes(base64.b64decode(shot["data"]))
        self.shots.append(path.name)

    def script(self, code: str, *args: Any) -> Any:
        return self.driver.execute_script(code, *args)


def test_dashboard_end_to_end_in_chromium(stack: StackProcess, rtmp_source: str, output: Path,
                                          tmp_path: Path) -> None:
    token = stack.token("dana")
    base = stack.url
    downloads = tmp_path / "downloads"
    with chromium(tmp_path / "profile", width=1280, height=900, downloads=downloads) as driver:
        page = Page(driver, output)

        def live_points() -> int:  # "12 points, last at 0:14" under the live chart
            found = re.match(r"(\d+) points", page.text("#live-points"))
            return int(found.group(1)) if found else 0

        # -- sign in through a #token= link: the fragment leaves the address bar at once, the token is in
        #    sessionStorage only (no cookie)
        driver.get(f"{base}/#token={token}")
        page.visible("#sessions-view")
        assert "token" not in driver.current_url, driver.current_url
        assert page.script("return sessionStorage.getItem('emotion-stream.token')") == token
        assert driver.get_cookies() == []
        page.wait("the sessions list", lambda: "No sessions yet" in page.text("#session-rows"))
        page.shot("signed-in")
        weight = _page_weight(page)
        (output / "page-weight.json").write_text(json.dumps(weight, indent=2) + "\n", encoding="utf-8")

        # -- the API's validation message, next to its field
        page.fill("#new-name", "browser test")
        page.fill("#new-streamUri", "http://127.0.0.1/not-a-stream")
        page.click("#create-session")
        page.wait("the streamUri error", lambda: "streamUri" in page.text("#new-streamUri-error"))
        assert page.find("#new-streamUri").get_attribute("aria-invalid") == "true"
        page.shot("validation-error")

        # -- create from the form: the session page opens
        page.fill("#new-streamUri", rtmp_source)
        page.click("#create-session")
        page.wait("the session page", lambda: re.search(r"#/sessions/[0-9a-f]{24}$", driver.current_url))
        session_id = driver.current_url.rsplit("/", 1)[1]
        row = f'#session-rows a[href="#/sessions/{session_id}"]'  # its line in the list
        page.visible("#live")
        assert page.text("#session-name") == "browser test"
        page.shot("created")

        # -- the worker reaches `working` (session_worker_state over the WebSocket); the sources are listed
        page.wait("worker state working", lambda: page.text("#worker-state") == "working")
        page.wait("the sources", lambda: "640×360" in page.text("#sources-table"))
        assert "h264" in page.text("#sources-table")
        page.shot("working")

        # -- at least five live points on the chart, a dominant emotion, one face
        page.wait("5 live points", lambda: live_points() >= 5)
        # the clip shows a face for 6 s, then an empty room for 2 s: wait for a second with the face
        page.wait("a dominant emotion with one face", lambda: DOMINANT.fullmatch(page.text("#dominant"))
                  and page.text("#faces") == "1")
        assert re.match(r"\d+ points", page.text("#live-points")), page.text("#live-points")
        page.shot("live-chart")

        # -- the WebSocket drops (the server closes it through the management API): the page says so, reconnects
        #    with backoff, subscribes again, and the points keep coming
        (connection,) = subscriptions_of(stack, session_id)
        closed = requests.delete(f"{base}/ws/v1/@connections/{connection}", timeout=30)
        assert closed.status_code == 204, closed.text
        page.wait("the disconnected banner", lambda: "Reconnecting in" in page.text("#live-banner"))
        page.shot("websocket-dropped")
        page.wait("the reconnected banner", lambda: "reconnected" in page.text("#live-banner"))
        page.wait("a new connection", lambda: subscriptions_of(stack, session_id) - {connection})
        points = live_points()
        page.wait("points after the reconnect", lambda: live_points() >= points + 2)

        # -- capacity full: a second session is refused with 503, and the page says so
        page.click('a[href="#/"]')
        page.visible("#sessions-view")
        page.wait("the session in the list", lambda: page.find(row) is not None)
        page.fill("#new-name", "one too many")
        page.fill("#new-streamUri", rtmp_source)
        page.click("#create-session")
        page.wait("the 503 screen", lambda: "(503)" in page.text("#create-error"))
        assert "capacity" in page.text("#create-error"), page.text("#create-error")
        page.shot("capacity-full-503")

        # -- back to the session (from the list), stop it: the timeline, the totals and the downloads
        page.click(row)
        page.wait("worker state working again", lambda: page.text("#worker-state") == "working")
        page.click("#stop-session")
        page.wait("state finished", lambda: page.text("#session-state") == "finished")
        page.visible("#afterwards")
        page.wait("the timeline", lambda: re.match(r"[1-9]\d* intervals of 5 s", page.text("#timeline-status")))
        page.wait("the totals", lambda: len(driver.find_elements("css selector", "#totals li")) == 7)
        totals = dict(re.findall(r"(\w+)\n(\d+)", page.text("#totals")))
        assert int(totals["happiness"]) > 0, totals
        page.shot("afterwards-timeline-totals")
        # the downloads, saved by the browser as a person would get them
        page.wait("the download links", lambda: page.find("#download-csv").get_attribute("href").startswith("blob:"))
        page.click("#download-csv")
        page.click("#download-json")
        csv_file = page.wait("the CSV file", lambda: _downloaded(downloads, ".csv"))
        json_file = page.wait("the JSON file", lambda: _downloaded(downloads, ".json"))
        csv = csv_file.read_text(encoding="utf-8")
        assert csv.startswith("start,end,detectedFaces,anger_people,"), csv[:200]
        timeline = json.loads(json_file.read_text(encoding="utf-8"))
        assert timeline["session"] == session_id and timeline["timeline"], timeline
        assert len(csv.strip().splitlines()) == len(timeline["timeline"]) + 1

        # -- delete, after the confirmation: back on the list, gone from it and from the API
        page.click("#delete-session")
        page.visible("dialog[open] #confirm-delete")
        page.shot("confirm-delete")
        page.click("#confirm-delete")
        page.visible("#sessions-view")
        page.wait("the list without it", lambda: page.find(row) is None
                  and "No sessions yet" in page.text("#session-rows"))
        page.shot("deleted")
        gone = requests.get(f"{base}/v1/sessions/{session_id}", headers={"Authorization": f"Bearer {token}"},
                            timeout=30)
        assert gone.status_code == 404, gone.text

        # -- a session that is not there (deleted, or someone else's): the 404 screen
        driver.get(f"{base}/#/sessions/{session_id}")
        page.wait("the not-found screen", lambda: "Session not found" in page.text("#not-found"))
        page.shot("not-found-404")
        page.click('#not-found a[href="#/"]')
        page.visible("#sessions-view")

        # -- phone width (a 390×844 phone's viewport, emulated): one column, nothing wider than the screen but
        #    the table, which scrolls in its own box
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
        page.visible("#create-form")
        assert page.script("return document.documentElement.scrollWidth") == 390
        page.shot("phone-width")
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

        # -- sign out, then a bad token: the sign-in screen says why, and nothing is kept
        page.click("#sign-out")
        page.visible("#signin-view")
        assert page.script("return sessionStorage.getItem('emotion-stream.token')") is None
        driver.get(f"{base}/#token=emo_not-a-real-token")
        page.wait("the bad-token screen", lambda: "not accepted" in page.text("#signin-error"))
        assert page.script("return sessionStorage.getItem('emotion-stream.token')") is None
        assert "token" not in driver.current_url
        page.shot("bad-token")

        # -- signing in by pasting the token into the form
        page.fill("#token", token)
        page.click("#signin-form button[type=submit]")
        page.visible("#sessions-view")
        assert page.script("return sessionStorage.getItem('emotion-stream.token')") == token

        expected = re.compile(r"status of (400|401|404|503) ")  # the answers the steps above provoked
        severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"
                  and not (e.get("source") == "network" and expected.search(e.get("message", "")))]
        assert severe == [], severe  # no script error, no other failed request

    assert weight["html+js+css bytes"] < 300_000, weight  # the budget: a small page
    assert len(page.shots) >= 10


def _page_weight(page: Page) -> dict[str, Any]:
    """What the browser fetched for the page on first load (Resource Timing: bytes of body, per file)."""
    entries = page.script(
        """
        const nav = performance.getEntriesByType('navigation')[0];
        const files = [{name: new URL(nav.name).pathname, type: 'html', bytes: nav.decodedBodySize}];
        for (const r of performance.getEntriesByType('resource')) {
          const path = new URL(r.name).pathname;
          if (path.startsWith('/assets/') || path === '/config.json') {
            files.push({name: path, type: path.split('.').pop(), bytes: r.decodedBodySize});
          }
        }
        return files;
        """
    )
    code = sum(e["bytes"] for e in entries if e["type"] in ("html", "js", "css"))
    return {"files": entries, "html+js+css bytes": code, "with config.json": sum(e["bytes"] for e in entries)}


def _downloaded(folder: Path, suffix: str) -> Path | None:
    """A finished download (Chromium writes .crdownload until it is complete)."""
    done = [p for p in folder.glob(f"*{suffix}") if p.is_file()]
    return done[0] if done else None


def test_the_list_pages_with_has_more_and_filters_by_state(stack: StackProcess, output: Path, tmp_path: Path) -> None:
    names = _ended_sessions(stack, "pat", 12)  # newest last
    token = stack.token("pat")
    with chromium(tmp_path / "profile", width=1280, height=900) as driver:
        page = Page(driver, output)
        driver.get(f"{stack.url}/#token={token}")
        page.visible("#sessions-view")
        first = names[::-1][:10]
        page.wait("the first page", lambda: _listed(page) == first and page.text("#page-info") == "1–10")
        assert _enabled(page) == {"page-newer": False, "page-older": True}  # hasMore is true
        page.shot("first-page")

        page.click("#page-older")  # hasMore was true
        page.wait("the second page", lambda: _listed(page) == names[::-1][10:] and page.text("#page-info") == "11–12")
        assert _enabled(page) == {"page-newer": True, "page-older": False}  # hasMore is false
        page.shot("second-page")
        page.click("#page-newer")
        page.wait("the first page again", lambda: _listed(page) == first)

        from selenium.webdriver.support.ui import Select

        Select(page.visible("#state-filter")).select_by_value("active")
        page.wait("no active session", lambda: "No active sessions." in page.text("#session-rows"))
        page.shot("filtered-active")
        Select(page.visible("#state-filter")).select_by_value("finished")
        page.wait("the finished ones", lambda: _listed(page) == first)


def _listed(page: Page) -> list[str]:
    """The names in the list, in order (read in one go: the list is re-rendered every few seconds)."""
    return list(page.script(
        "return [...document.querySelectorAll('#session-rows td:first-child a')].map(a => a.textContent);"))


def _enabled(page: Page) -> dict[str, bool]:
    return {name: not page.script("return document.getElementById(arguments[0]).disabled;", name)
            for name in ("page-newer", "page-older")}


def _ended_sessions(stack: StackProcess, user: str, count: int) -> list[str]:
    """``count`` finished sessions of ``user``, one second apart, written as the API stores them."""
    import time

    from emotion_shared.clock import iso_ms
    from emotion_shared.dynamo import serialize
    from emotion_shared.ids import new_session_id

    start = time.time_ns() // 1_000_000 - count * 60_000
    names = []
    for n in range(count):
        created = start + n * 60_000
        name = f"archive {n + 1:02d}"
        item = {
            "id": new_session_id(created // 1000), "user": user, "product": "standard", "name": name,
            "type": "live_analysis", "state": "finished", "createdAt": iso_ms(created), "createdAtMs": created,
            "endedAt": iso_ms(created + 30_000), "streamUri": "rtmp://h/x", "sources": [],
            "config": {"removeMedia": True, "analysisFps": 5.0},
            "meta": {"expires": iso_ms(created + 86_400_000), "workerState": "stopped", "stopReason": "user_request"},
            "stopRequested": True, "capacityHeld": False, "version": 3, "ttl": created // 1000 + 86_400,
        }
        aws_client(stack, "dynamodb").put_item(TableName=table(stack, "SessionsTable"), Item=serialize(item))
        names.append(name)
    return names


def test_the_local_gateway_serves_the_page_with_its_security_headers(stack: StackProcess) -> None:
    from emotionctl.dashboard.site import security_headers

    ws_origin = stack.url.replace("http://", "ws://")
    page = requests.get(stack.url + "/", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    for name, value in security_headers([ws_origin]).items():
        assert page.headers[name] == value, name
    assert page.headers["Cache-Control"] == "no-cache"

    assets = re.findall(r'(?:src|href)="(assets/[^"]+)"', page.text)
    assert sorted(a.rsplit(".", 1)[1] for a in assets) == ["css", "js"], page.text
    for asset in assets:
        answer = requests.get(f"{stack.url}/{asset}", timeout=30)
        assert answer.status_code == 200, asset
        assert answer.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert "Content-Security-Policy" in answer.headers

    config = requests.get(stack.url + "/config.json", timeout=30)
    assert config.json() == {"apiUrl": stack.url, "webSocketUrl": f"{ws_origin}/ws/v1"}
    assert stack.state["components"]["dashboard"] == {
        "url": stack.url + "/", "siteDir": str(REPO / "build" / "dashboard"), "built": True}

    for missing in ("/assets/nope.js", "/assets/..%2findex.html", "/assets/%2e%2e/config.json"):
        assert requests.get(stack.url + missing, timeout=30).status_code == 404, missing
    assert f"  dashboard     {stack.url}/\n" in stack.log()  # what `make run` prints (no dev token here)
    # the API is untouched by the page's routes
    assert requests.get(stack.url + "/v1/sessions", timeout=30).status_code == 401
