"""Decides whether a member may generate, and with which allowance, before anything is queued.

Order of refusals: guild not allowlisted, blocked, paused, wrong channel, provider not allowed,
resolution/count over the server's max, banned word (see ``bot.moderation.words``: a refusal for a banned word
is written to the server's audit log with the rule that matched). The allowance comes from the most specific
scope that has a rule: user > role > channel > guild > config default; among a member's roles the most generous
wins (unlimited beats any number). Moderators skip the pause and channel rules so they can test, nothing else.
Every rule is read in one statement (``ModerationStore.member_rules``). The jobs in flight and the quota are not
checked here: the store's admission trigger decides them, once, when the job row is written (``Ledger.admit``),
so two requests at once, or two processes, cannot both take the last place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from bot.config import QuotaSection, Settings
from bot.errors import InvalidRequest, NotAllowed
from bot.i18n import _, _n
from bot.moderation.models import Decision, MemberContext, MemberRules, MemberStatus, ResolvedLimit
from bot.moderation.store import ModerationStore
from bot.moderation.words import BannedMatch, find_banned_word
from bot.providers.base import GenerationRequest
from bot.quota import Clock, Ledger
from bot.sizes import RESOLUTIONS
from bot.storage import Store

log = logging.getLogger(__name__)
PERSONAL_USE_OFF = _(
    "Personal use is turned off by the bot's owner, so nothing was made and nothing was charged. "
    "You can still use me in servers that added me."
)
#: How much of a refused prompt the audit log keeps.
AUDIT_PROMPT_CHARS = 300


def most_generous(limits: Iterable[int | None]) -> int | None:
    """None (unlimited) beats every number; otherwise the largest. Needs at least one value."""
    values = list(limits)
    return None if None in values else max(v for v in values if v is not None)


class PolicyService:
    def __init__(
        self,
        db: Store,
        ledger: Ledger,
        config: QuotaSection,
        *,
        default_provider: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.config = config
        self.store = ModerationStore(db)
        self.default_provider = default_provider
        self.clock = clock or ledger.clock
        self._recorded_roles: dict[tuple[int, int], tuple[int, ...]] = {}  # what this process last wrote

    @classmethod
    def for_settings(cls, db: Store, ledger: Ledger, settings: Settings) -> PolicyService:
        return cls(db, ledger, settings.quota, default_provider=settings.generation.default_provider)

    # -- the check before /imagine ------------------------------------------------------------------
    async def check(self, ctx: MemberContext, request: GenerationRequest, provider_name: str | None) -> Decision:
        """Refuse with a domain error, or say which allowance applies (pass it to ``enqueue``)."""
        name = provider_name or self.default_provider or ""
        self.ensure_guild_allowed(ctx.guild_id)
        rules = await self._rules(ctx)
        if ctx.guild_id is not None:
            self._check_guild_rules(ctx, rules, request, name)
            match = find_banned_word(request.prompt, rules.banned_words)
            if match is not None:
                await self._audit_refusal(ctx.guild_id, ctx, match, request.prompt)
                raise InvalidRequest(
                    _(
                        "Your prompt contains a word that is not allowed on this server: “{word}”. Please rephrase it.",
                        word=match.word,
                    )
                )
        limit = self._resolve_limit(ctx, rules)
        await self._remember_roles(ctx, rules)
        return Decision(provider_name=name, limit=limit)

    def ensure_guild_allowed(self, guild_id: int | None) -> None:
        allowlist: Sequence[int] = self.config.guild_allowlist
        if guild_id is not None and allowlist and guild_id not in allowlist:
            raise NotAllowed(_("This bot is not enabled on this server. Its owner decides which servers may use it."))

    async def _rules(self, ctx: MemberContext) -> MemberRules:
        return await self.store.member_rules(ctx.guild_id, ctx.user_id, ctx.real_role_ids + ctx.channels, self.clock())

    def _check_guild_rules(
        self, ctx: MemberContext, rules: MemberRules, request: GenerationRequest, provider_name: str
    ) -> None:
        block, settings = rules.block, rules.settings
        if block is not None:
            if block.until is not None:
                raise NotAllowed(
                    _(
                        "A moderator has blocked you from making pictures on this server until {until}. "
                        "Reason: {reason}",
                        until=f"<t:{int(block.until)}:f>",
                        reason=block.reason,
                    )
                )
            raise NotAllowed(
                _(
                    "A moderator has blocked you from making pictures on this server. Reason: {reason}",
                    reason=block.reason,
                )
            )
        if settings.paused and not ctx.is_moderator:
            if settings.paused_reason:
                raise NotAllowed(
                    _(
                        "Image generation is paused on this server by its moderators ({reason}). Please try later.",
                        reason=settings.paused_reason,
                    )
                )
            raise NotAllowed(_("Image generation is paused on this server by its moderators. Please try later."))
        allowed = rules.allowed_channels
        if allowed and not ctx.is_moderator and not set(ctx.channels) & set(allowed):
            where = ", ".join(f"<#{c}>" for c in allowed)
            raise NotAllowed(_("Pictures can't be made in this channel; please use {channels}.", channels=where))
        if settings.allowed_providers is not None and provider_name not in settings.allowed_providers:
            if not settings.allowed_providers:
                raise NotAllowed(
                    _(
                        "The {model} model is not enabled on this server; allowed: none at the moment.",
                        model=repr(provider_name),
                    )
                )
            raise NotAllowed(
                _(
                    "The {model} model is not enabled on this server; allowed: {choices}.",
                    model=repr(provider_name),
                    choices=", ".join(settings.allowed_providers),
                )
            )
        if settings.max_resolution and _rank(request.resolution) > _rank(settings.max_resolution):
            raise InvalidRequest(
                _(
                    "This server allows resolutions up to {resolution}; please choose {resolution} or lower.",
                    resolution=settings.max_resolution,
                )
            )
        if settings.max_count and request.count > settings.max_count:
            raise InvalidRequest(
                _n(
                    "This server allows at most {count} image(s) per request.",
                    "This server allows at most {count} image(s) per request.",
                    settings.max_count,
                )
            )

    async def _audit_refusal(self, guild_id: int, ctx: MemberContext, match: BannedMatch, prompt: str) -> None:
        """The member sees one polite refusal whatever the rule; the moderators' audit log says which rule."""
        try:
            async with self.db.transaction() as conn:
                await self.store.append_audit(
                    conn,
                    guild_id=guild_id,
                    actor_id=ctx.user_id,
                    action="prompt.refused",
                    target=f"user:{ctx.user_id}",
                    details={
                        "word": match.word,
                        "rule": match.rule,
                        "channel_id": ctx.channel_id,
                        "prompt": prompt[:AUDIT_PROMPT_CHARS],
                    },
                    reason=f"banned word “{match.word}”, matched {match.description}",
                    now=self.clock(),
                )
        except Exception:  # the refusal stands even when the log cannot be written
            log.exception("guild %s: could not audit a refused prompt", guild_id)

    def _in_flight_cap(self, rules: MemberRules) -> int:
        """For /quota: the server's cap where it set one, never above the bot owner's ``max_queued_per_user``
        (the admission trigger enforces both, the owner's across every server)."""
        server = rules.settings.max_in_flight
        owner = self.config.max_queued_per_user
        return min(server, owner) if server else owner

    async def _remember_roles(self, ctx: MemberContext, rules: MemberRules) -> None:
        """Keep the member's roles as last seen, so usage reports can total per role."""
        if ctx.guild_id is None:
            return
        roles, member = tuple(sorted(ctx.real_role_ids)), (ctx.guild_id, ctx.user_id)
        if roles in (rules.stored_roles, self._recorded_roles.get(member)):  # a burst of commands writes once
            return
        self._recorded_roles[member] = roles
        try:
            async with self.db.transaction() as conn:
                await self.store.record_roles(conn, ctx.guild_id, ctx.user_id, roles, self.clock())
        except BaseException:
            self._recorded_roles.pop(member, None)
            raise

    # -- allowances ---------------------------------------------------------------------------------
    async def resolve_limit(self, ctx: MemberContext) -> ResolvedLimit:
        """The allowance from the most specific scope that has a rule (see the module docstring)."""
        return self._resolve_limit(ctx, await self._rules(ctx))

    def _resolve_limit(self, ctx: MemberContext, rules: MemberRules) -> ResolvedLimit:
        if ctx.guild_id is None:
            return self.personal_limit()
        return limit_for(ctx, rules.limits, self.default_limit())

    def personal_limit(self) -> ResolvedLimit:
        """Outside servers (DMs, group DMs, servers without the bot) one personal allowance per member per day,
        ``[quota] personal_daily``; 0 means personal use is off."""
        if not self.config.personal_daily:
            raise NotAllowed(PERSONAL_USE_OFF)
        return ResolvedLimit(self.config.personal_daily, "personal")

    def default_limit(self) -> ResolvedLimit:
        """The bot's own allowance where no scope has a rule (config 0 = unlimited)."""
        return ResolvedLimit(self.config.default_limit or None, "default")

    async def status(self, ctx: MemberContext) -> MemberStatus:
        """Everything /quota shows: used, left, next reset, in-flight jobs, and any block or pause."""
        rules = await self._rules(ctx)
        limit = self._resolve_limit(ctx, rules)
        balance = await self.ledger.balance(ctx.guild_id, ctx.user_id, limit.units)
        paused = ctx.guild_id is not None and rules.settings.paused
        return MemberStatus(
            limit=limit,
            balance=balance,
            in_flight=rules.in_flight,
            in_flight_cap=self._in_flight_cap(rules),
            block=rules.block if ctx.guild_id is not None else None,
            paused=paused,
        )


def limit_for(
    ctx: MemberContext, limits: Mapping[tuple[str, int], int | None], default: ResolvedLimit
) -> ResolvedLimit:
    """The allowance from the most specific scope in ``limits`` (keyed by (scope, id)) that bears on ``ctx``."""
    if ctx.guild_id is None:
        return default
    if ("user", ctx.user_id) in limits:
        return ResolvedLimit(limits["user", ctx.user_id], "user", ctx.user_id)
    roles = {r: limits["role", r] for r in ctx.real_role_ids if ("role", r) in limits}
    if roles:
        best = most_generous(roles.values())
        role_id = next(r for r in ctx.real_role_ids if r in roles and roles[r] == best)
        return ResolvedLimit(best, "role", role_id)
    for channel_id in ctx.channels:
        if ("channel", channel_id) in limits:
            return ResolvedLimit(limits["channel", channel_id], "channel", channel_id)
    if ("guild", ctx.guild_id) in limits:
        return ResolvedLimit(limits["guild", ctx.guild_id], "guild", ctx.guild_id)
    return default


def _rank(resolution: str) -> int:
    return RESOLUTIONS.index(resolution) if resolution in RESOLUTIONS else len(RESOLUTIONS)
