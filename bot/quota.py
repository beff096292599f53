"""The quota ledger: append-only reserve / commit / refund entries; a balance is a sum, never a counter.

A job reserves ``count × weight`` units before it is queued, inside the same write transaction that
checks the allowance (BEGIN IMMEDIATE), so concurrent requests can never overspend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import aiosqlite

from bot.config import QuotaSection
from bot.errors import QuotaExceeded
from bot.storage import Database

Clock = Callable[[], float]

_USED_SQL = """
SELECT COALESCE(SUM(CASE l.entry WHEN 'reserve' THEN l.units WHEN 'refund' THEN -l.units ELSE 0 END), 0)
FROM quota_ledger AS l
LEFT JOIN quota_ledger AS r ON r.job_id = l.job_id AND r.entry = 'reserve'
WHERE l.guild_id IS ? AND l.user_id = ? AND COALESCE(r.created_at, l.created_at) >= ?
"""
_GLOBAL_USED_SQL = """
SELECT COALESCE(SUM(CASE l.entry WHEN 'reserve' THEN l.units WHEN 'refund' THEN -l.units ELSE 0 END), 0)
FROM quota_ledger AS l
LEFT JOIN quota_ledger AS r ON r.job_id = l.job_id AND r.entry = 'reserve'
WHERE COALESCE(r.created_at, l.created_at) >= ?
"""


class Window:
    """The current quota window: when it started and when it resets."""

    def __init__(self, config: QuotaSection, clock: Clock) -> None:
        self.config = config
        self.clock = clock

    def bounds(self) -> tuple[float, float]:
        now = self.clock()
        if self.config.window == "rolling":
            span = self.config.rolling_hours * 3600
            return now - span, now + span  # reset is gradual; the far bound is the worst case
        zone = ZoneInfo(self.config.timezone)
        local = datetime.fromtimestamp(now, zone)
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.config.window == "weekly":
            start -= timedelta(days=start.weekday())
            end = start + timedelta(days=7)
        elif self.config.window == "monthly":
            start = start.replace(day=1)
            end = (start + timedelta(days=32)).replace(day=1)
        else:
            end = start + timedelta(days=1)
        return start.timestamp(), end.timestamp()

    def resets_at(self) -> datetime:
        return datetime.fromtimestamp(self.bounds()[1], UTC)


class Ledger:
    def __init__(self, db: Database, config: QuotaSection, clock: Clock = time.time) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.window = Window(config, clock)

    def units_for(self, count: int, resolution: str, provider_weight: int) -> int:
        return count * provider_weight * self.config.resolution_weights.get(resolution, 1)

    async def used(self, guild_id: int | None, user_id: int, conn: aiosqlite.Connection | None = None) -> int:
        start, _ = self.window.bounds()
        async with (conn or self.db.conn).execute(_USED_SQL, (guild_id, user_id, start)) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def reserve(
        self,
        conn: aiosqlite.Connection,
        *,
        guild_id: int | None,
        user_id: int,
        job_id: str,
        units: int,
        limit: int | None,
    ) -> None:
        """Check the allowance and reserve, inside the caller's write transaction (so it is atomic)."""
        if units <= 0:
            return
        if limit is not None:
            used = await self.used(guild_id, user_id, conn)
            if used + units > limit:
                left = max(0, limit - used)
                when = int(self.window.bounds()[1])
                raise QuotaExceeded(
                    f"This needs {units} image credit{'s' if units != 1 else ''} but you have {left} of {limit} left; "
                    f"your allowance resets <t:{when}:R>."
                )
        if self.config.global_daily_cap:
            start = self.clock() - 86400
            async with conn.execute(_GLOBAL_USED_SQL, (start,)) as cursor:
                row = await cursor.fetchone()
            if (int(row[0]) if row else 0) + units > self.config.global_daily_cap:
                raise QuotaExceeded("The bot has reached its daily image budget; please try again tomorrow.")
        await self._append(conn, guild_id, user_id, job_id, "reserve", units, None)

    async def settle(
        self, conn: aiosqlite.Connection, job_id: str, generated_units: int, note: str | None = None
    ) -> None:
        """Commit what was generated and refund the rest of the job's reservation (idempotent)."""
        async with conn.execute(
            "SELECT guild_id, user_id, SUM(CASE entry WHEN 'reserve' THEN units ELSE 0 END),"
            " SUM(CASE entry WHEN 'commit' THEN units WHEN 'refund' THEN units ELSE 0 END)"
            " FROM quota_ledger WHERE job_id = ? GROUP BY guild_id, user_id",
            (job_id,),
        ) as cursor:
            row = await cursor.fetchone()
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

    async def _append(
        self,
        conn: aiosqlite.Connection,
        guild_id: int | None,
        user_id: int,
        job_id: str | None,
        entry: str,
        units: int,
        note: str | None,
    ) -> None:
        await conn.execute(
            "INSERT INTO quota_ledger (guild_id, user_id, job_id, entry, units, note, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (guild_id, user_id, job_id, entry, units, note, self.clock()),
        )
