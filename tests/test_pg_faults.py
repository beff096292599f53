"""PostgreSQL faults while the bot runs: connections terminated by the server (``pg_terminate_backend``, as a
restart or a failover does) are opened again with backoff, and no job is lost or written twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bot.errors import SeedreamError
from bot.quota import Ledger
from bot.storage.postgres import PostgresDatabase
from bot.storage.reconnect import connection_lost
from tests import pg
from tests.test_quota import FakeClock, at, make_ledger, reserve_job

# The fixtures of tests/pg.py, under their own names: a fresh database (and that database migrated).
pg_url = pg.pg_url
pg_db = pg.pg_db


@pytest.fixture
async def admin(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, outside the store's pool, to terminate the store's connections."""
    conn = await asyncpg.connect(pg_url)
    try:
        yield conn
    finally:
        await conn.close()


async def terminate_others(admin: asyncpg.Connection) -> int:
    """End every other connection to the database, as a server restart does; how many there were."""
    return int(
        await admin.fetchval(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    )


async def test_reads_writes_and_admissions_ride_out_terminated_connections(
    pg_db: PostgresDatabase, admin: asyncpg.Connection
) -> None:
    ledger = make_ledger(pg_db, FakeClock(at(2025, 6, 2)))
    await reserve_job(pg_db, ledger, user=5, units=1, limit=10)
    assert await terminate_others(admin) >= 1
    assert (await pg_db.fetchone("SELECT COUNT(*) FROM jobs"))[0] == 1
    assert await terminate_others(admin) >= 1
    await pg_db.write("UPDATE jobs SET error = ? WHERE requester_id = ?", ("noted", 5))
    assert await terminate_others(admin) >= 1
    await reserve_job(pg_db, ledger, user=5, units=1, limit=10)
    assert await ledger.used(1, 5) == 2


async def test_a_transaction_lost_before_it_committed_runs_again_whole(
    pg_db: PostgresDatabase, admin: asyncpg.Connection
) -> None:
    attempts = 0

    async def work(conn) -> str:  # type: ignore[no-untyped-def]
        nonlocal attempts
        attempts += 1
        await conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (f"try-{attempts}", "x"))
        if attempts == 1:  # the server ends this connection mid-transaction
            pid = (await conn.execute_fetchall("SELECT pg_backend_pid()"))[0][0]
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        await conn.execute("UPDATE meta SET value = ? WHERE key = ?", ("done", f"try-{attempts}"))
        return f"try-{attempts}"

    assert await pg_db.run_transaction(work) == "try-2"
    rows = await pg_db.fetchall("SELECT key, value FROM meta WHERE key LIKE 'try-%'")
    assert [tuple(r) for r in rows] == [("try-2", "done")]  # the lost attempt left nothing behind


async def test_a_burst_of_admissions_while_connections_are_terminated_loses_and_doubles_no_job(
    pg_db: PostgresDatabase, pg_url: str
) -> None:
    """Two pools admit 160 jobs for 8 members (limit 12 each) while the server keeps ending their connections:
    every job a member was told is queued exists once with one reservation, none exists that was refused,
    and no member is over their limit."""
    clock = FakeClock(at(2025, 6, 2))
    other = await PostgresDatabase(pg_url).open()
    try:
        ledgers: list[tuple[PostgresDatabase, Ledger]] = [(pg_db, make_ledger(pg_db, clock))]
        ledgers.append((other, make_ledger(other, clock)))
        stop = asyncio.Event()

        async def keep_terminating() -> int:
            ended = 0
            while not stop.is_set():
                killer = await asyncpg.connect(pg_url)
                try:
                    ended += await terminate_others(killer)
                finally:
                    await killer.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)
            return ended

        async def admit(i: int) -> str | SeedreamError:
            store, ledger = ledgers[i % 2]
            try:
                return await reserve_job(store, ledger, user=100 + i % 8, units=1, limit=12)
            except SeedreamError as refused:
                return refused

        killer = asyncio.create_task(keep_terminating())
        outcomes = await asyncio.gather(*(admit(i) for i in range(160)))
        stop.set()
        assert await killer > 0
    finally:
        await other.close()
    granted = {o for o in outcomes if isinstance(o, str)}
    unexpected = [o for o in outcomes if isinstance(o, SeedreamError) and connection_lost(o)]
    assert not unexpected
    jobs = {r[0] for r in await pg_db.fetchall("SELECT id FROM jobs")}
    assert jobs == granted
    reserves = await pg_db.fetchall(
        "SELECT job_id, COUNT(*) FROM quota_ledger WHERE entry = 'reserve' GROUP BY job_id HAVING COUNT(*) <> 1"
    )
    assert reserves == []
    per_member = await pg_db.fetchall("SELECT user_id, SUM(units) FROM quota_ledger GROUP BY user_id")
    assert all(int(r[1]) <= 12 for r in per_member) and len(granted) == 8 * 12
