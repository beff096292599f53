"""Downloads of user-supplied images, only from allow-listed origins (no SSRF).

An origin is scheme://host[:port]; all three must match an entry of ``attachment_hosts``. Redirects
are followed by hand so each hop is checked again.

Attachment links are signed (Discord's ``ex``/``is``/``hm`` parameters) and are requested byte for
byte as written (``exact_url``: aiohttp would otherwise re-quote escapes such as ``%2F``), each
redirect hop too. Logs name a link by its path only, never its signed query.

Requests go through the process's shared session (``Services`` owns it), each with the download timeout;
a fetcher built without one opens its own and closes it.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urljoin

import aiohttp
import yarl

from bot.errors import ImageRejected
from bot.i18n import _
from bot.images import ImageStore, StoredImage
from bot.providers.links import client_session, exact_url, without_query

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3


def origin_of(url: str) -> str | None:
    """scheme://host[:port] of a URL, lower-cased with default ports dropped (yarl); None if not http(s)."""
    try:
        parsed = yarl.URL(url)
    except ValueError:  # e.g. a port out of range
        return None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return None
    return str(parsed.origin())


class ImageFetcher:
    def __init__(
        self,
        store: ImageStore,
        allowed_origins: list[str],
        *,
        timeout_seconds: float,
        max_bytes: int,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.store = store
        self.allowed = {origin_of(o) for o in allowed_origins} - {None}
        self.max_bytes = max_bytes
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._shared = session
        self._own: aiohttp.ClientSession | None = None

    def is_allowed(self, url: str) -> bool:
        return origin_of(url) in self.allowed

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._shared is not None:
            return self._shared
        if self._own is None or self._own.closed:
            self._own = client_session()
        return self._own

    async def close(self) -> None:
        """Close the fetcher's own session; a shared one is its owner's to close."""
        if self._own is not None and not self._own.closed:
            await self._own.close()

    async def fetch(self, url: str) -> StoredImage:
        """Download, validate and store one image; ImageRejected explains any refusal."""
        for _redirect in range(MAX_REDIRECTS + 1):
            if not self.is_allowed(url):
                hosts = ", ".join(sorted(h for h in self.allowed if h))
                origin = origin_of(url)
                if origin:
                    raise ImageRejected(
                        _(
                            "Images are only fetched from {hosts}; {origin} is not one of them.",
                            hosts=hosts,
                            origin=origin,
                        )
                    )
                raise ImageRejected(
                    _("Images are only fetched from {hosts}; that link is not one of them.", hosts=hosts)
                )
            log.debug("fetching image %s", without_query(url))
            try:
                async with self.session.get(exact_url(url), allow_redirects=False, timeout=self.timeout) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        url = urljoin(url, response.headers.get("Location", ""))
                        continue
                    if response.status != 200:
                        log.info("image %s answered HTTP %s", without_query(url), response.status)
                        raise ImageRejected(
                            _("That image could not be downloaded (it may have expired); please attach it again.")
                        )
                    declared = response.content_length
                    if declared is not None and declared > self.max_bytes:
                        raise ImageRejected(
                            _(
                                "That image is larger than the {limit} MiB we accept.",
                                limit=self.max_bytes // (1024 * 1024),
                            )
                        )
                    return await self.store.save_stream(
                        response.content.iter_chunked(64 * 1024), max_bytes=self.max_bytes
                    )
            except (aiohttp.ClientError, TimeoutError):
                raise ImageRejected(_("That image could not be downloaded; please try again.")) from None
        raise ImageRejected(_("That image link redirects too many times."))


async def fetch_all(fetcher: ImageFetcher, urls: list[str]) -> list[StoredImage]:
    """Fetch several images at once (signed attachment links expire, so never wait)."""
    return list(await asyncio.gather(*(fetcher.fetch(url) for url in urls)))
