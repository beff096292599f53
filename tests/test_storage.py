"""Migrations and transactions against a real SQLite file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.storage import Database
from bot.storage.database import migration_files, split_statements


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


async def test_ledger_rejects_unknown_entries(db: Database) -> None:
    with pytest.raises(Exception, match="CHECK constraint"):
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO quota_ledger (user_id, entry, units, created_at) VALUES (1, 'gift', 1, ?)", (time.time(),)
            )


def test_split_statements_keeps_semicolons_inside_strings() -> None:
    parts = split_statements("-- comment\nCREATE TABLE t (x TEXT DEFAULT ';');\nINSERT INTO t VALUES ('a;b');\n")
    assert parts == ["CREATE TABLE t (x TEXT DEFAULT ';');", "INSERT INTO t VALUES ('a;b');"]
