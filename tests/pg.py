"""PostgreSQL for tests: a throwaway database per test on the server named by ``TEST_POSTGRES_URL``.

The server defaults to ``postgresql://postgres@127.0.0.1:5432/test`` (this project's CI machines run one
there, trust authentication). Each test gets a database of its own (``CREATE DATABASE`` with a random
name, dropped afterwards, even if connections are still open); the server's URL only names where to
connect to create it. Where no server answers, the tests that need one are skipped with a reason that
says how to point them at one; ``TEST_POSTGRES_URL=off`` skips them on purpose, and ``TEST_POSTGRES_REQUIRED=1``
(set by .ci/run) makes an unreachable server a failure instead, so CI cannot pass with the PostgreSQL half
skipped. The names are not ``SEEDREAM_*``: the bot reads every ``SEEDREAM_*`` variable as a config
override and refuses an unknown one, which would break every test that starts the bot or the CLI.

Use the ``pg_url`` fixture (a fresh, empty database's URL) or ``pg_db`` (that database, open and
migrated), or ``throwaway_database(server_url)`` directly.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from bot.storage.postgres import PostgresDatabase, redact_url

ENV = "TEST_POSTGRES_URL"
REQUIRED_ENV = "TEST_POSTGRES_REQUIRED"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
HOW = (
    f"set {ENV}=postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE to a server where USER may CREATE DATABASE"
    f" (default {DEFAULT_URL})"
)

#: The stores a test module's ``store_kind`` fixture runs its ``db`` tests on (tests/conftest.py).
STORE_KINDS = ("sqlite", "postgres")

_reachable: dict[str, str | None] = {}  # server URL -> None if reachable, else why not


def server_url() -> str | None:
    """The server tests may create databases on, or None if switched off."""
    url = os.environ.get(ENV, DEFAULT_URL).strip()
    return None if url.lower() in {"", "0", "off", "no", "false"} else url


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


async def _why_unreachable(url: str) -> str | None:
    if url not in _reachable:
        try:
            conn = await asyncpg.connect(url, timeout=3)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            _reachable[url] = f"{type(exc).__name__}: {exc}"
        else:
            await conn.close()
            _reachable[url] = None
    return _reachable[url]


async def require_server() -> str:
    """The server URL, or skip the calling test saying why and how to enable it."""
    url = server_url()
    if url is None:
        pytest.skip(reason=f"PostgreSQL tests switched off ({ENV}); {HOW}")
    why = await _why_unreachable(url)
    if why is not None and os.environ.get(REQUIRED_ENV, "").strip() not in {"", "0"}:
        pytest.fail(f"no PostgreSQL server at {redact_url(url)} ({why}) and {REQUIRED_ENV} is set; {HOW}")
    if why is not None:
        pytest.skip(reason=f"no PostgreSQL server at {redact_url(url)} ({why}); {HOW}")
    return url


@asynccontextmanager
async def throwaway_database(url: str) -> AsyncIterator[str]:
    """Create a database with a random name on ``url``'s server; yield its URL; drop it afterwards."""
    name = f"seedream_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(url, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(url, name)
    finally:
        admin = await asyncpg.connect(url, timeout=10)
        try:
            await asyncio.wait_for(admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'), 30)
        finally:
            await admin.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database of this test's own (skipped where no server answers)."""
    async with throwaway_database(await require_server()) as url:
        yield url


@pytest.fixture
async def pg_db(pg_url: str) -> AsyncIterator[PostgresDatabase]:
    """That database, open and migrated."""
    db = await PostgresDatabase(pg_url).open()
    try:
        await db.migrate()
        yield db
    finally:
        await db.close()
