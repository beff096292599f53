"""A running job meets a database another process holds locked: it waits and goes on, never failed and
refunded after its images were made (real SQLite, a second connection holding the write lock)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from bot.config import LocalProviderConfig
from bot.images import ImageStore
from bot.jobs import JobState
from bot.providers.base import GenerationRequest
from bot.providers.local import LocalProvider
from bot.storage import Database
from tests.provider_helpers import engine_for, enqueue
from tests.test_jobs import RecordingSink


async def test_a_job_waits_out_a_busy_database_and_completes(tmp_path: Path, store: ImageStore) -> None:
    path = tmp_path / "busy.sqlite3"
    db = await Database(path, busy_timeout_ms=50).open()
    await db.migrate()
    provider = LocalProvider("local", LocalProviderConfig(delay_seconds=0.3), store)
    engine = engine_for(db, provider, RecordingSink())
    engine.busy_retry_seconds = 0.05
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        job = await enqueue(engine, GenerationRequest(prompt="a koala", count=1))
        await engine.start()
        await asyncio.sleep(0.1)  # the job is generating
        holder.execute("BEGIN IMMEDIATE")  # another process takes the write lock while the images are made
        await asyncio.sleep(0.6)  # past the generation: recording the images meets the lock, more than once
        holder.execute("ROLLBACK")
        async with asyncio.timeout(10):
            while (saved := await engine.jobs.get(job.id)) is None or saved.state not in (
                JobState.DONE,
                JobState.FAILED,
            ):
                await asyncio.sleep(0.02)
        assert saved.state == JobState.DONE, saved.error
        assert len(saved.results) == 1
    finally:
        holder.close()
        await engine.stop(1)
        await provider.close()
        await db.close()
