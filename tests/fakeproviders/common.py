"""What every fake provider server shares: lifecycle, call log, fault injection, result files.

A fake validates requests as the provider's documents say and answers with the provider's own error
bodies; tests queue faults per route (``inject``) to see how the bot copes.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


@dataclass
class Fault:
    """One injected misbehaviour: an HTTP answer, a hang, or a malformed body."""

    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang_seconds: float = 0.0
    malformed: bool = False


def png_bytes(width: int, height: int, colour: tuple[int, int, int] = (40, 120, 200)) -> bytes:
    """A real, decodable PNG of the exact size (flat colour, so even 4K encodes fast)."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class FakeProviderServer:
    """Base class: subclasses add their routes in ``routes()`` and call ``take_fault`` in each handler."""

    #: Expected API key; requests with another one get the provider's "bad key" answer.
    api_key = "test-key"

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.files: dict[str, bytes] = {}
        self.expired: set[str] = set()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.app = web.Application(middlewares=[self._record], client_max_size=64 * 1024 * 1024)
        self.app.router.add_get("/files/{name}", self._serve_file)
        self.routes(self.app)

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> FakeProviderServer:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeProviderServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def next_id(self, prefix: str = "") -> str:
        return f"{prefix}{next(self._ids):08d}"

    # -- faults -------------------------------------------------------------------------------------
    def inject(self, route: str, fault: Fault, times: int = 1) -> None:
        """Make the next ``times`` requests to ``route`` (a handler's name) misbehave."""
        for _ in range(times):
            self.faults[route].append(fault)

    async def take_fault(self, route: str) -> web.StreamResponse | None:
        """Called first by each handler: returns the injected answer, if one is queued."""
        if not self.faults[route]:
            return None
        fault = self.faults[route].popleft()
        if fault.hang_seconds:
            await asyncio.sleep(fault.hang_seconds)
        if fault.malformed:
            return web.Response(status=200, text="{not json", content_type="application/json")
        if fault.body is None:
            return web.Response(status=fault.status, headers=fault.headers)
        return web.json_response(fault.body, status=fault.status, headers=fault.headers)

    def calls_to(self, method: str, path_prefix: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.startswith(path_prefix)]

    # -- result files -------------------------------------------------------------------------------
    def host_image(self, width: int, height: int, suffix: str = "png") -> str:
        """Make a result image of the exact size and return its URL (with a signed-looking query)."""
        name = f"{self.next_id('img')}.{suffix}"
        self.files[name] = png_bytes(width, height)
        return f"{self.base_url}/files/{name}?X-Expires=86400&Signature=abc%2Fdef"

    def expire_all(self) -> None:
        self.expired.update(self.files)

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        fault = await self.take_fault("files")
        if fault is not None:
            return fault
        name = request.match_info["name"]
        if name not in self.files or name in self.expired:
            return web.Response(
                status=404, text="<Error><Code>NoSuchKey</Code></Error>", content_type="application/xml"
            )
        return web.Response(body=self.files[name], content_type="image/png")

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body and request.content_type == "application/json":
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        self.calls.append(Call(request.method, request.path, dict(request.query), headers, body))
        return await handler(request)

    def bearer_ok(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"
