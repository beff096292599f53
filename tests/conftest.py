"""Shared fixtures: real SQLite files and image stores in a temporary folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
