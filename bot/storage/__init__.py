"""SQLite storage: one connection owner, numbered migrations, repositories per table."""

from bot.storage.database import Database, ensure_writable_database, ensure_writable_dir, fetch_all, fetch_one
from bot.storage.errors import StoreBusy, StoreNotWritable

__all__ = [
    "Database",
    "StoreBusy",
    "StoreNotWritable",
    "ensure_writable_database",
    "ensure_writable_dir",
    "fetch_all",
    "fetch_one",
]
