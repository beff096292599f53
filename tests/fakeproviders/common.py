"""What every fake provider server shares: lifecycle, call log, fault injection, signed result files.

A fake validates requests as the provider's documents say and answers with the provider's own error
bodies; tests queue faults per route (``inject``) to see how the bot copes.

Result links are signed like ByteDance TOS / S3 presigned links: the query carries a credential with
``%2F`` escapes (``X-Tos-Credential=AK…%2F20261101%2Fcn-beijing%2Ftos%2Frequest``), a content
disposition full of other escapes, and ``X-Tos-Signature``, an HMAC over the exact raw path and query
as written. The file route checks the raw request target (``request.raw_path``, never the decoded or
re-quoted URL) and answers 403 AccessDenied to any link that was altered on the way, as a real object
store does; so a client that re-quotes ``%2F`` into ``/`` loses the image here too.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import itertools
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

#: The fake object store's signing secret (HMAC-SHA256 over the raw path and query as written).
SIGNING_SECRET = b"fake-object-store-secret"
#: A TOS-style credential: the ``%2F`` escapes are what aiohttp's re-quoting turned into ``/``.
CREDENTIAL = "AKLTZmFrZS1rZXk%2F20261101%2Fcn-beijing%2Ftos%2Frequest"
#: Every escape yarl would unquote in a query (``%2F %3A %40 %21 %24 %27 %28 %29 %2A %2C %3F %7E``).
DISPOSITION = "attachment%3B%20filename%3D%22koala%3A%28v2%29%2A%21%24%27%2C%40home%3Fq%7E1%2Fx.png%22"
SIGNATURE_PARAM = "X-Tos-Signature"


def signature(path_and_query: str) -> str:
    return hmac.new(SIGNING_SECRET, path_and_query.encode("ascii"), hashlib.sha256).hexdigest()


def signed_link(base_url: str, raw_path: str) -> str:
    """``base_url`` + ``raw_path`` with a TOS-like signed query; the signature covers the exact bytes."""
    query = (
        f"X-Tos-Algorithm=TOS4-HMAC-SHA256&X-Tos-Credential={CREDENTIAL}&X-Tos-Date=20261101T000000Z"
        f"&X-Tos-Expires=86400&X-Tos-SignedHeaders=host&response-content-disposition={DISPOSITION}"
    )
    return f"{base_url}{raw_path}?{query}&{SIGNATURE_PARAM}={signature(f'{raw_path}?{query}')}"


def link_intact(raw_target: str) -> bool:
    """Whether a raw request target (path and query as sent) is a signed link exactly as it was issued."""
    path, _, query = raw_target.partition("?")
    signed_part, separator, given = query.rpartition(f"&{SIGNATURE_PARAM}=")
    return bool(separator) and hmac.compare_digest(given, signature(f"{path}?{signed_part}"))


def refused_link() -> web.Response:
    """The object store's answer to an altered link (TOS AccessDenied, as in ByteDance's docs)."""
    body = {
        "Code": "AccessDenied",
        "Message": "The request signature we calculated does not match the signature you provided.",
        "EC": "0003-00000015",
        "RequestId": "fake-request",
    }
    return web.json_response(body, status=403)


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)
    #: The request target exactly as it arrived (raw path and query string).
    raw_target: str = ""


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


def jpeg_bytes(width: int, height: int, colour: tuple[int, int, int] = (40, 120, 200)) -> bytes:
    """A real, decodable JPEG of the exact size (Seedream 5.0's default ``output_format``)."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


#: Content types of the result files the fakes serve, by extension.
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg"}


class FakeProviderServer:
    """Base class: subclasses add their routes in ``routes()`` and call ``take_fault`` in each handler."""

    #: Expected API key; requests with another one get the provider's "bad key" answer.
    api_key = "test-key"

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.files: dict[str, bytes] = {}
        self.expired: set[str] = set()
        #: Raw targets of signed links that were refused because they had been altered.
        self.refused_links: list[str] = []
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
        """Make a result image (PNG, or JPEG for ``jpeg``/``jpg``) of the exact size; return its signed link."""
        name = f"{self.next_id('img')}.{suffix}"
        self.files[name] = jpeg_bytes(width, height) if suffix in ("jpeg", "jpg") else png_bytes(width, height)
        return signed_link(self.base_url, f"/files/{name}")

    def expire_all(self) -> None:
        self.expired.update(self.files)

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        fault = await self.take_fault("files")
        if fault is not None:
            return fault
        if not link_intact(request.raw_path):
            self.refused_links.append(request.raw_path)
            return refused_link()
        name = request.match_info["name"]
        if name not in self.files or name in self.expired:
            return web.Response(
                status=404, text="<Error><Code>NoSuchKey</Code></Error>", content_type="application/xml"
            )
        return web.Response(body=self.files[name], content_type=CONTENT_TYPES.get(name.rsplit(".", 1)[-1], "image/png"))

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
        call = Call(request.method, request.path, dict(request.query), headers, body, raw_target=request.raw_path)
        self.calls.append(call)
        return await handler(request)

    def bearer_ok(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"
