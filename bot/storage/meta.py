"""The ``meta`` table: a few named values the bot keeps about itself (migration 0005)."""

from __future__ import annotations

from bot.storage.store import Store


async def get_meta(db: Store, key: str) -> str | None:
    """The value stored under ``key``, or None (also on a database from before the table existed)."""
    exists = await db.fetchone(db.dialect.table_exists, ("meta",))
    if exists is None:
        return None
    row = await db.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
    return None if row is None else str(row[0])


async def set_meta(db: Store, key: str, value: str) -> None:
    await db.write(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
