"""SQLite storage: one connection owner, numbered migrations, repositories per table."""

from bot.storage.database import Database

__all__ = ["Database"]
