"""The PostgreSQL store: migrations, the version guard, the admission rule under concurrency, clear errors.

Each test that needs a server gets a database of its own on ``TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``) and is skipped, saying how to enable it, where none answers
(tests/pg.py). The placeholder and URL tests need no server.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from bot.config import QuotaSection
from bot.errors import SeedreamError
from bot.jobs.models import Job, JobState
from bot.jobs.repository import JobRepository
from bot.providers.base import GenerationRequest
from bot.quota import _GLOBAL_USED_SQL, Admission, AdmissionRefused, AllowanceExceeded, Ledger
from bot.storage import StoreBusy
from bot.storage.postgres import (
    PostgresDatabase,
    PostgresUnavailable,
    StoreTooNew,
    is_postgres_url,
    pg_migration_files,
    redact_url,
    translate,
)
from tests import pg

# The fixtures of tests/pg.py, under their own names: a fresh database (and that database migrated).
pg_url = pg.pg_url
pg_db = pg.pg_db

GUILD = 1
_ids = itertools.count()


def new_job(user: int, units: int, *, guild: int | None = GUILD, now: float | None = None) -> Job:
    now = time.time() if now is None else now
    return Job(
        id=f"pg-{next(_ids)}",
        kind="imagine",
        requester_id=user,
        guild_id=guild,
        channel_id=None,
        provider="local",
        request=GenerationRequest(prompt="a koala"),
        state=JobState.QUEUED,
        cost_units=units,
        created_at=now,
        updated_at=now,
    )


async def reserved(db: PostgresDatabase, user: int | None = None) -> int:
    net = "SELECT COALESCE(SUM(CASE entry WHEN 'reserve' THEN units WHEN 'refund' THEN -units ELSE 0 END), 0)"
    if user is None:
        row = await db.fetchone(f"{net} FROM quota_ledger")
    else:
        row = await db.fetchone(f"{net} FROM quota_ledger WHERE user_id = ?", (user,))
    assert row is not None
    return int(row[0])


# -- placeholders and URLs (no server needed) ------------------------------------------------------
def test_question_marks_become_numbered_placeholders_outside_literals_and_comments() -> None:
    sql = "SELECT '?', \"a?\" FROM t WHERE a = ? AND b IS ? AND c IS NOT ? -- why?\nAND d = ? /* ? */"
    assert translate(sql) == (
        "SELECT '?', \"a?\" FROM t WHERE a = $1 AND b IS NOT DISTINCT FROM $2 AND c IS DISTINCT FROM $3"
        " -- why?\nAND d = $4 /* ? */"
    )
    assert translate("SELECT 'it''s ?' WHERE x = ?") == "SELECT 'it''s ?' WHERE x = $1"
    # PostgreSQL's own SQL passes through (so jsonb's ? operator stays usable there).
    assert translate("SELECT data ? 'k' FROM t WHERE id = $1") == "SELECT data ? 'k' FROM t WHERE id = $1"
    assert translate("DO $$ BEGIN PERFORM '?'; END $$") == "DO $$ BEGIN PERFORM '?'; END $$"
    assert translate("SELECT '$1', ? FROM t") == "SELECT '$1', $1 FROM t"  # a $1 in a literal is text
    with pytest.raises(ValueError, match="numbered"):
        translate("SELECT ?1")


def test_urls_are_shown_without_their_password() -> None:
    assert redact_url("postgresql://bob:s3cret@db:5432/bot") == "postgresql://bob:***@db:5432/bot"
    assert redact_url("postgres://db/bot?password=s3cret&sslmode=require") == (
        "postgres://db/bot?password=***&sslmode=require"
    )
    assert is_postgres_url("postgresql://db/bot") and is_postgres_url("POSTGRES://db/bot")
    assert not is_postgres_url("data/seedream.sqlite3") and not is_postgres_url("postgresql.sqlite3")


async def test_nothing_listening_is_one_clear_line_without_the_password() -> None:
    url = "postgresql://seedream:hunter2-secret@127.0.0.1:1/bot"
    with pytest.raises(PostgresUnavailable) as caught:
        await PostgresDatabase(url, connect_timeout=3).open()
    message = str(caught.value)
    assert message.startswith("cannot connect to PostgreSQL at postgresql://seedream:***@127.0.0.1:1/bot: ")
    assert "connection refused" in message.lower() or "cannot open a connection" in message
    assert "storage.database" in message and "\n" not in message
    assert "hunter2" not in message and "hunter2" not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chained DSN
    assert isinstance(caught.value, SeedreamError) and caught.value.code == "store_unreachable"


def test_a_file_path_is_not_a_postgres_url() -> None:
    with pytest.raises(PostgresUnavailable, match="not a postgresql:// URL"):
        PostgresDatabase("data/seedream.sqlite3")


async def test_a_missing_database_is_named(pg_url: str) -> None:
    url = pg_url.replace("postgresql://postgres@", "postgresql://postgres:hunter2-secret@")
    missing = url.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(PostgresUnavailable) as caught:
        await PostgresDatabase(missing).open()
    message = str(caught.value)
    assert "'no_such_database_here' does not exist" in message and "createdb no_such_database_here" in message
    assert "hunter2" not in message


# -- migrations ------------------------------------------------------------------------------------
async def test_migrations_create_the_schema_and_are_idempotent(pg_url: str) -> None:
    versions = [v for v, _, _ in pg_migration_files()]
    async with PostgresDatabase(pg_url) as db:
        assert await db.schema_version() == 0
        assert await db.migrate() == versions
        tables = {
            r["tablename"] for r in await db.fetchall("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert {"jobs", "job_images", "quota_ledger", "guild_settings", "audit_log", "schema_version"} <= tables
        trigger = await db.fetchone("SELECT tgname FROM pg_trigger WHERE tgname = 'jobs_admit'")
        assert trigger is not None
    async with PostgresDatabase(pg_url) as db:
        assert await db.migrate() == []
        assert [r[0] for r in await db.fetchall("SELECT version FROM schema_version ORDER BY version")] == versions
        assert await db.check_version() == len(versions)


def test_each_postgres_migration_twins_the_sqlite_one_of_its_number() -> None:
    """Version N is the same schema on both stores (SQLite may be ahead until its twin is written)."""
    from bot.storage.database import migration_files

    pg_names = [name for _, name, _ in pg_migration_files()]
    assert [name for _, name, _ in migration_files()][: len(pg_names)] == pg_names


async def test_processes_migrating_at_once_apply_each_migration_once(pg_url: str) -> None:
    stores = [await PostgresDatabase(pg_url).open() for _ in range(4)]
    try:
        results = await asyncio.gather(*(db.migrate() for db in stores))
    finally:
        for db in stores:
            await db.close()
    applied = sorted(v for result in results for v in result)
    assert applied == [v for v, _, _ in pg_migration_files()]


async def test_a_newer_database_is_refused(pg_db: PostgresDatabase) -> None:
    known = len(pg_migration_files())
    await pg_db.write(
        "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
        (known + 1, f"{known + 1:04d}_from_the_future.sql", time.time()),
    )
    with pytest.raises(StoreTooNew) as caught:
        await pg_db.migrate()
    assert f"schema version {known + 1}" in str(caught.value) and f"up to {known}" in str(caught.value)
    with pytest.raises(StoreTooNew):
        await pg_db.check_version()
    assert await pg_db.schema_version() == known + 1  # nothing was touched


async def test_a_failing_migration_leaves_nothing_behind(pg_db: PostgresDatabase) -> None:
    current = await pg_db.schema_version()
    broken = [*pg_migration_files(), (current + 1, "0099_broken.sql", "CREATE TABLE half (x INTEGER); SELECT nope();")]
    with pytest.raises(Exception, match="nope"):
        await pg_db.migrate(broken)
    assert await pg_db.schema_version() == current
    assert await pg_db.fetchone("SELECT to_regclass('half')") == (None,)


# -- transactions ----------------------------------------------------------------------------------
async def test_reads_never_see_another_coroutines_uncommitted_transaction(pg_db: PostgresDatabase) -> None:
    job = new_job(user=5, units=0)
    repository = JobRepository(pg_db)
    async with pg_db.transaction() as conn:
        await repository.insert(conn, job)
        assert await pg_db.fetchone("SELECT id FROM jobs WHERE id = ?", (job.id,)) is None
        inside = await conn.execute_fetchall("SELECT id FROM jobs WHERE id = ?", (job.id,))
        assert [r["id"] for r in inside] == [job.id]
    row = await pg_db.fetchone("SELECT id, requester_id FROM jobs WHERE id = ?", (job.id,))
    assert row is not None and row[0] == job.id and row["requester_id"] == 5


async def test_a_transaction_that_raises_is_rolled_back_whole(pg_db: PostgresDatabase) -> None:
    job = new_job(user=6, units=0)
    with pytest.raises(RuntimeError):
        async with pg_db.transaction() as conn:
            await JobRepository(pg_db).insert(conn, job)
            cursor = await conn.execute("UPDATE jobs SET attempts = attempts + 1 WHERE requester_id = ?", (6,))
            assert cursor.rowcount == 1
            raise RuntimeError("boom")
    assert await pg_db.fetchone("SELECT 1 FROM jobs WHERE id = ?", (job.id,)) is None


async def test_a_read_that_finds_no_free_connection_is_store_busy(pg_url: str) -> None:
    """Reading through ``db`` while every pooled connection is a transaction gives up instead of hanging."""
    async with PostgresDatabase(pg_url, min_size=1, max_size=1, acquire_timeout=0.2) as db:
        async with db.transaction() as conn:
            with pytest.raises(StoreBusy):
                await db.fetchone("SELECT 1")
            assert (await conn.execute_fetchall("SELECT 1"))[0][0] == 1
        assert await db.fetchone("SELECT 1") == (1,)


# -- the admission rule ----------------------------------------------------------------------------
async def test_a_refused_admission_writes_nothing(pg_db: PostgresDatabase) -> None:
    jobs = JobRepository(pg_db)
    await jobs.admit(new_job(user=7, units=3), Admission(limit=4, window_start=0.0))
    job = new_job(user=7, units=2)
    with pytest.raises(AdmissionRefused) as caught:
        await jobs.admit(job, Admission(limit=4, window_start=0.0))
    assert caught.value.reason == "allowance"
    assert await pg_db.fetchone("SELECT 1 FROM jobs WHERE id = ?", (job.id,)) is None
    assert await reserved(pg_db, 7) == 3


async def test_the_ledger_explains_a_refusal_on_postgres(pg_db: PostgresDatabase) -> None:
    ledger = Ledger(pg_db, QuotaSection(default_limit=5))
    jobs = JobRepository(pg_db)

    async def admit(units: int) -> None:
        job = new_job(user=8, units=units)
        await ledger.admit(lambda a: jobs.admit(job, a), guild_id=GUILD, user_id=8, units=units, limit=5)

    await admit(4)
    with pytest.raises(AllowanceExceeded, match="you have 1 of 5 left"):
        await admit(2)
    assert await ledger.used(GUILD, 8) == 4


async def test_the_trigger_counts_what_the_ledger_reports(pg_db: PostgresDatabase) -> None:
    """The trigger's sums (written for speed) agree with Ledger.used/global_used (quota.py's join) at the edge:
    a job reserved before the window and refunded inside it, a partly refunded job, a manual refund."""
    now = [1_800_000_000.0]
    ledger = Ledger(pg_db, QuotaSection(window="rolling", rolling_hours=1), lambda: now[0])
    jobs = JobRepository(pg_db)
    t0, user = now[0], 13

    async def admit(units: int, at: float, **limits: object) -> Job:
        job = new_job(user=user, units=units, now=at)
        await jobs.admit(job, Admission(window_start=t0 - 3600, **limits))  # type: ignore[arg-type]
        return job

    async def at(when: float, action: object) -> None:
        now[0] = when
        async with pg_db.transaction() as conn:
            await action(conn)  # type: ignore[operator]

    old = await admit(3, t0 - 7200, limit=None)
    await at(t0 - 100, lambda conn: ledger.settle(conn, old.id, 2))  # refunds 1 unit of a reservation before the window
    partly = await admit(4, t0 - 1800, limit=None)
    await at(t0 - 1700, lambda conn: ledger.settle(conn, partly.id, 2))  # commits 2, refunds 2
    await at(
        t0 - 1000,
        lambda conn: ledger.refund_manually(conn, guild_id=GUILD, user_id=user, units=1, actor_id=1, note="sorry"),
    )
    await admit(5, t0 - 500, limit=None)
    now[0] = t0
    used = await ledger.used(GUILD, user)
    assert used == 4 - 2 - 1 + 5

    await admit(2, t0, limit=used + 2)  # fits exactly
    with pytest.raises(AdmissionRefused, match="allowance"):
        await admit(1, t0, limit=used + 2)
    assert await ledger.used(GUILD, user) == used + 2

    row = await pg_db.fetchone(_GLOBAL_USED_SQL, (t0 - 3600, t0 - 3600))  # the bot's "day" from t0 - 3600
    assert row is not None
    spent = int(row[0])
    assert spent == used + 2  # one member: the same entries
    await admit(1, t0, limit=None, daily_cap=spent + 1, daily_start=t0 - 3600)
    with pytest.raises(AdmissionRefused, match="daily cap"):
        await admit(1, t0, limit=None, daily_cap=spent + 1, daily_start=t0 - 3600)


async def admit_many(stores: list[PostgresDatabase], jobs: list[Job], admission: Admission) -> tuple[int, list[str]]:
    """Admit every job at once, spread over ``stores``; (granted, refusal reasons)."""
    start = asyncio.Event()

    async def one(i: int, job: Job) -> str | None:
        await start.wait()
        try:
            await JobRepository(stores[i % len(stores)]).admit(job, admission)
        except AdmissionRefused as refused:
            return refused.reason
        return None

    tasks = [asyncio.create_task(one(i, job)) for i, job in enumerate(jobs)]
    await asyncio.sleep(0)
    start.set()
    outcomes = await asyncio.gather(*tasks)
    return sum(o is None for o in outcomes), [o for o in outcomes if o is not None]


async def test_200_concurrent_admissions_from_two_pools_never_overspend(pg_url: str) -> None:
    """One member, limit 50, 200 one-unit admissions at once over 2 pools of 20 connections: exactly 50."""
    stores = [await PostgresDatabase(pg_url, min_size=20, max_size=20).open() for _ in range(2)]
    try:
        await stores[0].migrate()
        granted, refusals = await admit_many(
            stores, [new_job(user=9, units=1) for _ in range(200)], Admission(limit=50, window_start=0.0)
        )
        assert granted == 50 and refusals == ["allowance"] * 150
        assert await reserved(stores[0], 9) == 50
        rows = await stores[0].fetchone("SELECT COUNT(*) FROM jobs WHERE requester_id = ?", (9,))
        assert rows is not None and rows[0] == 50  # a refused job left no row behind
    finally:
        for db in stores:
            await db.close()


async def test_the_daily_cap_and_the_queued_cap_hold_under_concurrency(pg_url: str) -> None:
    """10 members × 20 admissions of 1 unit at once: member limit 12, bot-wide daily cap 60 → 60 exactly,
    no member above 12; then one member's 40 admissions at once against a queued cap of 5 → 5."""
    stores = [await PostgresDatabase(pg_url, min_size=10, max_size=10).open() for _ in range(2)]
    try:
        await stores[0].migrate()
        capped = Admission(limit=12, window_start=0.0, daily_cap=60, daily_start=0.0)
        jobs = [new_job(user=100 + u, units=1) for _ in range(20) for u in range(10)]
        granted, refusals = await admit_many(stores, jobs, capped)
        assert granted == 60 and await reserved(stores[0]) == 60
        assert set(refusals) <= {"allowance", "daily cap"}
        per_member = await stores[0].fetchall(
            "SELECT user_id, SUM(units) FROM quota_ledger WHERE entry = 'reserve' GROUP BY user_id"
        )
        assert max(int(r[1]) for r in per_member) <= 12

        queued = Admission(limit=None, window_start=0.0, queued_cap=5)
        granted, refusals = await admit_many(stores, [new_job(user=200, units=1) for _ in range(40)], queued)
        assert granted == 5 and refusals == ["queued"] * 35
    finally:
        for db in stores:
            await db.close()


async def test_a_lock_held_past_the_lock_timeout_is_store_busy(pg_url: str) -> None:
    """An admission waiting on another transaction's hold on the same member gives up as StoreBusy."""
    async with PostgresDatabase(pg_url) as holder, PostgresDatabase(pg_url, lock_timeout_ms=200) as waiter:
        await holder.migrate()
        jobs = JobRepository(holder)
        async with holder.transaction() as conn:
            await jobs.insert(conn, new_job(user=11, units=1), Admission(limit=10, window_start=0.0))
            started = time.monotonic()
            with pytest.raises(StoreBusy):
                await JobRepository(waiter).admit(new_job(user=11, units=1), Admission(limit=10, window_start=0.0))
            assert time.monotonic() - started < 5
            # Another member is not held up.
            await JobRepository(waiter).admit(new_job(user=12, units=1), Admission(limit=10, window_start=0.0))
        assert await reserved(holder, 11) == 1 and await reserved(holder, 12) == 1
