"""The storage port: what the core may call on a store, and the one function that picks the store.

Two implementations: ``Database`` (SQLite through aiosqlite, the embedded default) and ``PostgresDatabase``
(PostgreSQL through an asyncpg pool, shared by several processes). ``[storage] database`` (env
``SEEDREAM_STORAGE__DATABASE``) chooses: a ``postgresql://`` URL is PostgreSQL, anything else a SQLite file.
Both take SQLite's ``?`` placeholders; the statements they cannot share are in ``bot.storage.dialect``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bot.storage.database import Database
from bot.storage.dialect import Dialect
from bot.storage.postgres import PostgresDatabase, is_postgres_url

T = TypeVar("T")


class StoreConnection(Protocol):
    """A connection as the repositories use it: aiosqlite's ``Connection`` or ``PgConnection``/``PgPool``.

    ``execute`` gives a cursor with ``rowcount``; rows are read by index and by column name.
    """

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...

    def execute_fetchall(self, sql: str, parameters: Any = ..., /) -> Any: ...


class Store(Protocol):
    """``Database`` or ``PostgresDatabase``: the calls the core makes on either."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def where(self) -> str:
        """What logs and errors may show: the file, or the URL with its password masked."""
        ...

    @property
    def conn(self) -> StoreConnection: ...

    async def open(self) -> Store: ...

    async def close(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[StoreConnection]: ...

    async def run_transaction(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """``work(conn)`` in one transaction, run again whole if the connection was lost before it committed."""
        ...

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in a transaction of its own; how many rows it changed."""
        ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    async def check_version(self, known: int | None = None) -> int: ...

    async def notify(self, channel: str, payload: str = "") -> None:
        """Wake other processes listening on ``channel`` (PostgreSQL); nothing on SQLite."""
        ...

    async def listen(self, channels: Sequence[str], callback: Callable[[str, str], None]) -> Any:
        """Notifications as ``callback(channel, payload)``; an object with ``alive`` and ``close()``, or None."""
        ...

    def leading(self, key: int) -> AbstractAsyncContextManager[bool]:
        """True in one process at a time bot-wide (maintenance that must run once)."""
        ...

    async def migrate(self, migrations: Iterable[tuple[int, str, str]] | None = None) -> list[int]: ...


def store_for(database: str | Path) -> Store:
    """The store ``[storage] database`` names, not yet open: PostgreSQL for a ``postgresql://`` URL, else SQLite."""
    if isinstance(database, str) and is_postgres_url(database):
        return PostgresDatabase(database)
    return Database(database)


async def open_store(database: str | Path) -> Store:
    """``store_for(database)``, open, and refused (``StoreTooNew``) if a newer seedream-bot migrated it.

    ``PostgresUnavailable`` if the server cannot be reached, ``StoreNotWritable`` if the SQLite file cannot
    be written: each one line for the operator.
    """
    store = await store_for(database).open()
    try:
        await store.check_version()
    except BaseException:
        await store.close()
        raise
    return store
