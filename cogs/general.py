"""/help: what the bot can do here, the limits that apply, and the member's remaining allowance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs import members
from cogs.edits import DismissButton
from cogs.errors import reply
from cogs.views import JobButton

#: Every button the bot makes carries a custom id of one of these shapes (and persists across restarts).
OUR_BUTTONS = (JobButton, DismissButton)

if TYPE_CHECKING:
    from cogs.app import SeedreamBot


class General(commands.Cog):
    def __init__(self, bot: SeedreamBot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="What this bot can do here, its limits and your allowance")
    async def help(self, interaction: discord.Interaction) -> None:
        services = self.bot.services
        providers = []
        for provider in services.providers:
            caps = provider.capabilities
            providers.append(
                f"• **{provider.name}** ({caps.model}): up to {caps.max_count} images, {', '.join(caps.resolutions)}, "
                f"{caps.max_references} reference images"
            )
        lines = [
            "I make pictures with ByteDance's Seedream models.",
            "• `/imagine` a prompt (attach images to edit or blend them); results arrive in a thread with "
            "Reroll, Vary, Edit and Delete buttons.",
            "• Reply to a picture and mention me with what to change, or use **Apps → Edit with Seedream** on it.",
            "• `/jobs` lists your recent pictures; `/quota` shows your allowance.",
            "",
            "Providers here:",
            *providers,
        ]
        if interaction.guild_id is not None:
            status = await services.policy.status(members.of_interaction(interaction))
            balance = status.balance
            left = "unlimited" if balance.limit is None else f"{balance.left} of {balance.limit} credits left"
            lines += ["", f"Your allowance: {left}; it resets <t:{int(balance.resets_at.timestamp())}:R>."]
        await reply(interaction, "\n".join(lines))

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """A press on a button no handler knows (an old bot's, or a crafted one) gets a polite private answer,
        not Discord's "This interaction failed" (discord.py drops such presses silently)."""
        if interaction.type is not discord.InteractionType.component:
            return
        data: dict[str, object] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id", ""))
        if any(item.__discord_ui_compiled_template__.fullmatch(custom_id) for item in OUR_BUTTONS):
            return
        await reply(interaction, "This button no longer works. Use `/imagine` to start again.")


async def setup(bot: SeedreamBot) -> None:
    await bot.add_cog(General(bot))
