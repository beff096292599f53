"""Migrations and transactions against a real SQLite file; the repositories' SQL on both stores."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.images import StoredImage
from bot.jobs.models import Delivery, InteractionRef, Job, JobState
from bot.jobs.pending import PendingAnswers
from bot.jobs.repository import JobRepository
from bot.moderation.models import Block
from bot.moderation.store import ModerationStore
from bot.providers.base import GenerationRequest
from bot.storage import Database, PostgresDatabase, Store, StoreTooNew, open_store, store_for
from bot.storage.database import fetch_one, migration_files, split_statements
from bot.storage.meta import get_meta, set_meta
from tests import pg


@pytest.fixture(params=pg.STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every ``db`` test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


async def test_migrations_from_an_empty_file_create_the_tables(tmp_path: Path) -> None:
    async with Database(tmp_path / "new.sqlite3") as db:
        applied = await db.migrate()
        assert applied == [v for v, _, _ in migration_files()]
        tables = {r[0] for r in await db.fetchall("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"jobs", "job_images", "quota_ledger", "schema_version"} <= tables
        assert await db.schema_version() == len(migration_files())
        mode = await db.fetchone("PRAGMA journal_mode")
        assert mode is not None and mode[0] == "wal"
        fk = await db.fetchone("PRAGMA foreign_keys")
        assert fk is not None and fk[0] == 1


async def test_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "again.sqlite3"
    async with Database(path) as db:
        await db.migrate()
    async with Database(path) as db:
        assert await db.migrate() == []
        rows = await db.fetchall("SELECT version FROM schema_version")
        assert [r[0] for r in rows] == [v for v, _, _ in migration_files()]


async def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    async with Database(tmp_path / "bad.sqlite3") as db:
        await db.migrate()
        current = await db.schema_version()
        broken = [(current + 1, "9999_broken.sql", "CREATE TABLE half (x INTEGER);\nINSERT INTO nope VALUES (1);")]
        with pytest.raises(Exception, match="no such table"):
            await db.migrate(broken)
        assert await db.schema_version() == current
        assert await db.fetchone("SELECT name FROM sqlite_master WHERE name = 'half'") is None


async def test_transaction_rolls_back_on_error(db: Database) -> None:
    now = time.time()
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO jobs (id, kind, requester_id, provider, options, created_at, updated_at)"
                " VALUES (?, 'cli', 1, 'local', '{}', ?, ?)",
                ("j1", now, now),
            )
            raise RuntimeError("boom")
    assert await db.fetchone("SELECT id FROM jobs WHERE id = 'j1'") is None


async def test_a_read_never_sees_another_coroutines_uncommitted_transaction(db: Store) -> None:
    """While one coroutine's transaction has written a job but not committed, a read elsewhere (``fetchone``,
    ``conn``) sees nothing of it, on either store; once it commits, the next read sees it."""
    now = time.time()
    written, checked = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO jobs (id, kind, requester_id, provider, options, created_at, updated_at)"
                " VALUES (?, 'cli', 1, 'local', '{}', ?, ?)",
                ("open", now, now),
            )
            assert await fetch_one(conn, "SELECT id FROM jobs WHERE id = 'open'") is not None  # its own write
            written.set()
            await checked.wait()

    task = asyncio.create_task(writer())
    await asyncio.wait_for(written.wait(), 10)
    try:
        assert await db.fetchone("SELECT id FROM jobs WHERE id = 'open'") is None
        assert tuple(await fetch_one(db.conn, "SELECT COUNT(*) FROM jobs")) == (0,)
    finally:
        checked.set()
        await task
    assert tuple(await db.fetchone("SELECT id FROM jobs WHERE id = 'open'")) == ("open",)


async def test_ledger_rejects_unknown_entries(db: Database) -> None:
    with pytest.raises(Exception, match=r"(?i)check constraint"):  # SQLite: CHECK, PostgreSQL: check
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO quota_ledger (user_id, entry, units, created_at) VALUES (1, 'gift', 1, ?)", (time.time(),)
            )


def test_split_statements_keeps_semicolons_inside_strings() -> None:
    parts = split_statements("-- comment\nCREATE TABLE t (x TEXT DEFAULT ';');\nINSERT INTO t VALUES ('a;b');\n")
    assert parts == ["CREATE TABLE t (x TEXT DEFAULT ';');", "INSERT INTO t VALUES ('a;b');"]


# -- the same answers from both stores (each test below runs on SQLite and on PostgreSQL) ------------------
BIG = 1_234_567_890_123_456_789  # a Discord id needs 64 bits


def _image(name: str) -> StoredImage:
    return StoredImage(
        path=Path(f"/data/{name}.png"), sha256=name * 4, size_bytes=2**33, width=64, height=48, mime="image/png"
    )


def _job(job_id: str, *, user: int = 7, guild: int | None = 1, at: float = 1000.0, **fields: object) -> Job:
    request = GenerationRequest(prompt=f"prompt of {job_id}", references=[_image(f"{job_id}r0"), _image(f"{job_id}r1")])
    values: dict[str, object] = {
        "id": job_id,
        "kind": "imagine",
        "requester_id": user,
        "guild_id": guild,
        "channel_id": 3,
        "provider": "local",
        "request": request,
        "state": JobState.QUEUED,
        "created_at": at,
        "updated_at": at,
    }
    return Job.model_validate(values | fields)


def _where(db: Store) -> str:
    return db.url if isinstance(db, PostgresDatabase) else str(db.where)


def test_the_setting_picks_the_store() -> None:
    assert isinstance(store_for("postgresql://bot:secret@db:5432/seedream"), PostgresDatabase)
    assert isinstance(store_for("postgres://db/seedream"), PostgresDatabase)
    assert isinstance(store_for("seedream-bot.sqlite3"), Database)
    assert isinstance(store_for(Path("/data/postgresql:/x.sqlite3")), Database)
    assert (
        store_for("a.sqlite3").dialect.name == "sqlite" and store_for("postgresql://h/d").dialect.name == "postgresql"
    )


async def test_a_database_newer_than_this_code_is_refused(db: Store) -> None:
    known = await db.check_version()
    assert known > 0
    await db.write(
        "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)", (known + 1, "9999_x.sql", 0.0)
    )
    with pytest.raises(
        StoreTooNew, match=f"schema version {known + 1} but this seedream-bot understands up to {known}"
    ):
        await open_store(_where(db))
    with pytest.raises(StoreTooNew):
        await db.migrate()


async def test_open_store_opens_an_up_to_date_database(db: Store) -> None:
    store = await open_store(_where(db))
    try:
        assert await store.check_version() == await db.check_version()
        assert await store.migrate() == []
    finally:
        await store.close()


async def test_jobs_read_back_with_their_images_by_id_member_message_and_outcome(db: Store) -> None:
    repo = JobRepository(db)
    first = _job("a1", at=1000.0, delivery=Delivery(card_message_id=BIG + 1))
    second = _job("a2", at=1001.0, guild=None)
    third = _job("a3", user=8, at=1002.0)
    for job in (first, second, third):
        async with db.transaction() as conn:
            await repo.insert(conn, job)
    async with db.transaction() as conn:
        await repo.insert(conn, _job("a1x", at=999.0), None)
        await repo.save_results(conn, "a1", [_image("res0"), _image("res1")], 1003.0)
        await repo.save_results(conn, "a1", [_image("res0")], 1003.0)  # again: nothing doubled
    await repo.set("a1", 1004.0, posted_message_ids=[BIG, BIG + 7])

    got = await repo.get("a1")
    assert got is not None
    assert [r.path.name for r in got.request.references] == ["a1r0.png", "a1r1.png"]
    assert [r.path.name for r in got.results] == ["res0.png", "res1.png"]
    assert got.results[0].size_bytes == 2**33 and got.posted_message_ids == [BIG, BIG + 7]
    assert await repo.get("nope") is None
    assert [j.id for j in await repo.active()] == ["a1x", "a1", "a2", "a3"]
    assert [j.id for j in await repo.recent_for(7, 1)] == ["a1", "a1x"]
    assert [j.id for j in await repo.recent_for(7, None)] == ["a2"]
    assert [h[0] for h in await repo.queued_heads(0.0)] == ["a1x", "a3"]
    assert await repo.queue_positions() == {"a1x": 1, "a1": 2, "a2": 3, "a3": 4}

    found = [await repo.find_by_message(m) for m in (BIG, BIG + 7, BIG + 1, BIG + 2)]
    assert [j.id if j else None for j in found] == ["a1", "a1", "a1", None]
    await db.write(
        "UPDATE jobs SET delivery = ? WHERE id = 'a3'", (f'{{"status_message_id": {BIG + 3}}}',)
    )  # a row written before the card was called a card
    by_status = await repo.find_by_message(BIG + 3)
    assert by_status is not None and by_status.id == "a3"

    await repo.set("a2", 1005.0, state=JobState.FAILED, delivery=Delivery(outcome_shown=False))
    await repo.set("a3", 1005.0, state=JobState.CANCELLED, delivery=Delivery(outcome_shown=True))
    await repo.set("a1x", 1006.0, state=JobState.FAILED)
    assert [j.id for j in await repo.unshown_outcomes(since=1000.0)] == ["a2", "a1x"]
    assert await repo.unshown_outcomes(since=2000.0) == []


async def test_member_rules_are_read_in_one_row(db: Store) -> None:
    store = ModerationStore(db)
    empty = await store.member_rules(1, 7, [10, 11], now=100.0)
    assert empty.allowed_channels == () and empty.banned_words == () and empty.block is None
    assert empty.in_flight == 0 and empty.stored_roles is None and empty.limits == {}
    assert (await store.member_rules(None, 7, [], now=100.0)).limits == {}

    async with db.transaction() as conn:
        await store.update_settings(conn, 1, {"max_resolution": "3K", "max_count": 2}, 50.0)
        await store.replace_channels(conn, 1, [BIG, 5, 5])
        assert await store.add_word(conn, 1, "dragon", 9, 50.0)
        assert not await store.add_word(conn, 1, "dragon", 9, 51.0)  # already there: rowcount 0 on both
        await store.put_block(conn, 1, Block(7, "spam", None, 9, 50.0))
        await store.put_block(conn, 1, Block(7, "spam again", 500.0, 9, 60.0))  # replaces the first
        await store.record_roles(conn, 1, 7, [11, 10], 50.0)
        for scope, scope_id, units in (
            ("user", 7, 3),
            ("guild", 1, 20),
            ("role", 10, 5),
            ("role", 99, 1),
            ("channel", 11, None),
        ):
            await store.put_limit(conn, 1, scope, scope_id, units, 9, 50.0)  # type: ignore[arg-type]
    async with db.transaction() as conn:
        await JobRepository(db).insert(conn, _job("b1", user=7, guild=1))

    rules = await store.member_rules(1, 7, [10, 11], now=100.0)
    assert rules.settings.max_resolution == "3K" and rules.settings.max_count == 2
    assert rules.allowed_channels == (5, BIG)
    assert rules.banned_words == ("dragon",)
    assert rules.block == Block(7, "spam again", 500.0, 9, 60.0)
    assert rules.in_flight == 1 and rules.stored_roles == (10, 11)
    assert rules.limits == {("user", 7): 3, ("guild", 1): 20, ("role", 10): 5, ("channel", 11): None}
    assert (await store.member_rules(1, 7, [], now=600.0)).block is None  # the block ran out
    assert [r.scope_id for r in await store.limits(1, "role")] == [10, 99]
    assert len(await store.limits(1)) == 5


async def test_a_pending_answer_goes_when_its_job_is_written(db: Store) -> None:
    pending = PendingAnswers(db)
    ref = InteractionRef(application_id=BIG, token="tok-1", usable_until=900.0)
    await pending.add(ref, BIG + 1, 3, now=10.0)
    await pending.add(ref, BIG + 2, 3, now=11.0)  # noted again: one row, the newer message
    await pending.add(InteractionRef(application_id=1, token="tok-2", usable_until=900.0), None, None, now=12.0)
    left = await pending.left_behind()
    assert [(p.interaction.token, p.message_id) for p in left] == [("tok-1", BIG + 2), ("tok-2", None)]
    async with db.transaction() as conn:
        await JobRepository(db).insert(conn, _job("c1", delivery=Delivery(interaction=ref)))
    assert [p.interaction.token for p in await pending.left_behind()] == ["tok-2"]


async def test_any_resolution_tier_is_allowed_and_nothing_else(db: Store) -> None:
    store = ModerationStore(db)
    for tier in ("1K", "3K", "4K"):
        async with db.transaction() as conn:
            await store.update_settings(conn, 1, {"max_resolution": tier}, 1.0)
        assert (await store.settings(1)).max_resolution == tier
    with pytest.raises(Exception, match=r"(?i)check constraint"):
        async with db.transaction() as conn:
            await store.update_settings(conn, 1, {"max_resolution": "HD"}, 1.0)


async def test_meta_values_are_kept_and_replaced(db: Store) -> None:
    assert await get_meta(db, "heartbeat") is None
    await set_meta(db, "heartbeat", "one")
    await set_meta(db, "heartbeat", "two")
    assert await get_meta(db, "heartbeat") == "two"
