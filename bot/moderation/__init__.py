"""Quota policy and moderation: who may generate, how much, where; and what moderators changed.

``PolicyService.check`` runs before every job; ``ModeratorActions`` is the /seedream-admin API.
Nothing here imports discord: the cogs translate members, roles and channels into ids.
"""

from bot.moderation.admin import ModeratorActions
from bot.moderation.models import (
    AuditEntry,
    Block,
    Decision,
    GuildSettings,
    LimitRule,
    MemberContext,
    MemberStatus,
    ResolvedLimit,
    ScopeKind,
)
from bot.moderation.policy import PolicyService, banned_word_in
from bot.moderation.store import ModerationStore

__all__ = [
    "AuditEntry",
    "Block",
    "Decision",
    "GuildSettings",
    "LimitRule",
    "MemberContext",
    "MemberStatus",
    "ModerationStore",
    "ModeratorActions",
    "PolicyService",
    "ResolvedLimit",
    "ScopeKind",
    "banned_word_in",
]
