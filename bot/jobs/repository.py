"""SQL for jobs and their images. Every write is one transaction; every query is parameterised."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from bot.images import StoredImage
from bot.jobs.leases import Fence, LeaseLost
from bot.jobs.models import ACTIVE_STATES, Job, JobState
from bot.providers.base import Submission
from bot.quota import Admission
from bot.storage import Store, StoreConnection, fetch_one
from bot.storage.errors import AdmissionRefused

# Kept literal so the SQL is a constant; the assert keeps it in step with the enum.
assert {s.value for s in ACTIVE_STATES} == {"queued", "submitted", "downloaded", "posted"}


#: Statements SQLite and PostgreSQL cannot share (the images as a JSON array, looking inside the JSON
#: columns) come from the store's dialect (bot/storage/dialect.py); the rest is one statement for both.
_ACTIVE_WHERE = " WHERE state IN ('queued', 'submitted', 'downloaded', 'posted') ORDER BY created_at"
_RECENT_WHERE = " WHERE requester_id = ? AND guild_id IS ? ORDER BY created_at DESC LIMIT ?"
#: Failed or cancelled jobs whose card may not show it yet (the process stopped between the two).
_UNSHOWN_WHERE = " WHERE state IN ('failed', 'cancelled') AND updated_at >= ? AND {not_shown} ORDER BY updated_at"


def _job(row: Any) -> Job:
    images = sorted(json.loads(row["images"]), key=lambda image: (image["role"], image["position"]))
    # The JSON objects carry StoredImage's fields by name (plus role and position, which pydantic ignores).
    references = [StoredImage.model_validate(image) for image in images if image["role"] == "reference"]
    results = [StoredImage.model_validate(image) for image in images if image["role"] == "result"]
    return Job.from_row(row, references, results)


_INSERT_JOB_SQL = (
    "INSERT INTO jobs (id, kind, requester_id, guild_id, channel_id, provider, options, state, cost_units,"
    " delivery, notices, parent_job_id, created_at, updated_at, admit_limit, admit_window_start, admit_queued_cap,"
    " admit_daily_cap, admit_daily_start) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _job_values(job: Job, admission: Admission | None) -> tuple[Any, ...]:
    options = job.request.model_dump(mode="json", exclude={"references"})
    admit = (
        (admission.limit, admission.window_start, admission.queued_cap, admission.daily_cap, admission.daily_start)
        if admission is not None
        else (None,) * 5
    )
    return (
        job.id,
        job.kind,
        job.requester_id,
        job.guild_id,
        job.channel_id,
        job.provider,
        json.dumps(options),
        job.state.value,
        job.cost_units,
        job.delivery.model_dump_json(),
        json.dumps(job.notices),
        job.parent_job_id,
        job.created_at,
        job.updated_at,
        *admit,
    )


_COLUMN_VALUES: dict[str, Callable[[Any], Any]] = {
    "state": lambda v: v.value if isinstance(v, JobState) else v,
    "provider_task": lambda v: v.model_dump_json() if isinstance(v, Submission) else v,
    "error": lambda v: v,
    "attempts": lambda v: v,
    "started_at": lambda v: v,
    "finished_at": lambda v: v,
    "delivery": lambda v: v.model_dump_json(),
    "posted_message_ids": json.dumps,
    "notices": json.dumps,
}


def _update_sql(job_id: str, now: float, fields: dict[str, Any], fence: Fence | None) -> tuple[str, tuple[Any, ...]]:
    assignments = ", ".join(f"{name} = ?" for name in fields)
    values = [_COLUMN_VALUES[name](value) for name, value in fields.items()]
    sql = f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ?"  # noqa: S608 - column names are from the fixed table above
    if fence is None:
        return sql, (*values, now, job_id)
    return sql + Fence.SQL, (*values, now, job_id, *fence.params)


@contextmanager
def _refusals() -> Iterator[None]:
    """The trigger's RAISE(ABORT, 'admission refused: …') as AdmissionRefused; other errors pass."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        message = str(exc)
        if message.startswith(AdmissionRefused.PREFIX):
            raise AdmissionRefused(message.removeprefix(AdmissionRefused.PREFIX)) from None
        raise


class JobRepository:
    def __init__(self, db: Store) -> None:
        self.db = db
        dialect = db.dialect
        self._get_sql = f"{dialect.select_jobs} WHERE id = ?"
        self._active_sql = dialect.select_jobs + _ACTIVE_WHERE
        self._recent_sql = dialect.select_jobs + _RECENT_WHERE
        self._unshown_sql = dialect.select_jobs + _UNSHOWN_WHERE.format(not_shown=dialect.outcome_not_shown)
        self._by_message_sql = dialect.jobs_by_message

    async def insert(self, conn: StoreConnection, job: Job, admission: Admission | None = None) -> None:
        """Write a new job and its reference images (inside the caller's transaction).

        With an ``admission`` the ``jobs_admit`` trigger also checks the member's allowance and reserves
        the job's units in the same statement (``AdmissionRefused`` if it does not fit).
        """
        with _refusals():
            await conn.execute(_INSERT_JOB_SQL, _job_values(job, admission))
        await self._insert_images(conn, job.id, "reference", job.request.references, job.created_at)

    async def admit(self, job: Job, admission: Admission) -> None:
        """Write a new job and reserve its units: one statement (one hop) unless it has reference images."""
        if job.request.references:
            await self.db.run_transaction(lambda conn: self.insert(conn, job, admission))
            return
        with _refusals():
            await self.db.write(_INSERT_JOB_SQL, _job_values(job, admission))

    async def _insert_images(
        self, conn: StoreConnection, job_id: str, role: str, images: Sequence[StoredImage], now: float
    ) -> None:
        if not images:
            return
        await conn.executemany(
            "INSERT INTO job_images (job_id, role, position, path, sha256, size_bytes, width, height, mime,"
            " provider, provider_image_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [
                (
                    job_id,
                    role,
                    i,
                    str(im.path),
                    im.sha256,
                    im.size_bytes,
                    im.width,
                    im.height,
                    im.mime,
                    im.provider,
                    im.provider_image_id,
                    now,
                )
                for i, im in enumerate(images)
            ],
        )

    async def get(self, job_id: str, conn: StoreConnection | None = None) -> Job | None:
        """The job as committed, or as ``conn``'s transaction sees it (pass it to read inside a transaction)."""
        row = await fetch_one(conn or self.db.conn, self._get_sql, (job_id,))
        return _job(row) if row else None

    async def active(self) -> list[Job]:
        rows = await self.db.fetchall(self._active_sql)
        return [_job(r) for r in rows]

    async def queued_heads(self, now: float) -> list[tuple[str, int, str, float]]:
        """The oldest queued job of each member that no process holds at ``now``: (job id, requester,
        provider, created_at)."""
        rows = await self.db.fetchall(
            "SELECT id, requester_id, provider, created_at FROM ("
            " SELECT id, requester_id, provider, created_at,"
            " ROW_NUMBER() OVER (PARTITION BY requester_id, provider ORDER BY created_at, id) AS n"
            " FROM jobs WHERE state = 'queued' AND (lease_until IS NULL OR lease_until < ?)) AS heads"
            " WHERE n = 1 ORDER BY created_at",
            (now,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def position(self, job: Job) -> int:
        """1-based place in the queue among queued jobs created before it (0 once it runs)."""
        if job.state != JobState.QUEUED:
            return 0
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND (created_at < ? OR (created_at = ? AND id <= ?))",
            (job.created_at, job.created_at, job.id),
        )
        return int(row[0]) if row else 0

    async def queue_positions(self) -> dict[str, int]:
        """Every queued job's 1-based place in the queue, in one read (as ``position`` counts it)."""
        rows = await self.db.fetchall(
            "SELECT id, ROW_NUMBER() OVER (ORDER BY created_at, id) FROM jobs WHERE state = 'queued'"
        )
        return {row[0]: int(row[1]) for row in rows}

    async def update(
        self, conn: StoreConnection, job_id: str, now: float, *, fence: Fence | None = None, **fields: Any
    ) -> None:
        """Change some of a job's columns inside the caller's transaction; with a ``fence``, only while that
        lease still holds the job (``LeaseLost`` otherwise: the caller's transaction is rolled back)."""
        cursor = await conn.execute(*_update_sql(job_id, now, fields, fence))
        if fence is not None and cursor.rowcount == 0:
            raise LeaseLost(job_id)

    async def set(self, job_id: str, now: float, *, fence: Fence | None = None, **fields: Any) -> None:
        """Change some of a job's columns as a transaction of its own: one statement, one database hop.

        With a ``fence``, only while that lease still holds the job (``LeaseLost`` otherwise)."""
        changed = await self.db.write(*_update_sql(job_id, now, fields, fence))
        if fence is not None and changed == 0:
            raise LeaseLost(job_id)

    async def state_of(self, job_id: str) -> JobState | None:
        """Only the job's state (None: no such job): a cheap read for the chat layer's "is it still queued?"."""
        row = await self.db.fetchone("SELECT state FROM jobs WHERE id = ?", (job_id,))
        return JobState(row[0]) if row else None

    async def lease_of(self, job_id: str) -> tuple[str | None, int] | None:
        """Who holds the job's lease, and its epoch (None: no such job)."""
        row = await self.db.fetchone("SELECT lease_owner, lease_epoch FROM jobs WHERE id = ?", (job_id,))
        return (row[0], int(row[1])) if row else None

    async def save_results(self, conn: StoreConnection, job_id: str, images: Sequence[StoredImage], now: float) -> None:
        await self._insert_images(conn, job_id, "result", images, now)

    async def unshown_outcomes(self, since: float) -> list[Job]:
        """Jobs that ended (failed, cancelled) since ``since`` without their card being updated to say so."""
        rows = await self.db.fetchall(self._unshown_sql, (since,))
        return [_job(r) for r in rows]

    async def recent_for(self, requester_id: int, guild_id: int | None, limit: int = 10) -> list[Job]:
        rows = await self.db.fetchall(self._recent_sql, (requester_id, guild_id, limit))
        return [_job(r) for r in rows]

    async def find_by_message(self, message_id: int) -> Job | None:
        """The job whose result (or status) message this is."""
        row = await self.db.fetchone(
            self._by_message_sql,
            (message_id, message_id),
        )
        return _job(row) if row else None
