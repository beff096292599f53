"""Which language to answer in, and the command tree's names and descriptions in every language we have.

A member sees the bot in their Discord client's language (``interaction.locale``) when we have a catalog for
it, else in the server's (``guild_locale``), else in English. Command, option and choice names and
descriptions go to Discord as ``name_localizations``/``description_localizations`` through the tree's
translator, from the same catalogs (their msgctxt says which kind of string each is).
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where

from bot.i18n import DEFAULT_LOCALE, choose_locale, translate
from bot.i18n.catalog import supported

#: The catalog context of each kind of command string (names have Discord's rules; descriptions ≤ 100).
CONTEXTS = {
    Where.command_name: "command name",
    Where.group_name: "command name",
    Where.command_description: "command description",
    Where.group_description: "command description",
    Where.parameter_name: "option name",
    Where.parameter_description: "option description",
    Where.choice_name: "choice",
}
#: A message command's name (the Apps menu) is free text, not a slash command name.
MENU_CONTEXT = "menu name"


def locale_of(interaction: discord.Interaction) -> str:
    """The catalog to answer ``interaction`` from: the member's language, else the server's, else English."""
    guild_locale = interaction.guild_locale
    return choose_locale(interaction.locale.value, guild_locale.value if guild_locale is not None else None)


def guild_locale_of(guild: discord.Guild | None) -> str:
    """The catalog for a message not answering an interaction (a mention): the server's language, else English."""
    return choose_locale(None, guild.preferred_locale.value if guild is not None else None)


def slash(locale: str, command: str) -> str:
    """How ``command`` ("imagine", or "seedream-admin limits clear") reads in the member's client: ``/bild``."""
    return "/" + " ".join(translate(locale, word, context="command name") or word for word in command.split())


def menu_name(locale: str, name: str) -> str:
    """A message command's name as the member's Apps menu shows it."""
    return translate(locale, name, context=MENU_CONTEXT) or name


class CatalogTranslator(app_commands.Translator):
    """Command strings from the catalogs; None (Discord shows the English default) where we have none."""

    async def translate(
        self, string: app_commands.locale_str, locale: discord.Locale, context: app_commands.TranslationContext
    ) -> str | None:
        ours = supported(locale.value)
        if ours is None or ours == DEFAULT_LOCALE:
            return None
        menu = isinstance(context.data, app_commands.ContextMenu)
        where = MENU_CONTEXT if menu else CONTEXTS.get(context.location)
        if where is None:
            return None
        return translate(ours, string.message, context=where)
