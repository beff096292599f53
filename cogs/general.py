"""General commands that need no job engine."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from cogs.app import SeedreamBot


class General(commands.Cog):
    def __init__(self, bot: SeedreamBot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="What this bot can do here")
    async def help(self, interaction: discord.Interaction[SeedreamBot]) -> None:
        providers = ", ".join(self.bot.services.providers.names())
        await interaction.response.send_message(
            f"I make pictures with ByteDance's Seedream models.\nProviders configured here: {providers}.",
            ephemeral=True,
        )


async def setup(bot: SeedreamBot) -> None:
    await bot.add_cog(General(bot))
