"""Interactions: building and dispatching INTERACTION_CREATE, the callback endpoint (3 s ack window, single
ack, `?with_response=true` body), and the followup/@original webhook routes (15 min token lifetime)."""

from __future__ import annotations

from typing import Any

from . import payloads
from .constants import (
    CallbackType,
    ChannelType,
    CommandType,
    ComponentType,
    ErrorCode,
    InteractionType,
    Limits,
    MessageFlag,
    MessageType,
)
from .core import Core, Ctx, Route
from .rules import DiscordError, FormErrors, channel_permissions, not_found, validate_message
from .state import CallbackAttempt, FakeChannel, FakeMessage, FakeUser, InteractionRecord, State

ALLOWED_CALLBACKS: dict[int, set[int]] = {
    InteractionType.APPLICATION_COMMAND: {4, 5, 9, 12},
    InteractionType.MESSAGE_COMPONENT: {4, 5, 6, 7, 9, 12},
    InteractionType.MODAL_SUBMIT: {4, 5, 6, 7},
    InteractionType.AUTOCOMPLETE: {8},
}


async def create_interaction(
    core: Core,
    *,
    kind: int,
    user: FakeUser,
    channel: FakeChannel,
    data: dict[str, Any],
    message: FakeMessage | None = None,
) -> InteractionRecord:
    """Build an INTERACTION_CREATE payload as Discord does, record it, and dispatch it over the gateway."""
    state = core.state
    iid, token = state.snowflake(), state.token()
    guild = state.guild_of(channel)
    payload: dict[str, Any] = {
        "id": str(iid),
        "application_id": str(state.application_id),
        "type": kind,
        "data": data,
        "token": token,
        "version": 1,
        "locale": user.locale,
        "entitlements": [],
        "entitlement_sku_ids": [],
        "attachment_size_limit": state.upload_limit(channel),
        "app_permissions": payloads.app_permissions(state, channel),
        "channel": payloads.channel(state, channel),
        "channel_id": str(channel.id),
    }
    if guild is not None:
        mem = guild.members.get(user.id)
        if mem is None:
            raise ValueError(f"{user.username} is not a member of guild {guild.name}")
        perms = channel_permissions(state, channel, user.id)
        payload.update(
            guild_id=str(guild.id),
            guild={"id": str(guild.id), "locale": guild.locale, "features": []},
            guild_locale=guild.locale,
            member={**payloads.member(mem), "permissions": str(perms)},
        )
    else:
        payload.update(user=payloads.user(user))
    payload.update(authorizing_integration_owners=integration_owners(state, user, channel), context=context_of(channel))
    if message is not None:
        payload["message"] = payloads.message(state, message)
    rec = InteractionRecord(
        id=iid,
        token=token,
        type=kind,
        payload=payload,
        user_id=user.id,
        channel_id=channel.id,
        guild_id=guild.id if guild else None,
        created_at=state.now(),
        source_message_id=message.id if message is not None else None,
        original_message_id=message.id if message is not None else None,
    )
    state.interactions[iid] = rec
    state.interactions_by_token[token] = rec

    def sent(at: float) -> None:
        if rec.dispatched_at is None:
            rec.dispatched_at = at

    await core.gateway.dispatch("INTERACTION_CREATE", lambda _s: payload, guild_id=rec.guild_id, on_sent=sent)
    state.changed()
    return rec


def context_of(channel: FakeChannel) -> int:
    """0 guild, 1 the bot's DM, 2 any other private channel (a DM between others, a group DM)."""
    if channel.guild_id is not None:
        return 0
    return 1 if channel.type == ChannelType.DM and len(channel.recipients) == 1 else 2


def integration_owners(state: State, user: FakeUser, channel: FakeChannel) -> dict[str, str]:
    """Discord's `authorizing_integration_owners`: "0" the guild whose install applies ("0" in the bot's DM),
    "1" the user, when they installed the app to their account."""
    owners: dict[str, str] = {}
    if state.bot_in(channel):
        owners["0"] = str(channel.guild_id or 0)
    if user.id in state.user_installs:
        owners["1"] = str(user.id)
    if not owners:
        raise ValueError(f"{user.username} cannot reach the app in channel {channel.id}: nobody installed it there")
    return owners


def user_install_only(rec: InteractionRecord) -> bool:
    """Discord's follow-up cap applies to interactions that only a user's install authorizes."""
    return "0" not in (rec.payload.get("authorizing_integration_owners") or {})


def _response_type(rec: InteractionRecord) -> int:
    if rec.type == InteractionType.APPLICATION_COMMAND:
        kind = (rec.payload.get("data") or {}).get("type", CommandType.CHAT_INPUT)
        return MessageType.CHAT_INPUT_COMMAND if kind == CommandType.CHAT_INPUT else MessageType.CONTEXT_MENU_COMMAND
    return MessageType.DEFAULT


def _validate_modal(data: dict[str, Any]) -> None:
    errors = FormErrors()
    errors.max_length(("custom_id",), data.get("custom_id"), 100)
    errors.max_length(("title",), data.get("title"), 45)
    comps = data.get("components") or []
    if not comps:
        errors.add(("components",), "BASE_TYPE_MIN_LENGTH", "Must be 1 or more in length.")
    errors.max_length(("components",), comps, 5)
    for i, comp in enumerate(comps):
        if not isinstance(comp, dict):
            continue
        inner = comp.get("component") if comp.get("type") == ComponentType.LABEL else None
        if comp.get("type") == ComponentType.LABEL:
            errors.max_length(("components", i, "label"), comp.get("label"), 45)
            errors.max_length(("components", i, "description"), comp.get("description"), 100)
        if isinstance(inner, dict) and inner.get("type") == ComponentType.FILE_UPLOAD:
            low, high = inner.get("min_values"), inner.get("max_values")
            if low is not None and not 0 <= low <= 10:
                errors.add(("components", i, "component", "min_values"), "NUMBER_TYPE_MAX", "Must be 0-10.")
            if high is not None and not 1 <= high <= 10:
                errors.add(("components", i, "component", "max_values"), "NUMBER_TYPE_MAX", "Must be 1-10.")
        rows = comp.get("components") if comp.get("type") == ComponentType.ACTION_ROW else []
        for j, item in enumerate(rows or []):
            if isinstance(item, dict) and item.get("type") == ComponentType.FILE_UPLOAD:
                # Discord takes a file upload only inside a Label
                where = ("components", i, "components", j)
                errors.add(where, "UNION_TYPE_CHOICES", 'Value of field "type" must be one of (4,).')
    errors.raise_if_any()


async def callback(ctx: Ctx) -> tuple[int, Any]:
    state, core = ctx.state, ctx.core
    rec = state.interactions.get(ctx.int_param("interaction_id", ErrorCode.UNKNOWN_INTERACTION))
    if rec is None or rec.token != ctx.param("token"):
        raise not_found(ErrorCode.UNKNOWN_INTERACTION)
    body = ctx.json()
    ctype = body.get("type")
    data = body.get("data") or {}
    now = state.now()
    attempt = CallbackAttempt(ctype, data, ctx.uploads, 0, None, now)
    rec.attempts.append(attempt)
    try:
        if rec.callback_type is not None:
            raise DiscordError(400, ErrorCode.ALREADY_ACKNOWLEDGED)
        if now - (rec.dispatched_at or rec.created_at) > state.config.interaction_ack_timeout:
            raise not_found(ErrorCode.UNKNOWN_INTERACTION)
        allowed = ALLOWED_CALLBACKS.get(rec.type, set())
        if rec.type == InteractionType.MODAL_SUBMIT and rec.source_message_id is None:
            allowed = {4, 5, 6}  # UPDATE_MESSAGE needs a message to update
        if ctype not in allowed:
            choices = ", ".join(str(c) for c in sorted(allowed))
            errors = {
                "type": {"_errors": [{"code": "BASE_TYPE_CHOICES", "message": f"Value must be one of ({choices})."}]}
            }
            raise DiscordError(400, ErrorCode.INVALID_FORM_BODY, errors=errors)
        channel = state.channels[rec.channel_id]
        resource: dict[str, Any] | None = None
        if ctype in (CallbackType.CHANNEL_MESSAGE_WITH_SOURCE, CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE):
            ephemeral = int(data.get("flags") or 0) & MessageFlag.EPHEMERAL
            if ctype == CallbackType.CHANNEL_MESSAGE_WITH_SOURCE:
                validate_message(data, ctx.uploads, upload_limit=state.upload_limit(channel))
                content, extra = data, ephemeral
            else:
                content, extra = {}, ephemeral | MessageFlag.LOADING
            msg = await core.messages.create(
                channel,
                state.bot.id,
                content,
                ctx.uploads,
                msg_type=_response_type(rec),
                extra_flags=extra,
                interaction_id=rec.id,
                interaction_user_id=rec.user_id,
                dispatch=False,
            )
            core.messages.dispatch_soon("MESSAGE_CREATE", msg)
            rec.original_message_id = msg.id
            resource = {"type": ctype, "message": payloads.message(state, msg)}
        elif ctype == CallbackType.UPDATE_MESSAGE:
            validate_message(data, ctx.uploads, upload_limit=state.upload_limit(channel), require_body=False)
            msg = state.messages[rec.source_message_id or 0]
            await core.messages.edit(msg, data, ctx.uploads)
            resource = {"type": ctype, "message": payloads.message(state, msg)}
        elif ctype == CallbackType.MODAL:
            _validate_modal(data)
            rec.modal = data
        elif ctype == CallbackType.AUTOCOMPLETE_RESULT:
            rec.autocomplete_choices = list(data.get("choices") or [])
        rec.callback_type, rec.callback_at, rec.callback_data = ctype, now, data
        attempt.status = 200
    except DiscordError as err:
        attempt.status, attempt.code = err.status, err.code
        raise
    finally:
        state.changed()
    if ctx.request.query.get("with_response") not in ("1", "true", "True"):
        attempt.status = 204
        return 204, None
    original = state.messages.get(rec.original_message_id or 0)
    interaction: dict[str, Any] = {"id": str(rec.id), "type": rec.type, "channel_id": str(rec.channel_id)}
    if rec.guild_id is not None:
        interaction["guild_id"] = str(rec.guild_id)
    if resource is not None and original is not None:
        interaction.update(
            response_message_id=str(original.id),
            response_message_loading=original.loading,
            response_message_ephemeral=original.ephemeral,
        )
    out: dict[str, Any] = {"interaction": interaction}
    if resource is not None:
        out["resource"] = resource
    return 200, out


# --- webhooks (followups and @original) ---------------------------------------------------------------


def _webhook_interaction(ctx: Ctx) -> InteractionRecord:
    state = ctx.state
    rec = state.interactions_by_token.get(ctx.param("webhook_token"))
    if rec is None:
        raise DiscordError(401, ErrorCode.INVALID_WEBHOOK_TOKEN)
    if ctx.param("webhook_id") != str(state.application_id):
        raise not_found(ErrorCode.UNKNOWN_WEBHOOK)
    if state.now() - rec.created_at > state.config.interaction_token_ttl:
        raise DiscordError(401, ErrorCode.INVALID_WEBHOOK_TOKEN)
    return rec


def _webhook_message(ctx: Ctx, rec: InteractionRecord) -> FakeMessage:
    ident = ctx.param("message_id")
    mid = rec.original_message_id if ident == "@original" else (int(ident) if ident.isdigit() else None)
    msg = ctx.state.messages.get(mid or 0)
    if msg is None or msg.deleted or (mid != rec.original_message_id and mid not in rec.followup_ids):
        raise not_found(ErrorCode.UNKNOWN_MESSAGE)
    return msg


async def execute_webhook(ctx: Ctx) -> tuple[int, Any]:
    state = ctx.state
    rec = _webhook_interaction(ctx)
    if rec.callback_type is None:
        raise not_found(ErrorCode.UNKNOWN_WEBHOOK)
    body = ctx.json()
    channel = state.channels[rec.channel_id]
    validate_message(body, ctx.uploads, upload_limit=state.upload_limit(channel))
    if user_install_only(rec) and rec.followups_sent >= Limits.USER_INSTALL_FOLLOWUPS:
        raise DiscordError(400, ErrorCode.MAX_FOLLOWUP_MESSAGES)
    rec.followups_sent += 1
    original = state.messages.get(rec.original_message_id or 0)
    if (
        rec.callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
        and original
        and original.loading
        and not original.deleted
    ):
        # Discord: the first followup after a deferred response replaces the "thinking" message
        msg = await ctx.core.messages.edit(original, body, ctx.uploads)
    else:
        flags = int(body.get("flags") or 0) & MessageFlag.EPHEMERAL
        msg = await ctx.core.messages.create(
            channel,
            state.bot.id,
            body,
            ctx.uploads,
            extra_flags=flags,
            interaction_id=rec.id,
            interaction_user_id=rec.user_id,
        )
    rec.followup_ids.append(msg.id)
    state.changed()
    if ctx.request.query.get("wait") in ("0", "false", "False", None):
        return 204, None
    return 200, payloads.message(state, msg)


async def get_webhook_message(ctx: Ctx) -> tuple[int, Any]:
    rec = _webhook_interaction(ctx)
    return 200, payloads.message(ctx.state, _webhook_message(ctx, rec))


async def patch_webhook_message(ctx: Ctx) -> tuple[int, Any]:
    rec = _webhook_interaction(ctx)
    msg = _webhook_message(ctx, rec)
    channel = ctx.state.channels[msg.channel_id]
    body = ctx.json()
    validate_message(body, ctx.uploads, upload_limit=ctx.state.upload_limit(channel), require_body=False)
    await ctx.core.messages.edit(msg, body, ctx.uploads)
    return 200, payloads.message(ctx.state, msg)


async def delete_webhook_message(ctx: Ctx) -> tuple[int, Any]:
    rec = _webhook_interaction(ctx)
    await ctx.core.messages.delete(_webhook_message(ctx, rec))
    return 204, None


_WH = "/webhooks/{webhook_id}/{webhook_token}"

ROUTES: list[Route] = [
    Route("POST", "/interactions/{interaction_id}/{token}/callback", callback, auth=False),
    Route("POST", _WH, execute_webhook, auth=False),
    Route("GET", _WH + "/messages/{message_id}", get_webhook_message, auth=False),
    Route("PATCH", _WH + "/messages/{message_id}", patch_webhook_message, auth=False),
    Route("DELETE", _WH + "/messages/{message_id}", delete_webhook_message, auth=False),
]
