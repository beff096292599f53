"""The store: SQLite (the embedded default) or PostgreSQL (shared by several processes), numbered migrations
for each, and the one function that picks between them (``open_store``)."""

from bot.storage.database import Database, ensure_writable_database, ensure_writable_dir, fetch_all, fetch_one
from bot.storage.dialect import Dialect
from bot.storage.errors import StoreBusy, StoreNotWritable, StoreTooNew
from bot.storage.postgres import PostgresDatabase, PostgresUnavailable, is_postgres_url
from bot.storage.store import Store, StoreConnection, open_store, store_for

__all__ = [
    "Database",
    "Dialect",
    "PostgresDatabase",
    "PostgresUnavailable",
    "Store",
    "StoreBusy",
    "StoreConnection",
    "StoreNotWritable",
    "StoreTooNew",
    "ensure_writable_database",
    "ensure_writable_dir",
    "fetch_all",
    "fetch_one",
    "is_postgres_url",
    "open_store",
    "store_for",
]
