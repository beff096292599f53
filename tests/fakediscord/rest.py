"""The REST API under /api/v{n}: request recording, auth, injected faults, rate-limit headers, unknown routes,
the attachment file server, and the login/guild/user/application-command routes."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from aiohttp import web

from . import channels, interactions, payloads
from .command_rules import validate_command
from .constants import ErrorCode
from .core import Core, Ctx, Fault, Route
from .messages import read_body
from .ratelimits import auth_kind
from .rules import DiscordError, not_found, unauthorized
from .state import RestCall

API_PREFIX = r"/api/v{version:\d+}"


def _json_response(status: int, body: Any, headers: dict[str, str]) -> web.Response:
    if body is None and status < 300:
        return web.Response(status=204, headers=headers)
    # discord.py only parses the body when Content-Type is exactly "application/json" (no charset).
    headers = {**headers, "Content-Type": "application/json"}
    return web.Response(status=status, body=json.dumps(body).encode(), headers=headers)


def rate_limited(retry_after: float, *, is_global: bool, scope: str, headers: dict[str, str]) -> web.Response:
    """Discord's 429: JSON body plus Retry-After and X-RateLimit-Scope (and -Global) headers."""
    body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
    out = {**headers, "Retry-After": str(max(1, math.ceil(retry_after))), "X-RateLimit-Scope": scope}
    out["Via"] = "1.1 google"
    if is_global:
        out["X-RateLimit-Global"] = "true"
        for key in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Reset-After"):
            out.pop(key, None)
    else:
        out["X-RateLimit-Remaining"] = "0"
        out["X-RateLimit-Reset-After"] = f"{retry_after:.3f}"
    return _json_response(429, body, out)


def _limited(call: RestCall, retry_after: float, scope: str, headers: dict[str, str]) -> web.Response:
    call.ratelimit_scope, call.retry_after = scope, retry_after
    return rate_limited(retry_after, is_global=scope == "global", scope=scope, headers=headers)


def _take_fault(core: Core, method: str, template: str | None, path: str) -> Fault | None:
    for fault in core.faults:
        if fault.hits < fault.times and fault.matches(method, template, path):
            fault.hits += 1
            return fault
    return None


def _authorized(core: Core, request: web.Request) -> bool:
    return request.headers.get("Authorization", "") == f"Bot {core.state.config.token}"


def make_handler(core: Core, route: Route) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = core.state
        path = "/" + request.path.split("/", 3)[3]
        call = RestCall(request.method, path, route.key, dict(request.query), started=state.now())
        call.auth = auth_kind(route.template, request.headers.get("Authorization", ""))
        state.rest_log.append(call)
        headers: dict[str, str] = {}
        try:
            ctx = Ctx(request, core, call)
            ctx.body, ctx.uploads = await read_body(request)
            call.json, call.files = ctx.body, ctx.uploads
            fault = _take_fault(core, request.method, route.template, path)
            verdict = core.ratelimits.check(route.method, route.template, dict(request.match_info), call.auth)
            call.bucket, call.major = verdict.shape.hash, verdict.shape.major
            headers = {**verdict.headers, "Via": "1.1 google"}  # discord.py treats a 429 without Via as a ban
            if fault is not None and fault.kind == "429":
                call.injected = "429-global" if fault.is_global else "429"
                call.ratelimit_scope, call.retry_after = fault.scope, fault.retry_after
                return _finish(
                    call,
                    rate_limited(fault.retry_after, is_global=fault.is_global, scope=fault.scope, headers=headers),
                    core,
                )
            if fault is not None:
                call.injected = "error"
                raise DiscordError(fault.status, fault.code, fault.message, fault.errors)
            if verdict.retry_after is not None and verdict.scope == "global":
                return _finish(call, _limited(call, verdict.retry_after, "global", {}), core)
            if route.auth and not _authorized(core, request):
                raise unauthorized()
            if verdict.retry_after is not None:
                return _finish(call, _limited(call, verdict.retry_after, "user", headers), core)
            status, body = await route.handler(ctx)
        except DiscordError as err:
            call.code = err.code
            return _finish(call, _json_response(err.status, err.body(), {**headers, **err.headers}), core)
        return _finish(call, _json_response(status, body, headers), core)

    return handle


def _finish(call: RestCall, response: web.Response, core: Core) -> web.Response:
    call.status = response.status
    if response.body is not None and response.status != 204:
        assert isinstance(response.body, bytes)
        call.response = json.loads(response.body)
        if response.status >= 400 and isinstance(call.response, dict):
            call.code = call.response.get("code", call.code)
    call.finished = core.state.now()
    core.state.changed()
    return response


def make_unknown_handler(core: Core) -> Any:
    async def unknown(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/api/"):
            parts = path.split("/", 3)
            path = "/" + parts[3] if len(parts) > 3 else "/"
        call = RestCall(request.method, path, None, dict(request.query), started=core.state.now())
        call.auth = auth_kind("", request.headers.get("Authorization", ""))
        core.state.rest_log.append(call)
        try:
            call.json, call.files = await read_body(request)
        except DiscordError:
            pass
        call.code = ErrorCode.GENERAL
        return _finish(call, _json_response(404, {"message": "404: Not Found", "code": 0}, {}), core)

    return unknown


def make_file_handler(core: Core) -> Any:
    """Serves hosted attachments (and hostile variants: redirects, lying headers, odd statuses, delays)."""

    async def serve(request: web.Request) -> web.StreamResponse:
        try:
            att = core.state.files[int(request.match_info["attachment_id"])]
        except (KeyError, ValueError):
            return web.Response(status=404, text="Not Found")
        if att.delay:
            await asyncio.sleep(att.delay)
        if att.redirect_to is not None:
            raise web.HTTPFound(att.redirect_to, headers=att.extra_headers)
        headers = {"Content-Type": att.content_type or "application/octet-stream", **att.extra_headers}
        return web.Response(status=att.status, body=att.data, headers=headers)

    return serve


# --- login, users, applications, guilds -------------------------------------------------------------


async def get_gateway(ctx: Ctx) -> tuple[int, Any]:
    return 200, {"url": ctx.core.gateway.url}


async def get_gateway_bot(ctx: Ctx) -> tuple[int, Any]:
    limit = {"total": 1000, "remaining": 999, "reset_after": 14400000, "max_concurrency": 1}
    shards = ctx.state.config.recommended_shards
    return 200, {"url": ctx.core.gateway.url, "shards": shards, "session_start_limit": limit}


async def get_me(ctx: Ctx) -> tuple[int, Any]:
    return 200, payloads.bot_user(ctx.state.bot)


async def get_user(ctx: Ctx) -> tuple[int, Any]:
    found = ctx.state.users.get(ctx.int_param("user_id", ErrorCode.UNKNOWN_USER))
    if found is None:
        raise not_found(ErrorCode.UNKNOWN_USER)
    return 200, payloads.user(found)


async def create_dm(ctx: Ctx) -> tuple[int, Any]:
    found = ctx.state.users.get(int(ctx.json().get("recipient_id") or 0))
    if found is None:
        raise DiscordError(
            400,
            ErrorCode.INVALID_FORM_BODY,
            errors={
                "recipient_id": {"_errors": [{"code": "NUMBER_TYPE_COERCE", "message": "Value is not snowflake."}]}
            },
        )
    return 200, payloads.channel(ctx.state, ctx.state.dm_channel(found))


async def get_application(ctx: Ctx) -> tuple[int, Any]:
    return 200, payloads.application(ctx.state)


async def get_guild(ctx: Ctx) -> tuple[int, Any]:
    guild = ctx.guild()
    if ctx.state.bot.id not in guild.members:
        raise not_found(ErrorCode.UNKNOWN_GUILD)
    body = payloads.guild(ctx.state, guild)
    if ctx.request.query.get("with_counts") in ("1", "true", "True"):
        body.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
    return 200, body


async def get_guild_channels(ctx: Ctx) -> tuple[int, Any]:
    guild = ctx.guild()
    return 200, [payloads.channel(ctx.state, ctx.state.channels[c]) for c in guild.channel_ids]


async def get_guild_roles(ctx: Ctx) -> tuple[int, Any]:
    return 200, [payloads.role(r) for r in ctx.guild().roles.values()]


async def get_member(ctx: Ctx) -> tuple[int, Any]:
    guild = ctx.guild()
    found = guild.members.get(ctx.int_param("user_id", ErrorCode.UNKNOWN_MEMBER))
    if found is None:
        raise not_found(ErrorCode.UNKNOWN_MEMBER)
    return 200, payloads.member(found)


async def get_active_threads(ctx: Ctx) -> tuple[int, Any]:
    guild = ctx.guild()
    threads = [t for t in ctx.state.threads() if t.guild_id == guild.id and not t.archived]
    members = [payloads.thread_member(t, ctx.state.bot.id) for t in threads if ctx.state.bot.id in t.member_ids]
    return 200, {"threads": [payloads.channel(ctx.state, t) for t in threads], "members": members}


# --- application commands ---------------------------------------------------------------------------


def _commands(ctx: Ctx) -> tuple[dict[int, dict[str, Any]], int | None]:
    if int(ctx.param("application_id")) != ctx.state.application_id:
        raise DiscordError(403, ErrorCode.MISSING_ACCESS)
    if "guild_id" not in ctx.request.match_info:
        return ctx.state.global_commands, None
    guild = ctx.guild()
    return ctx.state.guild_commands.setdefault(guild.id, {}), guild.id


def _upsert(ctx: Ctx, store: dict[int, dict[str, Any]], body: dict[str, Any], guild_id: int | None) -> dict[str, Any]:
    validate_command(body)
    same = [c for c in store.values() if c["name"] == body.get("name") and c["type"] == body.get("type", 1)]
    cid = int(same[0]["id"]) if same else ctx.state.snowflake()
    store[cid] = payloads.command(ctx.state, body, cid, guild_id)
    return store[cid]


async def put_commands(ctx: Ctx) -> tuple[int, Any]:
    store, guild_id = _commands(ctx)
    for body in ctx.body or []:
        validate_command(body)  # all or nothing, as Discord: one bad command refuses the whole overwrite
    old = dict(store)
    store.clear()
    out = []
    for body in ctx.body or []:
        same = [c for c in old.values() if c["name"] == body.get("name") and c["type"] == body.get("type", 1)]
        cid = int(same[0]["id"]) if same else ctx.state.snowflake()
        store[cid] = payloads.command(ctx.state, body, cid, guild_id)
        out.append(store[cid])
    return 200, out


async def list_commands(ctx: Ctx) -> tuple[int, Any]:
    store, _ = _commands(ctx)
    return 200, list(store.values())


async def post_command(ctx: Ctx) -> tuple[int, Any]:
    store, guild_id = _commands(ctx)
    return 201, _upsert(ctx, store, ctx.json(), guild_id)


def _command(ctx: Ctx) -> tuple[dict[int, dict[str, Any]], int]:
    store, _ = _commands(ctx)
    cid = ctx.int_param("command_id", ErrorCode.UNKNOWN_APPLICATION_COMMAND)
    if cid not in store:
        raise not_found(ErrorCode.UNKNOWN_APPLICATION_COMMAND)
    return store, cid


async def get_command(ctx: Ctx) -> tuple[int, Any]:
    store, cid = _command(ctx)
    return 200, store[cid]


async def patch_command(ctx: Ctx) -> tuple[int, Any]:
    store, cid = _command(ctx)
    store[cid] = {**store[cid], **ctx.json(), "id": str(cid)}
    return 200, store[cid]


async def delete_command(ctx: Ctx) -> tuple[int, Any]:
    store, cid = _command(ctx)
    del store[cid]
    return 204, None


_CMDS = "/applications/{application_id}/commands"
_GCMDS = "/applications/{application_id}/guilds/{guild_id}/commands"

ROUTES: list[Route] = [
    Route("GET", "/gateway", get_gateway, auth=False),
    Route("GET", "/gateway/bot", get_gateway_bot),
    Route("GET", "/users/@me", get_me),
    Route("POST", "/users/@me/channels", create_dm),
    Route("GET", "/users/{user_id}", get_user),
    Route("GET", "/oauth2/applications/@me", get_application),
    Route("GET", "/applications/@me", get_application),
    *(
        Route(m, t, h)
        for t in (_CMDS, _GCMDS)
        for m, h in (("GET", list_commands), ("PUT", put_commands), ("POST", post_command))
    ),
    *(
        Route(m, t + "/{command_id}", h)
        for t in (_CMDS, _GCMDS)
        for m, h in (("GET", get_command), ("PATCH", patch_command), ("DELETE", delete_command))
    ),
    Route("GET", "/guilds/{guild_id}", get_guild),
    Route("GET", "/guilds/{guild_id}/channels", get_guild_channels),
    Route("GET", "/guilds/{guild_id}/roles", get_guild_roles),
    Route("GET", "/guilds/{guild_id}/members/{user_id}", get_member),
    Route("GET", "/guilds/{guild_id}/threads/active", get_active_threads),
]


def build_app(core: Core) -> web.Application:
    """One aiohttp app serving REST, the gateway websocket and the attachment file server."""
    app = web.Application(client_max_size=512 * 1024 * 1024)
    for route in [*ROUTES, *channels.ROUTES, *interactions.ROUTES]:
        app.router.add_route(route.method, API_PREFIX + route.template, make_handler(core, route))
    app.router.add_get("/gateway", core.gateway.handle)
    app.router.add_get("/resume", core.gateway.handle)
    serve = make_file_handler(core)
    app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", serve)
    app.router.add_get("/media/{channel_id}/{attachment_id}/{filename}", serve)
    app.router.add_route("*", "/{tail:.*}", make_unknown_handler(core))
    return app
