"""Who is asking, in Discord's terms, turned into the core's ``MemberContext``; "moderator" defined once."""

from __future__ import annotations

import discord

from bot.moderation import MemberContext
from cogs import places


def has_moderator_permissions(perms: discord.Permissions) -> bool:
    """Moderators may cancel or delete anyone's job and skip a server's pause and channel rules."""
    return bool(perms.manage_guild or perms.manage_messages or perms.administrator)


def is_moderator(interaction: discord.Interaction) -> bool:
    return has_moderator_permissions(interaction.permissions)


def member_context(
    guild_id: int | None, user: discord.User | discord.Member, channel: object, is_mod: bool
) -> MemberContext:
    """The ids the policy needs; a thread follows its parent channel's rules."""
    roles = tuple(role.id for role in user.roles) if isinstance(user, discord.Member) else ()
    parent = channel.parent_id if isinstance(channel, discord.Thread) else None
    return MemberContext(
        guild_id=guild_id,
        user_id=user.id,
        role_ids=roles,
        channel_id=getattr(channel, "id", None),
        is_moderator=is_mod,
        parent_channel_id=parent,
    )


def of_interaction(interaction: discord.Interaction) -> MemberContext:
    """In a member's own install (``cogs.places``) the personal scope: no server, its roles or moderators."""
    if places.is_personal(interaction):
        return MemberContext(guild_id=None, user_id=interaction.user.id, channel_id=interaction.channel_id)
    return member_context(interaction.guild_id, interaction.user, interaction.channel, is_moderator(interaction))


def of_message(message: discord.Message) -> MemberContext:
    author, channel = message.author, message.channel
    perms = channel.permissions_for(author) if isinstance(author, discord.Member) else None
    is_mod = perms is not None and has_moderator_permissions(perms)
    return member_context(message.guild.id if message.guild else None, author, channel, is_mod)
