"""The owner of the SQLite store's two aiosqlite connections: one writer, one reader.

WAL mode so readers never wait on the writer; every write inside ``transaction()`` (BEGIN IMMEDIATE,
serialised by a lock because one connection cannot nest transactions). Reads (``fetchall``, ``fetchone``,
``conn``) go through a second, read-only connection, so a read never sees another coroutine's
uncommitted transaction, as on PostgreSQL; inside ``transaction()`` read through the connection it
yields to see the block's own writes. A ``:memory:`` database cannot be shared by two connections: its
reads wait for the write lock instead.

Another process (``seedream-bot generate``, an operator's ``sqlite3`` shell) may hold the write lock.
SQLite waits up to ``BUSY_TIMEOUT_MS`` for it; beyond that every read and write here raises
``StoreBusy`` ("busy, try again, nothing was charged") instead of sqlite3's "database is locked",
and a transaction that meets it is rolled back whole. The wait is short on purpose: the connection
has one database thread, so every other query waits behind a write that waits for the lock.

``open`` refuses a store this process cannot write (``StoreNotWritable``): a read-only database file,
a folder where SQLite cannot create its ``-wal``/``-shm`` files. ``ensure_writable_dir`` does the same
check for the data folder.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import aiosqlite

from bot.storage.dialect import SQLITE, Dialect
from bot.storage.errors import StoreBusy, StoreNotWritable, StoreTooNew

log = logging.getLogger(__name__)
T = TypeVar("T")

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
#: How long a statement waits for another process's lock before it fails with ``StoreBusy``: long
#: enough to ride out another process's short transactions, short enough that a member who was
#: answered "thinking…" hears back within seconds.
BUSY_TIMEOUT_MS = 5_000
_BUSY_CODES = {sqlite3.SQLITE_BUSY}
_NOT_WRITABLE_CODES = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM}


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_busy(exc: BaseException) -> bool:
    """True for SQLite's "database is locked": another connection held the lock past the busy timeout."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = _primary_code(exc)
    if code is not None:
        return code in _BUSY_CODES
    return str(exc).startswith(("database is locked", "database is busy"))


def _raise_busy(exc: BaseException, doing: str) -> NoReturn:
    raise StoreBusy(f"{doing}: {exc} (another connection held the lock past the busy timeout)") from exc


@contextmanager
def _busy_is_store_busy(doing: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            _raise_busy(exc, doing)
        raise


def _user() -> str:
    """Who this process runs as, for the operator: ``user seedream (uid 999)``."""
    try:
        import pwd  # POSIX only

        uid = os.geteuid()
        try:
            return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
        except KeyError:
            return f"uid {uid}"
    except (ImportError, AttributeError):
        return "the user running the bot"


def _cannot_create_in(folder: Path) -> OSError | None:
    """Create and remove a file in ``folder``: the one honest test (permissions, ACLs, read-only mounts, root)."""
    try:
        handle, name = tempfile.mkstemp(prefix=".seedream-write-check-", dir=folder)
    except OSError as exc:
        return exc
    os.close(handle)
    os.unlink(name)
    return None


def _cannot_open_for_writing(path: Path) -> OSError | None:
    """Open an existing file read-write the way SQLite does (it falls back to read-only if this fails)."""
    try:
        handle = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return exc
    os.close(handle)
    return None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def ensure_writable_dir(folder: Path | str, *, what: str, setting: str) -> None:
    """Create ``folder`` if needed and prove this process can create files in it, else ``StoreNotWritable``.

    ``what`` names the folder for the operator ("the data folder"); ``setting`` is the config key
    that moves it ("storage.data_dir").
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreNotWritable(
            folder,
            f"{what} cannot be created by {_user()} ({_reason(exc)})",
            f"Create it and give that user write access, or set {setting} to a writable place.",
        ) from exc
    failure = _cannot_create_in(folder)
    if failure is not None:
        raise StoreNotWritable(
            folder,
            f"{_user()} cannot create files in {what} ({_reason(failure)})",
            f"Give that user write access to it, or set {setting} to a writable place.",
        ) from failure


def ensure_writable_database(path: Path | str) -> None:
    """The database file, its ``-wal``/``-shm`` files and their folder must be writable by this process."""
    path = Path(path)
    ensure_writable_dir(
        path.parent,
        what="the database's folder, where SQLite keeps its -wal and -shm files",
        setting="storage.database",
    )
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        failure = _cannot_open_for_writing(candidate)
        if failure is not None:
            raise StoreNotWritable(
                candidate,
                f"{_user()} cannot open it for writing ({_reason(failure)})",
                "Give that user write access to the database and its -wal and -shm files, or set"
                " storage.database to a writable path.",
            ) from failure


def migration_files(package: str = "bot.storage.migrations") -> list[tuple[int, str, str]]:
    """(version, name, sql) of every numbered migration shipped in ``package`` (SQLite's by default), in order."""
    found = []
    for entry in resources.files(package).iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration numbers must run 1..N without gaps, found {versions}")
    return found


def split_statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit behind our transaction's back)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        if not buffer and line.strip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer.strip()[:80]}")
    return statements


async def fetch_all(conn: Any, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Run a query and read its rows in one call on the database thread (any store's connection).

    ``async with conn.execute(...) as cursor: await cursor.fetchone()`` is three thread hops (execute,
    fetch, close), each queued behind every other query on the one aiosqlite thread.
    """
    with _busy_is_store_busy("read"):
        return list(await conn.execute_fetchall(sql, params))


async def fetch_one(conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first row of a query (or None), in one database-thread hop."""
    with _busy_is_store_busy("read"):
        rows = await conn.execute_fetchall(sql, params)
    return next(iter(rows), None)


async def _rollback(conn: aiosqlite.Connection) -> None:
    """End the open transaction, if any; never hides the error that led here."""
    try:
        await conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        if "no transaction is active" not in str(exc):
            log.warning("rollback failed: %s", exc)


class Database:
    """SQLite: one aiosqlite connection, writes serialised; see the module docstring."""

    dialect: Dialect = SQLITE

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._conn: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    @property
    def where(self) -> str:
        """The database file, as logs and errors show it."""
        return self.path

    @property
    def conn(self) -> aiosqlite.Connection:
        """The read-only connection: sees only committed data (see the module docstring)."""
        if self._reader is None:
            raise RuntimeError("the database is not open")
        return self._reader

    @property
    def _writer(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("the database is not open")
        return self._conn

    async def open(self) -> Database:
        """Connect and configure; ``StoreNotWritable`` if this process cannot write the store."""
        if self.path != ":memory:":
            ensure_writable_database(self.path)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            self._conn = await aiosqlite.connect(self.path, isolation_level=None)
            self._conn.row_factory = aiosqlite.Row
            await self._conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            await self._conn.execute("PRAGMA journal_mode = WAL")
            await self._conn.execute("PRAGMA synchronous = NORMAL")
            await self._conn.execute("PRAGMA foreign_keys = ON")
            self._reader = self._conn if self.path == ":memory:" else await self._open_reader()
        except sqlite3.OperationalError as exc:
            await self.close()
            if is_busy(exc):
                _raise_busy(exc, f"opening {self.path}")
            if _primary_code(exc) in _NOT_WRITABLE_CODES:
                raise StoreNotWritable(
                    self.path,
                    f"SQLite cannot open it for writing as {_user()} ({exc})",
                    "Give that user write access to the file and its folder, or set storage.database to a"
                    " writable path.",
                ) from exc
            raise
        return self

    async def _open_reader(self) -> aiosqlite.Connection:
        reader = await aiosqlite.connect(self.path, isolation_level=None)
        reader.row_factory = aiosqlite.Row
        await reader.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        await reader.execute("PRAGMA foreign_keys = ON")
        await reader.execute("PRAGMA query_only = ON")  # a write through ``db.conn`` is a bug: fail loudly
        return reader

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and reader is not self._conn:
            await reader.close()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; rolled back if the block raises.

        ``StoreBusy`` if the write lock stays taken past the busy timeout, whether at BEGIN, inside
        the block or at COMMIT; nothing of the transaction is kept.
        """
        async with self._write_lock:
            conn = self._writer
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except asyncio.CancelledError:
                # The BEGIN is already queued on the database thread and may yet succeed once the lock
                # frees: queue a ROLLBACK behind it, or this connection would hold the write lock (and
                # refuse every later BEGIN) for good.
                await _rollback(conn)
                raise
            except sqlite3.OperationalError as exc:
                if is_busy(exc):
                    _raise_busy(exc, "starting a write")
                raise
            try:
                yield conn
            except BaseException as exc:
                await _rollback(conn)
                if is_busy(exc):
                    _raise_busy(exc, "writing")
                raise
            try:
                await conn.execute("COMMIT")
            except BaseException as exc:
                await _rollback(conn)
                if is_busy(exc):
                    _raise_busy(exc, "committing")
                raise

    async def run_transaction(self, work: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """``await work(conn)`` in one transaction (PostgreSQL runs it again if its connection is lost)."""
        async with self.transaction() as conn:
            return await work(conn)

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement as its own transaction: one database hop, serialised with ``transaction()``; the rows
        it changed.

        The lock matters even for one statement: run while another task's BEGIN is open on this
        connection, it would join (and be rolled back with) that task's transaction.
        """
        async with self._write_lock:
            with _busy_is_store_busy("write"):
                cursor = await self._writer.execute(sql, params)
                return int(cursor.rowcount)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        if self.conn is self._conn:  # :memory:: one connection, so wait for any open transaction to end
            async with self._write_lock:
                return await fetch_all(self.conn, sql, params)
        return await fetch_all(self.conn, sql, params)

    async def notify(self, channel: str, payload: str = "") -> None:
        """Nothing to do: one process runs on an embedded database, and it wakes itself."""

    async def listen(self, channels: Sequence[str], callback: Callable[[str, str], None]) -> None:
        """Nothing to listen to (see ``notify``)."""

    @asynccontextmanager
    async def leading(self, key: int) -> AsyncIterator[bool]:
        """Always True: the one process on an embedded database does its maintenance itself."""
        yield True

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def schema_version(self, conn: aiosqlite.Connection | None = None) -> int:
        conn = conn or self.conn
        exists = await fetch_one(conn, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
        if exists is None:
            return 0
        row = await fetch_one(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return int(row[0]) if row else 0

    async def check_version(self, known: int | None = None) -> int:
        """The database's schema version; ``StoreTooNew`` if it is beyond the newest migration shipped."""
        known = known if known is not None else len(migration_files())
        current = await self.schema_version()
        if current > known:
            raise StoreTooNew(self.where, current, known)
        return current

    async def migrate(self, migrations: Iterable[tuple[int, str, str]] | None = None) -> list[int]:
        """Apply every migration above the current version, each in its own transaction; returns those applied.

        Refuses (``StoreTooNew``) a database beyond the newest migration given. An up-to-date database is
        only read, so ``status`` and a restart never wait for another
        process's write lock. Each migration re-reads the version under the write lock, so two
        processes starting at once apply it once.
        """
        applied = []
        exists = await self.fetchone("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
        if exists is None:
            async with self.transaction() as conn:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                    " applied_at REAL NOT NULL)"
                )
        steps = list(migrations) if migrations is not None else migration_files()
        current = await self.check_version(max((v for v, _, _ in steps), default=0))
        for version, name, sql in steps:
            if version <= current:
                continue
            async with self.transaction() as conn:
                if await self.schema_version(conn) >= version:
                    continue  # another process applied it between our read and our write lock
                for statement in split_statements(sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
            log.info("applied migration %s", name)
            applied.append(version)
        return applied
