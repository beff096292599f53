"""The quota ledger: append-only reserve / commit / refund entries; a balance is a sum, never a counter.

A job reserves ``count × weight`` units before it is queued, in the very INSERT that writes the job.
The quota rule is written once, in the store: the ``jobs_admit`` trigger (migration 0008 on both stores)
checks the bot owner's queued cap, the server's ``max_in_flight``, the member's allowance and the bot's
daily cap, and appends the reservation. SQLite takes the write lock before that statement reads, and
PostgreSQL's trigger takes the member's advisory lock first, so concurrent requests, even from other
processes, can never overspend. Python only resolves what the row must fit in (``Ledger.admission``)
and words a refusal from what it names (``Ledger.explain``). A job's entries count in the window of its
reservation; a moderator's manual refund (no job) counts in the window it was made in. Each guild may
choose its own window kind and time zone (``guild_settings``); otherwise the config's ``[quota]`` applies.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.config import QuotaSection
from bot.errors import QuotaExceeded, TooManyJobs
from bot.i18n import Text, _, _n
from bot.storage import Store, StoreConnection, fetch_all, fetch_one
from bot.storage.errors import AdmissionRefused

Clock = Callable[[], float]
WINDOW_KINDS: tuple[str, ...] = ("daily", "weekly", "monthly", "rolling")

# Net units (reserved minus refunded) of entries whose job was reserved at or after the window start.
# ``l.created_at >= start`` is implied by the exact condition and lets the index do the narrowing.
_NET = "SUM(CASE l.entry WHEN 'reserve' THEN l.units WHEN 'refund' THEN -l.units ELSE 0 END)"
_IN_WINDOW = "l.created_at >= ? AND COALESCE(r.created_at, l.created_at) >= ?"
_USED_SQL = f"""
SELECT COALESCE({_NET}, 0) FROM quota_ledger AS l
LEFT JOIN quota_ledger AS r ON r.job_id = l.job_id AND r.entry = 'reserve'
WHERE l.guild_id IS ? AND l.user_id = ? AND {_IN_WINDOW}
"""  # noqa: S608 - constant fragments only
_GLOBAL_USED_SQL = f"""
SELECT COALESCE({_NET}, 0) FROM quota_ledger AS l
LEFT JOIN quota_ledger AS r ON r.job_id = l.job_id AND r.entry = 'reserve'
WHERE {_IN_WINDOW}
"""  # noqa: S608 - constant fragments only
# Units still reserved by unfinished jobs (neither committed nor refunded yet).
_OPEN_SQL = """
SELECT COALESCE(SUM(CASE entry WHEN 'reserve' THEN units ELSE -units END), 0) FROM quota_ledger
WHERE job_id IN (
  SELECT job_id FROM quota_ledger WHERE guild_id IS ? AND user_id = ? AND entry = 'reserve' AND created_at >= ?)
"""
# The member's unfinished jobs (in this server when the last parameter is 1, else in all) and the server's cap.
_IN_FLIGHT_SQL = """
SELECT COUNT(*), (SELECT max_in_flight FROM guild_settings WHERE guild_id = ?) FROM jobs
WHERE requester_id = ? AND (guild_id IS ? OR ? = 0) AND state IN ('queued', 'submitted', 'downloaded', 'posted')
"""
# Per reservation time, the net units each job (or manual refund) holds, oldest first (rolling windows).
_HOLDINGS_SQL = f"""
SELECT MIN(COALESCE(r.created_at, l.created_at)) AS at, {_NET} FROM quota_ledger AS l
LEFT JOIN quota_ledger AS r ON r.job_id = l.job_id AND r.entry = 'reserve'
WHERE l.guild_id IS ? AND l.user_id = ? AND {_IN_WINDOW}
GROUP BY COALESCE(l.job_id, CAST(l.id AS TEXT)) ORDER BY at
"""  # noqa: S608 - constant fragments only


@dataclass(frozen=True)
class Admission:
    """What a job row carries for the ``jobs_admit`` trigger: the limits it must fit in when it is written."""

    limit: int | None
    window_start: float
    queued_cap: int | None = None
    daily_cap: int | None = None
    daily_start: float | None = None


class AllowanceExceeded(QuotaExceeded):
    """QuotaExceeded that also says, as data, when the allowance comes back."""

    def __init__(self, user_message: str | Text, *, resets_at: datetime) -> None:
        super().__init__(user_message)
        self.resets_at = resets_at


class Window:
    """One quota window (calendar in a time zone, or rolling): when it started and when it resets."""

    def __init__(
        self,
        config: QuotaSection,
        clock: Clock,
        *,
        kind: str | None = None,
        timezone: str | None = None,
        rolling_hours: int | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.kind = kind or config.window
        self.timezone = timezone or config.timezone
        self.rolling_hours = rolling_hours or config.rolling_hours

    @property
    def is_rolling(self) -> bool:
        return self.kind == "rolling"

    def bounds(self) -> tuple[float, float]:
        """(start, end) as Unix times. For a rolling window the end is the worst case (all units back)."""
        return calendar_bounds(self.kind, self.timezone, self.clock(), self.rolling_hours * 3600)

    def resets_at(self) -> datetime:
        return datetime.fromtimestamp(self.bounds()[1], UTC)

    def describe(self) -> str:
        if self.is_rolling:
            return f"rolling {self.rolling_hours} h"
        return f"{self.kind} ({self.timezone})"


def calendar_bounds(kind: str, timezone: str, now: float, rolling_seconds: float = 86400) -> tuple[float, float]:
    """The window containing ``now``; calendar days follow the zone's wall clock, so DST days last 23 or 25 h."""
    if kind == "rolling":
        return now - rolling_seconds, now + rolling_seconds
    local = datetime.fromtimestamp(now, ZoneInfo(timezone))
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "weekly":
        start -= timedelta(days=start.weekday())
        end = start + timedelta(days=7)
    elif kind == "monthly":
        start = start.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        end = start + timedelta(days=1)
    return start.timestamp(), end.timestamp()


@dataclass(frozen=True)
class Balance:
    """What /quota shows: units used in the window, the limit (None = unlimited) and when it resets."""

    used: int
    limit: int | None
    resets_at: datetime
    window: str

    @property
    def left(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)


class Ledger:
    def __init__(self, db: Store, config: QuotaSection, clock: Clock = time.time) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.window = Window(config, clock)
        # Guild window settings change only through ModeratorActions.set_window, which calls forget_window.
        self._guild_windows: dict[int, tuple[Any, ...] | None] = {}

    def forget_window(self, guild_id: int) -> None:
        self._guild_windows.pop(guild_id, None)

    def units_for(self, count: int, resolution: str, provider_weight: int) -> int:
        return count * provider_weight * self.config.resolution_weights.get(resolution, 1)

    async def window_for(self, guild_id: int | None, conn: StoreConnection | None = None) -> Window:
        """The guild's own window (kind, time zone) where it set one, else the config's. Personal use (no
        guild) counts per calendar day in the config's time zone (``[quota] personal_daily``)."""
        if guild_id is None:
            return Window(self.config, self.clock, kind="daily")
        if guild_id in self._guild_windows:
            row = self._guild_windows[guild_id]
        else:
            found = await fetch_one(
                conn or self.db.conn,
                "SELECT window_kind, timezone, rolling_hours FROM guild_settings WHERE guild_id = ?",
                (guild_id,),
            )
            row = self._guild_windows[guild_id] = tuple(found) if found is not None else None
        if row is None:
            return Window(self.config, self.clock)
        return Window(self.config, self.clock, kind=row[0], timezone=row[1], rolling_hours=row[2])

    async def used(self, guild_id: int | None, user_id: int, conn: StoreConnection | None = None) -> int:
        """Units the member holds in the current window (in-flight reservations included)."""
        start, _end = (await self.window_for(guild_id, conn)).bounds()
        return await self._used_since(conn or self.db.conn, guild_id, user_id, start)

    async def balance(
        self, guild_id: int | None, user_id: int, limit: int | None, conn: StoreConnection | None = None
    ) -> Balance:
        """Used / left / next reset, without checking anything."""
        return await self.balance_now(conn or self.db.conn, guild_id=guild_id, user_id=user_id, limit=limit)

    async def refundable(self, guild_id: int | None, user_id: int, conn: StoreConnection | None = None) -> int:
        """Units a moderator may hand back now: what was charged this window, minus jobs still running."""
        conn = conn or self.db.conn
        start, _end = (await self.window_for(guild_id, conn)).bounds()
        row = await fetch_one(conn, _OPEN_SQL, (guild_id, user_id, start))
        open_units = int(row[0]) if row else 0
        return max(0, await self._used_since(conn, guild_id, user_id, start) - open_units)

    async def global_used(self, conn: StoreConnection | None = None) -> int:
        """Units the whole bot spent in today's calendar day (config time zone), for the global cap."""
        start, _end = calendar_bounds("daily", self.config.timezone, self.clock())
        row = await fetch_one(conn or self.db.conn, _GLOBAL_USED_SQL, (start, start))
        return int(row[0]) if row else 0

    async def balance_now(
        self, conn: StoreConnection, *, guild_id: int | None, user_id: int, limit: int | None
    ) -> Balance:
        """Used / left / next reset in the member's window, read through ``conn``."""
        window = await self.window_for(guild_id, conn)
        used = await self._used_since(conn, guild_id, user_id, window.bounds()[0])
        needed = 1 if limit is None else max(1, used + 1 - limit)
        resets = await self._resets_at(conn, window, guild_id, user_id, needed)
        return Balance(used=used, limit=limit, resets_at=resets, window=window.describe())

    async def admission(self, guild_id: int | None, limit: int | None, *, queued_cap: int | None = None) -> Admission:
        """What a new job must fit in, for the ``jobs_admit`` trigger (no database hop once the window is cached)."""
        start, _end = (await self.window_for(guild_id)).bounds()
        cap = self.config.global_daily_cap or None
        daily_start = calendar_bounds("daily", self.config.timezone, self.clock())[0] if cap else None
        return Admission(limit, start, queued_cap, cap, daily_start)

    async def admit(
        self,
        write: Callable[[Admission], Awaitable[None]],
        *,
        guild_id: int | None,
        user_id: int,
        units: int,
        limit: int | None,
        queued_cap: int | None = None,
    ) -> None:
        """Write a job with ``write`` and reserve its units in the same statement, or say politely why not.

        ``write`` inserts the job row carrying the ``Admission``; the ``jobs_admit`` trigger (migration 0008
        on both stores) is the one place the rule is decided: the bot owner's queued cap, the server's
        ``max_in_flight``, the member's allowance and the bot's daily cap. A refusal is worded afterwards
        from what it names (``explain``); if that reading finds the limit freed in between (a job ended, a
        refund landed), the write is tried once more, and the trigger decides again.
        """
        for _attempt in range(2):
            admission = await self.admission(guild_id, limit, queued_cap=queued_cap)
            try:
                await write(admission)
                return
            except AdmissionRefused as refused:
                reason = refused.reason
            refusal = await self.explain(
                reason, guild_id=guild_id, user_id=user_id, units=units, limit=limit, queued_cap=queued_cap
            )
            if refusal is not None:
                raise refusal
        raise QuotaExceeded(_("So many requests arrived at once that I could not fit yours in; please try again."))

    async def explain(
        self,
        reason: str,
        *,
        guild_id: int | None,
        user_id: int,
        units: int,
        limit: int | None,
        queued_cap: int | None = None,
    ) -> QuotaExceeded | TooManyJobs | None:
        """The member's answer to the trigger's refusal ``reason``: which limit, and when it frees up.

        Reads what the refusal names (never decides: the trigger did); None if the reading shows the
        limit is no longer reached (it freed up after the refusal), so the caller may try again.
        """
        conn = self.db.conn
        if reason in ("queued", "in flight"):
            here = reason == "in flight"
            row = await fetch_one(conn, _IN_FLIGHT_SQL, (guild_id, user_id, guild_id, int(here)))
            jobs, cap = (int(row[0]), row[1]) if row else (0, None)
            cap = cap if here else queued_cap
            if cap is None or jobs < cap:
                return None
            if here:
                return TooManyJobs(
                    _n(
                        "You already have {count} picture job in progress here (the limit is {cap}); "
                        "please wait for one to finish.",
                        "You already have {count} picture jobs in progress here (the limit is {cap}); "
                        "please wait for one to finish.",
                        jobs,
                        cap=cap,
                    )
                )
            return TooManyJobs(
                _n(
                    "You already have {count} picture job in progress (the limit is {cap}); "
                    "please wait for one to finish.",
                    "You already have {count} picture jobs in progress (the limit is {cap}); "
                    "please wait for one to finish.",
                    jobs,
                    cap=cap,
                )
            )
        if reason == "daily cap":
            cap = self.config.global_daily_cap
            if not cap or await self.global_used(conn) + units <= cap:
                return None
            _start, end = calendar_bounds("daily", self.config.timezone, self.clock())
            return AllowanceExceeded(
                _("The bot has reached its daily image budget; please try again {when}.", when=f"<t:{int(end)}:R>"),
                resets_at=datetime.fromtimestamp(end, UTC),
            )
        window = await self.window_for(guild_id, conn)
        used = await self._used_since(conn, guild_id, user_id, window.bounds()[0])
        if limit is None or used + units <= limit:
            return None
        resets = await self._resets_at(conn, window, guild_id, user_id, used + units - limit)
        left = max(0, limit - used)
        return AllowanceExceeded(
            _n(
                "This needs {count} image credit but you have {left} of {limit} left; your allowance resets {when}.",
                "This needs {count} image credits but you have {left} of {limit} left; your allowance resets {when}.",
                units,
                left=left,
                limit=limit,
                when=f"<t:{int(resets.timestamp())}:R>",
            ),
            resets_at=resets,
        )

    async def lock_member(self, conn: StoreConnection, user_id: int) -> None:
        """Hold the member's quota lock for the rest of ``conn``'s transaction (before reading to write)."""
        await fetch_one(conn, self.db.dialect.lock_member, (user_id,))

    async def settle(self, conn: StoreConnection, job_id: str, generated_units: int, note: str | None = None) -> None:
        """Commit what was generated and refund the rest of the job's reservation (idempotent)."""
        row = await fetch_one(
            conn,
            "SELECT guild_id, user_id, SUM(CASE entry WHEN 'reserve' THEN units ELSE 0 END),"
            " SUM(CASE entry WHEN 'commit' THEN units WHEN 'refund' THEN units ELSE 0 END)"
            " FROM quota_ledger WHERE job_id = ? GROUP BY guild_id, user_id",
            (job_id,),
        )
        if row is None:
            return
        guild_id, user_id, reserved, settled = row[0], row[1], int(row[2] or 0), int(row[3] or 0)
        open_units = reserved - settled
        if open_units <= 0:
            return
        commit = min(generated_units, open_units)
        if commit:
            await self._append(conn, guild_id, user_id, job_id, "commit", commit, note)
        if open_units - commit:
            await self._append(conn, guild_id, user_id, job_id, "refund", open_units - commit, note)

    async def refund_everything(self, conn: StoreConnection, job_id: str, note: str | None = None) -> None:
        """Give back all a job still holds, committed units included: its images never reached the member."""
        row = await fetch_one(
            conn,
            "SELECT guild_id, user_id, SUM(CASE entry WHEN 'reserve' THEN units ELSE 0 END),"
            " SUM(CASE entry WHEN 'refund' THEN units ELSE 0 END)"
            " FROM quota_ledger WHERE job_id = ? GROUP BY guild_id, user_id",
            (job_id,),
        )
        if row is not None and int(row[2] or 0) > int(row[3] or 0):
            await self._append(conn, row[0], row[1], job_id, "refund", int(row[2] or 0) - int(row[3] or 0), note)

    async def refund_manually(
        self, conn: StoreConnection, *, guild_id: int | None, user_id: int, units: int, actor_id: int, note: str
    ) -> None:
        """A moderator's refund: a job-less 'refund' entry that counts in the window it is made in."""
        await self._append(conn, guild_id, user_id, None, "refund", units, note, actor_id)

    async def _used_since(self, conn: StoreConnection, guild_id: int | None, user_id: int, start: float) -> int:
        row = await fetch_one(conn, _USED_SQL, (guild_id, user_id, start, start))
        # Below zero only when a manual refund outlives the job it refunded in a rolling window: no credit.
        return max(0, int(row[0])) if row else 0

    async def _resets_at(
        self, conn: StoreConnection, window: Window, guild_id: int | None, user_id: int, needed: int
    ) -> datetime:
        """When the member gets ``needed`` units back: the calendar end, or when old reservations age out."""
        start, end = window.bounds()
        if window.is_rolling:
            span = window.rolling_hours * 3600
            freed = 0
            rows = await fetch_all(conn, _HOLDINGS_SQL, (guild_id, user_id, start, start))
            for at, units in rows:
                freed += int(units)
                if freed >= needed:
                    return datetime.fromtimestamp(float(at) + span, UTC)
            if not rows:
                return datetime.fromtimestamp(self.clock(), UTC)
        return datetime.fromtimestamp(end, UTC)

    async def _append(
        self,
        conn: StoreConnection,
        guild_id: int | None,
        user_id: int,
        job_id: str | None,
        entry: str,
        units: int,
        note: str | None,
        actor_id: int | None = None,
    ) -> None:
        await conn.execute(
            "INSERT INTO quota_ledger (guild_id, user_id, job_id, entry, units, note, actor_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (guild_id, user_id, job_id, entry, units, note, actor_id, self.clock()),
        )
