"""PostgreSQL as the shared store: the same calls as ``Database`` (SQLite), over an asyncpg pool.

``open/close/migrate/fetchall/fetchone/write/transaction`` behave as ``Database``'s do, so the code that
runs on SQLite runs here wherever its SQL is portable (docs/scaling.md lists what is not):

* ``?`` placeholders become ``$1, $2, …`` outside string literals, quoted names and comments, and
  SQLite's null-safe ``x IS ?`` / ``x IS NOT ?`` become ``x IS [NOT] DISTINCT FROM $n``. SQL that
  already uses ``$n`` is passed through as PostgreSQL's own (so ``?`` may then be jsonb's operator).
* ``transaction()`` yields a ``PgConnection``: one pooled connection in one READ COMMITTED transaction,
  with aiosqlite's ``execute`` (a cursor with ``rowcount``), ``executemany`` and ``execute_fetchall``,
  so ``bot.storage.fetch_one(conn, …)`` works on it too. ``conn`` (the property) is the pool itself
  seen the same way, for the reads the repositories make through ``db.conn``.
* ``fetchall``/``fetchone``/``write`` each take a pooled connection of their own, so a read never sees
  another coroutine's uncommitted transaction (on SQLite they share one connection).
* Rows are ``asyncpg.Record``: by index and by column name, like ``aiosqlite.Row``.

Errors: a server that cannot be reached, a wrong URL, a refused login or a missing database is one
``PostgresUnavailable`` line naming the URL with its password masked; a database migrated by a newer
seedream-bot is ``StoreTooNew``; a deadlock, serialization failure or lock wait past ``lock_timeout_ms``
is ``StoreBusy`` (rolled back, nothing charged), as SQLite's "database is locked" is; the admission
trigger's refusal is ``AdmissionRefused`` (bot.storage.errors), which the SQLite path raises from its own trigger.

Migrations live in ``bot/storage/pg_migrations`` with the same numbers as SQLite's (version N is the same
schema on both), the version in the ``schema_version`` table; concurrent ``migrate`` calls from several
processes serialise on an advisory lock and apply each migration once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

from bot.errors import SeedreamError
from bot.i18n import _
from bot.storage.database import migration_files
from bot.storage.dialect import POSTGRES, Dialect
from bot.storage.errors import AdmissionRefused, ConnectionLost, StoreBusy, StoreTooNew
from bot.storage.reconnect import connection_lost, reconnecting

log = logging.getLogger(__name__)
T = TypeVar("T")

URL_SCHEMES = ("postgresql", "postgres")
#: Advisory-lock keys (namespace, key) of this schema; 24301/24302 belong to the admission trigger.
_MIGRATION_LOCK = (24300, 0)
#: How long a statement waits for a row or advisory lock before it fails with ``StoreBusy``, as SQLite's
#: busy timeout: another process's short transactions are ridden out, a stuck one is not waited for.
LOCK_TIMEOUT_MS = 5_000
CONNECT_TIMEOUT_S = 10.0
#: How long a call waits for a free pooled connection before it fails with ``StoreBusy``.
ACQUIRE_TIMEOUT_S = 10.0
#: SQLSTATEs that mean "someone else held on, try again": serialization_failure, deadlock_detected,
#: lock_not_available (lock_timeout). The transaction was rolled back whole.
_BUSY_STATES = {"40001", "40P01", "55P03"}
_ADMISSION_PREFIX = "admission refused: "


# -- errors ------------------------------------------------------------------------------------------


class PostgresUnavailable(SeedreamError):
    """PostgreSQL cannot be reached or refuses us: wrong URL, nothing listening, login refused, no database.

    The message is one line for the operator: the URL with its password masked, what went wrong and
    what to check. The password never appears in it, nor in the exception chain (``from None``).
    """

    code = "store_unreachable"
    USER_MESSAGE = _("The bot cannot reach its database right now; please try again in a moment.")

    def __init__(self, url: str, problem: str, fix: str) -> None:
        self.url = redact_url(url)
        super().__init__(self.USER_MESSAGE, detail=f"cannot connect to PostgreSQL at {self.url}: {problem}. {fix}")


def redact_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostinfo = netloc.rpartition("@")
            user, colon, _password = userinfo.partition(":")
            netloc = f"{user}:***@{hostinfo}" if colon else f"{user}@{hostinfo}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<a storage.database URL that cannot be parsed>"


def _passwords(url: str) -> list[str]:
    """Every spelling of the URL's password(s) that an error message might echo."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        if ":" in userinfo:
            found.append(userinfo.partition(":")[2])
        found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() == "password"]
    except ValueError:
        pass
    spellings = {p for raw in found if raw for p in (raw, unquote(raw))}
    return sorted(spellings, key=len, reverse=True)


def _scrub(text: str, url: str) -> str:
    for password in _passwords(url):
        text = text.replace(password, "***")
    return text


def is_postgres_url(database: str) -> bool:
    """True if ``[storage] database`` names a PostgreSQL server rather than a SQLite file."""
    return database.split("://", 1)[0].lower() in URL_SCHEMES and "://" in database


def _unavailable(url: str, exc: BaseException, timeout: float) -> PostgresUnavailable:
    """One operator-facing line for a failed connection attempt."""
    try:
        parts = urlsplit(url)
        host, port, database = parts.hostname or "localhost", parts.port or 5432, parts.path.lstrip("/")
    except ValueError:
        host, port, database = "?", 5432, ""
    where = f"{host}:{port}"
    check_url = "Check storage.database (env SEEDREAM_STORAGE__DATABASE)"
    if isinstance(exc, socket.gaierror):
        problem, fix = f"the host name {host!r} is not known ({exc.strerror or exc})", f"{check_url}: the host."
    elif isinstance(exc, ConnectionRefusedError):
        problem = f"nothing is listening at {where} (connection refused)"
        fix = f"{check_url}: the host and port, and that PostgreSQL is running."
    elif isinstance(exc, TimeoutError):
        problem = f"no answer from {where} within {timeout:g} s"
        fix = f"{check_url}: the host and port, and that no firewall drops the connection."
    elif isinstance(exc, asyncpg.InvalidCatalogNameError):
        problem = f"the database {database!r} does not exist on {where}"
        fix = f"Create it (createdb {database}) or {check_url[0].lower()}{check_url[1:]}."
    elif isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        problem = f"the server refused the login ({_scrub(str(exc), url)})"
        fix = f"{check_url}: the user name and password, and the server's pg_hba.conf."
    elif isinstance(exc, OSError):
        problem = f"cannot open a connection to {where} ({_scrub(exc.strerror or str(exc), url)})"
        fix = f"{check_url}: the host and port."
    else:
        problem = f"{type(exc).__name__}: {_scrub(str(exc), url)}"
        fix = f"{check_url}: it must look like postgresql://user:password@host:5432/database."
    return PostgresUnavailable(url, problem, fix)


def _raise_mapped(exc: BaseException, doing: str) -> NoReturn:
    """Raise what the rest of the bot understands for a PostgreSQL error, or ``exc`` itself."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None)
        message = str(exc)
        if state == "P0001" and message.startswith(_ADMISSION_PREFIX):
            raise AdmissionRefused(message.removeprefix(_ADMISSION_PREFIX)) from None
        if state in _BUSY_STATES:
            raise StoreBusy(f"{doing}: {message} (another transaction held on past the lock timeout)") from exc
    raise exc


@contextmanager
def _mapped(doing: str) -> Iterator[None]:
    try:
        yield
    except asyncpg.PostgresError as exc:
        _raise_mapped(exc, doing)


# -- SQL: SQLite's placeholders in PostgreSQL's ----------------------------------------------------

_NATIVE_PLACEHOLDER = re.compile(r"\$\d")
_IS_BEFORE = re.compile(r"\bIS(\s+NOT)?\s*$", re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """SQLite's ``?`` placeholders as PostgreSQL's ``$n``, numbered left to right.

    Only ``?`` outside string literals, quoted names, dollar-quoted bodies and comments counts.
    ``x IS ?`` (SQLite's null-safe equality) becomes ``x IS NOT DISTINCT FROM $n`` and ``x IS NOT ?``
    becomes ``x IS DISTINCT FROM $n``. SQL with a ``$n`` of its own (outside literals) is PostgreSQL's
    already and is returned unchanged, so jsonb's ``?`` operator stays usable there. ``?NNN`` and
    named parameters are not used in this code base and are refused.
    """
    if "?" not in sql or _NATIVE_PLACEHOLDER.search(_outside_literals(sql)):
        return sql
    out: list[str] = []
    n = 0
    i, size = 0, len(sql)
    while i < size:
        ch = sql[i]
        end = _literal_end(sql, i)
        if end is not None:
            out.append(sql[i:end])
            i = end
            continue
        if ch == "?":
            if i + 1 < size and sql[i + 1].isdigit():
                raise ValueError("numbered ?NNN placeholders are not supported")
            n += 1
            before = "".join(out)
            match = _IS_BEFORE.search(before)
            if match:
                keyword = "IS DISTINCT FROM" if match.group(1) else "IS NOT DISTINCT FROM"
                out = [before[: match.start()], keyword, " "]
            out.append(f"${n}")
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _literal_end(sql: str, i: int) -> int | None:
    """If a string literal, quoted name, dollar-quoted body or comment starts at ``i``, where it ends."""
    ch = sql[i]
    if ch in ("'", '"'):
        j = i + 1
        while j < len(sql):
            if sql[j] == ch:
                if j + 1 < len(sql) and sql[j + 1] == ch:  # '' or "" inside: an escaped quote
                    j += 2
                    continue
                return j + 1
            j += 1
        return len(sql)
    if sql.startswith("--", i):
        j = sql.find("\n", i)
        return len(sql) if j < 0 else j
    if sql.startswith("/*", i):
        j = sql.find("*/", i + 2)
        return len(sql) if j < 0 else j + 2
    if ch == "$":
        match = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])
        if match and not (i > 0 and (sql[i - 1].isalnum() or sql[i - 1] == "_")):
            tag = match.group(0)
            j = sql.find(tag, i + len(tag))
            return len(sql) if j < 0 else j + len(tag)
    return None


def _outside_literals(sql: str) -> str:
    """``sql`` without its string literals, quoted names, dollar-quoted bodies and comments."""
    out, i = [], 0
    while i < len(sql):
        end = _literal_end(sql, i)
        if end is not None:
            out.append(" ")
            i = end
        else:
            out.append(sql[i])
            i += 1
    return "".join(out)


_RETURNS_ROWS = re.compile(r"^\s*(SELECT|WITH|VALUES|SHOW|TABLE)\b|\bRETURNING\b", re.IGNORECASE)


def _rowcount(status: str) -> int:
    """The row count in a command tag: ``INSERT 0 3`` → 3, ``UPDATE 2`` → 2, ``CREATE TABLE`` → -1."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


# -- connections as the repositories see them ------------------------------------------------------


class PgCursor:
    """What aiosqlite's ``execute`` returns, as far as this code base uses it: ``rowcount`` and the rows."""

    def __init__(self, rows: list[asyncpg.Record], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.lastrowid = None  # SQLite's rowid has no equivalent; use RETURNING id

    async def fetchone(self) -> asyncpg.Record | None:
        return self._rows.pop(0) if self._rows else None

    async def fetchall(self) -> list[asyncpg.Record]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []

    async def __aenter__(self) -> PgCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _execute(raw: Any, sql: str, params: Sequence[Any]) -> PgCursor:
    query = translate(sql)
    with _mapped("writing"):
        if _RETURNS_ROWS.search(query):
            rows = await raw.fetch(query, *params)
            return PgCursor(list(rows), len(rows))
        if params:
            status = await raw.execute(query, *params)
        else:
            status = await raw.execute(query)  # simple protocol: a script of several statements is fine
    return PgCursor([], _rowcount(status))


class PgConnection:
    """One pooled connection inside one transaction, with the aiosqlite calls the repositories make."""

    def __init__(self, raw: asyncpg.Connection) -> None:
        self.raw = raw

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        return await _execute(self.raw, sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        with _mapped("writing"):
            await self.raw.executemany(translate(sql), list(rows))
        return PgCursor([], -1)

    async def execute_fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        with _mapped("reading"):
            return list(await self.raw.fetch(translate(sql), *params))


@asynccontextmanager
async def _pooled(pool: asyncpg.Pool, timeout: float) -> AsyncIterator[Any]:
    """A connection from ``pool``; ``StoreBusy`` if none frees up within ``timeout`` seconds.

    Without the timeout, code that reads through ``db`` while it holds ``db.transaction()`` (harmless on
    SQLite's one connection) could wait forever once every pooled connection is such a transaction.
    """
    raw = await _acquire(pool, timeout)
    try:
        yield raw
    except BaseException as exc:
        if _lost(raw, exc) and not connection_lost(exc):
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
        raise
    finally:
        await _release(pool, raw)


async def _release(pool: asyncpg.Pool, raw: Any) -> None:
    """Give ``raw`` back; one the server ended meanwhile is dropped by the pool (the work done on it stands)."""
    try:
        await pool.release(raw)
    except Exception as exc:
        if not connection_lost(exc):
            raise


def _lost(raw: Any, exc: BaseException) -> bool:
    """Whether ``exc`` on ``raw`` means the connection is gone. asyncpg may report a connection the server ended
    as "another operation is in progress"; a lost one that still looks open is closed, so the pool opens anew.
    A cancellation is never a lost connection: it goes on as it is."""
    if not isinstance(exc, Exception):
        return False
    if raw.is_closed():
        return True
    if connection_lost(exc):
        raw.terminate()
        return True
    return False


async def _acquire(pool: asyncpg.Pool, timeout: float) -> Any:
    try:
        return await pool.acquire(timeout=timeout)
    except TimeoutError:
        raise StoreBusy(f"no free database connection within {timeout:g} s (pool of {pool.get_max_size()})") from None


class PgPool:
    """The pool seen as one connection (``PostgresDatabase.conn``): each call is its own autocommit statement."""

    def __init__(self, pool: asyncpg.Pool, url: str, acquire_timeout: float = ACQUIRE_TIMEOUT_S) -> None:
        self.pool = pool
        self.url = url
        self.acquire_timeout = acquire_timeout

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        async def once() -> PgCursor:
            async with _pooled(self.pool, self.acquire_timeout) as raw:
                return await _execute(raw, sql, params)

        return await _retried(once, self.url)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        async with _pooled(self.pool, self.acquire_timeout) as raw, raw.transaction():
            return await PgConnection(raw).executemany(sql, rows)

    async def execute_fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        async def once() -> list[asyncpg.Record]:
            async with _pooled(self.pool, self.acquire_timeout) as raw:
                with _mapped("reading"):
                    return list(await raw.fetch(translate(sql), *params))

        return await _retried(once, self.url)


async def _retried(call: Callable[[], Awaitable[T]], url: str) -> T:
    """``call()``, again with backoff while the connection is lost (bot.storage.reconnect); then
    ``PostgresUnavailable``. The first try runs bare: the retry machinery costs only when a connection is lost."""
    try:
        return await call()
    except Exception as exc:
        if not connection_lost(exc):
            raise
    try:
        async for attempt in reconnecting():
            with attempt:
                return await call()
    except Exception as exc:
        if connection_lost(exc):
            raise _unavailable(url, exc, CONNECT_TIMEOUT_S) from None
        raise
    raise AssertionError("unreachable: tenacity either returns or raises")


def pg_migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every PostgreSQL migration shipped with the package, in order."""
    return migration_files("bot.storage.pg_migrations")


_SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " applied_at DOUBLE PRECISION NOT NULL)"
)


class PostgresDatabase:
    """``Database``'s calls over an asyncpg pool; see the module docstring for what differs."""

    dialect: Dialect = POSTGRES

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        lock_timeout_ms: int = LOCK_TIMEOUT_MS,
        acquire_timeout: float = ACQUIRE_TIMEOUT_S,
        application_name: str = "seedream-bot",
    ) -> None:
        if not is_postgres_url(url):
            raise PostgresUnavailable(
                url, "this is not a postgresql:// URL", "Give storage.database as postgresql://user@host:5432/database"
            )
        self.url = url
        self.min_size, self.max_size = min_size, max_size
        self.connect_timeout = connect_timeout
        self.lock_timeout_ms = lock_timeout_ms
        self.acquire_timeout = acquire_timeout
        self.application_name = application_name
        self._pool: asyncpg.Pool | None = None

    def __repr__(self) -> str:
        return f"PostgresDatabase({redact_url(self.url)!r})"

    @property
    def where(self) -> str:
        """The URL with its password masked: what logs and errors may show."""
        return redact_url(self.url)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the database is not open")
        return self._pool

    @property
    def conn(self) -> PgPool:
        """The pool in aiosqlite's clothes, for code that reads through ``db.conn``."""
        return PgPool(self.pool, self.url, self.acquire_timeout)

    async def open(self) -> PostgresDatabase:
        """Create the pool (``min_size`` connections at once); ``PostgresUnavailable`` if that fails."""
        try:
            self._pool = await asyncpg.create_pool(
                dsn=self.url,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.connect_timeout,
                server_settings={
                    "application_name": self.application_name,
                    "lock_timeout": f"{int(self.lock_timeout_ms)}ms",
                },
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise _unavailable(self.url, exc, self.connect_timeout) from None
        return self

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except TimeoutError:
                pool.terminate()

    async def __aenter__(self) -> PostgresDatabase:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgConnection]:
        """One READ COMMITTED transaction on a connection of its own; rolled back if the block raises.

        Unlike SQLite, a failed statement spoils the rest of the transaction (every later statement
        fails until it ends): a block that wants to carry on after an error uses a savepoint
        (``async with conn.raw.transaction():`` nests as one). Inside the block, read through ``conn``:
        ``db.fetchone`` takes another connection, which does not see this transaction's writes.
        A connection lost before the block runs is reopened; lost inside it, ``ConnectionLost`` (nothing
        was written: ``run_transaction`` runs the block again); lost during COMMIT, ``PostgresUnavailable``.
        """
        raw, transaction = await _retried(self._begin, self.url)
        try:
            try:
                yield PgConnection(raw)
            except BaseException as exc:
                await _rollback(transaction)
                if _lost(raw, exc) and not isinstance(exc, ConnectionLost):
                    raise ConnectionLost(f"writing: {type(exc).__name__}: {exc}") from exc
                if isinstance(exc, asyncpg.PostgresError):
                    _raise_mapped(exc, "writing")
                raise
            try:
                with _mapped("committing"):
                    await transaction.commit()
            except BaseException as exc:
                await _rollback(transaction)
                if _lost(raw, exc):  # the COMMIT may or may not have been applied: never run it again
                    raise _unavailable(self.url, exc, self.connect_timeout) from None
                raise
        finally:
            await _release(self.pool, raw)

    async def _begin(self) -> tuple[Any, Any]:
        """A pooled connection with a started transaction (release it when done)."""
        raw = await _acquire(self.pool, self.acquire_timeout)
        try:
            transaction = raw.transaction()
            with _mapped("starting a write"):
                await transaction.start()
        except BaseException as exc:
            lost = _lost(raw, exc)
            await _release(self.pool, raw)
            if lost and not connection_lost(exc):
                raise ConnectionLost(f"starting a write: {type(exc).__name__}: {exc}") from exc
            raise
        return raw, transaction

    async def run_transaction(self, work: Callable[[PgConnection], Awaitable[T]]) -> T:
        """``await work(conn)`` in one transaction, run again whole (with backoff) while the connection is lost
        before it commits; ``work`` must only touch the database, since it may run more than once."""

        async def once() -> T:
            async with self.transaction() as conn:
                return await work(conn)

        return await _retried(once, self.url)

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement as its own transaction (autocommit) on a pooled connection; the rows it changed.

        Retried while the connection is lost (bot.storage.reconnect): a retry that meets a unique violation
        means an earlier attempt had committed its row before its connection was lost (one row changed).
        """
        sent = False

        async def once() -> int:
            nonlocal sent
            async with _pooled(self.pool, self.acquire_timeout) as raw:
                retry, sent = sent, True
                try:
                    return (await _execute(raw, sql, params)).rowcount
                except asyncpg.UniqueViolationError:
                    if retry:  # an earlier attempt wrote the row before its connection was lost
                        return 1
                    raise

        return await _retried(once, self.url)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        return await self.conn.execute_fetchall(sql, params)

    async def notify(self, channel: str, payload: str = "") -> None:
        """Wake the processes listening on ``channel`` (delivered on commit; lost if nobody listens)."""
        await self.write("SELECT pg_notify(CAST(? AS text), CAST(? AS text))", (channel, payload))

    async def listen(self, channels: Sequence[str], callback: Callable[[str, str], None]) -> Listener:
        """Call ``callback(channel, payload)`` for every notification on ``channels``, on a connection of its own
        (outside the pool: LISTEN belongs to a session). Not durable: callers poll too."""
        try:
            raw = await asyncpg.connect(
                self.url, timeout=self.connect_timeout, server_settings={"application_name": self.application_name}
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _unavailable(self.url, exc, self.connect_timeout) from None
        for channel in channels:
            await raw.add_listener(channel, lambda _conn, _pid, name, payload: callback(name, payload))
        return Listener(raw)

    @asynccontextmanager
    async def leading(self, key: int) -> AsyncIterator[bool]:
        """True in the one process that holds the advisory lock ``(24310, key)`` for the block (maintenance
        that must run once bot-wide); False, at once, in every other."""
        async with _pooled(self.pool, self.acquire_timeout) as raw:
            got = bool(await raw.fetchval("SELECT pg_try_advisory_lock(24310, $1)", key))
            try:
                yield got
            finally:
                if got:
                    await raw.execute("SELECT pg_advisory_unlock(24310, $1)", key)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> asyncpg.Record | None:
        rows = await self.conn.execute_fetchall(sql, params)
        return rows[0] if rows else None

    async def schema_version(self, conn: PgConnection | None = None) -> int:
        """The highest migration applied (0 for an empty database)."""
        reader = conn or self.conn
        exists = await reader.execute_fetchall("SELECT to_regclass('schema_version') IS NOT NULL")
        if not exists[0][0]:
            return 0
        rows = await reader.execute_fetchall("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return int(rows[0][0])

    async def check_version(self, known: int | None = None) -> int:
        """The database's schema version; ``StoreTooNew`` if it is beyond the newest migration shipped."""
        known = known if known is not None else len(pg_migration_files())
        current = await self.schema_version()
        if current > known:
            raise StoreTooNew(self.where, current, known)
        return current

    async def migrate(self, migrations: Iterable[tuple[int, str, str]] | None = None) -> list[int]:
        """Apply every migration above the current version, each in its own transaction; returns those applied.

        Refuses (``StoreTooNew``) a database beyond the newest migration given. An up-to-date database is
        only read. Each migration takes the migration advisory lock and re-reads the version under it,
        so several processes starting at once apply it once.
        """
        steps = list(migrations) if migrations is not None else pg_migration_files()
        known = max((v for v, _, _ in steps), default=0)
        current = await self.check_version(known)
        applied: list[int] = []
        for version, name, sql in steps:
            if version <= current:
                continue
            async with self.transaction() as conn:
                # A migration may take longer than a request's lock wait: wait for another process's.
                await conn.raw.execute("SET LOCAL lock_timeout = '120s'")
                await conn.raw.execute("SELECT pg_advisory_xact_lock($1, $2)", *_MIGRATION_LOCK)
                await conn.raw.execute(_SCHEMA_VERSION_DDL)
                now = await self.schema_version(conn)
                if now > known:
                    raise StoreTooNew(self.where, now, known)
                if now >= version:
                    continue  # another process applied it between our read and our lock
                await conn.raw.execute(sql)
                await conn.raw.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)",
                    version,
                    name,
                    time.time(),
                )
            log.info("applied PostgreSQL migration %s", name)
            applied.append(version)
        return applied


class Listener:
    """A LISTEN connection; ``alive`` turns False when the server or the network drops it."""

    def __init__(self, raw: asyncpg.Connection | None) -> None:
        self.raw = raw

    @property
    def alive(self) -> bool:
        return self.raw is not None and not self.raw.is_closed()

    async def close(self) -> None:
        raw, self.raw = self.raw, None
        if raw is not None and not raw.is_closed():
            try:
                await asyncio.wait_for(raw.close(), timeout=5)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                raw.terminate()


async def _rollback(transaction: Any) -> None:
    """End the transaction; never hides the error that led here (a lost connection cannot roll back)."""
    try:
        await transaction.rollback()
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        log.warning("rollback failed: %s", exc)
