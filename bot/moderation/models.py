"""Typed views of the moderation tables and of what a policy check decides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bot.i18n import Text
from bot.quota import Balance

ScopeKind = Literal["user", "role", "channel", "guild"]
#: Most specific first: the first scope with a rule decides (roles: the most generous of them).
SCOPE_ORDER: tuple[ScopeKind, ...] = ("user", "role", "channel", "guild")


@dataclass(frozen=True)
class MemberContext:
    """Who asks, and where. ``parent_channel_id`` is the channel a thread belongs to (None outside threads)."""

    guild_id: int | None
    user_id: int
    role_ids: tuple[int, ...] = ()
    channel_id: int | None = None
    is_moderator: bool = False
    parent_channel_id: int | None = None

    @property
    def channels(self) -> tuple[int, ...]:
        """The channel, then its parent: a thread inherits its channel's rules."""
        return tuple(c for c in (self.channel_id, self.parent_channel_id) if c is not None)

    @property
    def real_role_ids(self) -> tuple[int, ...]:
        """Roles without @everyone (whose id is the guild's), so it cannot shadow the channel and guild scopes."""
        return tuple(r for r in self.role_ids if r != self.guild_id)


@dataclass(frozen=True)
class GuildSettings:
    """One guild's choices; None everywhere means the config's defaults apply."""

    guild_id: int
    timezone: str | None = None
    window_kind: str | None = None
    rolling_hours: int | None = None
    paused: bool = False
    paused_reason: str | None = None
    log_channel_id: int | None = None
    allowed_providers: tuple[str, ...] | None = None
    max_resolution: str | None = None
    max_count: int | None = None
    max_in_flight: int | None = None


@dataclass(frozen=True)
class LimitRule:
    """Units per window for one scope; ``units`` None = unlimited."""

    scope: ScopeKind
    scope_id: int
    units: int | None
    updated_by: int
    updated_at: float


@dataclass(frozen=True)
class ResolvedLimit:
    """The limit that applies to a member and where it came from (scope "default" = the bot's config,
    "personal" = ``[quota] personal_daily`` outside servers)."""

    units: int | None
    scope: ScopeKind | Literal["default", "personal"]
    scope_id: int | None = None


@dataclass(frozen=True)
class Block:
    user_id: int
    reason: str
    until: float | None
    blocked_by: int
    created_at: float


@dataclass(frozen=True)
class MemberRules:
    """Every rule that bears on one member's request, read in one statement (``ModerationStore.member_rules``).

    ``limits`` holds only the rows that can apply: the member, their roles, the channel (and its parent), the
    guild, keyed by (scope, id); ``stored_roles`` are the roles last recorded for usage reports."""

    settings: GuildSettings
    allowed_channels: tuple[int, ...] = ()
    banned_words: tuple[str, ...] = ()
    block: Block | None = None
    in_flight: int = 0
    stored_roles: tuple[int, ...] | None = None
    limits: dict[tuple[str, int], int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    guild_id: int
    actor_id: int
    action: str
    target: str | None
    details: dict[str, Any]
    reason: str | None
    created_at: float


@dataclass(frozen=True)
class Decision:
    """The server's rules let the request through: pass ``limit`` to ``JobEngine.enqueue(quota_limit=...)``.

    The quota and the jobs in flight are not decided here: the store's admission trigger decides them when
    the job is written (``Ledger.admit``), so the rule holds across processes.
    """

    provider_name: str
    limit: ResolvedLimit

    @property
    def quota_limit(self) -> int | None:
        return self.limit.units


@dataclass(frozen=True)
class MemberStatus:
    """What /quota shows about one member."""

    limit: ResolvedLimit
    balance: Balance
    in_flight: int
    in_flight_cap: int
    block: Block | None = None
    paused: bool = False


@dataclass(frozen=True)
class ResumeOutcome:
    """What /seedream-admin resume did: the server's pause is always lifted; providers paused bot-wide for
    credit only by the bot's owner (``still_paused`` and ``note`` tell a server moderator why not)."""

    providers_resumed: tuple[str, ...] = ()
    still_paused: tuple[str, ...] = ()
    note: Text | None = None
