"""What moderators change. Every action writes its audit row in the same transaction as the change,
so the audit log can never miss (or invent) an action.

Scope: a server's moderators change that server only. What affects every server belongs to the bot's
owner: lifting a provider's bot-wide pause for credit (``resume(..., is_owner=...)``; ``ProviderHealth``
refuses non-owners) and the bot-wide limits (``[quota] global_daily_cap``, ``guild_allowlist``), which no
command changes: they live in the config file. Whether a member is an owner is decided by the Discord
layer and passed in as a plain bool.
"""

from __future__ import annotations

import difflib
import functools
import json
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from bot.errors import InvalidRequest
from bot.i18n import _, _n
from bot.moderation.models import Block, ResumeOutcome, ScopeKind
from bot.moderation.store import ModerationStore
from bot.moderation.words import fold, remove_invisible
from bot.provider_health import ProviderHealth
from bot.quota import WINDOW_KINDS, Clock, Ledger
from bot.sizes import RESOLUTIONS
from bot.storage import Store, StoreConnection

MAX_WORD_LENGTH = 100
MAX_REASON_LENGTH = 500
MAX_ROLLING_HOURS = 24 * 31
#: Bounds when the caller does not say what the providers make / what the bot's owner allows.
MAX_COUNT = 100
MAX_IN_FLIGHT = 100
#: What ``reset_settings`` returns to the config's defaults, and the guild_settings columns each covers.
RESETTABLE: dict[str, tuple[str, ...]] = {
    "window": ("window_kind", "timezone", "rolling_hours"),
    "models": ("allowed_providers",),
    "max-resolution": ("max_resolution",),
    "max-count": ("max_count",),
    "in-flight": ("max_in_flight",),
}
#: How ``change_allowed_providers`` edits the list.
PROVIDER_ACTIONS: tuple[str, ...] = ("only", "allow", "disallow", "all")


#: Files in a zoneinfo folder that are not places: the machine's own zone, and tzdata's placeholder.
NOT_PLACES = frozenset({"localtime", "posixrules", "factory"})


@functools.cache
def _timezones() -> dict[str, str]:
    """Every IANA name the time zone database has, keyed by its lower-case form."""
    return {name.lower(): name for name in available_timezones() if name.lower() not in NOT_PLACES}


def canonical_timezone(name: str) -> str:
    """The time zone database's spelling of ``name`` (case does not matter); refuses names it lacks."""
    cleaned = name.strip().replace(" ", "_")
    if not cleaned:
        raise InvalidRequest(_("Please give a time zone, such as Europe/Berlin, America/New_York or Asia/Tokyo."))
    found = _timezones().get(cleaned.lower())
    if found is not None:
        try:
            ZoneInfo(found)
        except (ZoneInfoNotFoundError, ValueError):
            found = None
    if found is None:
        close = difflib.get_close_matches(cleaned.lower(), list(_timezones()), n=1, cutoff=0.75)
        typed = name.strip()[:60]
        if close:
            raise InvalidRequest(
                _(
                    "“{typed}” is not a time zone I know. Did you mean {guess}? Please use a name from the time zone "
                    "database, such as Europe/Berlin, America/New_York or Asia/Tokyo.",
                    typed=typed,
                    guess=_timezones()[close[0]],
                )
            )
        raise InvalidRequest(
            _(
                "“{typed}” is not a time zone I know. Please use a name from the time zone "
                "database, such as Europe/Berlin, America/New_York or Asia/Tokyo.",
                typed=typed,
            )
        )
    return found


#: Offered when a moderator has not typed anything into the time zone option yet.
COMMON_TIMEZONES: tuple[str, ...] = (
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "Europe/Madrid",
    "Europe/Moscow",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Australia/Sydney",
)


def timezone_suggestions(typed: str, limit: int = 25) -> list[str]:
    """Time zone names for autocomplete: those starting with what was typed, then those containing it."""
    needle = typed.strip().replace(" ", "_").lower()
    if not needle:
        return [z for z in COMMON_TIMEZONES if z.lower() in _timezones()][:limit]
    names = sorted(_timezones().items())
    starts = [name for key, name in names if key.startswith(needle) or key.split("/")[-1].startswith(needle)]
    contains = [name for key, name in names if needle in key and name not in starts]
    return (starts + contains)[:limit]


def providers_serving(model: str, catalog: Mapping[str, str]) -> list[str]:
    """The configured providers (``catalog``: name -> model) that serve ``model``, case aside; refuses a model
    none of them serves."""
    wanted = model.strip().lower()
    names = sorted(name for name, served in catalog.items() if served.lower() == wanted)
    if not names:
        have = ", ".join(sorted(set(catalog.values()))) or _("none")
        raise InvalidRequest(
            _("This bot has no model called “{model}”; it has {have}.", model=model.strip()[:60], have=have)
        )
    return names


def canonical_resolution(tier: str) -> str:
    """``tier`` as one of ``RESOLUTIONS`` (``2k`` is 2K); refuses tiers that do not exist."""
    cleaned = tier.strip().upper()
    if cleaned not in RESOLUTIONS:
        raise InvalidRequest(
            _(
                "“{tier}” is not a resolution tier; please choose one of {choices}.",
                tier=tier.strip()[:20],
                choices=", ".join(RESOLUTIONS),
            )
        )
    return cleaned


def normalise_word(word: str) -> str:
    """How a banned word is stored and shown: NFKC, invisible characters removed, lower-case, single spaces.

    Look-alike letters and accents are kept as the moderator typed them (the list shows what they added);
    matching folds them away (``bot.moderation.words.fold``). Refuses what could never match a prompt."""
    visible = remove_invisible(unicodedata.normalize("NFKC", word))
    cleaned = " ".join(visible.split()).lower()
    if not cleaned or not fold(cleaned).strip():
        raise InvalidRequest(_("A banned word cannot be empty."))
    if len(cleaned) > MAX_WORD_LENGTH:
        raise InvalidRequest(_("A banned word can be at most {limit} characters.", limit=MAX_WORD_LENGTH))
    return cleaned


def _stored_as(word: str) -> str | None:
    """``normalise_word`` of a stored word (rows from before it removed invisible characters may differ)."""
    try:
        return normalise_word(word)
    except InvalidRequest:
        return None


def _reason(reason: str | None) -> str | None:
    cleaned = " ".join((reason or "").split())
    return cleaned[:MAX_REASON_LENGTH] or None


class ModeratorActions:
    def __init__(
        self, db: Store, ledger: Ledger, *, provider_names: Collection[str] = (), clock: Clock | None = None
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.store = ModerationStore(db)
        self.provider_names = tuple(provider_names)
        self.clock = clock or ledger.clock

    async def _audit(
        self,
        conn: StoreConnection,
        guild_id: int,
        actor_id: int,
        action: str,
        target: str | None,
        reason: str | None = None,
        **details: Any,
    ) -> None:
        await self.store.append_audit(
            conn,
            guild_id=guild_id,
            actor_id=actor_id,
            action=action,
            target=target,
            details=details,
            reason=_reason(reason),
            now=self.clock(),
        )

    async def _set(
        self,
        guild_id: int,
        actor_id: int,
        action: str,
        changes: Mapping[str, Any],
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        async with self.db.transaction() as conn:
            await self.store.update_settings(conn, guild_id, changes, self.clock())
            await self._audit(conn, guild_id, actor_id, action, None, reason, **(details or changes))

    # -- limits -------------------------------------------------------------------------------------
    async def set_limit(
        self,
        guild_id: int,
        actor_id: int,
        scope: ScopeKind,
        scope_id: int | None,
        units: int | None,
        reason: str | None = None,
    ) -> None:
        """Units per window for a scope; None = unlimited. The guild scope ignores ``scope_id``."""
        if units is not None and units < 0:
            raise InvalidRequest(
                _("A limit cannot be negative; use 0 to allow nothing or leave it empty for unlimited.")
            )
        target_id = self._scope_id(guild_id, scope, scope_id)
        async with self.db.transaction() as conn:
            await self.store.put_limit(conn, guild_id, scope, target_id, units, actor_id, self.clock())
            await self._audit(conn, guild_id, actor_id, "limit.set", f"{scope}:{target_id}", reason, units=units)

    async def clear_limit(
        self, guild_id: int, actor_id: int, scope: ScopeKind, scope_id: int | None, reason: str | None = None
    ) -> bool:
        """Remove a scope's rule so the next scope decides; False if there was none."""
        target_id = self._scope_id(guild_id, scope, scope_id)
        async with self.db.transaction() as conn:
            removed = await self.store.delete_limit(conn, guild_id, scope, target_id)
            if removed:
                await self._audit(conn, guild_id, actor_id, "limit.clear", f"{scope}:{target_id}", reason)
        return removed

    @staticmethod
    def _scope_id(guild_id: int, scope: ScopeKind, scope_id: int | None) -> int:
        if scope == "guild":
            return guild_id
        if scope_id is None:
            which = {
                "role": _("Say which role the limit is for."),
                "channel": _("Say which channel the limit is for."),
            }
            raise InvalidRequest(which.get(scope, _("Say which user the limit is for.")))
        if scope == "role" and scope_id == guild_id:
            raise InvalidRequest(_("Set the server-wide limit with the guild scope rather than on @everyone."))
        return scope_id

    # -- members ------------------------------------------------------------------------------------
    async def block(self, guild_id: int, actor_id: int, user_id: int, reason: str, until: float | None = None) -> Block:
        """Stop a member generating here, until ``until`` (Unix time) or until unblocked."""
        cleaned = _reason(reason)
        if cleaned is None:
            raise InvalidRequest(_("Please give a reason for the block; the member is shown it."))
        now = self.clock()
        if until is not None and until <= now:
            raise InvalidRequest(_("The block's end must be in the future."))
        block = Block(user_id=user_id, reason=cleaned, until=until, blocked_by=actor_id, created_at=now)
        async with self.db.transaction() as conn:
            await self.store.put_block(conn, guild_id, block)
            await self._audit(conn, guild_id, actor_id, "member.block", f"user:{user_id}", cleaned, until=until)
        return block

    async def unblock(self, guild_id: int, actor_id: int, user_id: int, reason: str | None = None) -> bool:
        """False if the member was not blocked (or the block had already expired)."""
        async with self.db.transaction() as conn:
            was_blocked = await self.store.delete_block(conn, guild_id, user_id, self.clock())
            await self._audit(
                conn, guild_id, actor_id, "member.unblock", f"user:{user_id}", reason, was_blocked=was_blocked
            )
        return was_blocked

    async def refund(self, guild_id: int, actor_id: int, user_id: int, units: int, reason: str) -> int:
        """Give a member units back in the current window (a ledger entry); returns their new usage."""
        cleaned = _reason(reason)
        if cleaned is None:
            raise InvalidRequest(_("Please give a reason for the refund."))
        if units <= 0:
            raise InvalidRequest(_("Refund at least 1 credit."))
        async with self.db.transaction() as conn:
            await self.ledger.lock_member(conn, user_id)  # two moderators at once cannot both refund the same
            refundable = await self.ledger.refundable(guild_id, user_id, conn)
            if units > refundable:
                raise InvalidRequest(
                    _n(
                        "That member has been charged {count} credit in the current window (jobs still running "
                        "excluded), so at most {count} can be refunded.",
                        "That member has been charged {count} credits in the current window (jobs still running "
                        "excluded), so at most {count} can be refunded.",
                        refundable,
                    )
                )
            await self.ledger.refund_manually(
                conn, guild_id=guild_id, user_id=user_id, units=units, actor_id=actor_id, note=cleaned
            )
            await self._audit(conn, guild_id, actor_id, "quota.refund", f"user:{user_id}", cleaned, units=units)
            return await self.ledger.used(guild_id, user_id, conn)

    # -- where and what -----------------------------------------------------------------------------
    async def set_allowed_channels(
        self, guild_id: int, actor_id: int, channel_ids: Iterable[int], reason: str | None = None
    ) -> list[int]:
        """Only these channels from now on; an empty list allows every channel again."""
        channels = sorted(set(channel_ids))
        async with self.db.transaction() as conn:
            await self.store.replace_channels(conn, guild_id, channels)
            action = "channels.set" if channels else "channels.clear"
            await self._audit(conn, guild_id, actor_id, action, None, reason, channel_ids=channels)
        return channels

    async def add_banned_words(self, guild_id: int, actor_id: int, words: Iterable[str]) -> list[str]:
        """Returns the words that were new."""
        cleaned = sorted({normalise_word(w) for w in words})
        async with self.db.transaction() as conn:
            added = [w for w in cleaned if await self.store.add_word(conn, guild_id, w, actor_id, self.clock())]
            await self._audit(conn, guild_id, actor_id, "banned_words.add", None, None, words=added)
        return added

    async def remove_banned_words(self, guild_id: int, actor_id: int, words: Iterable[str]) -> list[str]:
        """Returns the words that were on the list (a stored word is removed whenever it normalises the same)."""
        cleaned = {normalise_word(w) for w in words}
        async with self.db.transaction() as conn:
            stored = await self.store.banned_words(guild_id, conn)
            removed = [
                w for w in stored if _stored_as(w) in cleaned and await self.store.remove_word(conn, guild_id, w)
            ]
            await self._audit(conn, guild_id, actor_id, "banned_words.remove", None, None, words=removed)
        return removed

    async def pause(self, guild_id: int, actor_id: int, reason: str | None = None) -> None:
        await self._set(guild_id, actor_id, "generation.pause", {"paused": 1, "paused_reason": _reason(reason)}, reason)

    async def resume(
        self,
        guild_id: int,
        actor_id: int,
        reason: str | None = None,
        *,
        health: ProviderHealth | None = None,
        is_owner: bool = False,
    ) -> ResumeOutcome:
        """Lift this server's pause. With ``health``, the bot's owner also lifts every provider's bot-wide
        pause for credit (audited here); a server moderator is told why those stay and when they end."""
        paused = health.paused() if health is not None else []
        lift = bool(paused) and is_owner
        async with self.db.transaction() as conn:
            await self.store.update_settings(conn, guild_id, {"paused": 0, "paused_reason": None}, self.clock())
            await self._audit(conn, guild_id, actor_id, "generation.resume", None, reason, paused=0, paused_reason=None)
            if lift:
                await self._audit(conn, guild_id, actor_id, "providers.resume", None, reason, providers=paused)
        if health is None or not paused:
            return ResumeOutcome()
        if not lift:
            return ResumeOutcome(still_paused=tuple(paused), note=health.owner_only(paused))
        return ResumeOutcome(providers_resumed=tuple(health.resume(by_owner=True)))

    async def set_log_channel(self, guild_id: int, actor_id: int, channel_id: int | None) -> None:
        """Where moderation events and provider billing problems are reported (None: nowhere)."""
        await self._set(guild_id, actor_id, "log_channel.set", {"log_channel_id": channel_id})

    async def set_window(
        self,
        guild_id: int,
        actor_id: int,
        kind: str | None = None,
        timezone: str | None = None,
        rolling_hours: int | None = None,
    ) -> dict[str, Any]:
        """Change the guild's quota window; what is None stays as it was (``reset_settings`` returns to the
        config's). ``timezone`` is an IANA name such as Europe/Berlin, matched without regard to case.
        Returns the columns written."""
        changes: dict[str, Any] = {}
        if kind is not None:
            if kind not in WINDOW_KINDS:
                raise InvalidRequest(
                    _(
                        "“{kind}” is not a quota window; choose one of {choices}.",
                        kind=kind,
                        choices=", ".join(WINDOW_KINDS),
                    )
                )
            changes["window_kind"] = kind
        if timezone is not None:
            changes["timezone"] = canonical_timezone(timezone)
        if rolling_hours is not None:
            if not 1 <= rolling_hours <= MAX_ROLLING_HOURS:
                raise InvalidRequest(
                    _(
                        "A rolling window lasts between 1 and {most} hours (31 days), not {hours}.",
                        most=MAX_ROLLING_HOURS,
                        hours=rolling_hours,
                    )
                )
            changes["rolling_hours"] = rolling_hours
        if not changes:
            raise InvalidRequest(_("Please choose a window, a time zone or the hours of a rolling window."))
        await self._set(guild_id, actor_id, "window.set", changes)
        self.ledger.forget_window(guild_id)
        return changes

    async def reset_settings(self, guild_id: int, actor_id: int, names: Iterable[str]) -> list[str]:
        """Return settings (names of ``RESETTABLE``) to the config's defaults; returns those that had a value.
        Nothing is written (or audited) when none had."""
        wanted = list(dict.fromkeys(names))
        unknown = [n for n in wanted if n not in RESETTABLE]
        if unknown or not wanted:
            raise InvalidRequest(_("Choose what to reset: {choices}.", choices=", ".join(RESETTABLE)))
        async with self.db.transaction() as conn:
            current = await self.store.settings(guild_id, conn)
            was_set = [n for n in wanted if any(getattr(current, c) is not None for c in RESETTABLE[n])]
            if not was_set:
                return []
            changes = {column: None for n in was_set for column in RESETTABLE[n]}
            await self.store.update_settings(conn, guild_id, changes, self.clock())
            await self._audit(conn, guild_id, actor_id, "settings.reset", None, None, settings=was_set)
        if "window" in was_set:
            self.ledger.forget_window(guild_id)
        return was_set

    async def set_allowed_providers(self, guild_id: int, actor_id: int, names: Iterable[str] | None) -> None:
        """Which configured providers (each one provider+model) members may choose; None = all."""
        chosen = None if names is None else sorted(set(names))
        self._known_providers(chosen or ())
        stored = None if chosen is None else json.dumps(chosen)
        await self._set(
            guild_id, actor_id, "providers.set", {"allowed_providers": stored}, details={"providers": chosen}
        )

    async def change_allowed_providers(
        self,
        guild_id: int,
        actor_id: int,
        action: str,
        names: Collection[str] = (),
        *,
        model: str | None = None,
    ) -> tuple[tuple[str, ...] | None, bool]:
        """Edit the allowed list one step at a time: ``only`` these, ``allow`` or ``disallow`` these, or ``all``
        (None: every configured provider, including ones the owner adds later). ``model`` names the model the
        moderator chose when ``names`` are the providers serving it (for the audit log). Returns the list now in
        force and whether it changed (nothing is written or audited when it did not)."""
        if action not in PROVIDER_ACTIONS:
            raise InvalidRequest(_("Choose one of {choices}.", choices=", ".join(PROVIDER_ACTIONS)))
        chosen = set(names)
        if action != "all" and not chosen:
            if action == "disallow":
                raise InvalidRequest(_("Please say which model to disallow."))
            raise InvalidRequest(_("Please say which model to allow."))
        self._known_providers(chosen)
        async with self.db.transaction() as conn:
            current = (await self.store.settings(guild_id, conn)).allowed_providers
            new: tuple[str, ...] | None
            if action == "all":
                new = None
            elif action == "only":
                new = tuple(sorted(chosen))
            elif action == "allow":
                new = None if current is None else tuple(sorted({*current, *chosen}))
            else:
                base = set(self.provider_names) if current is None else set(current)
                new = tuple(sorted(base - chosen))
                if not new:
                    raise InvalidRequest(
                        _(
                            "That would leave no model allowed on this server. To stop image generation for a "
                            "while, use /seedream-admin pause instead."
                        )
                    )
            if new == current:
                return current, False
            stored = None if new is None else json.dumps(list(new))
            await self.store.update_settings(conn, guild_id, {"allowed_providers": stored}, self.clock())
            details: dict[str, Any] = {"providers": None if new is None else list(new), "step": action}
            if chosen:
                details["chosen"] = sorted(chosen)
            if model is not None:
                details["model"] = model
            await self._audit(conn, guild_id, actor_id, "providers.set", None, None, **details)
        return new, True

    def _known_providers(self, names: Iterable[str]) -> None:
        unknown = sorted(set(names) - set(self.provider_names)) if self.provider_names else []
        if unknown:
            raise InvalidRequest(
                _(
                    "This bot has no provider called {names}; it has {have}.",
                    names=", ".join(repr(n) for n in unknown),
                    have=", ".join(self.provider_names),
                )
            )

    async def set_max_resolution(self, guild_id: int, actor_id: int, resolution: str | None) -> None:
        await self.set_request_max(guild_id, actor_id, resolution=resolution, clear_resolution=resolution is None)

    async def set_max_count(
        self, guild_id: int, actor_id: int, count: int | None, *, largest: int | None = None
    ) -> None:
        await self.set_request_max(guild_id, actor_id, count=count, clear_count=count is None, largest=largest)

    async def set_request_max(
        self,
        guild_id: int,
        actor_id: int,
        *,
        resolution: str | None = None,
        count: int | None = None,
        largest: int | None = None,
        clear_resolution: bool = False,
        clear_count: bool = False,
    ) -> dict[str, Any]:
        """The largest resolution tier and image count one request may ask for here, checked together and
        written together (one audit row each). ``largest`` is the most any configured model makes per request;
        a larger maximum would mean nothing. Returns the columns written."""
        changes: dict[str, Any] = {}
        if resolution is not None:
            changes["max_resolution"] = canonical_resolution(resolution)
        elif clear_resolution:
            changes["max_resolution"] = None
        if count is not None:
            top = largest or MAX_COUNT
            if not 1 <= count <= top:
                raise InvalidRequest(
                    _(
                        "The largest image count must be between 1 and {most} (the most a model here makes in one "
                        "request), not {count}.",
                        most=top,
                        count=count,
                    )
                )
            changes["max_count"] = count
        elif clear_count:
            changes["max_count"] = None
        if not changes:
            raise InvalidRequest(_("Please choose a largest resolution, a largest image count, or both."))
        async with self.db.transaction() as conn:
            await self.store.update_settings(conn, guild_id, changes, self.clock())
            for column, value in changes.items():
                await self._audit(conn, guild_id, actor_id, f"{column}.set", None, None, **{column: value})
        return changes

    async def set_max_in_flight(
        self, guild_id: int, actor_id: int, jobs: int | None, *, ceiling: int | None = None
    ) -> None:
        """How many jobs one member may have waiting or running here (None: the config default). ``ceiling`` is
        the bot owner's limit per member (``[quota] max_queued_per_user``): a server may lower it, not raise it."""
        if jobs is not None:
            top = ceiling or MAX_IN_FLIGHT
            if not 1 <= jobs <= top:
                if ceiling:
                    raise InvalidRequest(
                        _(
                            "Jobs in progress per member must be between 1 and {most} (the bot's own limit), not "
                            "{jobs}.",
                            most=top,
                            jobs=jobs,
                        )
                    )
                raise InvalidRequest(
                    _("Jobs in progress per member must be between 1 and {most}, not {jobs}.", most=top, jobs=jobs)
                )
        await self._set(guild_id, actor_id, "max_in_flight.set", {"max_in_flight": jobs})
