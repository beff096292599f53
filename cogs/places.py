"""Where a command was used: a server that installed the bot, or a member's own install (their DMs, group DMs
and servers without the bot), and what each install type lets the commands declare.

In a member's own install the bot cannot post in the channel (it is not there): the card is the
interaction's answer and the results are its follow-ups (``Delivery.via_interaction``); the member's
personal allowance applies instead of a server's rules (``MemberContext.guild_id`` None, the personal scope).
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.config import Settings
from bot.errors import NotAllowed
from bot.i18n import _
from bot.moderation.policy import PERSONAL_USE_OFF

SERVERS_ONLY = _("I only make pictures inside servers, not in direct messages.")


def is_personal(interaction: discord.Interaction) -> bool:
    """True where no server install applies: a DM, a group DM, or a server the bot is not in.

    ``authorizing_integration_owners`` names the server whose install carries the interaction; a guild the
    client does not know (it never sent GUILD_CREATE) is one the bot cannot post in."""
    if interaction.guild_id is None:
        return True
    if not interaction.is_guild_integration():
        return True
    return interaction.client.get_guild(interaction.guild_id) is None


def scope_guild_id(interaction: discord.Interaction) -> int | None:
    """The server whose rules and quota apply: None (the member's personal scope) in a personal place."""
    return None if is_personal(interaction) else interaction.guild_id


def check_place(interaction: discord.Interaction, settings: Settings) -> None:
    """Refuse before anything is acknowledged where the owner turned personal use off (nothing is charged)."""
    if not is_personal(interaction):
        return
    if settings.discord.guilds_only:
        raise NotAllowed(SERVERS_ONLY)
    if settings.quota.personal_daily <= 0:
        raise NotAllowed(PERSONAL_USE_OFF)


def declare_places(command: app_commands.Command[Any, ..., Any] | app_commands.ContextMenu, guilds_only: bool) -> None:
    """``integration_types`` and ``contexts`` as Discord reads them: with ``guilds_only`` a server install in
    servers only (as before user installs existed); otherwise also the member's own install, in DMs with
    the bot, group DMs and other DMs."""
    command.guild_only = guilds_only
    command.allowed_installs = app_commands.AppInstallationType(guild=True, user=not guilds_only)
    command.allowed_contexts = app_commands.AppCommandContext(
        guild=True, dm_channel=not guilds_only, private_channel=not guilds_only
    )
