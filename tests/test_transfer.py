"""Moving a bot's data between stores: ``seedream-bot export`` and ``import`` (bot/storage/transfer.py).

A SQLite database is filled the way the bot fills it (jobs run by the engine, a Vary of one of them, a
cancelled and a still-queued job, the quota ledger with a moderator refund, limits, a block, channels,
banned words and the audit log), exported with the CLI, imported into a freshly migrated PostgreSQL
database, and read back both as rows and through the bot's own services. The PostgreSQL half skips (saying
how to enable it) without a server; the refusals run on SQLite.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.config import Settings
from bot.jobs.repository import JobRepository
from bot.providers.base import GenerationRequest
from bot.services import Services
from bot.storage import Database, PostgresDatabase, Store
from bot.storage.database import migration_files
from bot.storage.transfer import migration_order, tables
from tests import pg
from tests.test_quota import FakeClock, at
from tests.test_readme import readme_block, shell
from tests.test_usage import ANNA, BORIS, GUILD, MOD, Bot, used

pg_url = pg.pg_url


@pytest.fixture(params=pg.STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """The ``db`` tests here run on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


def settings_for(database: str | Path, data_dir: Path) -> Settings:
    return Settings.model_validate(
        {
            "storage": {"database": str(database), "data_dir": str(data_dir)},
            "quota": {"default_limit": 50, "timezone": "Europe/Berlin", "max_queued_per_user": 10},
            "generation": {"workers": 2, "per_user_in_flight": 2},
            "providers": {
                "local": {"kind": "local"},
                "pro": {"kind": "local", "model": "placeholder-pro", "cost_weight": 2},
            },
        }
    )


async def fill(services: Services, clock: FakeClock) -> dict[str, Any]:
    """A few days of a busy server; returns what the bot's services read back from it."""
    bot = await used(Bot(services, clock))  # jobs, a cancelled one, a refund, the audit entry
    first = (await JobRepository(services.db).recent_for(ANNA, GUILD))[-1]
    vary = GenerationRequest.model_validate({"prompt": "a variation", "resolution": "1K"})
    child, _ = await bot.engine.enqueue(
        kind="vary",
        requester_id=ANNA,
        guild_id=GUILD,
        channel_id=1,
        provider_name="local",
        request=vary,
        quota_limit=50,
        parent_job_id=first.id,
    )
    await bot.engine.run_one(child)
    await bot.imagine(BORIS, (), "local", run=False)  # still queued: its 'reserve' entry must not double
    await services.moderation.set_limit(GUILD, MOD, "user", BORIS, 20, "trial")
    await services.moderation.block(GUILD, MOD, 77, "spam", until=clock() + 3600)
    await services.moderation.set_allowed_channels(GUILD, MOD, [1, 2])
    await services.moderation.add_banned_words(GUILD, MOD, ["gore"])
    return await read_back(services)


async def read_back(services: Services) -> dict[str, Any]:
    usage = await services.usage.report(GUILD, "all")
    jobs = {member: await JobRepository(services.db).recent_for(member, GUILD, limit=50) for member in (ANNA, BORIS)}
    return {
        "jobs": jobs,
        "used": [await services.ledger.used(GUILD, member) for member in (ANNA, BORIS)],
        "members": [(r.key, r.units, r.images, r.jobs) for r in usage.members],
        "audit": [(e.action, e.actor_id, e.target, e.details, e.reason) for e in usage.audit],
        "limits": await services.moderation.store.limits(GUILD),
        "banned": await services.moderation.store.banned_words(GUILD),
        "channels": await services.moderation.store.allowed_channels(GUILD),
    }


async def contents(db: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every copied table's rows, sorted, as plain tuples."""
    found = {}
    for table in await tables(db):
        rows = await db.fetchall(f'SELECT * FROM "{table}"')
        found[table] = sorted((tuple(row) for row in rows), key=repr)
    return found


@pytest.fixture
async def filled(tmp_path: Path) -> AsyncIterator[tuple[Path, dict[str, Any], FakeClock]]:
    """A SQLite database with a bot's worth of rows, closed; and what the services read from it."""
    clock = FakeClock(at(2025, 6, 2, 10))
    database = tmp_path / "bot.sqlite3"
    async with await Services.open(settings_for(database, tmp_path / "data"), clock=clock) as services:
        seen = await fill(services, clock)
    yield database, seen, clock


async def migrated_sqlite(path: Path, versions: int | None = None) -> Path:
    async with Database(path) as db:
        await db.migrate(migration_files()[:versions] if versions else None)
    return path


@pytest.fixture
def exported(
    filled: tuple[Path, dict[str, Any], FakeClock], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    """That database and its export (``seedream-bot export``)."""
    database, _, _ = filled
    export = tmp_path / "seedream.jsonl"
    assert cli(monkeypatch, database, "export", str(export)) == 0
    return database, export


def cli(monkeypatch: pytest.MonkeyPatch, database: str | Path, *args: str) -> int:
    monkeypatch.setenv("SEEDREAM_STORAGE__DATABASE", str(database))
    return main(list(args))


async def test_sqlite_to_postgresql_and_back_keeps_every_row_and_the_bot_reads_them(
    filled: tuple[Path, dict[str, Any], FakeClock],
    tmp_path: Path,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database, seen, clock = filled
    monkeypatch.chdir(tmp_path)
    export = tmp_path / "seedream.jsonl"
    assert await asyncio.to_thread(cli, monkeypatch, database, "export", str(export)) == 0
    said = capsys.readouterr().out
    assert said.startswith("exported ") and "jobs 6," in said and f"to {export}" in said
    assert await asyncio.to_thread(cli, monkeypatch, pg_url, "migrate") == 0
    assert await asyncio.to_thread(cli, monkeypatch, pg_url, "import", str(export)) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("imported ")

    async with Database(database) as source, PostgresDatabase(pg_url) as target:
        before = await contents(source)
        after = await contents(target)
    assert {"jobs", "job_images", "quota_ledger", "quota_limits", "member_blocks", "audit_log"} <= set(before)
    assert {table: len(rows) for table, rows in after.items()} == {t: len(r) for t, r in before.items()}
    assert after == before
    assert len(before["jobs"]) == 6 and len(before["audit_log"]) >= 5 and before["quota_ledger"]

    # The bot's own services on PostgreSQL see the same jobs, ledger, limits and audit ...
    async with await Services.open(settings_for(pg_url, tmp_path / "data"), clock=clock) as services:
        assert await read_back(services) == seen
        # ... and keep writing: the ledger's and the audit log's ids continue after the imported ones.
        bot = Bot(services, clock)
        await bot.imagine(ANNA, (), "local")
        await services.moderation.add_banned_words(GUILD, MOD, ["blood"])
        assert await services.ledger.used(GUILD, ANNA) == seen["used"][0] + 1

    # And back: PostgreSQL to a new SQLite file, which then holds what PostgreSQL holds.
    back = tmp_path / "back.jsonl"
    assert await asyncio.to_thread(cli, monkeypatch, pg_url, "export", str(back)) == 0
    copy = await migrated_sqlite(tmp_path / "copy.sqlite3")
    assert await asyncio.to_thread(cli, monkeypatch, copy, "import", str(back)) == 0
    async with PostgresDatabase(pg_url) as target, Database(copy) as returned, Database(database) as source:
        assert await contents(returned) == await contents(target)
        triggers = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
        assert [tuple(r) for r in await returned.fetchall(triggers)] == [
            tuple(r) for r in await source.fetchall(triggers)
        ]


def test_import_refuses_a_database_that_holds_rows_unless_told_to_replace_them(
    exported: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database, export = exported
    assert cli(monkeypatch, database, "import", str(export)) == 2
    line = capsys.readouterr().err
    assert line.count("\n") == 1 and "is not empty (jobs, job_images, quota_ledger" in line and "--replace" in line

    with sqlite3.connect(database) as conn:
        conn.execute("DELETE FROM banned_words")  # a change the import must undo
    assert cli(monkeypatch, database, "import", str(export), "--replace") == 0
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT word FROM banned_words").fetchall() == [("gore",)]
        reserves = conn.execute("SELECT COUNT(*) FROM quota_ledger WHERE entry = 'reserve'").fetchone()[0]
        jobs_that_cost = conn.execute("SELECT COUNT(*) FROM jobs WHERE cost_units > 0").fetchone()[0]
    assert reserves == jobs_that_cost  # no trigger appended a second 'reserve' entry


def test_import_refuses_another_schema_version_and_a_cut_off_file_and_writes_nothing(
    exported: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, export = exported
    newest = len(migration_files())

    older = asyncio.run(migrated_sqlite(tmp_path / "older.sqlite3", newest - 1))
    capsys.readouterr()
    assert cli(monkeypatch, older, "import", str(export)) == 2
    assert capsys.readouterr().err == (
        f"error: the export is at schema version {newest} but the database at {older} is at {newest - 1}:"
        " run `seedream-bot migrate` with this configuration first\n"
    )

    lines = export.read_text().splitlines(keepends=True)
    assert json.loads(lines[-1]).keys() == {"end"}
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:-1]))
    target = asyncio.run(migrated_sqlite(tmp_path / "target.sqlite3"))
    assert cli(monkeypatch, target, "import", str(cut)) == 2
    assert "it was cut off" in capsys.readouterr().err
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger'").fetchone() == (2,)

    missing = tmp_path / "never-migrated.sqlite3"
    assert cli(monkeypatch, missing, "import", str(export)) == 2
    assert "create it with `seedream-bot migrate` first" in capsys.readouterr().err
    assert not missing.exists()


def test_export_never_overwrites_a_file_unless_forced(
    filled: tuple[Path, dict[str, Any], FakeClock],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database, _, _ = filled
    export = tmp_path / "seedream.jsonl"
    export.write_text("keep me")
    assert cli(monkeypatch, database, "export", str(export)) == 2
    assert "already exists: pass --force" in capsys.readouterr().err
    assert export.read_text() == "keep me"
    assert cli(monkeypatch, database, "export", str(export), "--force") == 0
    assert json.loads(export.read_text().splitlines()[0])["format"] == "seedream-export"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


async def test_every_table_of_a_migrated_database_has_its_place_in_the_order(db: Store) -> None:
    """A table a future migration adds is copied too, after the tables it may refer to: every table of a
    migrated database (but the store's own schema_version) is one the migrations create, in their order."""
    found = await tables(db)
    assert "schema_version" not in found and len(found) >= 11
    assert found == [t for t in migration_order() if t in found]


def test_the_documented_move_to_postgresql_works(tmp_path: Path, pg_url: str) -> None:
    """README's "Move the data" block, as an operator runs it (systemctl lines skipped), with this test's server."""
    made = shell('seedream-bot generate "a koala" --resolution 1K --out out', tmp_path)
    assert made.returncode == 0, made.stderr
    block = readme_block("**Move the data**")
    assert "postgresql://seedream:PASSWORD@db.example:5432/seedream" in block
    moved = shell(block.replace("postgresql://seedream:PASSWORD@db.example:5432/seedream", pg_url), tmp_path)
    assert moved.returncode == 0, moved.stderr
    assert "imported " in moved.stdout and "jobs 1," in moved.stdout
    assert "jobs by state: done=1" in moved.stdout  # `status`, reading PostgreSQL
