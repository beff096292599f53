"""`FakeDiscord`: the async test harness. Start it, build a world, point the real bot at `api_base`, then act
as users (slash commands, clicks, modals, context menus, messages) and assert on what the bot did."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from . import payloads
from .actions import UserActions
from .constants import (
    DEFAULT_EVERYONE_PERMISSIONS,
    ERROR_MESSAGES,
    ChannelType,
    ErrorCode,
    Intent,
    Perm,
)
from .core import Core, Fault
from .gateway import Gateway
from .handles import InteractionHandle
from .rest import build_app
from .state import (
    FakeChannel,
    FakeConfig,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    GatewayRecord,
    Overwrite,
    RestCall,
    State,
)

T = TypeVar("T")
DEFAULT_BOT_PERMISSIONS = DEFAULT_EVERYONE_PERMISSIONS | Perm.MANAGE_MESSAGES | Perm.MANAGE_THREADS


class FakeDiscord(UserActions):
    """A protocol-level fake Discord on 127.0.0.1 (REST + gateway + file server on one random port)."""

    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        interaction_ack_timeout: float = 3.0,
        interaction_token_ttl: float = 15 * 60.0,
        heartbeat_interval: float = 41.25,
        rate_limit: int = 50,
        rate_limit_window: float = 1.0,
        enforce_rate_limits: bool = True,
        discord_limits: bool = True,
        message_window: float = 5.0,
        webhook_window: float = 2.0,
        global_rate_limit: int = 50,
        privileged_intents: bool = True,
        message_content_enabled: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """`discord_limits=True` enforces Discord's own rate limits (per-channel message buckets, webhook
        buckets, the global limit; see ratelimits.py); False keeps one generic `rate_limit` bucket per route and
        major parameter. `message_window` / `webhook_window` shrink those windows for fast tests (the counts stay
        Discord's); every other knob is on `fake.config`."""
        config = FakeConfig(
            token=token,
            interaction_ack_timeout=interaction_ack_timeout,
            interaction_token_ttl=interaction_token_ttl,
            heartbeat_interval_ms=int(heartbeat_interval * 1000),
            rate_limit=rate_limit,
            rate_limit_window=rate_limit_window,
            enforce_rate_limits=enforce_rate_limits,
            discord_limits=discord_limits,
            message_window=message_window,
            webhook_window=webhook_window,
            global_rate_limit=global_rate_limit,
            privileged_intents=privileged_intents,
            message_content_enabled=message_content_enabled,
        )
        self.state = State(config)
        self.gateway = Gateway(self.state)
        self.core = Core(self.state, self.gateway)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        self._runner = web.AppRunner(build_app(self.core), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.state.base_url = f"http://{self._host}:{self._port}"
        self.gateway.url = f"ws://{self._host}:{self._port}/gateway"
        self.gateway.resume_url = f"ws://{self._host}:{self._port}/resume"
        return self

    async def stop(self) -> None:
        await self.core.messages.flush()
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return self.state.base_url

    @property
    def api_base(self) -> str:
        """Give this to `cogs.endpoints.use_api_base`."""
        return f"{self.state.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.gateway.url

    @property
    def token(self) -> str:
        return self.state.config.token

    @property
    def config(self) -> FakeConfig:
        """Mutable at run time, e.g. `fake.config.interaction_ack_timeout = 0.2`."""
        return self.state.config

    @property
    def bot(self) -> FakeUser:
        return self.state.bot

    @property
    def application_id(self) -> int:
        return self.state.application_id

    # --- world building (dispatches the matching gateway events when the bot is connected) -----------

    def add_user(self, username: str, *, bot: bool = False, global_name: str | None = None) -> FakeUser:
        return self.state.add_user(username, bot=bot, global_name=global_name)

    async def add_guild(
        self,
        name: str = "Test Guild",
        *,
        premium_tier: int = 0,
        upload_limit: int | None = None,
        owner: FakeUser | None = None,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
        with_bot: bool = True,
    ) -> FakeGuild:
        """A guild with @everyone, a managed bot role holding `bot_permissions`, and the bot as member.
        `with_bot=False`: a server that never added the bot (members reach it only through a user install;
        the bot gets no GUILD_CREATE and 403 Missing Access on anything there)."""
        guild = self.state.add_guild(name, owner=owner, premium_tier=premium_tier, upload_limit=upload_limit)
        if not with_bot:
            owner_user = self.state.users[guild.owner_id]
            guild.members.setdefault(owner_user.id, FakeMember(owner_user, guild.id))
            return guild
        bot_role = FakeRole(self.state.snowflake(), guild.id, self.bot.username, bot_permissions, 1, managed=True)
        guild.roles[bot_role.id] = bot_role
        guild.members[self.bot.id] = FakeMember(self.bot, guild.id, [bot_role.id])
        owner_user = self.state.users[guild.owner_id]
        guild.members.setdefault(owner_user.id, FakeMember(owner_user, guild.id))
        await self._guild_event("GUILD_CREATE", guild)
        return guild

    def bot_role(self, guild: FakeGuild) -> FakeRole:
        return next(r for r in guild.roles.values() if r.managed)

    async def add_role(self, guild: FakeGuild, name: str, permissions: int = 0, *, position: int = 1) -> FakeRole:
        role = FakeRole(self.state.snowflake(), guild.id, name, permissions, position)
        guild.roles[role.id] = role
        d = {"guild_id": str(guild.id), "role": payloads.role(role)}
        await self.gateway.dispatch_simple("GUILD_ROLE_CREATE", d, Intent.GUILDS, guild.id)
        return role

    async def set_role_permissions(self, role: FakeRole, permissions: int) -> None:
        role.permissions = permissions
        d = {"guild_id": str(role.guild_id), "role": payloads.role(role)}
        await self.gateway.dispatch_simple("GUILD_ROLE_UPDATE", d, Intent.GUILDS, role.guild_id)

    async def add_member(
        self, guild: FakeGuild, user: FakeUser, *, roles: list[FakeRole] | None = None, nick: str | None = None
    ) -> FakeMember:
        mem = FakeMember(user, guild.id, [r.id for r in roles or []], nick)
        guild.members[user.id] = mem
        d = {**payloads.member(mem), "guild_id": str(guild.id)}
        await self.gateway.dispatch_simple("GUILD_MEMBER_ADD", d, Intent.GUILD_MEMBERS, guild.id)
        return mem

    async def add_channel(
        self,
        guild: FakeGuild,
        name: str = "general",
        *,
        type: int = ChannelType.GUILD_TEXT,
        overwrites: list[Overwrite] | None = None,
        topic: str | None = None,
        nsfw: bool = False,
    ) -> FakeChannel:
        channel = FakeChannel(
            self.state.snowflake(),
            type,
            name,
            guild.id,
            position=len(guild.channel_ids),
            overwrites=list(overwrites or []),
            topic=topic,
            nsfw=nsfw,
        )
        self.state.add_channel(channel)
        await self.gateway.dispatch_simple(
            "CHANNEL_CREATE", payloads.channel(self.state, channel), Intent.GUILDS, guild.id
        )
        return channel

    async def set_overwrite(
        self, channel: FakeChannel, target: FakeRole | FakeUser | FakeGuild, *, allow: int = 0, deny: int = 0
    ) -> None:
        """Replace the channel's overwrite for a role, a member, or @everyone (pass the guild)."""
        kind = 1 if isinstance(target, FakeUser) else 0
        channel.overwrites = [o for o in channel.overwrites if o.id != target.id]
        channel.overwrites.append(Overwrite(target.id, kind, allow, deny))
        await self.gateway.dispatch_simple(
            "CHANNEL_UPDATE", payloads.channel(self.state, channel), Intent.GUILDS, channel.guild_id
        )

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The user's DM with the bot."""
        return self.state.dm_channel(user)

    def private_channel(self, *users: FakeUser) -> FakeChannel:
        """A DM between two users, or a group DM for three or more: the bot is never a recipient."""
        return self.state.private_channel(list(users))

    def install_for_user(self, user: FakeUser) -> None:
        """The user adds the app to their account (Installation: User Install): global commands with
        integration_types 1 follow them into DMs, group DMs and servers without the bot."""
        self.state.user_installs.add(user.id)

    def advance_clock(self, seconds: float) -> None:
        """Let `seconds` pass for the fake at once: interaction tokens (15 min) and ack windows age."""
        self.state.clock_offset += seconds
        self.state.changed()

    async def _guild_event(self, event: str, guild: FakeGuild) -> None:
        def build(session: Any) -> dict[str, Any] | None:
            if not session.wants(Intent.GUILDS):
                return None
            return payloads.guild(self.state, guild, intents=session.intents, create=True)

        await self.gateway.dispatch(event, build, guild_id=guild.id)

    # --- reading --------------------------------------------------------------------------------------

    def read_channel(self, channel: FakeChannel, *, user: FakeUser | None = None) -> list[FakeMessage]:
        """Messages oldest first as `user` would see them (ephemerals only for their user; nothing without
        View Channel). With no user: every public message."""
        if (
            user is not None
            and channel.guild_id is not None
            and not self.permissions(channel, user) & Perm.VIEW_CHANNEL
        ):
            return []
        return self.state.visible_messages(channel.id, user.id if user else None)

    def bot_messages(self, channel: FakeChannel) -> list[FakeMessage]:
        return [m for m in self.read_channel(channel) if m.author_id == self.bot.id]

    def threads(self, channel: FakeChannel | None = None) -> list[FakeChannel]:
        return self.state.threads(channel.id if channel else None)

    def message(self, message_id: int) -> FakeMessage:
        return self.state.messages[message_id]

    def commands(self, guild: FakeGuild | None = None) -> list[dict[str, Any]]:
        """What the bot synced: per guild, or global when `guild` is None."""
        store = self.state.guild_commands.get(guild.id, {}) if guild else self.state.global_commands
        return list(store.values())

    @property
    def interactions(self) -> list[InteractionHandle]:
        return [InteractionHandle(self, r) for r in self.state.interactions.values()]

    # --- waiting --------------------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 5.0) -> T:
        """Wait until predicate() is truthy (re-checked on every fake state change); returns its value."""
        return await self.state.wait_for(predicate, timeout)

    async def wait_until_connected(self, timeout: float = 5.0) -> None:
        """A session is live and has been sent READY and every GUILD_CREATE."""

        def ready() -> bool:
            sessions = self.gateway.connected_sessions()
            sent = {r.d["id"] for r in self.dispatches("GUILD_CREATE")}
            return bool(sessions) and all(str(g.id) in sent for g in self.state.guilds_with_bot())

        await self.wait_for(ready, timeout)

    async def wait_for_message(
        self, channel: FakeChannel, predicate: Callable[[FakeMessage], bool] | None = None, *, timeout: float = 5.0
    ) -> FakeMessage:
        def find() -> FakeMessage | None:
            return next((m for m in self.read_channel(channel) if predicate is None or predicate(m)), None)

        return await self.wait_for(find, timeout)

    # --- faults ---------------------------------------------------------------------------------------

    def inject_rate_limit(
        self, route: str | None = None, *, times: int = 1, retry_after: float = 0.05, global_: bool = False
    ) -> Fault:
        """Answer the next `times` matching calls with 429. `route` is "METHOD /template/{param}", a concrete
        path, or None for any route; `global_` sends a global rate limit."""
        fault = Fault(
            "429", route, times, retry_after=retry_after, is_global=global_, scope="global" if global_ else "user"
        )
        self.core.faults.append(fault)
        return fault

    def inject_error(
        self,
        route: str | None,
        *,
        status: int,
        code: int = ErrorCode.GENERAL,
        message: str | None = None,
        times: int = 1,
        errors: dict[str, Any] | None = None,
    ) -> Fault:
        """Answer the next `times` matching calls with an error (e.g. 403/50013, 500, 503)."""
        text = message or ERROR_MESSAGES.get(code) or f"{status}: {HTTPStatus(status).phrase}"
        fault = Fault("error", route, times, status=status, code=code, message=text, errors=errors)
        self.core.faults.append(fault)
        return fault

    def reset_rate_limits(self) -> None:
        """Forget every bucket and the global window, as if no request had been made for a long while."""
        self.core.ratelimits.reset()

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close the bot's websocket with a resumable code; discord.py reconnects and RESUMEs."""
        await self.gateway.drop(code)

    def gateway_outage(self, code: int = 4000) -> contextlib.AbstractAsyncContextManager[None]:
        """`async with fake.gateway_outage(): ...` drops the socket and holds reconnects until the block ends,
        so dispatches made inside are buffered and replayed on RESUME."""
        return self.gateway.outage(code)

    async def invalidate_session(self, resumable: bool = False) -> None:
        await self.gateway.invalidate(resumable)

    async def request_reconnect(self) -> None:
        await self.gateway.request_reconnect()

    # --- logs -----------------------------------------------------------------------------------------

    @property
    def rest_log(self) -> list[RestCall]:
        return self.state.rest_log

    @property
    def gateway_log(self) -> list[GatewayRecord]:
        return self.state.gateway_log

    def calls(self, route: str | None = None, *, status: int | None = None) -> list[RestCall]:
        """REST calls whose template key ("POST /channels/{channel_id}/messages") or "METHOD path" match."""
        out = []
        for call in self.state.rest_log:
            if route is not None and route not in (call.route, f"{call.method} {call.path}", call.path):
                continue
            if status is not None and call.status != status:
                continue
            out.append(call)
        return out

    def rate_limited(self, route: str | None = None, *, scope: str | None = None) -> list[RestCall]:
        """The 429s answered (injected ones too), oldest first. Each call carries `ratelimit_scope` ("user",
        "global", ...), `bucket` (the X-RateLimit-Bucket hash), `major` and `retry_after`."""
        return [c for c in self.calls(route, status=429) if scope is None or c.ratelimit_scope == scope]

    def call_counts(
        self, by: str = "route", *, route: str | None = None, auth: str | None = None, status: int | None = None
    ) -> Counter[str]:
        """Count REST calls by "route" (template key; unknown routes as "METHOD path"), "auth" ("bot",
        "interaction", "webhook", "none"), "bucket" (hash) or "major"; filtered like `calls()` and by auth
        kind. E.g. `fake.call_counts("auth")["bot"]`, `fake.call_counts(auth="bot")["POST /channels/..."]`."""
        counts: Counter[str] = Counter()
        for call in self.calls(route, status=status):
            if auth is not None and call.auth != auth:
                continue
            if by == "route":
                counts[call.route or f"{call.method} {call.path}"] += 1
            elif by in ("auth", "bucket", "major"):
                counts[str(getattr(call, by))] += 1
            else:
                raise ValueError(f"cannot count by {by!r}; use route, auth, bucket or major")
        return counts

    @property
    def unknown_routes(self) -> list[RestCall]:
        return [c for c in self.state.rest_log if c.route is None]

    def dispatches(self, event: str | None = None) -> list[GatewayRecord]:
        return [r for r in self.state.gateway_log if r.direction == "send" and r.op == 0 and event in (None, r.t)]

    def received_ops(self, op: int | None = None) -> list[GatewayRecord]:
        return [r for r in self.state.gateway_log if r.direction == "recv" and op in (None, r.op)]

    async def fetch(self, url: str) -> bytes:
        """Download a URL the fake serves (e.g. an attachment the bot uploaded)."""
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            resp.raise_for_status()
            return await resp.read()
