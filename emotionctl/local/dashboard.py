"""The dashboard on the local gateway: ``/`` (the page), ``/assets/…`` (its bundle) and ``/config.json`` (where the
page finds the REST API and the WebSocket: this stack), with the security headers of :mod:`emotionctl.dashboard.site`.

Same origin as the API, so the page needs no CORS locally. An unbuilt dashboard is answered with a 503 page that
says how to build it; the rest of the stack runs regardless.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from emotionctl.dashboard.site import (
    CONFIG_NAME,
    INDEX_NAME,
    REVALIDATE,
    SITE_DIR,
    SiteFile,
    SiteNotBuilt,
    config_document,
    security_headers,
    site_files,
)

from .websocket import WebSocketGateway

if TYPE_CHECKING:
    from .stack import LocalStack

logger = logging.getLogger(__name__)


class DashboardSite:
    """Component: serves the built dashboard. Place it after the WebSocket gateway (it reads its URL) and before
    the HTTP server."""

    name = "dashboard"

    def __init__(self, site_dir: Path = SITE_DIR) -> None:
        self.site_dir = site_dir
        self.url = ""
        self.files: dict[str, SiteFile] = {}
        self.problem: str | None = None
        self._config = b""
        self._headers: dict[str, str] = {}

    async def start(self, stack: LocalStack) -> None:
        websocket = stack.component("websocket")
        if not isinstance(websocket, WebSocketGateway):
            raise TypeError("the dashboard needs the local WebSocket gateway (component 'websocket') before it")
        websocket_url = websocket.url
        self.url = f"{stack.url}/"
        self._config = config_document(stack.url, websocket_url)
        self._headers = security_headers([websocket_url.split("/ws/")[0]])
        self._scan()
        if self.problem is not None:
            logger.warning("%s", self.problem)
        router = stack.app.router
        router.add_get("/", self.index)
        router.add_get(f"/{INDEX_NAME}", self.index)
        router.add_get(f"/{CONFIG_NAME}", self.config)
        router.add_get("/assets/{name}", self.asset)

    async def stop(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "siteDir": str(self.site_dir), "built": self.problem is None}

    def _scan(self) -> None:
        try:
            self.files = {f.key: f for f in site_files(self.site_dir)}
            self.problem = None
        except SiteNotBuilt as exc:
            self.files = {}
            self.problem = str(exc)

    # ------------------------------------------------------------------ routes
    async def index(self, request: web.Request) -> web.StreamResponse:
        self._scan()  # a rebuild while the stack runs renames the hashed assets
        if self.problem is not None:
            body = f"<!doctype html><title>dashboard not built</title><p>{html.escape(self.problem)}</p>\n"
            return self._response(body.encode(), "text/html; charset=utf-8", REVALIDATE, status=503)
        return self._file(self.files[INDEX_NAME])

    async def config(self, request: web.Request) -> web.StreamResponse:
        return self._response(self._config, "application/json", REVALIDATE)

    async def asset(self, request: web.Request) -> web.StreamResponse:
        found = self.files.get(f"assets/{request.match_info['name']}")
        if found is None:  # only files of the built listing: no path ever reaches the file system
            return self._response(b"not found\n", "text/plain; charset=utf-8", REVALIDATE, status=404)
        return self._file(found)

    def _file(self, file: SiteFile) -> web.Response:
        try:
            body = file.path.read_bytes()
        except OSError as exc:  # rebuilt or removed while the stack runs
            logger.warning("cannot read %s: %s", file.path, exc)
            return self._response(b"the dashboard changed on disk: reload the page\n", "text/plain; charset=utf-8",
                                  REVALIDATE, status=404)
        return self._response(body, file.content_type, file.cache_control)

    def _response(self, body: bytes, content_type: str, cache_control: str, status: int = 200) -> web.Response:
        response = web.Response(body=body, status=status, headers=self._headers)
        response.headers["Content-Type"] = content_type
        response.headers["Cache-Control"] = cache_control
        return response
