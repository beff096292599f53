"""Point discord.py at a non-default Discord API (e.g. the fake Discord used by the end-to-end tests).

discord.py has two hard-wired endpoints:

* REST: every request is built from the class attribute ``discord.http.Route.BASE``
  (``https://discord.com/api/v10``), read when each ``Route`` is constructed.
* Gateway: a non-sharded ``discord.Client`` never asks ``GET /gateway/bot``. ``Client.connect`` calls
  ``DiscordWebSocket.from_client`` without a ``gateway`` argument, which falls back to the class attribute
  ``DiscordWebSocket.DEFAULT_GATEWAY`` (``wss://gateway.discord.gg/``) and then appends
  ``?v=10&encoding=json&compress=zlib-stream`` (or ``zstd-stream`` when a zstd module is available) with
  ``yarl.URL.with_query``, replacing any query string of its own. After READY it resumes against
  READY's ``resume_gateway_url``, but an ``INVALID_SESSION`` (non-resumable) resets it to
  ``DEFAULT_GATEWAY`` again, so that attribute must point at the right server for the whole run.

``use_api_base`` handles the first before login; ``adopt_gateway`` the second, after login.
"""

from __future__ import annotations

import discord
import discord.gateway
import discord.http
import yarl

DISCORD_API_BASE = "https://discord.com/api/v10"
DISCORD_GATEWAY = yarl.URL("wss://gateway.discord.gg/")


def _normalise(api_base: str) -> str:
    return api_base.rstrip("/")


def is_default_api_base(api_base: str) -> bool:
    """True when ``api_base`` is Discord's own v10 API (so no redirection is needed)."""
    return _normalise(api_base) == DISCORD_API_BASE


def use_api_base(api_base: str) -> None:
    """Send every discord.py REST request to ``api_base`` (e.g. ``http://127.0.0.1:8123/api/v10``).

    Must run before ``Client.login``: ``Route`` objects read ``Route.BASE`` when they are created, and login
    already issues ``GET /users/@me``. The setting is process-wide (a class attribute).
    """
    url = yarl.URL(_normalise(api_base))
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"api_base must be an absolute http(s) URL, got {api_base!r}")
    discord.http.Route.BASE = _normalise(api_base)


async def adopt_gateway(client: discord.Client, api_base: str) -> None:
    """Make ``client`` connect its websocket to the gateway that ``api_base`` advertises.

    Call after login and before ``connect`` (``setup_hook`` is the natural place). For a non-default
    ``api_base`` it asks ``GET {api_base}/gateway/bot`` through the client's own HTTP session and stores the
    URL in ``DiscordWebSocket.DEFAULT_GATEWAY``, which covers the first IDENTIFY and any later re-IDENTIFY
    after an invalidated session (resumes use READY's ``resume_gateway_url``). Query parameters in the
    advertised URL are dropped, because discord.py replaces the query with its own ``v``/``encoding``/
    ``compress``. For Discord's own API base it restores Discord's gateway, so the call is idempotent.

    Raises ``discord.GatewayNotFound`` when the endpoint fails, ``ValueError`` for a non-websocket URL.
    """
    if is_default_api_base(api_base):
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = DISCORD_GATEWAY
        return
    _shards, url, _limits = await client.http.get_bot_gateway()
    gateway = yarl.URL(url).with_query(None).with_fragment(None)
    if gateway.scheme not in ("ws", "wss") or not gateway.host:
        raise ValueError(f"{api_base}/gateway/bot returned a non-websocket URL: {url!r}")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway
