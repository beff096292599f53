"""Shared fixtures: real SQLite files (or PostgreSQL databases) and image stores in a temporary folder.

``db`` is a migrated SQLite file unless the module asks for both stores: a module that defines its own
``store_kind`` fixture with ``params=pg.STORE_KINDS`` runs each of its ``db`` tests on SQLite and on a
throwaway PostgreSQL database (skipped, saying how to enable it, where no server answers: tests/pg.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from bot.images import ImageStore
from bot.storage import Database, PostgresDatabase, Store
from tests import pg


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "data", max_pixels=50_000_000, max_bytes=60 * 1024 * 1024)


@pytest.fixture
def store_kind() -> str:
    """Which store ``db`` is: SQLite here; a module overrides this fixture to run on both (pg.STORE_KINDS)."""
    return "sqlite"


@pytest.fixture
async def db(store_kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated store of this test's own: a SQLite file, or a throwaway PostgreSQL database."""
    if store_kind == "postgres":
        async with pg.throwaway_database(await pg.require_server()) as url:
            database: Store = await PostgresDatabase(url).open()
            try:
                await database.migrate()
                yield database
            finally:
                await database.close()
        return
    database = await Database(tmp_path / "test.sqlite3").open()
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def another_store(db: Store) -> AsyncIterator[Callable[[], Awaitable[Store]]]:
    """Open more connections to ``db``'s database (another SQLite connection, another PostgreSQL pool), as a
    second process would have; closed after the test."""
    opened: list[Store] = []

    async def open_another() -> Store:
        store: Store = Database(db.path) if isinstance(db, Database) else PostgresDatabase(db.url)  # type: ignore[attr-defined]
        opened.append(await store.open())
        return store

    try:
        yield open_another
    finally:
        for store in opened:
            await store.close()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A test that runs the CLI in-process configures logging for a console: put pytest's handlers back after
    it, so later tests' log lines are captured instead of written to a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
