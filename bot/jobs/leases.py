"""Job leases: which process runs a job, for how long, and the fencing token every write of it carries.

Several processes (``seedream-bot run`` and ``seedream-bot worker``) may share one PostgreSQL database. A
process runs a job only while it holds the job's lease: ``lease_owner`` (this process), ``lease_until`` (the
lease ends here unless renewed) and ``lease_epoch`` (+1 at every claim). Every write of a leased job adds
``AND lease_owner = ? AND lease_epoch = ?``; a write that matches no row means another process took the job
over, and the writer drops the job (``LeaseLost``) without touching it again. That is what keeps a job posted
and charged once when a paused or partitioned process wakes up after its lease was taken over.

Times are the processes' own clocks (the engine's injectable clock, so tests can expire a lease without
waiting); hosts are expected to keep their clocks in sync (NTP: milliseconds against a lease of a minute).
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

from bot.storage import Store

_CLAIM_SQL = (
    "UPDATE jobs SET lease_owner = ?, lease_until = ?, lease_epoch = lease_epoch + 1"
    " WHERE id = ? AND state IN ('queued', 'submitted', 'downloaded', 'posted')"
    " AND (lease_until IS NULL OR lease_until < ?)"
)
#: A queued job only while fewer than ``limit`` of its provider's jobs are claimed and not past the provider.
_WITHIN_LIMIT_SQL = (
    " AND state = 'queued' AND (SELECT COUNT(*) FROM jobs AS busy WHERE busy.provider = ?"
    " AND busy.state IN ('queued', 'submitted') AND busy.lease_until >= ?) < ?"
)
_TAKE_OVER_SQL = (
    "UPDATE jobs SET lease_owner = ?, lease_until = ?, lease_epoch = lease_epoch + 1"
    " WHERE id IN (SELECT id FROM jobs WHERE state IN ('submitted', 'downloaded', 'posted')"
    " AND (lease_until IS NULL OR lease_until < ?) ORDER BY created_at, id LIMIT ?{skip_locked})"
    " RETURNING id, lease_epoch, created_at"
)
_RENEW_SQL = (
    "UPDATE jobs SET lease_until = ? WHERE lease_owner = ? AND state IN ('queued', 'submitted', 'downloaded', 'posted')"
    " RETURNING id, lease_epoch, cancel_requested_at"
)
_RELEASE_MINE_SQL = (
    "UPDATE jobs SET lease_until = NULL WHERE lease_owner = ?"
    " AND state IN ('queued', 'submitted', 'downloaded', 'posted')"
)
_RELEASE_QUEUED_SQL = (
    "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE state = 'queued' AND lease_owner IS NOT NULL"
)
_REQUEST_CANCEL_SQL = (
    "UPDATE jobs SET cancel_requested_at = ? WHERE id = ? AND state IN ('queued', 'submitted', 'downloaded', 'posted')"
)
#: Far enough in the future that every lease counts as lapsed (``take_over(everything=True)``).
_EVERYTHING = 1e18


class LeaseLost(Exception):
    """Another process took this job over (our lease expired): leave the job alone, write nothing more."""


@dataclass(frozen=True)
class Fence:
    """The lease a write must still hold to change a job's row."""

    owner: str
    epoch: int

    SQL = " AND lease_owner = ? AND lease_epoch = ?"

    @property
    def params(self) -> tuple[str, int]:
        return self.owner, self.epoch


def process_identity() -> str:
    """``host/pid/random``: unique per process, readable in ``jobs.lease_owner`` by an operator."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Renewal:
    """A job whose lease was renewed: its epoch, and whether Cancel was pressed in another process."""

    epoch: int
    cancel_requested: bool


class Leases:
    """The claim, renew and release statements, the same on both stores (dialect bits aside)."""

    def __init__(self, db: Store, owner: str, lease_seconds: float) -> None:
        self.db = db
        self.owner = owner
        self.lease_seconds = lease_seconds

    async def claim(
        self, job_id: str, now: float, *, provider: str | None = None, limit: int | None = None
    ) -> int | None:
        """Take ``job_id`` if no live lease holds it; the new epoch, or None if another process has it.

        With ``provider`` and ``limit`` only a queued job is taken, and only while fewer than ``limit`` of
        that provider's jobs are claimed and not yet past the provider, counted across every process.
        """
        sql, params = _CLAIM_SQL, [self.owner, now + self.lease_seconds, job_id, now]
        if limit is not None:
            sql, params = sql + _WITHIN_LIMIT_SQL, [*params, provider, now, limit]
        async with self.db.transaction() as conn:
            if limit is not None and self.db.dialect.provider_lock:
                await conn.execute(self.db.dialect.provider_lock, (provider,))
            rows = await conn.execute_fetchall(sql + " RETURNING lease_epoch", params)
        return int(rows[0][0]) if rows else None

    async def take_over(self, now: float, limit: int, *, everything: bool = False) -> list[tuple[str, int]]:
        """Claim up to ``limit`` started jobs whose process let the lease lapse (it died, or stopped renewing).

        ``everything``: every started job, live lease or not, for a process that knows it is the only one
        (the embedded SQLite store, at start). Queued jobs are not taken here: the dispatcher claims them in
        its fair order once their lease is free. Returns (job id, new epoch), oldest first.
        """
        sql = _TAKE_OVER_SQL.format(skip_locked=self.db.dialect.skip_locked)
        lapsed_before = _EVERYTHING if everything else now
        async with self.db.transaction() as conn:
            rows = await conn.execute_fetchall(sql, (self.owner, now + self.lease_seconds, lapsed_before, limit))
        return [(row[0], int(row[1])) for row in sorted(rows, key=lambda r: (r[2], r[0]))]

    async def release_queued(self) -> None:
        """Free every queued job's lease (the only process on an embedded store, at start)."""
        await self.db.write(_RELEASE_QUEUED_SQL)

    async def release_mine(self) -> None:
        """Give up this process's leases (a clean stop): another process may take the jobs at once."""
        await self.db.write(_RELEASE_MINE_SQL, (self.owner,))

    async def renew(self, now: float) -> dict[str, Renewal]:
        """Extend every lease this process holds; what it still holds (a job missing was taken over)."""
        async with self.db.transaction() as conn:
            rows = await conn.execute_fetchall(_RENEW_SQL, (now + self.lease_seconds, self.owner))
        return {row[0]: Renewal(int(row[1]), row[2] is not None) for row in rows}

    async def request_cancel(self, job_id: str, now: float) -> bool:
        """Ask the process running ``job_id`` to cancel it (it sees this at its next renewal, or at once by
        notification); False if the job is no longer running."""
        changed = await self.db.write(_REQUEST_CANCEL_SQL, (now, job_id))
        await self.db.notify(CANCEL_CHANNEL, job_id)
        return changed > 0


#: Notification channels (PostgreSQL LISTEN/NOTIFY; a poll stands behind each, as a notification can be missed).
JOBS_CHANNEL = "seedream_jobs"
CANCEL_CHANNEL = "seedream_cancel"
