"""Shared fixtures: real SQLite files and image stores in a temporary folder."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.images import ImageStore
from bot.storage import Database


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "data", max_pixels=50_000_000, max_bytes=60 * 1024 * 1024)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database(tmp_path / "test.sqlite3").open()
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


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
