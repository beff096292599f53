"""SQLite storage: one connection owner, numbered migrations, repositories per table."""

from bot.storage.database import Database, fetch_all, fetch_one

__all__ = ["Database", "fetch_all", "fetch_one"]
