"""What moderators change. Every action writes its audit row in the same transaction as the change,
so the audit log can never miss (or invent) an action.

Scope: a server's moderators change that server only. What affects every server belongs to the bot's
owner: lifting a provider's bot-wide pause for credit (``resume(..., is_owner=...)``; ``ProviderHealth``
refuses non-owners) and the bot-wide limits (``[quota] global_daily_cap``, ``guild_allowlist``), which no
command changes: they live in the config file. Whether a member is an owner is decided by the Discord
layer and passed in as a plain bool.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiosqlite

from bot.errors import InvalidRequest
from bot.moderation.models import Block, ResumeOutcome, ScopeKind
from bot.moderation.store import ModerationStore
from bot.moderation.words import fold, remove_invisible
from bot.provider_health import ProviderHealth
from bot.quota import WINDOW_KINDS, Clock, Ledger
from bot.sizes import RESOLUTIONS
from bot.storage import Database

MAX_WORD_LENGTH = 100
MAX_REASON_LENGTH = 500


def normalise_word(word: str) -> str:
    """How a banned word is stored and shown: NFKC, invisible characters removed, lower-case, single spaces.

    Look-alike letters and accents are kept as the moderator typed them (the list shows what they added);
    matching folds them away (``bot.moderation.words.fold``). Refuses what could never match a prompt."""
    visible = remove_invisible(unicodedata.normalize("NFKC", word))
    cleaned = " ".join(visible.split()).lower()
    if not cleaned or not fold(cleaned).strip():
        raise InvalidRequest("A banned word cannot be empty.")
    if len(cleaned) > MAX_WORD_LENGTH:
        raise InvalidRequest(f"A banned word can be at most {MAX_WORD_LENGTH} characters.")
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
        self, db: Database, ledger: Ledger, *, provider_names: Collection[str] = (), clock: Clock | None = None
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.store = ModerationStore(db)
        self.provider_names = tuple(provider_names)
        self.clock = clock or ledger.clock

    async def _audit(
        self,
        conn: aiosqlite.Connection,
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
            raise InvalidRequest("A limit cannot be negative; use 0 to allow nothing or leave it empty for unlimited.")
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
            raise InvalidRequest(f"Say which {scope} the limit is for.")
        if scope == "role" and scope_id == guild_id:
            raise InvalidRequest("Set the server-wide limit with the guild scope rather than on @everyone.")
        return scope_id

    # -- members ------------------------------------------------------------------------------------
    async def block(self, guild_id: int, actor_id: int, user_id: int, reason: str, until: float | None = None) -> Block:
        """Stop a member generating here, until ``until`` (Unix time) or until unblocked."""
        cleaned = _reason(reason)
        if cleaned is None:
            raise InvalidRequest("Please give a reason for the block; the member is shown it.")
        now = self.clock()
        if until is not None and until <= now:
            raise InvalidRequest("The block's end must be in the future.")
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
            raise InvalidRequest("Please give a reason for the refund.")
        if units <= 0:
            raise InvalidRequest("Refund at least 1 credit.")
        async with self.db.transaction() as conn:
            refundable = await self.ledger.refundable(guild_id, user_id, conn)
            if units > refundable:
                raise InvalidRequest(
                    f"That member has been charged {refundable} credit{'s' if refundable != 1 else ''} in the "
                    f"current window (jobs still running excluded), so at most {refundable} can be refunded."
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
        self, guild_id: int, actor_id: int, kind: str, timezone: str | None = None, rolling_hours: int | None = None
    ) -> None:
        """The guild's quota window; ``timezone`` is an IANA name such as Europe/Berlin."""
        if kind not in WINDOW_KINDS:
            raise InvalidRequest(f"The window must be one of {', '.join(WINDOW_KINDS)}.")
        if timezone is not None:
            try:
                ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise InvalidRequest(
                    f"{timezone!r} is not a time zone I know; use a name like Europe/Berlin."
                ) from None
        if rolling_hours is not None and not 1 <= rolling_hours <= 24 * 31:
            raise InvalidRequest("A rolling window lasts between 1 hour and 31 days.")
        changes = {"window_kind": kind, "timezone": timezone, "rolling_hours": rolling_hours}
        await self._set(guild_id, actor_id, "window.set", changes)
        self.ledger.forget_window(guild_id)

    async def set_allowed_providers(self, guild_id: int, actor_id: int, names: Iterable[str] | None) -> None:
        """Which configured providers (each one provider+model) members may choose; None = all."""
        chosen = None if names is None else sorted(set(names))
        unknown = sorted(set(chosen or ()) - set(self.provider_names)) if self.provider_names else []
        if unknown:
            raise InvalidRequest(f"Unknown provider(s) {', '.join(unknown)}; known: {', '.join(self.provider_names)}.")
        stored = None if chosen is None else json.dumps(chosen)
        await self._set(
            guild_id, actor_id, "providers.set", {"allowed_providers": stored}, details={"providers": chosen}
        )

    async def set_max_resolution(self, guild_id: int, actor_id: int, resolution: str | None) -> None:
        if resolution is not None and resolution not in RESOLUTIONS:
            raise InvalidRequest(f"The resolution must be one of {', '.join(RESOLUTIONS)}.")
        await self._set(guild_id, actor_id, "max_resolution.set", {"max_resolution": resolution})

    async def set_max_count(self, guild_id: int, actor_id: int, count: int | None) -> None:
        if count is not None and count < 1:
            raise InvalidRequest("The maximum number of images per request must be at least 1.")
        await self._set(guild_id, actor_id, "max_count.set", {"max_count": count})

    async def set_max_in_flight(self, guild_id: int, actor_id: int, jobs: int | None) -> None:
        """How many jobs one member may have waiting or running here (None: the config default)."""
        if jobs is not None and jobs < 1:
            raise InvalidRequest("Members must be allowed at least 1 job in progress.")
        await self._set(guild_id, actor_id, "max_in_flight.set", {"max_in_flight": jobs})
