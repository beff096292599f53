"""JSON shapes exactly as Discord sends them (following the OpenAPI spec's *Response schemas)."""

from __future__ import annotations

from typing import Any

from .constants import USER_INSTALL_APP_PERMISSIONS, AppFlag, ChannelType, Intent, MessageFlag
from .rules import channel_permissions
from .state import (
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    State,
    iso,
)


def user(u: FakeUser) -> dict[str, Any]:
    return {
        "id": str(u.id),
        "username": u.username,
        "global_name": u.global_name,
        "discriminator": "0",
        "avatar": u.avatar,
        "bot": u.bot,
        "system": False,
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "avatar_decoration_data": None,
        "primary_guild": None,
    }


def bot_user(u: FakeUser) -> dict[str, Any]:
    return {**user(u), "verified": True, "mfa_enabled": False, "email": None, "locale": "en-US"}


def member(m: FakeMember, *, with_user: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "roles": [str(r) for r in m.roles],
        "nick": m.nick,
        "avatar": None,
        "banner": None,
        "joined_at": iso(m.joined_at),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "pending": False,
        "flags": 0,
        "communication_disabled_until": None,
    }
    if with_user:
        out["user"] = user(m.user)
    return out


def role(r: FakeRole) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "name": r.name,
        "permissions": str(r.permissions),
        "position": r.position,
        "color": r.color,
        "colors": {"primary_color": r.color, "secondary_color": None, "tertiary_color": None},
        "hoist": r.hoist,
        "managed": r.managed,
        "mentionable": r.mentionable,
        "icon": None,
        "unicode_emoji": None,
        "flags": 0,
        "tags": {},
    }


def channel(state: State, c: FakeChannel) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(c.id), "type": c.type, "flags": 0, "last_message_id": _sid(c.last_message_id)}
    if c.type in (ChannelType.DM, ChannelType.GROUP_DM):
        out["recipients"] = [user(state.users[r]) for r in c.recipients]
        if c.type == ChannelType.GROUP_DM:
            out.update(name=c.name, owner_id=str(c.owner_id), icon=None)
        return out
    out.update(
        {
            "guild_id": str(c.guild_id),
            "name": c.name,
            "position": c.position,
            "parent_id": _sid(c.parent_id),
            "nsfw": c.nsfw,
            "rate_limit_per_user": 0,
        }
    )
    if c.is_thread:
        messages = [m for m in state.visible_messages(c.id) if m.type != 21]
        out.update(
            {
                "owner_id": str(c.owner_id),
                "member_count": len(c.member_ids),
                "message_count": len(messages),
                "total_message_sent": len(messages),
                "thread_metadata": {
                    "archived": c.archived,
                    "auto_archive_duration": c.auto_archive_duration,
                    "archive_timestamp": iso(c.created_at),
                    "locked": c.locked,
                    "create_timestamp": iso(c.created_at),
                    **({"invitable": True} if c.type == ChannelType.PRIVATE_THREAD else {}),
                },
                "applied_tags": [],
            }
        )
        if state.bot.id in c.member_ids:
            out["member"] = thread_member(c, state.bot.id)
    else:
        out.update(
            {
                "topic": c.topic,
                "permission_overwrites": [
                    {"id": str(o.id), "type": o.type, "allow": str(o.allow), "deny": str(o.deny)} for o in c.overwrites
                ],
                "default_auto_archive_duration": 1440,
                "default_thread_rate_limit_per_user": 0,
            }
        )
    return out


def thread_member(c: FakeChannel, user_id: int) -> dict[str, Any]:
    return {"id": str(c.id), "user_id": str(user_id), "join_timestamp": iso(c.created_at), "flags": 0}


def guild(state: State, g: FakeGuild, *, intents: int | None = None, create: bool = False) -> dict[str, Any]:
    """A guild object; with `create=True` the GUILD_CREATE extras (channels, members, threads...)."""
    out: dict[str, Any] = {
        "id": str(g.id),
        "name": g.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(g.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": [role(r) for r in g.roles.values()],
        "emojis": [],
        "stickers": [],
        "features": [],
        "mfa_level": 0,
        "application_id": None,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "safety_alerts_channel_id": None,
        "vanity_url_code": None,
        "premium_tier": g.premium_tier,
        "premium_subscription_count": 0,
        "premium_progress_bar_enabled": False,
        "preferred_locale": g.locale,
        "nsfw_level": 0,
        "nsfw": False,
        "max_members": 500000,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
    }
    if create:
        members = list(g.members.values())
        if intents is not None and not intents & Intent.GUILD_MEMBERS:
            members = [m for m in members if m.user.id == state.bot.id]
        out.update(
            {
                "joined_at": iso(g.created_at),
                "large": False,
                "unavailable": False,
                "member_count": len(g.members),
                "members": [member(m) for m in members],
                "channels": [channel(state, state.channels[c]) for c in g.channel_ids],
                "threads": [channel(state, t) for t in state.threads() if t.guild_id == g.id and not t.archived],
                "presences": [],
                "voice_states": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
                "embedded_activities": [],
            }
        )
    return out


def attachment(a: FakeAttachment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(a.id),
        "filename": a.filename,
        "size": a.size,
        "url": a.url,
        "proxy_url": a.proxy_url,
    }
    if a.content_type:
        out["content_type"] = a.content_type
    if a.width is not None and a.height is not None:
        out["width"] = a.width
        out["height"] = a.height
    if a.description is not None:
        out["description"] = a.description
    if a.ephemeral:
        out["ephemeral"] = True
    return out


def message(state: State, m: FakeMessage, *, gateway: bool = False, hide_content: bool = False) -> dict[str, Any]:
    """A message object. `gateway` adds guild_id/member; `hide_content` applies the message-content rule."""
    author = state.users[m.author_id]
    out: dict[str, Any] = {
        "id": str(m.id),
        "channel_id": str(m.channel_id),
        "type": m.type,
        "author": user(author),
        "content": "" if hide_content else m.content,
        "embeds": [] if hide_content else m.embeds,
        "attachments": [] if hide_content else [attachment(a) for a in m.attachments],
        "components": [] if hide_content else m.components,
        "mentions": [_mention(state, m, uid, gateway) for uid in m.mentions if uid in state.users],
        "mention_roles": [str(r) for r in m.mention_roles],
        "mention_everyone": m.mention_everyone,
        "timestamp": iso(m.timestamp),
        "edited_timestamp": iso(m.edited_timestamp) if m.edited_timestamp else None,
        "tts": m.tts,
        "pinned": False,
        "flags": m.flags,
    }
    if m.poll and not hide_content:
        out["poll"] = m.poll
    if m.nonce is not None:
        out["nonce"] = m.nonce
    if m.webhook_id is not None:
        out["webhook_id"] = str(m.webhook_id)
    if m.application_id is not None:
        out["application_id"] = str(m.application_id)
    if m.message_reference is not None:
        out["message_reference"] = m.message_reference
        ref = state.messages.get(int(m.message_reference.get("message_id") or 0))
        if m.type in (19, 21, 23, 20):
            out["referenced_message"] = message(state, ref) if ref and not ref.deleted else None
    if m.interaction_id is not None:
        rec = state.interactions.get(m.interaction_id)
        if rec is not None:
            out["interaction_metadata"] = interaction_metadata(state, rec)
    if m.thread_id is not None and m.thread_id in state.channels:
        out["thread"] = channel(state, state.channels[m.thread_id])
    if gateway and m.guild_id is not None:
        out["guild_id"] = str(m.guild_id)
        g = state.guilds.get(m.guild_id)
        mem = g.members.get(m.author_id) if g else None
        if mem is not None and m.webhook_id is None:
            out["member"] = member(mem, with_user=False)
    return out


def _mention(state: State, m: FakeMessage, uid: int, gateway: bool) -> dict[str, Any]:
    out = user(state.users[uid])
    g = state.guilds.get(m.guild_id) if m.guild_id else None
    if gateway and g and uid in g.members:
        out["member"] = member(g.members[uid], with_user=False)
    return out


def interaction_metadata(state: State, rec: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(rec.id),
        "type": rec.type,
        "user": user(state.users[rec.user_id]),
        "authorizing_integration_owners": {"0": str(rec.guild_id)} if rec.guild_id else {"1": str(rec.user_id)},
    }
    data = rec.payload.get("data") or {}
    if rec.type == 2:
        out["name"] = data.get("name")
        out["command_type"] = data.get("type", 1)
    if rec.source_message_id is not None:
        out["interacted_message_id"] = str(rec.source_message_id)
    return out


def application(state: State) -> dict[str, Any]:
    flags = AppFlag.GATEWAY_PRESENCE | AppFlag.GATEWAY_GUILD_MEMBERS
    if state.config.message_content_enabled:
        flags |= AppFlag.GATEWAY_MESSAGE_CONTENT
    return {
        "id": str(state.application_id),
        "name": state.bot.username,
        "icon": None,
        "description": "Fake application for end-to-end tests",
        "summary": "",
        "type": None,
        "bot_public": True,
        "bot_require_code_grant": False,
        "verify_key": "0" * 64,
        "flags": flags,
        "owner": user(state.owner),
        "team": None,
        "bot": user(state.bot),
        "rpc_origins": [],
        "tags": [],
        "redirect_uris": [],
        "interactions_endpoint_url": None,
        "approximate_guild_count": len(state.guilds_with_bot()),
        "integration_types_config": {"0": {}},
    }


def command(state: State, body: dict[str, Any], cid: int, guild_id: int | None) -> dict[str, Any]:
    """Normalise an application command the way Discord echoes it back (ids, version, defaults)."""
    out = {
        "type": 1,
        "description": "",
        "options": [],
        "default_member_permissions": None,
        "nsfw": False,
        "contexts": None,
        "integration_types": [0],
        **body,
        "id": str(cid),
        "application_id": str(state.application_id),
        "version": str(state.snowflake()),
    }
    if out["default_member_permissions"] is not None:  # sent as an int or a string; echoed as a string
        out["default_member_permissions"] = str(out["default_member_permissions"])
    if guild_id is not None:
        out["guild_id"] = str(guild_id)
    return out


def app_permissions(state: State, c: FakeChannel) -> str:
    """Where the bot is present, its own permissions; elsewhere (a user install) what an interaction's
    answers may do there."""
    if not state.bot_in(c):
        return str(USER_INSTALL_APP_PERMISSIONS)
    return str(channel_permissions(state, c, state.bot.id))


def is_content_visible(state: State, m: FakeMessage, intents: int) -> bool:
    """Discord's message-content rule for the gateway: content is sent only with the intent, in DMs, when
    the bot is mentioned, or for the bot's own messages."""
    if intents & Intent.MESSAGE_CONTENT:
        return True
    channel_obj = state.channels.get(m.channel_id)
    if channel_obj is not None and channel_obj.type == ChannelType.DM:
        return True
    return m.author_id == state.bot.id or state.bot.id in m.mentions


def gateway_message_flags_ok(m: FakeMessage) -> bool:
    """Ephemeral messages never reach the gateway."""
    return not m.flags & MessageFlag.EPHEMERAL


def _sid(value: int | None) -> str | None:
    return str(value) if value is not None else None
