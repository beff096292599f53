"""Shared plumbing for the REST modules: the `Core` bundle, the per-request `Ctx`, route and fault records."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .constants import ErrorCode
from .gateway import Gateway
from .messages import Messages
from .ratelimits import RateLimiter
from .rules import DiscordError, not_found
from .state import FakeChannel, FakeGuild, FakeMessage, RestCall, State, Upload

Handler = Callable[["Ctx"], Awaitable[tuple[int, Any]]]


@dataclass
class Route:
    method: str
    template: str  # below the API base, e.g. /channels/{channel_id}/messages
    handler: Handler
    auth: bool = True  # bot-token routes; interaction/webhook routes carry their token in the path

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


@dataclass
class Fault:
    """An injected failure: a 429 (per route or global) or an arbitrary error status, for the next `times` calls."""

    kind: str  # "429" or "error"
    route: str | None  # "POST /channels/{channel_id}/messages", "/channels/1/messages", ... or None for any
    times: int
    status: int = 429
    code: int = ErrorCode.GENERAL
    message: str = "You are being rate limited."
    retry_after: float = 0.05
    is_global: bool = False
    scope: str = "user"
    errors: dict[str, Any] | None = None
    hits: int = 0

    def matches(self, method: str, template: str | None, path: str) -> bool:
        if self.route is None:
            return True
        want_method, _, want_path = self.route.rpartition(" ")
        if want_method and want_method.upper() != method:
            return False
        return want_path in (template, path)


class Core:
    """Everything the REST handlers and the harness share."""

    def __init__(self, state: State, gateway: Gateway) -> None:
        self.state = state
        self.gateway = gateway
        self.messages = Messages(state, gateway)
        self.faults: list[Fault] = []
        self.ratelimits = RateLimiter(state.config)


@dataclass
class Ctx:
    request: web.Request
    core: Core
    call: RestCall
    body: Any = None
    uploads: list[Upload] = field(default_factory=list)

    @property
    def state(self) -> State:
        return self.core.state

    def param(self, name: str) -> str:
        return self.request.match_info[name]

    def int_param(self, name: str, code: int) -> int:
        try:
            return int(self.request.match_info[name])
        except ValueError:
            raise not_found(code) from None

    def json(self) -> dict[str, Any]:
        """The JSON object body (or payload_json); anything else is a form error like Discord's."""
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise DiscordError(400, ErrorCode.INVALID_FORM_BODY, errors={"_errors": [{"code": "DICT_TYPE_CONVERT"}]})
        return self.body

    def channel(self, name: str = "channel_id") -> FakeChannel:
        channel = self.state.channels.get(self.int_param(name, ErrorCode.UNKNOWN_CHANNEL))
        if channel is None:
            raise not_found(ErrorCode.UNKNOWN_CHANNEL)
        return channel

    def guild(self) -> FakeGuild:
        guild = self.state.guilds.get(self.int_param("guild_id", ErrorCode.UNKNOWN_GUILD))
        if guild is None:
            raise not_found(ErrorCode.UNKNOWN_GUILD)
        return guild

    def message(self, channel: FakeChannel, name: str = "message_id") -> FakeMessage:
        msg = self.state.messages.get(self.int_param(name, ErrorCode.UNKNOWN_MESSAGE))
        if msg is None or msg.deleted or msg.channel_id != channel.id or msg.ephemeral:
            raise not_found(ErrorCode.UNKNOWN_MESSAGE)
        return msg
