"""Moving a store's rows to another store (SQLite to PostgreSQL and back): ``seedream-bot export``/``import``.

An export is a JSON-lines file, chosen over a direct ``--from URL --to URL`` copy because each command reads
its database from the config as every other command does (``[storage] database`` or
``SEEDREAM_STORAGE__DATABASE``), so no password is typed on a command line; the two databases need not be
reachable from one host at one time; and the file is a readable, greppable copy of the data. ``-`` pipes one
into the other when they are.

The file: a header line (format, the source's schema version), then per table a ``{"table", "columns"}``
line followed by one JSON array per row, then an ``{"end": {table: rows}}`` line, so a file that was cut off
is refused. Tables come in the order the migrations create them (parents before children), ``jobs``
parents before the jobs made from them. ``schema_version`` is not copied: both sides must already be at the
same version (``seedream-bot migrate``).

The import is one transaction on the target: everything or nothing. Triggers are off while the rows go in
(the admission trigger would otherwise append a second 'reserve' entry for every job), and afterwards each
PostgreSQL identity column continues after the highest id imported.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bot.storage.database import migration_files
from bot.storage.postgres import PostgresDatabase, pg_migration_files
from bot.storage.store import Store, open_store

FORMAT = "seedream-export"
FORMAT_VERSION = 1
BATCH_ROWS = 500
#: Kept by each store for itself, never copied.
_NOT_COPIED = {"schema_version"}
_CREATE_TABLE = re.compile(r"\bCREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?\"?(\w+)", re.IGNORECASE)
#: Jobs made from another job (Vary, Reroll, Edit of a result) name it in parent_job_id: parents first.
_JOBS_PARENTS_FIRST = """
WITH RECURSIVE lineage (id, depth) AS (
    SELECT id, 0 FROM jobs WHERE parent_job_id IS NULL
    UNION ALL
    SELECT child.id, lineage.depth + 1 FROM jobs AS child JOIN lineage ON child.parent_job_id = lineage.id
)
SELECT {columns} FROM jobs LEFT JOIN lineage ON lineage.id = jobs.id
ORDER BY COALESCE(lineage.depth, 0), jobs.created_at, jobs.id
"""


class TransferRefused(Exception):
    """The export or import cannot be done as asked; one line for the operator, nothing was written."""


@dataclass
class Summary:
    """What was moved: rows per table, in the order they went."""

    where: str
    schema_version: int
    rows: dict[str, int] = field(default_factory=dict)

    def line(self, verb: str, preposition: str) -> str:
        counts = ", ".join(f"{table} {n}" for table, n in self.rows.items())
        total = sum(self.rows.values())
        return f"{verb} {total} rows {preposition} {self.where} (schema version {self.schema_version}): {counts}"


def migration_order() -> list[str]:
    """Every table the migrations create, in the order they first create it (so parents come first)."""
    order: list[str] = []
    for _, _, sql in [*migration_files(), *pg_migration_files()]:
        code = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
        for name in _CREATE_TABLE.findall(code):
            if name not in order and name not in _NOT_COPIED:
                order.append(name)
    return order


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- reading a store's tables -------------------------------------------------------------------------


async def tables(db: Store) -> list[str]:
    """The store's tables that are copied, in migration order (any the migrations do not name come last)."""
    if isinstance(db, PostgresDatabase):
        rows = await db.fetchall(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
    else:
        rows = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    present = {str(row[0]) for row in rows} - _NOT_COPIED
    order = migration_order()
    return [t for t in order if t in present] + sorted(present - set(order))


async def columns(db: Store, table: str) -> list[str]:
    if isinstance(db, PostgresDatabase):
        rows = await db.fetchall(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            (table,),
        )
        return [str(row[0]) for row in rows]
    return [str(row[1]) for row in await db.fetchall(f"PRAGMA table_info({_quoted(table)})")]


def _select(table: str, names: list[str]) -> str:
    if table == "jobs" and "parent_job_id" in names:
        return _JOBS_PARENTS_FIRST.format(columns=", ".join(f"jobs.{_quoted(c)}" for c in names))
    return f"SELECT {', '.join(map(_quoted, names))} FROM {_quoted(table)}"  # noqa: S608 - catalogue names, quoted


@asynccontextmanager
async def _snapshot(db: Store) -> AsyncIterator[Any]:
    """A read-only view of the whole store at one moment, so tables exported one after another agree."""
    if isinstance(db, PostgresDatabase):
        async with db.pool.acquire() as raw, raw.transaction(isolation="repeatable_read", readonly=True):
            yield raw
        return
    conn = db.conn
    await conn.execute("BEGIN")  # deferred: a WAL reader sees one snapshot and never blocks the bot's writes
    try:
        yield conn
    finally:
        await conn.execute("COMMIT")


async def _rows(reader: Any, sql: str, postgres: bool) -> AsyncIterator[list[Any]]:
    if postgres:
        async for record in reader.cursor(sql, prefetch=BATCH_ROWS):
            yield list(record)
        return
    async with reader.execute(sql) as cursor:
        while batch := await cursor.fetchmany(BATCH_ROWS):
            for row in batch:
                yield list(row)


def _line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n"


async def export_store(db: Store, out: IO[str], *, tool_version: str = "unknown") -> Summary:
    """Write every copied table of ``db`` to ``out`` as JSON lines, from one consistent snapshot."""
    postgres = isinstance(db, PostgresDatabase)
    summary = Summary(db.where, await db.check_version())
    names = {table: await columns(db, table) for table in await tables(db)}
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema_version": summary.schema_version,
        "store": "postgresql" if postgres else "sqlite",
        "exported_at": time.time(),
        "seedream_bot": tool_version,
    }
    out.write(_line(header))
    async with _snapshot(db) as reader:
        for table, cols in names.items():
            out.write(_line({"table": table, "columns": cols}))
            count = 0
            async for row in _rows(reader, _select(table, cols), postgres):
                out.write(_line(row))
                count += 1
            summary.rows[table] = count
    out.write(_line({"end": summary.rows}))
    return summary


# -- writing them into another store ------------------------------------------------------------------


@dataclass
class _Section:
    table: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)


def _read(lines: Iterable[str]) -> tuple[dict[str, Any], Iterator[_Section | dict[str, int]]]:
    """The header, then each table's rows in batches (``_Section``) and finally the end line's counts."""
    source = iter(enumerate(lines, start=1))
    first = next(source, None)
    header = _json(first) if first is not None else None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise TransferRefused("this is not a seedream-bot export (the first line is not its header)")
    if header.get("format_version") != FORMAT_VERSION:
        raise TransferRefused(
            f"the export's format is version {header.get('format_version')}; this seedream-bot reads version"
            f" {FORMAT_VERSION}"
        )

    def sections() -> Iterator[_Section | dict[str, int]]:
        current: _Section | None = None
        for number, text in source:
            item = _json((number, text))
            if isinstance(item, list):
                if current is None:
                    raise TransferRefused(f"line {number} of the export is a row before any table line")
                if len(item) != len(current.columns):
                    raise TransferRefused(
                        f"line {number} of the export has {len(item)} values; {current.table} has"
                        f" {len(current.columns)} columns"
                    )
                current.rows.append(item)
                if len(current.rows) >= BATCH_ROWS:
                    yield current
                    current = _Section(current.table, current.columns)
            elif isinstance(item, dict) and "table" in item:
                if current is not None:
                    yield current
                current = _Section(str(item["table"]), [str(c) for c in item["columns"]])
            elif isinstance(item, dict) and "end" in item:
                if current is not None:
                    yield current
                yield {str(k): int(v) for k, v in item["end"].items()}
                return
            else:
                raise TransferRefused(f"line {number} of the export is neither a table, a row nor the end")
        raise TransferRefused("the export ends early (no end line): it was cut off; export again")

    return header, sections()


def _json(numbered: tuple[int, str]) -> Any:
    number, text = numbered
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TransferRefused(f"line {number} of the export is not valid JSON ({exc.msg})") from None


async def _is_empty(conn: Any, names: Iterable[str]) -> list[str]:
    """The tables among ``names`` that hold rows."""
    holding = []
    for table in names:
        rows = await conn.execute_fetchall(f"SELECT 1 FROM {_quoted(table)} LIMIT 1")  # noqa: S608 - quoted name
        if rows:
            holding.append(table)
    return holding


async def import_store(db: Store, lines: Iterable[str], *, replace: bool = False) -> Summary:
    """Copy an export into ``db`` in one transaction; ``TransferRefused`` (nothing written) when it cannot.

    Refused when the export and ``db`` are at different schema versions, or ``db`` already holds rows
    (unless ``replace``: then those rows are deleted first, in the same transaction).
    """
    header, sections = _read(lines)
    version = await db.check_version()
    exported = int(header.get("schema_version", -1))
    if exported != version:
        fix = (
            "run `seedream-bot migrate` with this configuration first"
            if exported > version
            else "migrate the database the export came from (`seedream-bot migrate` with its configuration) and"
            " export it again"
        )
        raise TransferRefused(
            f"the export is at schema version {exported} but the database at {db.where} is at {version}: {fix}"
        )
    present = await tables(db)
    summary = Summary(db.where, version)
    known: dict[str, set[str]] = {}
    target = _PostgresTarget() if isinstance(db, PostgresDatabase) else _SqliteTarget()
    async with db.transaction() as conn:
        holding = await _is_empty(conn, present)
        if holding and not replace:
            raise TransferRefused(
                f"the database at {db.where} is not empty ({', '.join(holding)} hold rows): import into a freshly"
                " migrated database, or pass --replace to delete what it holds first"
            )
        await target.triggers_off(conn, present)
        for table in reversed(holding):
            await conn.execute(f"DELETE FROM {_quoted(table)}")  # noqa: S608 - a table of the catalogue, quoted
        for item in sections:
            if isinstance(item, dict):
                if item != summary.rows:
                    raise TransferRefused(
                        f"the export's end line counts {item} but it holds {summary.rows}: the file was edited or"
                        " damaged; export again"
                    )
                break
            if item.table not in present:
                raise TransferRefused(f"the export has a table {item.table} that {db.where} does not have")
            if item.table not in known:
                known[item.table] = set(await columns(db, item.table))
            differ = set(item.columns) ^ known[item.table]
            if differ:
                raise TransferRefused(
                    f"{item.table} differs between the export and {db.where} (columns {', '.join(sorted(differ))})"
                )
            if item.rows:
                await target.insert(conn, item)
            summary.rows[item.table] = summary.rows.get(item.table, 0) + len(item.rows)
        await target.triggers_on(conn)
        await target.continue_ids(conn, list(summary.rows))
    return summary


class _SqliteTarget:
    """SQLite cannot switch a trigger off: it is dropped and re-created from its own text, in the transaction."""

    def __init__(self) -> None:
        self.saved: list[str] = []

    async def triggers_off(self, conn: Any, present: list[str]) -> None:
        rows = await conn.execute_fetchall("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
        for name, sql in rows:
            self.saved.append(sql)
            await conn.execute(f"DROP TRIGGER {_quoted(name)}")

    async def insert(self, conn: Any, section: _Section) -> None:
        marks = ", ".join("?" for _ in section.columns)
        cols = ", ".join(map(_quoted, section.columns))
        insert = f"INSERT INTO {_quoted(section.table)} ({cols}) VALUES ({marks})"  # noqa: S608 - checked, quoted
        await conn.executemany(insert, section.rows)

    async def triggers_on(self, conn: Any) -> None:
        for sql in self.saved:
            await conn.execute(sql)

    async def continue_ids(self, conn: Any, names: list[str]) -> None:
        return None  # an INTEGER PRIMARY KEY continues after the highest rowid by itself


class _PostgresTarget:
    """``ALTER TABLE … DISABLE TRIGGER USER`` (the tables' owner may; undone at the end), rows by COPY."""

    def __init__(self) -> None:
        self.disabled: list[str] = []

    async def triggers_off(self, conn: Any, present: list[str]) -> None:
        for table in present:
            await conn.raw.execute(f"ALTER TABLE {_quoted(table)} DISABLE TRIGGER USER")
            self.disabled.append(table)

    async def insert(self, conn: Any, section: _Section) -> None:
        await conn.raw.copy_records_to_table(
            section.table, records=[tuple(row) for row in section.rows], columns=section.columns
        )

    async def triggers_on(self, conn: Any) -> None:
        for table in self.disabled:
            await conn.raw.execute(f"ALTER TABLE {_quoted(table)} ENABLE TRIGGER USER")

    async def continue_ids(self, conn: Any, names: list[str]) -> None:
        """Each identity or serial column's sequence continues after the highest id now in its table."""
        rows = await conn.raw.fetch(
            "SELECT table_name, column_name, pg_get_serial_sequence(quote_ident(table_name), column_name) AS seq"
            " FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ANY($1)",
            names,
        )
        for row in rows:
            if row["seq"] is None:
                continue
            column, table = _quoted(row["column_name"]), _quoted(row["table_name"])
            highest = f"COALESCE((SELECT MAX({column}) FROM {table}), 0)"  # noqa: S608 - catalogue names, quoted
            await conn.raw.execute(f"SELECT setval($1::regclass, {highest} + 1, false)", row["seq"])


# -- the files ------------------------------------------------------------------------------------------


async def export_to(database: str, path: Path, *, force: bool = False, tool: str = "unknown") -> Summary:
    """Export the store ``database`` names into ``path`` (``-``: standard output), written whole or not at all."""
    stdout = str(path) == "-"
    # Path checks block for microseconds, before anything else runs on this loop.
    if not stdout and path.exists() and not force:  # noqa: ASYNC240
        raise TransferRefused(f"{path} already exists: pass --force to overwrite it, or choose another file")
    if not stdout and path.is_dir():  # noqa: ASYNC240
        raise TransferRefused(f"{path} is a folder; name the file to write")
    db = await open_store(database)
    try:
        if stdout:
            return await export_store(db, sys.stdout, tool_version=tool)
        partial = path.with_name(f".{path.name}.partial")
        try:
            with partial.open("w", encoding="utf-8") as out:
                summary = await export_store(db, out, tool_version=tool)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        return summary
    finally:
        await db.close()


async def import_from(database: str, path: Path, *, replace: bool = False) -> Summary:
    """Import ``path`` (``-``: standard input) into the store ``database`` names; see ``import_store``."""
    if str(path) == "-":
        source: IO[str] = sys.stdin
    else:
        try:
            source = path.open(encoding="utf-8")
        except OSError as exc:
            raise TransferRefused(f"cannot read {path}: {exc.strerror or exc}") from None
    db = await open_store(database)
    try:
        with nullcontext(source) if source is sys.stdin else source as lines:
            return await import_store(db, lines, replace=replace)
    finally:
        await db.close()
