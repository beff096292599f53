"""Discord's rules and Discord's error bodies, so the bot meets the same refusals it would in production."""

from __future__ import annotations

from typing import Any

from .constants import (
    ALL_PERMISSIONS,
    ERROR_MESSAGES,
    ComponentType,
    ErrorCode,
    Limits,
    MessageFlag,
    Perm,
)
from .state import FakeChannel, FakeGuild, State, Upload


class DiscordError(Exception):
    """An API error answered as `{"code", "message", "errors"?}` with the given HTTP status."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str | None = None,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message if message is not None else ERROR_MESSAGES.get(code, "Unknown error")
        self.errors = errors
        self.headers = headers or {}
        super().__init__(f"{status} {code} {self.message}")

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def not_found(code: int) -> DiscordError:
    return DiscordError(404, code)


def unauthorized() -> DiscordError:
    return DiscordError(401, ErrorCode.GENERAL, "401: Unauthorized")


def missing_permissions() -> DiscordError:
    return DiscordError(403, ErrorCode.MISSING_PERMISSIONS)


class FormErrors:
    """Collects field errors into Discord's nested `errors` tree (`{"a": {"0": {"b": {"_errors": [...]}}}}`)."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: tuple[str | int, ...], code: str, message: str) -> None:
        node = self.tree
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def max_length(self, path: tuple[str | int, ...], value: Any, limit: int) -> None:
        if value is not None and len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def raise_if_any(self) -> None:
        if self.tree:
            raise DiscordError(400, ErrorCode.INVALID_FORM_BODY, errors=self.tree)


def embed_size(embed: dict[str, Any]) -> int:
    """Characters Discord counts toward the 6000 total."""
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "")
    total += len((embed.get("author") or {}).get("name") or "")
    for fld in embed.get("fields") or []:
        total += len(fld.get("name") or "") + len(fld.get("value") or "")
    return total


def _validate_embeds(errors: FormErrors, embeds: list[Any]) -> None:
    errors.max_length(("embeds",), embeds, Limits.EMBEDS)
    total = 0
    for i, embed in enumerate(embeds):
        if not isinstance(embed, dict):
            errors.add(("embeds", i), "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
            continue
        errors.max_length(("embeds", i, "title"), embed.get("title"), Limits.EMBED_TITLE)
        errors.max_length(("embeds", i, "description"), embed.get("description"), Limits.EMBED_DESCRIPTION)
        errors.max_length(("embeds", i, "footer", "text"), (embed.get("footer") or {}).get("text"), Limits.EMBED_FOOTER)
        errors.max_length(("embeds", i, "author", "name"), (embed.get("author") or {}).get("name"), Limits.EMBED_AUTHOR)
        fields = embed.get("fields") or []
        errors.max_length(("embeds", i, "fields"), fields, Limits.EMBED_FIELDS)
        for j, fld in enumerate(fields):
            errors.max_length(("embeds", i, "fields", j, "name"), fld.get("name"), Limits.EMBED_FIELD_NAME)
            errors.max_length(("embeds", i, "fields", j, "value"), fld.get("value"), Limits.EMBED_FIELD_VALUE)
        total += embed_size(embed)
    if total > Limits.EMBED_TOTAL:
        errors.add(("embeds",), "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {Limits.EMBED_TOTAL}")


def _validate_components(errors: FormErrors, components: list[Any], flags: int) -> None:
    if flags & MessageFlag.IS_COMPONENTS_V2:
        errors.max_length(("components",), components, Limits.COMPONENTS_V2_TOTAL)
    else:
        errors.max_length(("components",), components, Limits.ACTION_ROWS)

    def walk(items: list[Any], path: tuple[str | int, ...]) -> None:
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            here = (*path, i)
            if "custom_id" in item:
                errors.max_length((*here, "custom_id"), item["custom_id"], Limits.CUSTOM_ID)
            if item.get("type") == ComponentType.BUTTON:
                errors.max_length((*here, "label"), item.get("label"), Limits.BUTTON_LABEL)
            children = item.get("components")
            if isinstance(children, list):
                if item.get("type") == ComponentType.ACTION_ROW:
                    errors.max_length((*here, "components"), children, Limits.ROW_COMPONENTS)
                walk(children, (*here, "components"))

    walk(components, ("components",))


def validate_message(
    payload: dict[str, Any],
    uploads: list[Upload],
    *,
    upload_limit: int,
    existing_attachments: int = 0,
    require_body: bool = True,
) -> None:
    """Apply Discord's message limits: 413/40005 for oversize uploads, 50035 (with the errors tree) for the
    rest, 50006 for an empty message."""
    if sum(len(u.data) for u in uploads) > upload_limit:
        raise DiscordError(413, ErrorCode.ENTITY_TOO_LARGE)
    errors = FormErrors()
    content = payload.get("content")
    if content is not None and not isinstance(content, str):
        content = str(content)
    errors.max_length(("content",), content, Limits.CONTENT)
    _validate_embeds(errors, payload.get("embeds") or [])
    _validate_components(errors, payload.get("components") or [], int(payload.get("flags") or 0))
    errors.max_length(("attachments",), payload.get("attachments"), Limits.FILES)
    errors.max_length(("files",), uploads, Limits.FILES)
    errors.raise_if_any()
    if require_body:
        has_body = any(
            payload.get(key) for key in ("content", "embeds", "components", "sticker_ids", "poll", "attachments")
        )
        if not has_body and not uploads and not existing_attachments:
            raise DiscordError(400, ErrorCode.EMPTY_MESSAGE)


# --- permissions ----------------------------------------------------------------------------------------


def base_permissions(guild: FakeGuild, user_id: int) -> int:
    """Guild-level permissions: @everyone plus the member's roles; owner and administrators get all."""
    if user_id == guild.owner_id:
        return ALL_PERMISSIONS
    perms = guild.everyone.permissions
    member = guild.members.get(user_id)
    for role_id in member.roles if member else []:
        role = guild.roles.get(role_id)
        if role is not None:
            perms |= role.permissions
    if perms & Perm.ADMINISTRATOR:
        return ALL_PERMISSIONS
    return perms


def channel_permissions(state: State, channel: FakeChannel, user_id: int) -> int:
    """Discord's overwrite algorithm (@everyone, then roles combined, then the member); threads use their
    parent's overwrites. DMs allow everything a DM can do."""
    guild = state.guild_of(channel)
    if guild is None:
        if user_id == state.bot.id and not state.bot_in(channel):
            return 0  # a DM between others or a group DM: the bot is no recipient (Missing Access)
        return ALL_PERMISSIONS & ~(Perm.MANAGE_MESSAGES | Perm.MANAGE_THREADS)
    if user_id not in guild.members and user_id != guild.owner_id:
        return 0  # not a member (the bot in a server that never added it): Missing Access
    perms = base_permissions(guild, user_id)
    if perms == ALL_PERMISSIONS:
        return perms
    source = state.channels.get(channel.parent_id) if channel.is_thread and channel.parent_id else channel
    overwrites = {ow.id: ow for ow in (source or channel).overwrites}
    everyone = overwrites.get(guild.id)
    if everyone:
        perms = (perms & ~everyone.deny) | everyone.allow
    member = guild.members.get(user_id)
    allow = deny = 0
    for role_id in member.roles if member else []:
        ow = overwrites.get(role_id)
        if ow and ow.type == 0:
            allow |= ow.allow
            deny |= ow.deny
    perms = (perms & ~deny) | allow
    own = overwrites.get(user_id)
    if own and own.type == 1:
        perms = (perms & ~own.deny) | own.allow
    if not perms & Perm.VIEW_CHANNEL:
        return 0
    return perms


def require(state: State, channel: FakeChannel, user_id: int, *needed: int) -> int:
    """403 50001 without View Channel, 403 50013 when any other needed bit is missing."""
    perms = channel_permissions(state, channel, user_id)
    if not perms & Perm.VIEW_CHANNEL:
        raise DiscordError(403, ErrorCode.MISSING_ACCESS)
    for bit in needed:
        if not perms & bit:
            raise missing_permissions()
    return perms


def send_permission(channel: FakeChannel) -> int:
    """Threads need Send Messages in Threads; everything else Send Messages."""
    return Perm.SEND_MESSAGES_IN_THREADS if channel.is_thread else Perm.SEND_MESSAGES
