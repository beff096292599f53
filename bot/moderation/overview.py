"""What ``/seedream-admin settings show`` tells moderators: every rule in force on a server and where it comes
from (set on the server, or the bot's default from its config), and which role's limit applies to whom.

Plain text with Discord's mention and timestamp syntax, in the moderator's language (``locale``); the cog puts
each section into an embed field.
Sections stay within an embed field's 1024 characters (long lists end with "… and N more").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot.i18n import DEFAULT_LOCALE, Text, _, _n, _p, render
from bot.moderation.models import GuildSettings, LimitRule, MemberContext, ResolvedLimit
from bot.moderation.policy import PolicyService, limit_for
from bot.sizes import RESOLUTIONS

SERVER = _("set on this server")
DEFAULT = _("bot default")
#: Discord's limit for an embed field's value, less room for the "… and N more" line.
FIELD_BUDGET = 980
#: Members named per role before "+N more".
NAMED_PER_ROLE = 5
PRECEDENCE = _(
    "A member's own limit wins; else the **most generous** limit among their roles; else the channel's "
    "(a thread follows its channel); else the server's; else the bot default."
)


@dataclass(frozen=True)
class ModelFacts:
    """One configured provider as the settings view needs it (each is one provider+model)."""

    name: str
    model: str
    resolutions: tuple[str, ...]
    max_count: int


@dataclass(frozen=True)
class Overview:
    description: str
    sections: tuple[tuple[str, str], ...]


def units(value: int | None) -> str | Text:
    return _("unlimited") if value is None else str(value)


def mention(scope: str, scope_id: int | None) -> str | Text:
    return {"user": f"<@{scope_id}>", "role": f"<@&{scope_id}>", "channel": f"<#{scope_id}>"}.get(
        scope, _("the server")
    )


def clip(lines: Sequence[str], locale: str = DEFAULT_LOCALE, budget: int = FIELD_BUDGET) -> str:
    """Join ``lines``, dropping the tail with a count once the text would outgrow an embed field."""
    kept: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        if len(line) > budget:  # one very long line (a list of many channels or models): cut it
            line = line[: max(0, budget - used - 30)].rsplit(", ", 1)[0] + ", …"
        if used + len(line) + 1 > budget:
            kept.append(_("… and {count} more", count=len(lines) - index).render(locale))
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join(kept) or "—"


def sourced(value: str | Text, is_set: bool) -> Text:
    return _("**{value}** · {source}", value=value, source=SERVER if is_set else DEFAULT)


def describe_explanation(
    limit: ResolvedLimit, role_limits: Iterable[tuple[int, int | None]], locale: str = DEFAULT_LOCALE
) -> str:
    """Why a member gets ``limit``: which scope, and (for roles) the candidates it won against."""
    roles = list(role_limits)
    listed = ", ".join(f"{mention('role', r)} {render(units(u), locale)}" for r, u in roles)
    why: Text
    if limit.scope == "user":
        why = _("their own limit (it beats their roles: {roles})", roles=listed) if roles else _("their own limit")
    elif limit.scope == "role":
        role = mention("role", limit.scope_id)
        if len(roles) > 1:
            why = _("the role {role}, the most generous of their roles with a limit ({roles})", role=role, roles=listed)
        else:
            why = _("the role {role}", role=role)
    elif limit.scope == "channel":
        why = _("the channel {channel} (none of their roles has a limit)", channel=mention("channel", limit.scope_id))
    elif limit.scope == "guild":
        why = _("the server's limit (no member, role or channel limit applies)")
    else:
        why = _("the bot default (nothing is set for them here)")
    return _("**{units}** credits per window, from {why}.", units=units(limit.units), why=why).render(locale)


async def settings_overview(
    policy: PolicyService,
    guild_id: int,
    models: Sequence[ModelFacts],
    *,
    member: MemberContext | None = None,
    locale: str = DEFAULT_LOCALE,
) -> Overview:
    store, config = policy.store, policy.config
    settings = await store.settings(guild_id)
    rules = await store.limits(guild_id)
    window = await policy.ledger.window_for(guild_id)
    sections: list[tuple[str, str]] = []

    def say(text: Text) -> str:
        return text.render(locale)

    def section(title: Text, lines: Sequence[Text]) -> None:
        sections.append((say(title), clip([say(line) for line in lines], locale)))

    # -- window --------------------------------------------------------------------------------------
    kinds = {"daily": _p("window", "daily"), "weekly": _p("window", "weekly"), "monthly": _p("window", "monthly")}
    kinds["rolling"] = _p("window", "rolling")
    lines = [_("Kind: {kind}", kind=sourced(kinds.get(window.kind, window.kind), settings.window_kind is not None))]
    if window.is_rolling:
        hours = sourced(_("{hours} h", hours=window.rolling_hours), settings.rolling_hours is not None)
        lines.append(_("Length: {hours}", hours=hours))
        lines.append(_("Each credit comes back {hours} h after it was spent.", hours=window.rolling_hours))
    else:
        lines.append(_("Time zone: {zone}", zone=sourced(window.timezone, settings.timezone is not None)))
        resets = int(window.bounds()[1])
        lines.append(
            _("The current window resets {relative} ({when}).", relative=f"<t:{resets}:R>", when=f"<t:{resets}:f>")
        )
    section(_("Quota window"), lines)

    # -- allowances ----------------------------------------------------------------------------------
    limits: dict[tuple[str, int], int | None] = {(r.scope, r.scope_id): r.units for r in rules}
    default = policy.default_limit()
    lines = [_("Where nothing below applies: **{units}** · {source}", units=units(default.units), source=DEFAULT)]
    if ("guild", guild_id) in limits:
        lines.append(_("Whole server: {units}", units=sourced(units(limits["guild", guild_id]), True)))
    lines += [
        _("Channel {channel}: **{units}**", channel=mention("channel", r.scope_id), units=units(r.units))
        for r in rules
        if r.scope == "channel"
    ]
    lines += [
        _("Member {member}: **{units}**", member=mention("user", r.scope_id), units=units(r.units))
        for r in rules
        if r.scope == "user"
    ]
    lines.append(PRECEDENCE)
    section(_("Allowances (credits per window)"), lines)

    role_rules = [r for r in rules if r.scope == "role"]
    if role_rules:
        seen = await store.members_roles(guild_id)
        sections.append(
            (
                say(_("Roles with a limit (the most generous role wins)")),
                _roles(guild_id, role_rules, limits, seen, locale),
            )
        )

    # -- models and sizes ----------------------------------------------------------------------------
    sections.append((say(_("Models")), _models(settings, models, locale)))
    sections.append((say(_("Largest request")), _largest(settings, models, locale)))
    cap = config.max_queued_per_user
    if settings.max_in_flight:
        in_force = min(settings.max_in_flight, cap)
        jobs = _("{jobs} (the bot's own limit is {cap})", jobs=sourced(str(in_force), True), cap=cap)
    else:
        jobs = sourced(str(cap), False)
    sections.append((say(_("Jobs in progress per member")), say(jobs)))

    # -- where and who -------------------------------------------------------------------------------
    channels = await store.allowed_channels(guild_id)
    words = await store.banned_words(guild_id)
    blocks = await store.blocks(guild_id, policy.clock())
    if channels:
        where: Text = _("Channels: {channels} (and their threads)", channels=", ".join(f"<#{c}>" for c in channels))
    else:
        where = _("Channels: every channel")
    lines = [
        where,
        _("Banned words: {count} (`/seedream-admin banned-words list`)", count=len(words))
        if words
        else _("Banned words: {count}", count=0),
        _("Blocked members: {count}", count=len(blocks)),
        _("Log channel: {channel}", channel=f"<#{settings.log_channel_id}>" if settings.log_channel_id else _("none")),
    ]
    if config.global_daily_cap:
        lines.append(_("Bot-wide daily cap (the bot's owner): {cap} credits", cap=config.global_daily_cap))
    section(_("Where and who"), lines)

    if member is not None and member.guild_id == guild_id:
        resolved = limit_for(member, limits, default)
        role_limits = [(r, limits["role", r]) for r in member.real_role_ids if ("role", r) in limits]
        who = f"<@{member.user_id}>"
        why = describe_explanation(resolved, role_limits, locale)
        if member.channel_id:
            text = _("{member} in {channel}: {why}", member=who, channel=f"<#{member.channel_id}>", why=why)
        else:
            text = _("{member}: {why}", member=who, why=why)
        sections.append((say(_("For {member}", member=who)), say(text)))

    if settings.paused:
        if settings.paused_reason:
            state = _("⏸️ Generation is **paused** on this server: {reason}", reason=settings.paused_reason)
        else:
            state = _("⏸️ Generation is **paused** on this server.")
    else:
        state = _("Generation is running on this server.")
    sources = _(
        "Each value says where it comes from: **{server}** or the **{default}** (its config).",
        server=SERVER,
        default=DEFAULT,
    )
    return Overview(description=f"{say(state)}\n{say(sources)}", sections=tuple(sections))


def _roles(
    guild_id: int,
    role_rules: Sequence[LimitRule],
    limits: dict[tuple[str, int], int | None],
    seen: dict[int, tuple[int, ...]],
    locale: str = DEFAULT_LOCALE,
) -> str:
    """Each role's limit and the members (as last seen making a picture) it is the one in force for."""
    resolved = {
        user: limit_for(
            MemberContext(guild_id=guild_id, user_id=user, role_ids=roles), limits, ResolvedLimit(None, "default")
        )
        for user, roles in seen.items()
    }
    lines = []
    for rule in sorted(role_rules, key=lambda r: (r.units is not None, -(r.units or 0))):
        holders = [u for u, roles in seen.items() if rule.scope_id in roles]
        applies = [u for u in holders if (resolved[u].scope, resolved[u].scope_id) == ("role", rule.scope_id)]
        named = ", ".join(f"<@{u}>" for u in applies[:NAMED_PER_ROLE])
        if len(applies) > NAMED_PER_ROLE:
            named = _("{named} +{count} more", named=named, count=len(applies) - NAMED_PER_ROLE).render(locale)
        role, limit = f"<@&{rule.scope_id}>", units(rule.units)
        if applies:
            line = _("{role}: **{units}** → in force for {members}", role=role, units=limit, members=named)
        else:
            line = _("{role}: **{units}** → in force for no member seen yet", role=role, units=limit)
        others = len(holders) - len(applies)
        if others:
            line = _(
                "{line}; {others}",
                line=line,
                others=_n(
                    "{count} other member with it gets their own limit or a more generous role's",
                    "{count} other members with it get their own limit or a more generous role's",
                    others,
                ),
            )
        lines.append(line.render(locale))
    lines.append(_("Members as last seen making a picture here.").render(locale))
    return clip(lines, locale)


def _models(settings: GuildSettings, models: Sequence[ModelFacts], locale: str = DEFAULT_LOCALE) -> str:
    label = {m.name: f"{m.name} ({m.model})" for m in models}
    allowed = settings.allowed_providers
    if allowed is None:
        names = ", ".join(label.values()) or _("none configured").render(locale)
        return clip(
            [_("Allowed: **every model the bot has** · {source}", source=DEFAULT).render(locale), names], locale
        )
    chosen = ", ".join(label.get(n, n) for n in allowed) or _("none")
    lines = [_("Allowed: {models}", models=sourced(chosen, True))]
    refused = [label[m.name] for m in models if m.name not in allowed]
    if refused:
        lines.append(_("Not allowed: {models}", models=", ".join(refused)))
    gone = [n for n in allowed if n not in label]
    if gone:
        lines.append(_("No longer configured by the bot's owner: {models}", models=", ".join(gone)))
    return clip([line.render(locale) for line in lines], locale)


def _largest(settings: GuildSettings, models: Sequence[ModelFacts], locale: str = DEFAULT_LOCALE) -> str:
    offered = [r for r in RESOLUTIONS if any(r in m.resolutions for m in models)]
    most = max((m.max_count for m in models), default=None)
    resolution: Text
    if settings.max_resolution:
        resolution = sourced(settings.max_resolution, True)
    else:
        top = offered[-1] if offered else "—"
        resolution = _("**{resolution}** · what the models render (no server maximum)", resolution=top)
    count: Text
    if settings.max_count:
        count = sourced(str(settings.max_count), True)
    else:
        count = _("**{count}** · what the models make (no server maximum)", count=most or "—")
    lines = [_("Resolution: {resolution}", resolution=resolution), _("Images per request: {count}", count=count)]
    return "\n".join(line.render(locale) for line in lines)
