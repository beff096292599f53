"""A busy or unusable store: "busy, try again, nothing charged" (never an incident), and nothing half-written.

"Another process" is a second sqlite3 connection to the same file: SQLite's locks work between
connections exactly as between processes. The CLI side (``seedream-bot`` refusing a store it cannot
write, answering ``status`` while the lock is held) is in test_cli.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import aiosqlite
import pytest
from PIL import Image

from bot.config import LocalProviderConfig, QuotaSection
from bot.errors import SeedreamError
from bot.images import ImageStore, StoredImage
from bot.jobs import Job, JobState
from bot.jobs.engine import JobEngine
from bot.jobs.repository import JobRepository
from bot.jobs.sink import RecordMessage
from bot.providers.base import GenerationRequest
from bot.providers.local import LocalProvider
from bot.providers.registry import ProviderRegistry
from bot.quota import Ledger
from bot.storage import Database, StoreBusy, StoreNotWritable, ensure_writable_dir, fetch_all, fetch_one
from bot.storage.database import BUSY_TIMEOUT_MS

BUSY_MESSAGE = "The bot is busy right now; please try again in a moment. Nothing was charged."
GUILD = 1
SHORT_MS = 300  # for the tests that are not about the length of the wait


@contextlib.contextmanager
def write_lock_held(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holds the database's write lock (``BEGIN IMMEDIATE``) until the block ends."""
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        other.execute("ROLLBACK")
        other.close()


def rows(path: Path) -> dict[str, int]:
    """How many jobs, job images and ledger entries the file holds, read by a connection of its own."""
    with contextlib.closing(sqlite3.connect(path, timeout=0)) as conn:
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("jobs", "job_images", "quota_ledger")
        }


NOTHING = {"jobs": 0, "job_images": 0, "quota_ledger": 0}


class Sink:
    async def progress(self, job: Job, position: int) -> None:
        return None

    async def deliver(self, job: Job, record_message: RecordMessage) -> None:
        return None

    async def finished(self, job: Job) -> None:
        return None

    async def failed(self, job: Job, message: str) -> None:
        return None

    async def alert(self, job: Job, message: str) -> None:
        return None


def make_engine(db: Database, store: ImageStore) -> JobEngine:
    provider = LocalProvider("local", LocalProviderConfig(max_concurrent=4), store)
    return JobEngine(
        db,
        ProviderRegistry({"local": provider}, "local"),
        Ledger(db, QuotaSection()),
        Sink(),
        workers=2,
        per_user_in_flight=2,
        max_queued_per_user=10,
    )


async def enqueue(engine: JobEngine, *, count: int = 2, references: list[StoredImage] | None = None) -> Job:
    job, _ = await engine.enqueue(
        kind="imagine",
        requester_id=7,
        guild_id=GUILD,
        channel_id=2,
        provider_name=None,
        request=GenerationRequest(prompt="a koala", count=count, resolution="1K", references=references or []),
        quota_limit=10,
    )
    return job


async def open_db(path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Database:
    db = await Database(path, busy_timeout_ms=busy_timeout_ms).open()
    try:
        await db.migrate()
    except BaseException:
        await db.close()  # an open connection's thread would keep the test process alive
        raise
    return db


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    return buffer.getvalue()


# -- busy: every write path says so, after the (real, default) timeout, and keeps nothing ------------
async def test_admission_against_a_held_write_lock_is_busy_after_the_timeout_and_charges_nothing(
    tmp_path: Path, store: ImageStore
) -> None:
    assert 1_000 <= BUSY_TIMEOUT_MS <= 10_000, "a few seconds: long enough for others' writes, short for members"
    path = tmp_path / "bot.sqlite3"
    db = await open_db(path)  # the bot's own busy timeout
    try:
        engine = make_engine(db, store)
        with write_lock_held(path):
            started = time.monotonic()
            with pytest.raises(StoreBusy) as caught:
                await enqueue(engine)
            waited = time.monotonic() - started
            assert rows(path) == NOTHING
        assert BUSY_TIMEOUT_MS / 1000 * 0.9 <= waited <= BUSY_TIMEOUT_MS / 1000 + 3
        assert isinstance(caught.value, SeedreamError)  # what the Discord layer answers politely
        assert caught.value.user_message == BUSY_MESSAGE
        assert caught.value.code == "busy"
        assert await engine.ledger.used(GUILD, 7) == 0
        # The lock is free again: the same connection admits at once and charges once.
        job = await enqueue(engine)
        assert await engine.ledger.used(GUILD, 7) == job.cost_units == 2
        assert rows(path) == {"jobs": 1, "job_images": 0, "quota_ledger": 1}
    finally:
        await db.close()


async def test_admission_with_a_reference_image_is_busy_and_writes_no_part_of_the_job(
    tmp_path: Path, store: ImageStore
) -> None:
    """With references the job, its images and the reservation are one transaction: none of it may stay."""
    path = tmp_path / "bot.sqlite3"
    db = await open_db(path, SHORT_MS)
    try:
        engine = make_engine(db, store)
        reference = await store.save_bytes(png())
        with write_lock_held(path), pytest.raises(StoreBusy) as caught:
            await enqueue(engine, count=1, references=[reference])
        assert caught.value.user_message == BUSY_MESSAGE
        assert rows(path) == NOTHING
        await enqueue(engine, count=1, references=[reference])
        assert rows(path) == {"jobs": 1, "job_images": 1, "quota_ledger": 1}
    finally:
        await db.close()


async def test_a_single_write_and_a_cancel_are_busy_and_change_nothing(tmp_path: Path, store: ImageStore) -> None:
    path = tmp_path / "bot.sqlite3"
    db = await open_db(path, SHORT_MS)
    try:
        engine = make_engine(db, store)
        job = await enqueue(engine)
        with write_lock_held(path):
            with pytest.raises(StoreBusy):
                await JobRepository(db).set(job.id, time.time(), attempts=3)  # Database.write
            with pytest.raises(StoreBusy):
                await engine.cancel(job.id)  # a transaction: job state and refund together
        saved = await JobRepository(db).get(job.id)
        assert saved is not None and saved.state == JobState.QUEUED and saved.attempts == 0
        assert await engine.ledger.used(GUILD, 7) == 2  # still reserved, not refunded
        cancelled = await engine.cancel(job.id)
        assert cancelled.state == JobState.CANCELLED
        assert await engine.ledger.used(GUILD, 7) == 0
    finally:
        await db.close()


async def test_a_write_cancelled_while_it_waits_for_the_lock_leaves_no_transaction_open(tmp_path: Path) -> None:
    """The BEGIN goes on in the database thread after the task is cancelled; if it then gets the lock,
    it must be rolled back, or the bot would hold the write lock (and refuse its own BEGINs) for good."""
    path = tmp_path / "bot.sqlite3"
    db = await open_db(path)
    now = time.time()

    async def write(job_id: str) -> None:
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO jobs (id, kind, requester_id, provider, options, created_at, updated_at)"
                " VALUES (?, 'cli', 1, 'local', '{}', ?, ?)",
                (job_id, now, now),
            )

    try:
        other = sqlite3.connect(path, isolation_level=None, timeout=0)
        other.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(write("cancelled"))
        await asyncio.sleep(0.3)  # its BEGIN IMMEDIATE is waiting for the lock
        task.cancel()
        await asyncio.sleep(0.05)
        other.execute("ROLLBACK")  # the lock frees while that BEGIN is still waiting: it succeeds now
        other.close()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        third = sqlite3.connect(path, isolation_level=None, timeout=2)
        third.execute("BEGIN IMMEDIATE")  # "database is locked" if our connection kept the lock
        third.execute("ROLLBACK")
        third.close()
        await write("after")
        assert [r[0] for r in await db.fetchall("SELECT id FROM jobs")] == ["after"]
    finally:
        await db.close()


# -- busy at open and on reads ----------------------------------------------------------------------
async def test_opening_while_another_process_holds_the_database_exclusively_is_busy(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    await (await open_db(path)).close()
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("PRAGMA locking_mode = EXCLUSIVE")  # keeps even readers out, unlike WAL's usual writer
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO quota_ledger (user_id, entry, units, created_at) VALUES (1, 'reserve', 1, 0)")
    try:
        with pytest.raises(StoreBusy) as caught:
            await Database(path, busy_timeout_ms=SHORT_MS).open()
        assert caught.value.user_message == BUSY_MESSAGE
    finally:
        other.execute("ROLLBACK")
        other.close()
    db = await open_db(path, SHORT_MS)
    await db.close()


async def test_reads_that_meet_a_lock_are_busy_too(tmp_path: Path) -> None:
    """In WAL mode readers never wait; in a rollback-journal file a writer's EXCLUSIVE lock stops them."""
    path = tmp_path / "journal.sqlite3"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as setup:
        setup.execute("CREATE TABLE t (x INTEGER)")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN EXCLUSIVE")
    try:
        async with aiosqlite.connect(path, timeout=SHORT_MS / 1000) as conn:
            with pytest.raises(StoreBusy):
                await fetch_one(conn, "SELECT COUNT(*) FROM t")
            with pytest.raises(StoreBusy):
                await fetch_all(conn, "SELECT x FROM t")
    finally:
        other.execute("ROLLBACK")
        other.close()


# -- start-up never needs the write lock ------------------------------------------------------------
async def test_an_up_to_date_database_opens_and_migrates_without_waiting_for_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    await (await open_db(path)).close()
    with write_lock_held(path):
        started = time.monotonic()
        db = await open_db(path)  # the full busy timeout: any write would wait for it, then fail
        try:
            assert time.monotonic() - started < BUSY_TIMEOUT_MS / 1000 / 2
            assert await db.migrate() == []
        finally:
            await db.close()


async def test_two_processes_migrating_at_once_apply_a_migration_once(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    first, second = await open_db(path), await open_db(path)
    try:
        version = await first.schema_version() + 1
        new = [(version, f"{version:04d}_extra.sql", "CREATE TABLE extra (x INTEGER);")]
        applied = await asyncio.gather(first.migrate(new), second.migrate(new))
        assert sorted(applied) == [[], [version]]
        assert await first.schema_version() == version
    finally:
        await first.close()
        await second.close()


# -- a store that cannot be written (as root too: paths under a regular file) ---------------------
async def test_a_database_whose_folder_cannot_exist_is_refused_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    path = tmp_path / "file" / "db" / "bot.sqlite3"
    with pytest.raises(StoreNotWritable) as caught:
        await Database(path).open()
    assert str(path.parent) in caught.value.user_message
    assert "storage.database" in caught.value.user_message
    assert "\n" not in caught.value.user_message


def test_a_data_folder_that_cannot_exist_is_refused_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreNotWritable) as caught:
        ensure_writable_dir(tmp_path / "file" / "data", what="the data folder", setting="storage.data_dir")
    assert str(tmp_path / "file" / "data") in caught.value.user_message
    assert "storage.data_dir" in caught.value.user_message


async def test_a_database_path_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bot.sqlite3").mkdir()
    with pytest.raises(StoreNotWritable, match=r"bot\.sqlite3: "):
        await Database(tmp_path / "bot.sqlite3").open()
