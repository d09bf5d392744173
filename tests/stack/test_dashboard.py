"""The dashboard in a real browser: headless Chromium (Debian's, through Selenium) against `emotionctl local up`
with a live face stream (emotionctl.media).

One stack with room for one active session, so a second create is refused with 503. The test signs in through a
``#token=`` link, sees a 400 next to its field, creates a session from the form, sees the worker reach `working`
and at least five live points on the chart, sees the page say so when the WebSocket drops and carry on once it
has reconnected, sees the 503 screen for a second session, stops the first, sees its timeline and totals (and
the CSV and JSON downloads), deletes it after the confirmation, sees the 404 screen for it, the page at phone
width, the bad-token screen, and signs in again by pasting the token.

A second test pages through a list of twelve ended sessions and filters it by state.

A third test shares one live session: its owner creates a watch-only link on the session page, a second tab
opens it and sees that session live (worker state, live points, the dominant emotion) with no list and no
write controls, is told so when it asks for another page, and goes back to sign-in with the reason once the
owner revokes the link; a second link, opened after the owner has stopped the session, shows its timeline,
totals and downloads. The stack's authorizer cache is 2 s (``AuthorizerCacheSeconds``, the documented bound on
how long a revoked token keeps working), so the revoke reaches the page within a few of the page's polls.

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
AUTHORIZER_CACHE_SECONDS = 2  # how long a revoked token may still be accepted (README: token lifecycle)
WAIT = 90.0  # seconds a condition may take on a loaded 2-core machine (a deadline, not a measured time)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """A stack of its own: one active session at most (the 503 screen), a roomy rate limit (the page polls)."""
    if (reason := missing_browser()) is not None:
        pytest.skip(reason)
    stack = start_stack(tmp_path_factory.mktemp("dashboard-stack"), "MaxActiveSessions=1", "RateLimitCapacity=1000",
                        f"AuthorizerCacheSeconds={AUTHORIZER_CACHE_SECONDS}")
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


def test_a_watch_only_link_shows_one_session_live_until_it_is_revoked(stack: StackProcess, rtmp_source: str,
                                                                     output: Path, tmp_path: Path) -> None:
    owner = stack.token("olga")
    base = stack.url
    session_id = _live_session(stack, owner, "shared room", rtmp_source)
    downloads = tmp_path / "downloads"
    with chromium(tmp_path / "profile", width=1280, height=900, downloads=downloads) as driver:
        page = Page(driver, output)

        # -- the owner, in the first tab, creates a watch-only link on the session page
        driver.get(f"{base}/#token={owner}")
        page.visible("#sessions-view")
        owner_tab = driver.current_window_handle
        link, token_id = _share(page, session_id)
        page.shot("owner-creates-a-watch-only-link")

        # -- the viewer, in a second tab (its own sessionStorage), opens the link: that session's live page
        driver.switch_to.new_window("tab")
        viewer_tab = driver.current_window_handle
        driver.get(link)
        page.visible("#session-view")
        page.wait("the session's own address", lambda: driver.current_url == f"{base}/#/sessions/{session_id}")
        viewer_token = page.script("return sessionStorage.getItem('emotion-stream.token')")
        assert viewer_token is not None and viewer_token in link and viewer_token != owner
        assert page.text("#watch-only") == "Watch-only"
        page.wait("the session's name", lambda: page.text("#session-name") == "shared room")
        page.wait("worker state working", lambda: page.text("#worker-state") == "working")
        page.wait("the sources", lambda: "640×360" in page.text("#sources-table"))
        page.wait("5 live points", lambda: _live_points(page) >= 5)
        page.wait("a dominant emotion with one face", lambda: DOMINANT.fullmatch(page.text("#dominant"))
                  and page.text("#faces") == "1")
        # reads only: no list, no create, stop, delete or share controls
        hidden = ["#stop-session", "#delete-session", "#share", "#create-form", "#sessions-view",
                  'header nav a[href="#/"]', '#session-view a[href="#/"]']
        assert [css for css in hidden if page.text(css) != ""] == []
        page.shot("viewer-live")

        # -- another page than its session's: the list takes it back to its session, another session is refused
        #    in words (the API would answer 404 route_not_found / session_not_found)
        page.script("location.hash = '#/'")
        page.wait("back on its session", lambda: driver.current_url == f"{base}/#/sessions/{session_id}"
                  and page.find("#session-view") is not None)
        page.script("location.hash = arguments[0]", "#/sessions/" + "0" * 24)
        page.wait("the out-of-scope screen", lambda: "Not part of this watch-only link" in page.text("#out-of-scope"))
        page.shot("viewer-other-page")
        page.click(f'#out-of-scope a[href="#/sessions/{session_id}"]')
        page.wait("live points again", lambda: _live_points(page) >= 1)

        # -- the owner revokes the link (DELETE …/viewer-tokens/{tokenId}); within the authorizer cache TTL the
        #    viewer's page is refused (401) and goes back to sign-in, saying why
        driver.switch_to.window(owner_tab)
        page.click(f'#share-tokens button[data-token-id="{token_id}"]')
        page.wait("the owner's list without it", lambda: page.find(f'#share-tokens li[data-token-id="{token_id}"]')
                  is None)
        listed = requests.get(f"{base}/v1/sessions/{session_id}/viewer-tokens",
                              headers={"Authorization": f"Bearer {owner}"}, timeout=30)
        assert listed.status_code == 200 and listed.json()["data"] == [], listed.text
        page.shot("owner-revoked-the-link")
        driver.switch_to.window(viewer_tab)
        page.wait("the viewer back at sign-in", lambda: "no longer works" in page.text("#signin-error"))
        assert "revoked" in page.text("#signin-error")
        assert page.script("return sessionStorage.getItem('emotion-stream.token')") is None
        page.shot("viewer-revoked")

        # -- a new link, opened after the owner has stopped the session: its timeline, totals and downloads
        driver.switch_to.window(owner_tab)
        second_link, _ = _share(page, session_id)
        page.click("#stop-session")
        page.wait("state finished", lambda: page.text("#session-state") == "finished")
        driver.switch_to.window(viewer_tab)
        driver.get(second_link)
        page.visible("#afterwards")
        assert page.text("#session-state") == "finished"
        page.wait("the timeline", lambda: re.match(r"[1-9]\d* intervals of 5 s", page.text("#timeline-status")))
        page.wait("the totals", lambda: len(driver.find_elements("css selector", "#totals li")) == 7)
        page.wait("the download links", lambda: page.find("#download-csv").get_attribute("href").startswith("blob:"))
        page.click("#download-json")
        json_file = page.wait("the JSON file", lambda: _downloaded(downloads, ".json"))
        assert json.loads(json_file.read_text(encoding="utf-8"))["session"] == session_id
        assert [css for css in hidden if page.text(css) != ""] == []
        page.shot("viewer-afterwards")

        # -- the same token without its session (a link cut short): the sign-in form asks for the session id,
        #    and pasting both opens the session
        second_token = re.search(r"#token=([\w-]+)&", second_link).group(1)  # type: ignore[union-attr]
        page.click("#sign-out")
        driver.get(f"{base}/#token={second_token}")
        page.wait("the ask for a session id", lambda: "watch-only token" in page.text("#signin-error"))
        page.shot("viewer-link-without-session")
        page.fill("#token", second_token)
        page.fill("#signin-session", session_id)
        page.click("#signin-form button[type=submit]")
        page.visible("#afterwards")
        assert driver.current_url == f"{base}/#/sessions/{session_id}"

        # the viewer's page asked the list once (404 route_not_found: that is how it knows a viewer token),
        # then got 401 after the revoke; nothing else failed
        expected = re.compile(r"status of (401|404) ")
        severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"
                  and not (e.get("source") == "network" and expected.search(e.get("message", "")))]
        assert severe == [], severe

    deleted = requests.delete(f"{base}/v1/sessions/{session_id}", headers={"Authorization": f"Bearer {owner}"},
                              timeout=30)
    assert deleted.status_code == 204, deleted.text


def _live_points(page: Page) -> int:
    """The count under the live chart ("12 points, last at 0:14")."""
    found = re.match(r"(\d+) points", page.text("#live-points"))
    return int(found.group(1)) if found else 0


def _live_session(stack: StackProcess, token: str, name: str, stream: str) -> str:
    """A new session of ``token``'s user on ``stream``; waits while the stack's one analysis slot is still held
    by an earlier test's session (503)."""
    import time

    deadline = time.monotonic() + WAIT
    while True:
        created = requests.post(f"{stack.url}/v1/sessions", json={"name": name, "streamUri": stream},
                                headers={"Authorization": f"Bearer {token}"}, timeout=30)
        if created.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert created.status_code == 201, created.text
    return str(created.json()["_id"])


def _share(page: Page, session_id: str) -> tuple[str, str]:
    """On the owner's session page: creates a watch-only link; returns it and its token id."""
    page.script("location.hash = arguments[0]", f"#/sessions/{session_id}")
    page.visible("#share-create")
    before = set(page.script("return [...document.querySelectorAll('#share-tokens li[data-token-id]')]"
                             ".map(li => li.dataset.tokenId);"))
    page.click("#share-create")
    link = str(page.wait("the watch-only link", lambda: (e := page.find("#share-link")) is not None
                         and e.get_attribute("value")))
    assert re.fullmatch(rf"{re.escape(page.driver.current_url.split('#')[0])}#token=emo_[\w-]{{43}}"
                        rf"&session={session_id}", link), link
    listed = page.wait("the new link in the list", lambda: set(page.script(
        "return [...document.querySelectorAll('#share-tokens li[data-token-id]')].map(li => li.dataset.tokenId);"))
        - before)
    (token_id,) = listed
    return link, str(token_id)


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
