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
from bot.i18n import Text, _, _n, _p, join, render
from bot.moderation import (
    MATCHING_RULES,
    MemberStatus,
    ModelFacts,
    ModeratorActions,
    providers_serving,
    settings_overview,
    timezone_suggestions,
)
from bot.sizes import RESOLUTIONS
from cogs.errors import reply
from cogs.locales import guild_locale_of, locale_of
from cogs.members import is_moderator, member_context
from cogs.places import declare_places, is_personal, scope_guild_id
from cogs.views import NO_MENTIONS

if TYPE_CHECKING:
    from cogs.app import SeedreamBot

log = logging.getLogger(__name__)
Scope = Literal["guild", "role", "channel", "user"]
WindowKind = Literal["daily", "weekly", "monthly", "rolling"]
ProviderAction = Literal["only", "allow", "disallow", "all"]
Resettable = Literal["window", "models", "max-resolution", "max-count", "in-flight", "everything"]
RESET_EVERYTHING = ("window", "models", "max-resolution", "max-count", "in-flight")
RESET_LABELS = {
    "window": _("quota window"),
    "models": _("allowed models"),
    "max-resolution": _("largest resolution"),
    "max-count": _("largest image count"),
    "in-flight": _("jobs in progress per member"),
}
#: What decides a member's limit once the one set for ``scope`` is cleared.
AFTER_CLEAR = {
    "user": _("their roles, the channel, the server or the default decide"),
    "role": _("members with it get their other roles', the channel's, the server's or the default limit"),
    "channel": _("the server's or the default limit applies there"),
    "guild": _("the bot default applies where nothing more specific is set"),
}
WINDOWS = {
    "daily": _p("window", "daily"),
    "weekly": _p("window", "weekly"),
    "monthly": _p("window", "monthly"),
    "rolling": _p("window", "rolling"),
}
#: Discord's limit on the label of an autocomplete choice.
CHOICE_NAME_MAX = 100


def require_manage_server(interaction: discord.Interaction) -> int:
    """The guild id, if the member may moderate; Discord hides the group from others, this also refuses them."""
    if interaction.guild_id is None:
        raise NotAllowed(_("Moderator commands work inside a server."))
    if not (interaction.permissions.manage_guild or interaction.permissions.administrator):
        raise NotAllowed(_("You need the Manage Server permission to use moderator commands."))
    return interaction.guild_id


def scope_target(
    scope: str,
    role: discord.Role | None,
    channel: discord.TextChannel | None,
    member: discord.Member | None,
) -> discord.Role | discord.TextChannel | discord.Member | None:
    """The role, channel or member a limit command names for ``scope`` (None for the whole server)."""
    target = {"guild": None, "role": role, "channel": channel, "user": member}[scope]
    if scope != "guild" and target is None:
        which = {
            "user": _("Please choose the member this limit is for."),
            "role": _("Please choose the role this limit is for."),
            "channel": _("Please choose the channel this limit is for."),
        }
        raise InvalidRequest(which[scope])
    return target


def describe_status(status: MemberStatus, who: str | Text) -> Text:
    balance = status.balance
    if balance.limit is None:
        limit = _("unlimited")
    else:
        limit = _("{used} of {limit} used, {left} left", used=balance.used, limit=balance.limit, left=balance.left)
    window = WINDOWS.get(str(balance.window), str(balance.window))
    lines: list[Text] = [
        _("**{who}**: {limit} this {window} window.", who=who, limit=limit, window=window),
        _("Resets {when}.", when=f"<t:{int(balance.resets_at.timestamp())}:R>"),
        _("Jobs in flight: {count} of {cap}.", count=status.in_flight, cap=status.in_flight_cap),
    ]
    if status.block is not None:
        reason = discord.utils.escape_markdown(status.block.reason)
        if status.block.until:
            lines.append(
                _("⛔ Blocked until {until}: {reason}", until=f"<t:{int(status.block.until)}:f>", reason=reason)
            )
        else:
            lines.append(_("⛔ Blocked: {reason}", reason=reason))
    if status.paused:
        lines.append(_("⏸️ Generation is paused on this server."))
    return join(lines, "\n")


class Admin(commands.Cog):
    admin = app_commands.Group(
        name="seedream-admin",
        description="Moderate the image bot on this server",
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
    )
    limits = app_commands.Group(name="limits", description="Image allowances per window", parent=admin)
    settings = app_commands.Group(
        name="settings",
        description="What is in force here: quota window, models, request sizes, jobs in progress",
        parent=admin,
    )
    words = app_commands.Group(
        name="banned-words",
        description="Words refused in prompts (also spelled with look-alike, invisible or spaced-out letters)",
        parent=admin,
    )

    def __init__(self, bot: SeedreamBot) -> None:
        self.bot = bot
        declare_places(self.quota, bot.settings.discord.guilds_only)  # a personal allowance shows anywhere

    @property
    def moderation(self) -> ModeratorActions:
        return self.bot.services.moderation

    async def _log(self, guild_id: int, text: str | Text) -> None:
        """Moderation events go to the server's log channel, when one is set, in the server's language."""
        settings = await self.bot.services.policy.store.settings(guild_id)
        if settings.log_channel_id:
            shown = render(text, guild_locale_of(self.bot.get_guild(guild_id)))
            try:
                await self.bot.get_partial_messageable(settings.log_channel_id).send(
                    shown, allowed_mentions=NO_MENTIONS
                )
            except discord.HTTPException as exc:
                log.info("guild %s: log channel not writable (%s)", guild_id, exc)

    async def _done(self, interaction: discord.Interaction, guild_id: int, text: Text) -> None:
        """Tell the moderator (in their language) and the log channel (in the server's)."""
        await reply(interaction, text)
        await self._log(guild_id, join([f"🛡️ <@{interaction.user.id}>:", text]))

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
        personal = is_personal(interaction)  # a member's own install: nobody moderates their allowance
        if member is not None and member.id != interaction.user.id and (personal or not is_moderator(interaction)):
            raise NotAllowed(_("Only moderators can look at someone else's allowance."))
        ctx = member_context(scope_guild_id(interaction), target, interaction.channel, False)
        status = await self.bot.services.policy.status(ctx)
        await reply(
            interaction, describe_status(status, _("You") if target.id == interaction.user.id else target.mention)
        )

    # -- limits -------------------------------------------------------------------------------------
    @limits.command(
        name="set", description="Set an allowance (images per window) for the server, a role, channel or member"
    )
    @app_commands.describe(
        scope="Whose limit: the whole server, a role, a channel or a member",
        role="The role (scope role)",
        channel="The channel (scope channel)",
        member="The member (scope user)",
        reason="Why (kept in the audit log)",
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
        target = scope_target(scope, role, channel, member)
        await self.moderation.set_limit(
            guild_id, interaction.user.id, scope, target.id if target else None, units, reason
        )
        what = _("unlimited") if units is None else _("{units} per window", units=units)
        where = _("the server") if target is None else target.mention
        await self._done(interaction, guild_id, _("Limit for {where} set to {what}.", where=where, what=what))

    @limits.command(name="clear", description="Remove an allowance that was set, so the next rule decides")
    @app_commands.describe(
        scope="Whose limit: the whole server, a role, a channel or a member",
        role="The role (scope role)",
        channel="The channel (scope channel)",
        member="The member (scope user)",
        reason="Why (kept in the audit log)",
    )
    async def limits_clear(
        self,
        interaction: discord.Interaction,
        scope: Scope,
        role: discord.Role | None = None,
        channel: discord.TextChannel | None = None,
        member: discord.Member | None = None,
        reason: str | None = None,
    ) -> None:
        guild_id = require_manage_server(interaction)
        target = scope_target(scope, role, channel, member)
        removed = await self.moderation.clear_limit(
            guild_id, interaction.user.id, scope, target.id if target else None, reason
        )
        where = _("the server") if target is None else target.mention
        if not removed:
            await reply(interaction, _("There was no limit for {where}, so nothing changed.", where=where))
            return
        await self._done(
            interaction, guild_id, _("Limit for {where} cleared; {after}.", where=where, after=AFTER_CLEAR[scope])
        )

    @limits.command(name="show", description="Show the allowances set on this server")
    async def limits_show(self, interaction: discord.Interaction) -> None:
        guild_id = require_manage_server(interaction)
        rules = await self.bot.services.policy.store.limits(guild_id)
        settings = await self.bot.services.policy.store.settings(guild_id)
        mention = {
            "guild": lambda i: _("server"),
            "role": lambda i: f"<@&{i}>",
            "channel": lambda i: f"<#{i}>",
            "user": lambda i: f"<@{i}>",
        }
        lines: list[Text] = [
            _("{who}: {units}", who=mention[r.scope](r.scope_id), units=_("unlimited") if r.units is None else r.units)
            for r in rules
        ]
        default = self.bot.settings.quota.default_limit or _("unlimited")
        window = settings.window_kind or self.bot.settings.quota.window
        lines.append(
            _(
                "Default where nothing is set: {default} per {window} window.",
                default=default,
                window=WINDOWS.get(window, window),
            )
        )
        await reply(interaction, join(lines, "\n"))

    # -- settings -----------------------------------------------------------------------------------
    def model_facts(self) -> list[ModelFacts]:
        """The configured providers, each one provider+model (``capabilities.model``)."""
        return [
            ModelFacts(
                name=p.name,
                model=p.capabilities.model or p.name,
                resolutions=tuple(p.capabilities.resolutions),
                max_count=p.capabilities.max_count,
            )
            for p in self.bot.services.providers
        ]

    def _label(self, names: tuple[str, ...] | None) -> str | Text:
        if names is None:
            return _("every model the bot has")
        models = {m.name: m.model for m in self.model_facts()}
        return ", ".join(f"{n} ({models[n]})" if n in models else n for n in names)

    @settings.command(name="show", description="Everything in force on this server, and where each value comes from")
    @app_commands.describe(member="Also explain which limit applies to this member, and why")
    async def settings_show(self, interaction: discord.Interaction, member: discord.Member | None = None) -> None:
        guild_id = require_manage_server(interaction)
        ctx = member_context(guild_id, member, interaction.channel, False) if member is not None else None
        locale = locale_of(interaction)
        overview = await settings_overview(
            self.bot.services.policy, guild_id, self.model_facts(), member=ctx, locale=locale
        )
        name = interaction.guild.name if interaction.guild is not None else _("this server")
        title = _("Seedream settings on {server}", server=name).render(locale)
        embed = discord.Embed(title=title[:256], description=overview.description, colour=0x5865F2)
        for title, value in overview.sections:
            embed.add_field(name=title[:256], value=value[:1024], inline=False)
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @settings.command(name="window", description="The quota window (daily, weekly, monthly or rolling) and time zone")
    @app_commands.describe(
        kind="When allowances start afresh: daily, weekly (Monday), monthly, or rolling (credits return in turn)",
        timezone="Where days begin, e.g. Europe/Berlin (start typing to search the time zone database)",
        hours="Length of a rolling window, in hours (1-744)",
    )
    async def settings_window(
        self,
        interaction: discord.Interaction,
        kind: WindowKind | None = None,
        timezone: str | None = None,
        hours: app_commands.Range[int, 1, 744] | None = None,
    ) -> None:
        guild_id = require_manage_server(interaction)
        changes = await self.moderation.set_window(guild_id, interaction.user.id, kind, timezone, hours)
        window = await self.bot.services.policy.ledger.window_for(guild_id)
        changed: list[Text] = []
        if "window_kind" in changes:
            kind_now = str(changes["window_kind"])
            changed.append(_("window {kind}", kind=WINDOWS.get(kind_now, kind_now)))
        if "timezone" in changes:
            changed.append(_("time zone {zone}", zone=changes["timezone"]))
        if "rolling_hours" in changes:
            changed.append(_("rolling length {hours} h", hours=changes["rolling_hours"]))
        now: Text
        if window.is_rolling:
            now = _(
                "a rolling {hours} h window: each credit comes back {hours} h after use", hours=window.rolling_hours
            )
        else:
            resets = int(window.bounds()[1])
            kind_name = WINDOWS.get(window.kind, window.kind)
            when = f"<t:{resets}:f>"
            if "rolling_hours" in changes:
                now = _(
                    "a {kind} window in {zone}, next reset {when} (the hours apply once the window is rolling)",
                    kind=kind_name,
                    zone=window.timezone,
                    when=when,
                )
            else:
                now = _("a {kind} window in {zone}, next reset {when}", kind=kind_name, zone=window.timezone, when=when)
        text = _("Quota window changed ({changed}); now {now}.", changed=join(changed, ", "), now=now)
        await self._done(interaction, guild_id, text)

    @settings_window.autocomplete("timezone")
    async def _timezone_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=z, value=z) for z in timezone_suggestions(current)]

    @settings.command(
        name="providers", description="Which of the bot's providers (each a service and model) members may use"
    )
    @app_commands.describe(
        action="only: just this one; allow / disallow: add or remove it; all: every one, also any added later",
        provider="One of the bot's providers (start typing)",
    )
    async def settings_providers(
        self, interaction: discord.Interaction, action: ProviderAction, provider: str | None = None
    ) -> None:
        guild_id = require_manage_server(interaction)
        names = [provider.strip()] if provider and action != "all" else []
        allowed, changed = await self.moderation.change_allowed_providers(guild_id, interaction.user.id, action, names)
        await self._allowed_done(interaction, guild_id, allowed, changed)

    @settings.command(name="models", description="Which models members may use, whichever provider serves them")
    @app_commands.describe(
        action="only: just this model; allow / disallow: add or remove it; all: every model, also any added later",
        model="One of the bot's models (start typing)",
    )
    async def settings_models(
        self, interaction: discord.Interaction, action: ProviderAction, model: str | None = None
    ) -> None:
        guild_id = require_manage_server(interaction)
        catalog = {m.name: m.model for m in self.model_facts()}
        names = providers_serving(model, catalog) if model and action != "all" else []
        chosen = model.strip() if model and action != "all" else None
        allowed, changed = await self.moderation.change_allowed_providers(
            guild_id, interaction.user.id, action, names, model=chosen
        )
        await self._allowed_done(interaction, guild_id, allowed, changed)

    async def _allowed_done(
        self, interaction: discord.Interaction, guild_id: int, allowed: tuple[str, ...] | None, changed: bool
    ) -> None:
        text = _("Models allowed on this server: {models}.", models=self._label(allowed))
        if changed:
            await self._done(interaction, guild_id, text)
        else:
            await reply(interaction, join([_("Nothing changed."), text]))

    @settings_providers.autocomplete("provider")
    async def _provider_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        typed = current.strip().lower()
        return [
            app_commands.Choice(name=f"{m.name} ({m.model})"[:CHOICE_NAME_MAX], value=m.name)
            for m in self.model_facts()
            if typed in m.name.lower() or typed in m.model.lower()
        ][:25]

    @settings_models.autocomplete("model")
    async def _model_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        typed = current.strip().lower()
        served: dict[str, list[str]] = {}
        for m in self.model_facts():
            served.setdefault(m.model, []).append(m.name)
        return [
            app_commands.Choice(name=f"{model} (via {', '.join(names)})"[:CHOICE_NAME_MAX], value=model)
            for model, names in sorted(served.items())
            if typed in model.lower()
        ][:25]

    @settings.command(name="max", description="The largest resolution and number of images one request may ask for")
    @app_commands.describe(
        resolution="Largest resolution tier members may choose", count="Most images one request may make"
    )
    @app_commands.choices(resolution=[app_commands.Choice(name=r, value=r) for r in RESOLUTIONS])
    async def settings_max(
        self,
        interaction: discord.Interaction,
        resolution: str | None = None,
        count: app_commands.Range[int, 1, 100] | None = None,
    ) -> None:
        guild_id = require_manage_server(interaction)
        models = self.model_facts()
        largest = max((m.max_count for m in models), default=None)
        changes = await self.moderation.set_request_max(
            guild_id, interaction.user.id, resolution=resolution, count=count, largest=largest
        )
        parts: list[Text] = []
        if "max_resolution" in changes:
            parts.append(_("resolution up to {resolution}", resolution=changes["max_resolution"]))
        if "max_count" in changes:
            parts.append(_n("at most {count} image", "at most {count} images", int(changes["max_count"])))
        largest_now = _("{first} and {second}", first=parts[0], second=parts[1]) if len(parts) == 2 else join(parts)
        notes: list[Text] = [_("Largest request on this server: {parts}.", parts=largest_now)]
        tier = changes.get("max_resolution")
        if tier is not None:
            allowed = (await self.bot.services.policy.store.settings(guild_id)).allowed_providers
            cut_off = [
                m.name
                for m in models
                if (allowed is None or m.name in allowed)
                and not any(RESOLUTIONS.index(r) <= RESOLUTIONS.index(tier) for r in m.resolutions if r in RESOLUTIONS)
            ]
            if cut_off:
                notes.append(
                    _(
                        "Note: {models} cannot render {tier} or smaller, so members cannot use it now.",
                        models=", ".join(cut_off),
                        tier=tier,
                    )
                )
        await self._done(interaction, guild_id, join(notes))

    @settings.command(name="in-flight", description="How many jobs one member may have waiting or running at once")
    @app_commands.describe(jobs="Jobs in progress per member (at most the bot's own limit)")
    async def settings_in_flight(self, interaction: discord.Interaction, jobs: app_commands.Range[int, 1, 100]) -> None:
        guild_id = require_manage_server(interaction)
        ceiling = self.bot.settings.quota.max_queued_per_user
        await self.moderation.set_max_in_flight(guild_id, interaction.user.id, jobs, ceiling=ceiling)
        await self._done(
            interaction,
            guild_id,
            _n(
                "Each member may now have {count} job in progress at once.",
                "Each member may now have {count} jobs in progress at once.",
                jobs,
            ),
        )

    @settings.command(name="reset", description="Return a setting to the bot's default")
    @app_commands.describe(setting="Which setting (everything: all of them; limits: /seedream-admin limits clear)")
    async def settings_reset(self, interaction: discord.Interaction, setting: Resettable) -> None:
        guild_id = require_manage_server(interaction)
        names = RESET_EVERYTHING if setting == "everything" else (setting,)
        reset = await self.moderation.reset_settings(guild_id, interaction.user.id, names)
        if not reset:
            if setting == "everything":
                text = _(
                    "Nothing changed: none of these settings was set on this server, "
                    "so the bot default already applies."
                )
            else:
                text = _(
                    "Nothing changed: the {setting} was not set on this server, so the bot default already applies.",
                    setting=RESET_LABELS[setting],
                )
            await reply(interaction, text)
            return
        listed = join([RESET_LABELS[n] for n in reset], ", ")
        await self._done(interaction, guild_id, _("Back to the bot default: {settings}.", settings=listed))

    # -- members ------------------------------------------------------------------------------------
    @admin.command(name="block", description="Stop a member from generating images")
    @app_commands.describe(member="The member", reason="Why (kept in the audit log)")
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
        if hours:
            text = _("{member} is blocked for {hours} h.", member=member.mention, hours=hours)
        else:
            text = _("{member} is blocked.", member=member.mention)
        await self._done(interaction, guild_id, text)

    @admin.command(name="unblock", description="Let a blocked member generate again")
    @app_commands.describe(member="The member", reason="Why (kept in the audit log)")
    async def unblock(
        self, interaction: discord.Interaction, member: discord.Member, reason: str | None = None
    ) -> None:
        guild_id = require_manage_server(interaction)
        changed = await self.moderation.unblock(guild_id, interaction.user.id, member.id, reason)
        if changed:
            await self._done(interaction, guild_id, _("{member} is unblocked.", member=member.mention))
        else:
            await self._done(interaction, guild_id, _("{member} was not blocked.", member=member.mention))

    @admin.command(name="refund", description="Give a member credits back")
    @app_commands.describe(member="The member", amount="Credits to give back", reason="Why (kept in the audit log)")
    async def refund(
        self,
        interaction: discord.Interaction,
        member: discord.Member,
        amount: app_commands.Range[int, 1, 100000],
        reason: str,
    ) -> None:
        guild_id = require_manage_server(interaction)
        used = await self.moderation.refund(guild_id, interaction.user.id, member.id, amount, reason)
        await self._done(
            interaction,
            guild_id,
            _(
                "Refunded {amount} to {member}; they have now used {used}.",
                amount=amount,
                member=member.mention,
                used=used,
            ),
        )

    # -- server rules -------------------------------------------------------------------------------
    @admin.command(name="channels", description="Allow or disallow a channel (no allowed channels = everywhere)")
    @app_commands.describe(channel="The channel; leave empty to see the list", allowed="Allow it (true) or not (false)")
    async def channels(
        self, interaction: discord.Interaction, channel: discord.TextChannel | None = None, allowed: bool = True
    ) -> None:
        guild_id = require_manage_server(interaction)
        current = await self.bot.services.policy.store.allowed_channels(guild_id)
        if channel is not None:
            current = sorted({*current, channel.id} if allowed else set(current) - {channel.id})
            await self.moderation.set_allowed_channels(guild_id, interaction.user.id, current)
        where = ", ".join(f"<#{c}>" for c in current) or _("every channel")
        if channel is None:
            await reply(interaction, _("The bot works in: {channels}.", channels=where))
        else:
            await self._done(interaction, guild_id, _("The bot works in: {channels}.", channels=where))

    @words.command(name="add", description="Refuse prompts containing these words (comma separated)")
    @app_commands.describe(words="Words or phrases, separated by commas")
    async def words_add(self, interaction: discord.Interaction, words: str) -> None:
        guild_id = require_manage_server(interaction)
        listed = await self.moderation.add_banned_words(guild_id, interaction.user.id, words.split(","))
        await self._done(
            interaction, guild_id, _("Banned words added: {words}.", words=", ".join(listed) or _("none new"))
        )

    @words.command(name="remove", description="Allow these words again (comma separated)")
    @app_commands.describe(words="Words or phrases, separated by commas")
    async def words_remove(self, interaction: discord.Interaction, words: str) -> None:
        guild_id = require_manage_server(interaction)
        listed = await self.moderation.remove_banned_words(guild_id, interaction.user.id, words.split(","))
        await self._done(
            interaction, guild_id, _("Banned words removed: {words}.", words=", ".join(listed) or _("none listed"))
        )

    @words.command(name="list", description="Show the banned words and how they are matched")
    async def words_list(self, interaction: discord.Interaction) -> None:
        guild_id = require_manage_server(interaction)
        listed = await self.bot.services.policy.store.banned_words(guild_id)
        words = _("Banned words: {words}.", words=", ".join(listed) or _("none"))
        await reply(interaction, join([words, MATCHING_RULES], "\n"))

    @admin.command(name="pause", description="Stop new images on this server (running jobs finish)")
    @app_commands.describe(reason="Why (kept in the audit log)")
    async def pause(self, interaction: discord.Interaction, reason: str | None = None) -> None:
        guild_id = require_manage_server(interaction)
        await self.moderation.pause(guild_id, interaction.user.id, reason)
        await self._done(interaction, guild_id, _("Generation is paused; running jobs will finish."))

    @admin.command(
        name="resume", description="Allow new images again here (the bot's owner: also providers out of credit)"
    )
    @app_commands.describe(reason="Why (kept in the audit log)")
    async def resume(self, interaction: discord.Interaction, reason: str | None = None) -> None:
        guild_id = require_manage_server(interaction)
        health = self.bot.engine.health
        owner = False
        if health.paused():  # only then does it matter, and only then may Discord be asked who the owner is
            owner = await self.is_bot_owner(interaction.user)
        outcome = await self.moderation.resume(guild_id, interaction.user.id, reason, health=health, is_owner=owner)
        self.bot.engine.wake()
        said: list[Text] = [_("Generation is resumed on this server.")]
        if outcome.providers_resumed:
            said.append(
                _(
                    "Providers paused for credit are back for every server: {providers}.",
                    providers=", ".join(outcome.providers_resumed),
                )
            )
        if outcome.note:
            said.append(outcome.note)
        await self._done(interaction, guild_id, join(said))

    @admin.command(name="log-channel", description="Where moderation events and provider billing problems are posted")
    @app_commands.describe(channel="The channel; leave empty for none")
    async def log_channel(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None) -> None:
        guild_id = require_manage_server(interaction)
        await self.moderation.set_log_channel(guild_id, interaction.user.id, channel.id if channel else None)
        await self._done(
            interaction, guild_id, _("Log channel: {channel}.", channel=channel.mention if channel else _("none"))
        )

    @admin.command(name="usage", description="Who used how much: totals per member, role and model, a chart and a CSV")
    @app_commands.describe(period="Which days to count")
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
        summary = _(
            "{images} images, {credits} credits ({period}).",
            images=report.total_images,
            credits=report.total_units,
            period=period,
        ).render(locale_of(interaction))
        await interaction.followup.send(summary, files=files, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: SeedreamBot) -> None:
    await bot.add_cog(Admin(bot))
