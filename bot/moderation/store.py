"""SQL for the moderation tables. Reads use the shared connection; writes take the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from bot.moderation.models import AuditEntry, Block, GuildSettings, LimitRule, MemberRules, ScopeKind
from bot.storage import Store, StoreConnection, fetch_all, fetch_one

#: guild_settings columns a moderator may change (the only names ever formatted into SQL).
SETTING_COLUMNS = frozenset(
    {
        "timezone",
        "window_kind",
        "rolling_hours",
        "paused",
        "paused_reason",
        "log_channel_id",
        "allowed_providers",
        "max_resolution",
        "max_count",
        "max_in_flight",
    }
)


class ModerationStore:
    def __init__(self, db: Store) -> None:
        self.db = db

    # -- reads --------------------------------------------------------------------------------------
    async def settings(self, guild_id: int, conn: StoreConnection | None = None) -> GuildSettings:
        row = await fetch_one(conn or self.db.conn, "SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,))
        return _settings(guild_id, row)

    async def member_rules(
        self, guild_id: int | None, user_id: int, scope_ids: Iterable[int], now: float
    ) -> MemberRules:
        """One database hop for a policy check (it used to take a dozen): settings, channels, words, block,
        jobs in flight, recorded roles and the limits for ``scope_ids`` (the member's roles and channels)."""
        row = await fetch_one(
            self.db.conn, self.db.dialect.member_rules, (guild_id, user_id, now, json.dumps(list(scope_ids)))
        )
        assert row is not None  # the statement always returns its one row
        block = json.loads(row["block"]) if row["block"] else None
        return MemberRules(
            settings=_settings(guild_id or 0, row if row["guild_id"] is not None else None),
            allowed_channels=tuple(sorted(int(c) for c in json.loads(row["channels"]))),
            banned_words=tuple(sorted(str(w) for w in json.loads(row["words"]))),
            block=Block(user_id, block[0], block[1], block[2], block[3]) if block else None,
            in_flight=int(row["in_flight"]),
            stored_roles=tuple(json.loads(row["stored_roles"])) if row["stored_roles"] is not None else None,
            limits={(str(scope), int(scope_id)): units for scope, scope_id, units in json.loads(row["limits"])},
        )

    async def limits(self, guild_id: int, scope: ScopeKind | None = None) -> list[LimitRule]:
        rows = await self.db.fetchall(
            "SELECT scope, scope_id, units, updated_by, updated_at FROM quota_limits"
            " WHERE guild_id = ? AND (CAST(? AS TEXT) IS NULL OR scope = ?) ORDER BY scope, scope_id",
            (guild_id, scope, scope),
        )
        return [LimitRule(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def blocks(self, guild_id: int, now: float) -> list[Block]:
        rows = await self.db.fetchall(
            "SELECT user_id, reason, until, blocked_by, created_at FROM member_blocks"
            " WHERE guild_id = ? AND (until IS NULL OR until > ?) ORDER BY created_at",
            (guild_id, now),
        )
        return [Block(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def allowed_channels(self, guild_id: int) -> list[int]:
        rows = await self.db.fetchall(
            "SELECT channel_id FROM allowed_channels WHERE guild_id = ? ORDER BY channel_id", (guild_id,)
        )
        return [int(r[0]) for r in rows]

    async def banned_words(self, guild_id: int, conn: StoreConnection | None = None) -> list[str]:
        rows = await fetch_all(
            conn or self.db.conn, "SELECT word FROM banned_words WHERE guild_id = ? ORDER BY word", (guild_id,)
        )
        return [str(r[0]) for r in rows]

    async def member_roles(self, guild_id: int, user_id: int) -> tuple[int, ...] | None:
        row = await self.db.fetchone(
            "SELECT role_ids FROM member_roles WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
        )
        return tuple(json.loads(row[0])) if row else None

    async def members_roles(self, guild_id: int) -> dict[int, tuple[int, ...]]:
        """Every member's roles as last seen by a policy check here (members who never asked are absent)."""
        rows = await self.db.fetchall(
            "SELECT user_id, role_ids FROM member_roles WHERE guild_id = ? ORDER BY user_id", (guild_id,)
        )
        return {int(r[0]): tuple(int(i) for i in json.loads(r[1])) for r in rows}

    async def audit(
        self, guild_id: int, *, since: float | None = None, until: float | None = None, limit: int = 50
    ) -> list[AuditEntry]:
        """Newest first."""
        rows = await self.db.fetchall(
            "SELECT id, guild_id, actor_id, action, target, details, reason, created_at FROM audit_log"
            " WHERE guild_id = ? AND created_at >= ? AND created_at < ? ORDER BY created_at DESC, id DESC LIMIT ?",
            (guild_id, since if since is not None else float("-inf"), until or float("inf"), limit),
        )
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]

    # -- writes (inside the caller's transaction) ---------------------------------------------------
    async def update_settings(
        self, conn: StoreConnection, guild_id: int, changes: Mapping[str, Any], now: float
    ) -> None:
        unknown = set(changes) - SETTING_COLUMNS
        if unknown:
            raise ValueError(f"not guild settings: {sorted(unknown)}")
        columns = list(changes)
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns)
        await conn.execute(
            f"INSERT INTO guild_settings (guild_id, {names}, updated_at) VALUES (?, {marks}, ?)"  # noqa: S608 - whitelisted columns
            f" ON CONFLICT (guild_id) DO UPDATE SET {updates}, updated_at = excluded.updated_at",
            (guild_id, *changes.values(), now),
        )

    async def put_limit(
        self,
        conn: StoreConnection,
        guild_id: int,
        scope: ScopeKind,
        scope_id: int,
        units: int | None,
        actor_id: int,
        now: float,
    ) -> None:
        await conn.execute(
            "INSERT INTO quota_limits (guild_id, scope, scope_id, units, updated_by, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, scope, scope_id) DO UPDATE SET"
            " units = excluded.units, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            (guild_id, scope, scope_id, units, actor_id, now),
        )

    async def delete_limit(self, conn: StoreConnection, guild_id: int, scope: ScopeKind, scope_id: int) -> bool:
        cursor = await conn.execute(
            "DELETE FROM quota_limits WHERE guild_id = ? AND scope = ? AND scope_id = ?", (guild_id, scope, scope_id)
        )
        return cursor.rowcount > 0

    async def put_block(self, conn: StoreConnection, guild_id: int, block: Block) -> None:
        await conn.execute(
            "INSERT INTO member_blocks (guild_id, user_id, reason, until, blocked_by, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, user_id) DO UPDATE SET reason = excluded.reason,"
            " until = excluded.until, blocked_by = excluded.blocked_by, created_at = excluded.created_at",
            (guild_id, block.user_id, block.reason, block.until, block.blocked_by, block.created_at),
        )

    async def delete_block(self, conn: StoreConnection, guild_id: int, user_id: int, now: float) -> bool:
        """Remove the block; True if one was still in force."""
        active = (
            await fetch_one(
                conn,
                "SELECT 1 FROM member_blocks WHERE guild_id = ? AND user_id = ? AND (until IS NULL OR until > ?)",
                (guild_id, user_id, now),
            )
            is not None
        )
        await conn.execute("DELETE FROM member_blocks WHERE guild_id = ? AND user_id = ?", (guild_id, user_id))
        return active

    async def replace_channels(self, conn: StoreConnection, guild_id: int, channel_ids: Iterable[int]) -> None:
        await conn.execute("DELETE FROM allowed_channels WHERE guild_id = ?", (guild_id,))
        await conn.executemany(
            "INSERT INTO allowed_channels (guild_id, channel_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(guild_id, channel_id) for channel_id in channel_ids],
        )

    async def add_word(self, conn: StoreConnection, guild_id: int, word: str, actor_id: int, now: float) -> bool:
        cursor = await conn.execute(
            "INSERT INTO banned_words (guild_id, word, added_by, added_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (guild_id, word, actor_id, now),
        )
        return cursor.rowcount > 0

    async def remove_word(self, conn: StoreConnection, guild_id: int, word: str) -> bool:
        cursor = await conn.execute("DELETE FROM banned_words WHERE guild_id = ? AND word = ?", (guild_id, word))
        return cursor.rowcount > 0

    async def record_roles(
        self, conn: StoreConnection, guild_id: int, user_id: int, role_ids: Iterable[int], now: float
    ) -> None:
        await conn.execute(
            "INSERT INTO member_roles (guild_id, user_id, role_ids, seen_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (guild_id, user_id) DO UPDATE SET role_ids = excluded.role_ids, seen_at = excluded.seen_at",
            (guild_id, user_id, json.dumps(sorted(role_ids)), now),
        )

    async def append_audit(
        self,
        conn: StoreConnection,
        *,
        guild_id: int,
        actor_id: int,
        action: str,
        target: str | None,
        details: Mapping[str, Any],
        reason: str | None,
        now: float,
    ) -> None:
        await conn.execute(
            "INSERT INTO audit_log (guild_id, actor_id, action, target, details, reason, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (guild_id, actor_id, action, target, json.dumps(dict(details), sort_keys=True), reason, now),
        )


def _settings(guild_id: int, row: Any) -> GuildSettings:
    if row is None:
        return GuildSettings(guild_id=guild_id)
    providers = row["allowed_providers"]
    return GuildSettings(
        guild_id=guild_id,
        timezone=row["timezone"],
        window_kind=row["window_kind"],
        rolling_hours=row["rolling_hours"],
        paused=bool(row["paused"]),
        paused_reason=row["paused_reason"],
        log_channel_id=row["log_channel_id"],
        allowed_providers=tuple(json.loads(providers)) if providers is not None else None,
        max_resolution=row["max_resolution"],
        max_count=row["max_count"],
        max_in_flight=row["max_in_flight"],
    )
