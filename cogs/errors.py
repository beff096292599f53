"""One place that turns errors into polite, ephemeral replies (commands, buttons and modals alike)."""

from __future__ import annotations

import logging
import secrets

import discord
from discord import app_commands

from bot.errors import SeedreamError
from bot.i18n import Text, _, render
from cogs.locales import locale_of

log = logging.getLogger(__name__)
#: ``extras`` key of a command that acknowledges by itself (a public card, or a modal as its first answer).
ANSWERS_ITSELF = "answers_itself"


async def reply(interaction: discord.Interaction, content: str | Text) -> None:
    """Answer ephemerally, in the member's language, whether or not the interaction was already acknowledged."""
    text = str(render(content, locale_of(interaction)))
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
        else:
            await interaction.response.send_message(
                text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
    except discord.HTTPException as exc:
        log.warning("could not answer interaction %s: %s", interaction.id, exc)


async def reply_error(interaction: discord.Interaction, error: BaseException) -> None:
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, SeedreamError):
        await reply(interaction, error.text)
        return
    if isinstance(error, app_commands.CheckFailure):
        await reply(interaction, _("You are not allowed to use this command here."))
        return
    incident = secrets.token_hex(4)
    log.error(
        "incident %s in interaction %s by user %s in guild %s",
        incident,
        interaction.id,
        interaction.user.id,
        interaction.guild_id,
        exc_info=error,
    )
    await reply(
        interaction,
        _("Sorry, something went wrong on our side (incident {incident}). Please try again.", incident=incident),
    )


def _answers_itself(command: object) -> bool:
    while command is not None:
        if getattr(command, "extras", {}).get(ANSWERS_ITSELF):
            return True
        command = getattr(command, "parent", None)
    return False


class SeedreamTree(app_commands.CommandTree):
    """Acknowledges every command first (privately), before it touches the database or the network,
    so a slow database never makes Discord say "the application did not respond"."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if interaction.type is discord.InteractionType.application_command and not _answers_itself(interaction.command):
            await interaction.response.defer(ephemeral=True, thinking=True)
            gate = getattr(self.client, "ack_first", None)
            if gate is not None:
                await gate.after_ack(interaction)
        return True

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await reply_error(interaction, error)
