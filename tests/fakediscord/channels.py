"""Channel, message, thread and typing routes, with Discord's permission checks and limits."""

from __future__ import annotations

from typing import Any

from . import payloads
from .constants import ChannelType, ErrorCode, Perm
from .core import Ctx, Route
from .rules import DiscordError, FormErrors, require, send_permission, validate_message
from .state import FakeChannel, FakeMessage


def rest_message(ctx: Ctx, msg: FakeMessage) -> dict[str, Any]:
    """REST reads follow the application's message-content flag (not the gateway intents)."""
    visible = ctx.state.config.message_content_enabled or payloads.is_content_visible(ctx.state, msg, 0)
    return payloads.message(ctx.state, msg, hide_content=not visible)


def _text_like(channel: FakeChannel) -> bool:
    return (
        channel.type in (ChannelType.GUILD_TEXT, ChannelType.GUILD_ANNOUNCEMENT, ChannelType.DM, ChannelType.GROUP_DM)
        or channel.is_thread
    )


async def get_channel(ctx: Ctx) -> tuple[int, Any]:
    channel = ctx.channel()
    require(ctx.state, channel, ctx.state.bot.id)
    return 200, payloads.channel(ctx.state, channel)


async def list_messages(ctx: Ctx) -> tuple[int, Any]:
    channel = ctx.channel()
    perms = require(ctx.state, channel, ctx.state.bot.id)
    if not perms & Perm.READ_MESSAGE_HISTORY:
        return 200, []  # Discord returns no messages without Read Message History
    query = ctx.request.query
    limit = min(max(int(query.get("limit", 50)), 1), 100)
    msgs = ctx.state.visible_messages(channel.id)
    if "before" in query:
        msgs = [m for m in msgs if m.id < int(query["before"])]
    if "after" in query:
        msgs = [m for m in msgs if m.id > int(query["after"])]
        return 200, [rest_message(ctx, m) for m in reversed(msgs[:limit])]
    if "around" in query:
        around = int(query["around"])
        older = [m for m in msgs if m.id <= around][-((limit + 1) // 2) :]
        newer = [m for m in msgs if m.id > around][: limit // 2]
        msgs = older + newer
    return 200, [rest_message(ctx, m) for m in reversed(msgs[-limit:])]


async def get_message(ctx: Ctx) -> tuple[int, Any]:
    channel = ctx.channel()
    require(ctx.state, channel, ctx.state.bot.id, Perm.READ_MESSAGE_HISTORY)
    return 200, rest_message(ctx, ctx.message(channel))


async def post_message(ctx: Ctx) -> tuple[int, Any]:
    channel = ctx.channel()
    if not _text_like(channel):
        raise DiscordError(400, 50008, "Cannot send messages in a non-text channel")
    body = ctx.json()
    needed = [send_permission(channel)]
    if ctx.uploads:
        needed.append(Perm.ATTACH_FILES)
    if body.get("embeds"):
        needed.append(Perm.EMBED_LINKS)
    if body.get("message_reference"):
        needed.append(Perm.READ_MESSAGE_HISTORY)
    require(ctx.state, channel, ctx.state.bot.id, *needed)
    if channel.type == ChannelType.DM and not ctx.state.users[channel.recipients[0]].allows_dms:
        raise DiscordError(403, ErrorCode.CANNOT_MESSAGE_USER)
    if channel.is_thread and channel.locked:
        raise DiscordError(403, ErrorCode.MISSING_PERMISSIONS)
    validate_message(body, ctx.uploads, upload_limit=ctx.state.upload_limit(channel))
    channel.archived = False
    msg = await ctx.core.messages.create(channel, ctx.state.bot.id, body, ctx.uploads)
    return 200, rest_message(ctx, msg)


async def patch_message(ctx: Ctx) -> tuple[int, Any]:
    channel = ctx.channel()
    require(ctx.state, channel, ctx.state.bot.id)
    msg = ctx.message(channel)
    if msg.author_id != ctx.state.bot.id:
        raise DiscordError(403, ErrorCode.CANNOT_EDIT_OTHERS_MESSAGE)
    body = ctx.json()
    if ctx.uploads:
        require(ctx.state, channel, ctx.state.bot.id, Perm.ATTACH_FILES)
    validate_message(body, ctx.uploads, upload_limit=ctx.state.upload_limit(channel), require_body=False)
    await ctx.core.messages.edit(msg, body, ctx.uploads)
    return 200, rest_message(ctx, msg)


async def delete_message(ctx: Ctx) -> tuple[int, Any]:
    channel = ctx.channel()
    require(ctx.state, channel, ctx.state.bot.id)
    msg = ctx.message(channel)
    if msg.author_id != ctx.state.bot.id:
        require(ctx.state, channel, ctx.state.bot.id, Perm.MANAGE_MESSAGES)
    await ctx.core.messages.delete(msg)
    return 204, None


def _thread_body(ctx: Ctx) -> tuple[str, int]:
    body = ctx.json()
    errors = FormErrors()
    name = body.get("name")
    if not name:
        errors.add(("name",), "BASE_TYPE_REQUIRED", "This field is required")
    errors.max_length(("name",), name, 100)
    duration = int(body.get("auto_archive_duration") or 1440)
    if duration not in (60, 1440, 4320, 10080):
        errors.add(("auto_archive_duration",), "BASE_TYPE_CHOICES", "Value must be one of {60, 1440, 4320, 10080}.")
    errors.raise_if_any()
    return str(name), duration


def _thread_parent(channel: FakeChannel) -> None:
    if channel.type not in (ChannelType.GUILD_TEXT, ChannelType.GUILD_ANNOUNCEMENT):
        raise DiscordError(400, 50024, "Cannot execute action on this channel type")


async def thread_from_message(ctx: Ctx) -> tuple[int, Any]:
    channel = ctx.channel()
    _thread_parent(channel)
    require(ctx.state, channel, ctx.state.bot.id, Perm.CREATE_PUBLIC_THREADS, Perm.READ_MESSAGE_HISTORY)
    msg = ctx.message(channel)
    name, duration = _thread_body(ctx)
    thread = await ctx.core.messages.create_thread(
        channel, name, ctx.state.bot.id, from_message=msg, auto_archive_duration=duration
    )
    return 201, payloads.channel(ctx.state, thread)


async def thread_standalone(ctx: Ctx) -> tuple[int, Any]:
    channel = ctx.channel()
    _thread_parent(channel)
    thread_type = int(ctx.json().get("type") or ChannelType.PRIVATE_THREAD)
    if thread_type not in (ChannelType.PUBLIC_THREAD, ChannelType.PRIVATE_THREAD):
        raise DiscordError(
            400,
            ErrorCode.INVALID_FORM_BODY,
            errors={"type": {"_errors": [{"code": "BASE_TYPE_CHOICES", "message": "Value must be one of {11, 12}."}]}},
        )
    needed = Perm.CREATE_PUBLIC_THREADS if thread_type == ChannelType.PUBLIC_THREAD else Perm.CREATE_PRIVATE_THREADS
    require(ctx.state, channel, ctx.state.bot.id, needed)
    name, duration = _thread_body(ctx)
    thread = await ctx.core.messages.create_thread(
        channel, name, ctx.state.bot.id, thread_type=thread_type, auto_archive_duration=duration
    )
    return 201, payloads.channel(ctx.state, thread)


async def typing(ctx: Ctx) -> tuple[int, Any]:
    channel = ctx.channel()
    if channel.guild_id is not None:
        require(ctx.state, channel, ctx.state.bot.id, send_permission(channel))
    ctx.state.typing.append((channel.id, ctx.state.now()))
    return 204, None


async def join_thread(ctx: Ctx) -> tuple[int, Any]:
    channel = ctx.channel()
    if not channel.is_thread:
        raise DiscordError(400, 50024, "Cannot execute action on this channel type")
    if ctx.request.method == "PUT":
        require(ctx.state, channel, ctx.state.bot.id)
        channel.member_ids.add(ctx.state.bot.id)
    else:
        channel.member_ids.discard(ctx.state.bot.id)
    return 204, None


_MSG = "/channels/{channel_id}/messages/{message_id}"

ROUTES: list[Route] = [
    Route("GET", "/channels/{channel_id}", get_channel),
    Route("GET", "/channels/{channel_id}/messages", list_messages),
    Route("POST", "/channels/{channel_id}/messages", post_message),
    Route("GET", _MSG, get_message),
    Route("PATCH", _MSG, patch_message),
    Route("DELETE", _MSG, delete_message),
    Route("POST", _MSG + "/threads", thread_from_message),
    Route("POST", "/channels/{channel_id}/threads", thread_standalone),
    Route("POST", "/channels/{channel_id}/typing", typing),
    Route("PUT", "/channels/{channel_id}/thread-members/@me", join_thread),
    Route("DELETE", "/channels/{channel_id}/thread-members/@me", join_thread),
]
