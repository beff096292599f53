"""Rate limits: which bucket a request falls in, fixed-window counting, the X-RateLimit-* headers, and the
global limit.

Two modes, chosen by `FakeConfig.discord_limits`:

- False (the fake's original behaviour): one generic bucket of `rate_limit` per `rate_limit_window` for each
  route and major parameter, and no global limit.
- True: the limits Discord applies, per route and per major parameter (the top-level resource in the path:
  channel, guild, or webhook id + token; a thread is a channel, so its id is its own major parameter):

  | route                                                    | limit (default)        | bucket per           |
  |----------------------------------------------------------|------------------------|----------------------|
  | POST   /channels/{channel_id}/messages                   | 5 per 5 s              | channel              |
  | PATCH  /channels/{channel_id}/messages/{message_id}      | 5 per 5 s (own bucket) | channel              |
  | DELETE /channels/{channel_id}/messages/{message_id}      | 5 per 1 s              | channel              |
  | POST   /interactions/{interaction_id}/{token}/callback   | generic                | interaction          |
  | any    /webhooks/{webhook_id}/{webhook_token}...         | 5 per 2 s, one bucket  | webhook id + token   |
  | anything else (thread creation included)                 | generic (50 per 1 s)   | route + major param  |

  plus a global limit of 50 requests per second over every request carrying a bot token (Authorization: Bot),
  except the interaction callback and webhook-token routes.

Sources for the figures: Discord's rate-limit page documents the headers, the 429 body and scopes, the 50/s
global limit and that "Interaction endpoints are not bound to the bot's Global Rate Limit"
(https://discord.com/developers/docs/topics/rate-limits). Discord does not publish per-route numbers (it
tells apps to read the headers); the per-channel figures are the ones its API has long answered with and
libraries document: 5 messages per 5 s per channel, 5 deletes per 1 s per channel, and 5 requests per 2 s per
webhook (e.g. https://birdie0.github.io/discord-webhooks-guide/other/rate_limits.html). Edits get their own
bucket of the same size as sends. Nothing documents a number for thread creation, so those routes keep the
generic per-route limit, bucketed by the parent channel in their path.

Windows are fixed: a bucket's window opens with its first request and resets `window` seconds later. Every
request the bucket sees counts, including ones answered with an error, as on Discord.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from .state import FakeConfig

MESSAGES = "/channels/{channel_id}/messages"
MESSAGE = "/channels/{channel_id}/messages/{message_id}"
CALLBACK = "/interactions/{interaction_id}/{token}/callback"


@dataclass
class Window:
    """A fixed window: opens with its first request, holds `count` requests until `start + length`."""

    start: float = -math.inf
    count: int = 0
    length: float = 0.0

    def hit(self, now: float, length: float) -> None:
        if now - self.start >= self.length:
            self.start, self.count = now, 0
            self.length = length
        self.count += 1

    def reset_after(self, now: float) -> float:
        """Seconds until the window resets, rounded up to the millisecond so a client that waits exactly this
        long never arrives early."""
        return max(math.ceil((self.start + self.length - now) * 1000) / 1000, 0.001)


@dataclass(frozen=True)
class Shape:
    """The bucket a request falls in: its shape (`name`, what X-RateLimit-Bucket hashes), size, and major."""

    name: str
    limit: int
    window: float
    major: str
    counts_global: bool

    @property
    def hash(self) -> str:
        return bucket_hash(self.name)


def bucket_hash(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:32]


def auth_kind(template: str, authorization: str) -> str:
    """How the request authenticates: "interaction" (callback, token in the path), "webhook" (webhook-token
    routes, which is how interaction followups and @original edits go), "bot" (Authorization: Bot ...), or
    "none"."""
    if template == CALLBACK:
        return "interaction"
    if "{webhook_token}" in template:
        return "webhook"
    if authorization.startswith("Bot "):
        return "bot"
    return "none"


def _major(params: dict[str, str]) -> str:
    for keys in (("channel_id",), ("guild_id",), ("webhook_id", "webhook_token"), ("interaction_id", "token")):
        if all(k in params for k in keys):
            return "+".join(params[k] for k in keys)
    return ""


def shape(cfg: FakeConfig, method: str, template: str, params: dict[str, str]) -> Shape:
    key = f"{method} {template}"
    major = _major(params)
    generic = Shape(key, cfg.rate_limit, cfg.rate_limit_window, major, counts_global=cfg.discord_limits)
    if not cfg.discord_limits:
        return generic
    if template == CALLBACK:
        # per interaction; Discord publishes no figure, the generic limit stands in
        return Shape(key, cfg.rate_limit, cfg.rate_limit_window, major, counts_global=False)
    if "{webhook_token}" in template:
        return Shape("webhook-token", cfg.webhook_limit, cfg.webhook_window, major, counts_global=False)
    if (method, template) == ("POST", MESSAGES):
        return Shape("message-create", cfg.message_limit, cfg.message_window, major, counts_global=True)
    if (method, template) == ("PATCH", MESSAGE):
        return Shape("message-edit", cfg.message_limit, cfg.message_window, major, counts_global=True)
    if (method, template) == ("DELETE", MESSAGE):
        return Shape("message-delete", cfg.message_delete_limit, cfg.message_delete_window, major, True)
    # Thread creation (POST .../messages/{message_id}/threads, POST .../threads) and everything else: Discord
    # documents no number, so the generic per-route limit applies, per parent channel (the path's channel_id).
    return generic


@dataclass
class Verdict:
    """What the limiter decided for one request."""

    shape: Shape
    headers: dict[str, str]
    retry_after: float | None = None  # set when the request must be answered with 429
    scope: str | None = None  # "global" or "user" when limited


class RateLimiter:
    """Per-bucket fixed windows plus the global window (both on the monotonic clock)."""

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.buckets: dict[tuple[str, str], Window] = {}
        self.global_window = Window()

    def reset(self) -> None:
        self.buckets.clear()
        self.global_window = Window()

    def check(self, method: str, template: str, params: dict[str, str], auth: str) -> Verdict:
        cfg = self.config
        now = time.monotonic()
        found = shape(cfg, method, template, params)
        if found.counts_global and auth == "bot":
            self.global_window.hit(now, cfg.global_rate_limit_window)
            if cfg.enforce_rate_limits and self.global_window.count > cfg.global_rate_limit:
                # rejected at the edge: the route's bucket never sees it
                return Verdict(found, {}, self.global_window.reset_after(now), "global")
        bucket = self.buckets.setdefault((found.name, found.major), Window())
        bucket.hit(now, found.window)
        reset_after = bucket.reset_after(now)
        headers = {
            "X-RateLimit-Limit": str(found.limit),
            "X-RateLimit-Remaining": str(max(found.limit - bucket.count, 0)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": found.hash,
        }
        if cfg.enforce_rate_limits and bucket.count > found.limit:
            return Verdict(found, headers, reset_after, "user")
        return Verdict(found, headers)
