"""/quota for everyone and /seedream-admin for moderators (Manage Server, checked again at run time).

A server's moderators act for their server only. Bot-wide actions (lifting a provider's pause for credit)
are the bot owner's: who that is is decided here, from ``[discord] owner_ids`` or else the application's
owner or team (``Bot.is_owner``), and passed to the core as a bool; the core refuses everyone else.
"""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import InvalidRequest, NotAllowed
from bot.moderation import MATCHING_RULES, MemberStatus, ModeratorActions
from cogs.errors import reply
from cogs.imagine import Imagine, is_moderator
from cogs.views import NO_MENTIONS

if TYPE_CHECKING:
    from cogs.app import SeedreamBot

log = logging.getLogger(__name__)
Scope = Literal["guild", "role", "channel", "user"]


def require_manage_server(interaction: discord.Interaction) -> int:
    """The guild id, if the member may moderate; Discord hides the group from others, this also refuses them."""
    if interaction.guild_id is None:
        raise NotAllowed("Moderator commands work inside a server.")
    if not (interaction.permissions.manage_guild or interaction.permissions.administrator):
        raise NotAllowed("You need the Manage Server permission to use moderator commands.")
    return interaction.guild_id


def describe_status(status: MemberStatus, who: str) -> str:
    balance = status.balance
    limit = "unlimited" if balance.limit is None else f"{balance.used} of {balance.limit} used, {balance.left} left"
    lines = [
        f"**{who}**: {limit} this {balance.window} window.",
        f"Resets <t:{int(balance.resets_at.timestamp())}:R>.",
        f"Jobs in flight: {status.in_flight} of {status.in_flight_cap}.",
    ]
    if status.block is not None:
        until = f" until <t:{int(status.block.until)}:f>" if status.block.until else ""
        lines.append(f"⛔ Blocked{until}: {discord.utils.escape_markdown(status.block.reason)}")
    if status.paused:
        lines.append("⏸️ Generation is paused on this server.")
    return "\n".join(lines)


class Admin(commands.Cog):
    admin = app_commands.Group(
        name="seedream-admin",
        description="Moderate the image bot on this server",
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
    )
    limits = app_commands.Group(name="limits", description="Image allowances per window", parent=admin)
    words = app_commands.Group(
        name="banned-words",
        description="Words refused in prompts (also spelled with look-alike, invisible or spaced-out letters)",
        parent=admin,
    )

    def __init__(self, bot: SeedreamBot) -> None:
        self.bot = bot

    @property
    def moderation(self) -> ModeratorActions:
        return self.bot.services.moderation

    async def _log(self, guild_id: int, text: str) -> None:
        """Moderation events go to the server's log channel, when one is set."""
        settings = await self.bot.services.policy.store.settings(guild_id)
        if settings.log_channel_id:
            try:
                await self.bot.get_partial_messageable(settings.log_channel_id).send(text, allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as exc:
                log.info("guild %s: log channel not writable (%s)", guild_id, exc)

    async def _done(self, interaction: discord.Interaction, guild_id: int, text: str) -> None:
        await reply(interaction, text)
        await self._log(guild_id, f"🛡️ <@{interaction.user.id}>: {text}")

    async def is_bot_owner(self, user: discord.abc.User) -> bool:
        """``[discord] owner_ids`` when set; otherwise the application's owner or team (discord.py asks once)."""
        owner_ids = self.bot.settings.discord.owner_ids
        if owner_ids:
            return user.id in owner_ids
        try:
            return await self.bot.is_owner(user)
        except discord.HTTPException as exc:
            log.warning("could not look up the application's owner (%s); treating %s as not an owner", exc, user.id)
            return False

    # -- /quota -------------------------------------------------------------------------------------
    @app_commands.command(name="quota", description="Your image allowance: used, left and when it resets")
    @app_commands.describe(member="(moderators) someone else's allowance")
    async def quota(self, interaction: discord.Interaction, member: discord.Member | None = None) -> None:
        target: discord.User | discord.Member = member or interaction.user
        if member is not None and member.id != interaction.user.id and not is_moderator(interaction):
            raise NotAllowed("Only moderators can look at someone else's allowance.")
        ctx = Imagine.member_context(interaction.guild_id, target, interaction.channel, False)
        status = await self.bot.services.policy.status(ctx)
        await reply(interaction, describe_status(status, "You" if target.id == interaction.user.id else target.mention))

    # -- limits -------------------------------------------------------------------------------------
    @limits.command(
        name="set", description="Set an allowance (images per window) for the server, a role, channel or member"
    )
    @app_commands.describe(units="Credits per window; leave empty for unlimited")
    async def limits_set(
        self,
        interaction: discord.Interaction,
        scope: Scope,
        units: app_commands.Range[int, 0, 100000] | None = None,
        role: discord.Role | None = None,
        channel: discord.TextChannel | None = None,
        member: discord.Member | None = None,
        reason: str | None = None,
    ) -> None:
        guild_id = require_manage_server(interaction)
        target = {"guild": None, "role": role, "channel": channel, "user": member}[scope]
        if scope != "guild" and target is None:
            raise InvalidRequest(f"Please choose the {'member' if scope == 'user' else scope} this limit is for.")
        await self.moderation.set_limit(
            guild_id, interaction.user.id, scope, target.id if target else None, units, reason
        )
        what = "unlimited" if units is None else f"{units} per window"
        where = "the server" if target is None else target.mention
        await self._done(interaction, guild_id, f"Limit for {where} set to {what}.")

    @limits.command(name="show", description="Show the allowances set on this server")
    async def limits_show(self, interaction: discord.Interaction) -> None:
        guild_id = require_manage_server(interaction)
        rules = await self.bot.services.policy.store.limits(guild_id)
        settings = await self.bot.services.policy.store.settings(guild_id)
        mention = {
            "guild": lambda i: "server",
            "role": lambda i: f"<@&{i}>",
            "channel": lambda i: f"<#{i}>",
            "user": lambda i: f"<@{i}>",
        }
        lines = [f"{mention[r.scope](r.scope_id)}: {'unlimited' if r.units is None else r.units}" for r in rules]
        default = self.bot.settings.quota.default_limit or "unlimited"
        window = settings.window_kind or self.bot.settings.quota.window
        lines.append(f"Default where nothing is set: {default} per {window} window.")
        await reply(interaction, "\n".join(lines))

    # -- members ------------------------------------------------------------------------------------
    @admin.command(name="block", description="Stop a member from generating images")
    @app_commands.describe(hours="How long; leave empty for until unblocked")
    async def block(
        self,
        interaction: discord.Interaction,
        member: discord.Member,
        reason: str,
        hours: app_commands.Range[int, 1, 8760] | None = None,
    ) -> None:
        guild_id = require_manage_server(interaction)
        until = (datetime.now(UTC) + timedelta(hours=hours)).timestamp() if hours else None
        await self.moderation.block(guild_id, interaction.user.id, member.id, reason, until)
        await self._done(interaction, guild_id, f"{member.mention} is blocked{f' for {hours} h' if hours else ''}.")

    @admin.command(name="unblock", description="Let a blocked member generate again")
    async def unblock(
        self, interaction: discord.Interaction, member: discord.Member, reason: str | None = None
    ) -> None:
        guild_id = require_manage_server(interaction)
        changed = await self.moderation.unblock(guild_id, interaction.user.id, member.id, reason)
        await self._done(interaction, guild_id, f"{member.mention} {'is unblocked' if changed else 'was not blocked'}.")

    @admin.command(name="refund", description="Give a member credits back")
    async def refund(
        self,
        interaction: discord.Interaction,
        member: discord.Member,
        amount: app_commands.Range[int, 1, 100000],
        reason: str,
    ) -> None:
        guild_id = require_manage_server(interaction)
        used = await self.moderation.refund(guild_id, interaction.user.id, member.id, amount, reason)
        await self._done(interaction, guild_id, f"Refunded {amount} to {member.mention}; they have now used {used}.")

    # -- server rules -------------------------------------------------------------------------------
    @admin.command(name="channels", description="Allow or disallow a channel (no allowed channels = everywhere)")
    async def channels(
        self, interaction: discord.Interaction, channel: discord.TextChannel | None = None, allowed: bool = True
    ) -> None:
        guild_id = require_manage_server(interaction)
        current = await self.bot.services.policy.store.allowed_channels(guild_id)
        if channel is not None:
            current = sorted({*current, channel.id} if allowed else set(current) - {channel.id})
            await self.moderation.set_allowed_channels(guild_id, interaction.user.id, current)
        where = ", ".join(f"<#{c}>" for c in current) or "every channel"
        if channel is None:
            await reply(interaction, f"The bot works in: {where}.")
        else:
            await self._done(interaction, guild_id, f"The bot works in: {where}.")

    @words.command(name="add", description="Refuse prompts containing these words (comma separated)")
    async def words_add(self, interaction: discord.Interaction, words: str) -> None:
        guild_id = require_manage_server(interaction)
        listed = await self.moderation.add_banned_words(guild_id, interaction.user.id, words.split(","))
        await self._done(interaction, guild_id, f"Banned words added: {', '.join(listed) or 'none new'}.")

    @words.command(name="remove", description="Allow these words again (comma separated)")
    async def words_remove(self, interaction: discord.Interaction, words: str) -> None:
        guild_id = require_manage_server(interaction)
        listed = await self.moderation.remove_banned_words(guild_id, interaction.user.id, words.split(","))
        await self._done(interaction, guild_id, f"Banned words removed: {', '.join(listed) or 'none listed'}.")

    @words.command(name="list", description="Show the banned words and how they are matched")
    async def words_list(self, interaction: discord.Interaction) -> None:
        guild_id = require_manage_server(interaction)
        listed = await self.bot.services.policy.store.banned_words(guild_id)
        await reply(interaction, f"Banned words: {', '.join(listed) or 'none'}.\n{MATCHING_RULES}")

    @admin.command(name="pause", description="Stop new images on this server (running jobs finish)")
    async def pause(self, interaction: discord.Interaction, reason: str | None = None) -> None:
        guild_id = require_manage_server(interaction)
        await self.moderation.pause(guild_id, interaction.user.id, reason)
        await self._done(interaction, guild_id, "Generation is paused; running jobs will finish.")

    @admin.command(
        name="resume", description="Allow new images again here (the bot's owner: also providers out of credit)"
    )
    async def resume(self, interaction: discord.Interaction, reason: str | None = None) -> None:
        guild_id = require_manage_server(interaction)
        health = self.bot.engine.health
        owner = False
        if health.paused():  # only then does it matter, and only then may Discord be asked who the owner is
            owner = await self.is_bot_owner(interaction.user)
        outcome = await self.moderation.resume(guild_id, interaction.user.id, reason, health=health, is_owner=owner)
        self.bot.engine.wake()
        text = "Generation is resumed on this server."
        if outcome.providers_resumed:
            text += f" Providers paused for credit are back for every server: {', '.join(outcome.providers_resumed)}."
        if outcome.note:
            text += f" {outcome.note}"
        await self._done(interaction, guild_id, text)

    @admin.command(name="log-channel", description="Where moderation events and provider billing problems are posted")
    async def log_channel(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None) -> None:
        guild_id = require_manage_server(interaction)
        await self.moderation.set_log_channel(guild_id, interaction.user.id, channel.id if channel else None)
        await self._done(interaction, guild_id, f"Log channel: {channel.mention if channel else 'none'}.")

    @admin.command(name="usage", description="Who used how much: totals per member, role and model, a chart and a CSV")
    async def usage(
        self, interaction: discord.Interaction, period: Literal["day", "week", "month", "30d", "all"] = "month"
    ) -> None:
        guild_id = require_manage_server(interaction)
        usage = self.bot.services.usage
        report = await usage.report(guild_id, period)
        names: dict[int, str] = {}
        guild = interaction.guild
        for row in report.members[:50]:  # names are looked up (no members intent): the top spenders suffice
            user_id = int(row.key)
            member = guild.get_member(user_id) if guild else None
            if member is None and guild is not None:
                try:
                    member = await guild.fetch_member(user_id)
                except discord.HTTPException:
                    member = None
            names[user_id] = member.display_name if member else str(user_id)
        chart = await usage.chart_png(report, names)
        files = [
            discord.File(io.BytesIO(chart), filename=f"usage-{period}.png"),
            discord.File(io.BytesIO(usage.csv_bytes(report, names)), filename=f"usage-{period}.csv"),
            discord.File(io.BytesIO(usage.audit_csv_bytes(report)), filename=f"audit-{period}.csv"),
        ]
        summary = f"{report.total_images} images, {report.total_units} credits ({period})."
        await interaction.followup.send(summary, files=files, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: SeedreamBot) -> None:
    await bot.add_cog(Admin(bot))
