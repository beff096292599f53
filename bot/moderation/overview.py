"""What ``/seedream-admin settings show`` tells moderators: every rule in force on a server and where it comes
from (set on the server, or the bot's default from its config), and which role's limit applies to whom.

Plain text with Discord's mention and timestamp syntax; the cog puts each section into an embed field.
Sections stay within an embed field's 1024 characters (long lists end with "… and N more").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot.moderation.models import GuildSettings, LimitRule, MemberContext, ResolvedLimit
from bot.moderation.policy import PolicyService, limit_for
from bot.sizes import RESOLUTIONS

SERVER = "set on this server"
DEFAULT = "bot default"
#: Discord's limit for an embed field's value, less room for the "… and N more" line.
FIELD_BUDGET = 980
#: Members named per role before "+N more".
NAMED_PER_ROLE = 5
PRECEDENCE = (
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


def units(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def mention(scope: str, scope_id: int | None) -> str:
    return {"user": f"<@{scope_id}>", "role": f"<@&{scope_id}>", "channel": f"<#{scope_id}>"}.get(scope, "the server")


def clip(lines: Sequence[str], budget: int = FIELD_BUDGET) -> str:
    """Join ``lines``, dropping the tail with a count once the text would outgrow an embed field."""
    kept: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        if len(line) > budget:  # one very long line (a list of many channels or models): cut it
            line = line[: max(0, budget - used - 30)].rsplit(", ", 1)[0] + ", …"
        if used + len(line) + 1 > budget:
            kept.append(f"… and {len(lines) - index} more")
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join(kept) or "—"


def sourced(value: str, is_set: bool) -> str:
    return f"**{value}** · {SERVER if is_set else DEFAULT}"


def describe_explanation(limit: ResolvedLimit, role_limits: Iterable[tuple[int, int | None]]) -> str:
    """Why a member gets ``limit``: which scope, and (for roles) the candidates it won against."""
    roles = list(role_limits)
    listed = ", ".join(f"{mention('role', r)} {units(u)}" for r, u in roles)
    if limit.scope == "user":
        why = "their own limit"
        if roles:
            why += f" (it beats their roles: {listed})"
    elif limit.scope == "role":
        why = f"the role {mention('role', limit.scope_id)}"
        if len(roles) > 1:
            why += f", the most generous of their roles with a limit ({listed})"
    elif limit.scope == "channel":
        why = f"the channel {mention('channel', limit.scope_id)} (none of their roles has a limit)"
    elif limit.scope == "guild":
        why = "the server's limit (no member, role or channel limit applies)"
    else:
        why = "the bot default (nothing is set for them here)"
    return f"**{units(limit.units)}** credits per window, from {why}."


async def settings_overview(
    policy: PolicyService,
    guild_id: int,
    models: Sequence[ModelFacts],
    *,
    member: MemberContext | None = None,
) -> Overview:
    store, config = policy.store, policy.config
    settings = await store.settings(guild_id)
    rules = await store.limits(guild_id)
    window = await policy.ledger.window_for(guild_id)
    sections: list[tuple[str, str]] = []

    # -- window --------------------------------------------------------------------------------------
    lines = [f"Kind: {sourced(window.kind, settings.window_kind is not None)}"]
    if window.is_rolling:
        lines.append(f"Length: {sourced(f'{window.rolling_hours} h', settings.rolling_hours is not None)}")
        lines.append(f"Each credit comes back {window.rolling_hours} h after it was spent.")
    else:
        lines.append(f"Time zone: {sourced(window.timezone, settings.timezone is not None)}")
        resets = int(window.bounds()[1])
        lines.append(f"The current window resets <t:{resets}:R> (<t:{resets}:f>).")
    sections.append(("Quota window", clip(lines)))

    # -- allowances ----------------------------------------------------------------------------------
    limits: dict[tuple[str, int], int | None] = {(r.scope, r.scope_id): r.units for r in rules}
    default = policy.default_limit()
    lines = [f"Where nothing below applies: **{units(default.units)}** · {DEFAULT}"]
    if ("guild", guild_id) in limits:
        lines.append(f"Whole server: {sourced(units(limits['guild', guild_id]), True)}")
    lines += [f"Channel {mention('channel', r.scope_id)}: **{units(r.units)}**" for r in rules if r.scope == "channel"]
    lines += [f"Member {mention('user', r.scope_id)}: **{units(r.units)}**" for r in rules if r.scope == "user"]
    lines.append(PRECEDENCE)
    sections.append(("Allowances (credits per window)", clip(lines)))

    role_rules = [r for r in rules if r.scope == "role"]
    if role_rules:
        seen = await store.members_roles(guild_id)
        sections.append(
            ("Roles with a limit (the most generous role wins)", _roles(guild_id, role_rules, limits, seen))
        )

    # -- models and sizes ----------------------------------------------------------------------------
    sections.append(("Models", _models(settings, models)))
    sections.append(("Largest request", _largest(settings, models)))
    cap = config.max_queued_per_user
    if settings.max_in_flight:
        in_force = min(settings.max_in_flight, cap)
        jobs = f"{sourced(str(in_force), True)} (the bot's own limit is {cap})"
    else:
        jobs = sourced(str(cap), False)
    sections.append(("Jobs in progress per member", jobs))

    # -- where and who -------------------------------------------------------------------------------
    channels = await store.allowed_channels(guild_id)
    words = await store.banned_words(guild_id)
    blocks = await store.blocks(guild_id, policy.clock())
    where = ", ".join(mention("channel", c) for c in channels) + " (and their threads)" if channels else "every channel"
    lines = [
        f"Channels: {where}",
        f"Banned words: {len(words)}" + (" (`/seedream-admin banned-words list`)" if words else ""),
        f"Blocked members: {len(blocks)}",
        f"Log channel: {mention('channel', settings.log_channel_id) if settings.log_channel_id else 'none'}",
    ]
    if config.global_daily_cap:
        lines.append(f"Bot-wide daily cap (the bot's owner): {config.global_daily_cap} credits")
    sections.append(("Where and who", clip(lines)))

    if member is not None and member.guild_id == guild_id:
        resolved = limit_for(member, limits, default)
        role_limits = [(r, limits["role", r]) for r in member.real_role_ids if ("role", r) in limits]
        who = mention("user", member.user_id)
        where_asked = f" in {mention('channel', member.channel_id)}" if member.channel_id else ""
        sections.append(("For " + who, f"{who}{where_asked}: {describe_explanation(resolved, role_limits)}"))

    if settings.paused:
        state = "⏸️ Generation is **paused** on this server" + (
            f": {settings.paused_reason}" if settings.paused_reason else "."
        )
    else:
        state = "Generation is running on this server."
    description = f"{state}\nEach value says where it comes from: **{SERVER}** or the **{DEFAULT}** (its config)."
    return Overview(description=description, sections=tuple(sections))


def _roles(
    guild_id: int,
    role_rules: Sequence[LimitRule],
    limits: dict[tuple[str, int], int | None],
    seen: dict[int, tuple[int, ...]],
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
        named = ", ".join(mention("user", u) for u in applies[:NAMED_PER_ROLE])
        more = f" +{len(applies) - NAMED_PER_ROLE} more" if len(applies) > NAMED_PER_ROLE else ""
        line = f"{mention('role', rule.scope_id)}: **{units(rule.units)}** → "
        line += f"in force for {named}{more}" if applies else "in force for no member seen yet"
        others = len(holders) - len(applies)
        if others:
            line += f"; {others} other member{'s' if others != 1 else ''} with it get{'s' if others == 1 else ''} "
            line += "their own limit or a more generous role's"
        lines.append(line)
    lines.append("Members as last seen making a picture here.")
    return clip(lines)


def _models(settings: GuildSettings, models: Sequence[ModelFacts]) -> str:
    label = {m.name: f"{m.name} ({m.model})" for m in models}
    allowed = settings.allowed_providers
    if allowed is None:
        names = ", ".join(label.values()) or "none configured"
        return clip([f"Allowed: **every model the bot has** · {DEFAULT}", names])
    lines = [f"Allowed: {sourced(', '.join(label.get(n, n) for n in allowed) or 'none', True)}"]
    refused = [label[m.name] for m in models if m.name not in allowed]
    if refused:
        lines.append(f"Not allowed: {', '.join(refused)}")
    gone = [n for n in allowed if n not in label]
    if gone:
        lines.append(f"No longer configured by the bot's owner: {', '.join(gone)}")
    return clip(lines)


def _largest(settings: GuildSettings, models: Sequence[ModelFacts]) -> str:
    offered = [r for r in RESOLUTIONS if any(r in m.resolutions for m in models)]
    most = max((m.max_count for m in models), default=None)
    if settings.max_resolution:
        resolution = sourced(settings.max_resolution, True)
    else:
        resolution = f"**{offered[-1] if offered else '—'}** · what the models render (no server maximum)"
    if settings.max_count:
        count = sourced(str(settings.max_count), True)
    else:
        count = f"**{most or '—'}** · what the models make (no server maximum)"
    return f"Resolution: {resolution}\nImages per request: {count}"
