"""HTTP plumbing every remote provider shares: the session, timeouts, retries, error mapping, downloads.

The session is the process's one (``Services`` owns it and closes it last); a ``ProviderHttp`` built
without one opens its own and closes it. Timeouts are per request, so sharing changes none of them.

Retry rule: creating a generation is retried only on answers that mean "not accepted" (429, 503,
connection refused), because any other failure may already have been billed. Polling and downloads
are retried on every transient failure. Backoff has jitter and honours Retry-After. A request the
provider refused as invalid (``InvalidRequest``, ``ProviderRejected``) or as content
(``ContentBlocked``) is never retried: the same request gets the same answer.

Links go out exactly as written (``bot.providers.links.exact_url``; redirects are not re-quoted
either), because signed result and upload links are checked byte for byte. Logs and error details
name a link by its path only: the query string holds the signature.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from bot.errors import (
    BadApiKey,
    ContentBlocked,
    InvalidRequest,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ResultExpired,
    ResultRefused,
    SeedreamError,
    redact_links,
)
from bot.i18n import _
from bot.images import ImageStore, StoredImage
from bot.providers.links import client_session, exact_url, without_query

log = logging.getLogger(__name__)

#: Maps (status, parsed body or None, raw text, headers) to one of our errors.
ErrorMapper = Callable[[int, Any, str, "aiohttp.typedefs.LooseHeaders"], SeedreamError]


class NotAccepted(ProviderUnavailable):
    """The API certainly did not start the work (connection refused, 503): safe to create again."""


def retry_after_seconds(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def default_error(status: int, body: Any, text: str, headers: Any) -> SeedreamError:
    """Fallback mapping by HTTP status, used when a provider's body says nothing more specific."""
    if status == 429:
        return RateLimited(
            _("The image provider is busy right now; please try again in a minute."),
            retry_after=retry_after_seconds(headers),
            detail=f"HTTP 429: {text[:300]}",
        )
    if status in (401, 403):
        return BadApiKey(
            _("The bot's key for this image provider was refused; a moderator has to fix the configuration."),
            detail=f"HTTP {status}: {text[:300]}",
        )
    if status == 503:
        return NotAccepted(_("The image provider is unavailable right now; please try again later."), detail=text[:300])
    if status in (413, 422):
        # "Payload too large" / "unprocessable": the request itself, whatever the body says.
        reason = "the request is too large" if status == 413 else "the provider could not process the request"
        return ProviderRejected.because(None, reason, detail=f"HTTP {status}: {text[:300]}")
    return ProviderUnavailable(
        _("The image provider had a problem; please try again later."), detail=f"HTTP {status}: {text[:300]}"
    )


def _is_retryable(create: bool) -> Callable[[BaseException], bool]:
    def check(exc: BaseException) -> bool:
        if isinstance(exc, InvalidRequest | ContentBlocked):  # ProviderRejected included: same request, same no
            return False
        if create:
            return isinstance(exc, RateLimited | NotAccepted)
        return isinstance(exc, ProviderError) and exc.retryable

    return check


def _wait(base: float) -> Callable[[RetryCallState], float]:
    jitter = wait_exponential_jitter(multiplier=base, max=30.0, jitter=base)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(exc.retry_after, 120.0)
        return jitter(state)

    return wait


class ProviderHttp:
    """A provider's requests on the shared session (or its own), with its auth header, timeout and error mapping."""

    def __init__(
        self,
        *,
        provider: str,
        api_key: str | None,
        timeout_seconds: float,
        max_attempts: int,
        map_error: ErrorMapper = default_error,
        retry_base_seconds: float = 1.0,
        auth_scheme: str = "Bearer",
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.provider = provider
        self._api_key = api_key
        self._auth_scheme = auth_scheme
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=min(10.0, timeout_seconds))
        self.max_attempts = max_attempts
        self.map_error = map_error
        self.retry_base_seconds = retry_base_seconds
        self._shared = session
        self._own: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session, else this provider's own (redirects from storage followed as written too).

        Pass ``timeout=self.timeout`` with every request: the session has no timeout of its own."""
        if self._shared is not None:
            return self._shared
        if self._own is None or self._own.closed:
            self._own = client_session()
        return self._own

    def auth_headers(self) -> dict[str, str]:
        if not self._api_key:
            raise BadApiKey(
                _("This image provider has no API key configured; a moderator has to set it."),
                detail=f"{self.provider}: API key environment variable is empty",
            )
        return {"Authorization": f"{self._auth_scheme} {self._api_key}", "Accept": "application/json"}

    async def close(self) -> None:
        """Close this provider's own session; a shared one is its owner's to close."""
        if self._own is not None and not self._own.closed:
            await self._own.close()

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        create: bool = False,
        json: Any = None,
        params: dict[str, str] | None = None,
        authorized: bool = True,
    ) -> Any:
        """Send one API call with retries; returns the parsed JSON body or raises one of our errors."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=_wait(self.retry_base_seconds),
            retry=retry_if_exception(_is_retryable(create)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._request_once(
                    method, url, create=create, json=json, params=params, authorized=authorized
                )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request_once(
        self, method: str, url: str, *, create: bool, json: Any, params: dict[str, str] | None, authorized: bool
    ) -> Any:
        headers = self.auth_headers() if authorized else {}
        log.debug("%s %s %s", self.provider, method, _path(url))
        try:
            target = exact_url(url)
            async with self.session.request(
                method, target, json=json, params=params, headers=headers, timeout=self.timeout
            ) as response:
                text = await response.text()
                body = _parse_json(text)
                if response.status >= 400:
                    error = self.map_error(response.status, body, text, response.headers)
                    log.warning("%s %s %s -> %s (%s)", self.provider, method, _path(url), response.status, error.code)
                    raise error
                if body is None and text.strip():
                    log.warning("%s answered malformed JSON: %r", self.provider, redact_links(text[:200]))
                    raise ProviderUnavailable(
                        _("The image provider sent an answer we could not read; please try again later."),
                        detail=f"malformed JSON from {_path(url)}",
                    )
                return body
        except aiohttp.ClientConnectorError as exc:
            raise NotAccepted(_("The image provider cannot be reached right now."), detail=str(exc)) from None
        except TimeoutError:
            if not create:
                message = _("The image provider did not answer in time; please try again later.")
                raise ProviderTimeout(message, detail=f"timeout on {method} {_path(url)}") from None
            # A create that timed out may be running (and billed) at the provider: it is never sent again.
            error = ProviderTimeout(
                _(
                    "The image provider did not answer in time. The request was not repeated because it may "
                    "already have been charged; please try again later."
                ),
                detail=f"timeout on {method} {_path(url)}",
            )
            error.retryable = False
            raise error from None
        except aiohttp.ClientError as exc:
            # The request may have reached the provider: unsafe to retry a create.
            raise ProviderUnavailable(_("The image provider connection failed."), detail=repr(exc)) from None

    async def download(
        self, store: ImageStore, url: str, *, provider_image_id: str | None = None, max_bytes: int | None = None
    ) -> StoredImage:
        """Stream one result image to disk with a size cap and decode checks; retried on transient faults."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=_wait(self.retry_base_seconds),
            retry=retry_if_exception(_is_retryable(False)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._download_once(store, url, provider_image_id, max_bytes)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _download_once(
        self, store: ImageStore, url: str, provider_image_id: str | None, max_bytes: int | None
    ) -> StoredImage:
        log.debug("%s downloading result %s", self.provider, _path(url))
        try:
            async with self.session.get(exact_url(url), timeout=self.timeout) as response:
                if response.status == 403:
                    raise await self._refused(url, response)
                if response.status in (404, 410):
                    raise ResultExpired(
                        _("The provider's result link had expired before we could fetch it."),
                        detail=f"HTTP {response.status} for result {_path(url)}",
                    )
                if response.status >= 400:
                    raise ProviderUnavailable(
                        _("The provider's result could not be downloaded."), detail=f"HTTP {response.status}"
                    )
                kind = response.headers.get("Content-Type", "")
                if kind and not kind.startswith(("image/", "application/octet-stream", "binary/")):
                    raise ProviderUnavailable(
                        _("The provider's result was not an image."), detail=f"Content-Type {kind}"
                    )
                return await store.save_stream(
                    response.content.iter_chunked(64 * 1024),
                    max_bytes=max_bytes,
                    provider=self.provider,
                    provider_image_id=provider_image_id,
                )
        except TimeoutError:
            raise ProviderTimeout(
                _("Downloading the result took too long."), detail=f"timeout on {_path(url)}"
            ) from None
        except aiohttp.ClientError as exc:
            raise ProviderUnavailable(_("The provider's result could not be downloaded."), detail=repr(exc)) from None

    async def _refused(self, url: str, response: aiohttp.ClientResponse) -> ProviderError:
        """A 403 on a result link: the storage refused the link (e.g. its signature), unless it says "expired"."""
        text = redact_links((await response.text(errors="replace"))[:500])
        if "expired" in text.lower():
            log.warning("%s: result link %s refused as expired (HTTP 403): %s", self.provider, _path(url), text[:200])
            return ResultExpired(
                _("The provider's result link had expired before we could fetch it."),
                detail=f"HTTP 403 (expired) for result {_path(url)}",
            )
        log.warning(
            "%s: the provider's storage refused result link %s (HTTP 403): %s", self.provider, _path(url), text[:200]
        )
        return ResultRefused(
            _("The provider's storage refused the link to the result, so the image could not be fetched."),
            detail=f"HTTP 403 (link refused) for result {_path(url)}",
        )


def _parse_json(text: str) -> Any:
    import json

    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None


def _path(url: str) -> str:
    """The URL without its query string: signed links carry credentials that must not be logged."""
    return without_query(url)
