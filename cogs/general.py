"""/help: what the bot can do here, the limits that apply, and the member's remaining allowance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.i18n import _, _n, render
from cogs import members
from cogs.edits import MENU_NAME, DismissButton
from cogs.errors import reply
from cogs.locales import locale_of, menu_name, slash
from cogs.places import declare_places, is_personal
from cogs.views import JobButton

#: Every button the bot makes carries a custom id of one of these shapes (and persists across restarts).
OUR_BUTTONS = (JobButton, DismissButton)

if TYPE_CHECKING:
    from cogs.app import SeedreamBot


class General(commands.Cog):
    def __init__(self, bot: SeedreamBot) -> None:
        self.bot = bot
        declare_places(self.help, bot.settings.discord.guilds_only)

    @app_commands.command(name="help", description="What this bot can do here, its limits and your allowance")
    async def help(self, interaction: discord.Interaction) -> None:
        services = self.bot.services
        locale = locale_of(interaction)
        commands_ = {name: slash(locale, name) for name in ("imagine", "jobs", "quota")}
        menu = menu_name(locale, MENU_NAME)
        lines = [
            _("I make pictures with ByteDance's Seedream models."),
            _(
                "• `{imagine}` a prompt (attach images to edit or blend them); results arrive in a thread with "
                "Reroll, Vary, Edit and Delete buttons.",
                **commands_,
            ),
            _("• Reply to a picture and mention me with what to change, or use **Apps → {menu}** on it.", menu=menu),
            _("• `{jobs}` lists your recent pictures; `{quota}` shows your allowance.", **commands_),
            "",
            _("Providers here:"),
        ]
        for provider in services.providers:
            caps = provider.capabilities
            lines.append(
                _(
                    "• **{name}** ({model}): {images}, {resolutions}, {references}",
                    name=provider.name,
                    model=caps.model,
                    images=_n("up to {count} image", "up to {count} images", caps.max_count),
                    resolutions=", ".join(caps.resolutions),
                    references=_n("{count} reference image", "{count} reference images", caps.max_references),
                )
            )
        if not is_personal(interaction) or self.bot.settings.quota.personal_daily > 0:
            status = await services.policy.status(members.of_interaction(interaction))
            balance = status.balance
            if balance.limit is None:
                left = _("unlimited")
            else:
                left = _n(
                    "{left} of {limit} credit left",
                    "{left} of {limit} credits left",
                    balance.limit,
                    left=balance.left,
                    limit=balance.limit,
                )
            resets = f"<t:{int(balance.resets_at.timestamp())}:R>"
            lines += ["", _("Your allowance: {left}; it resets {resets}.", left=left, resets=resets)]
        await reply(interaction, "\n".join(render(line, locale) for line in lines))

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
        text = _(
            "This button no longer works. Use `{imagine}` to start again.",
            imagine=slash(locale_of(interaction), "imagine"),
        )
        await reply(interaction, text)


async def setup(bot: SeedreamBot) -> None:
    await bot.add_cog(General(bot))
