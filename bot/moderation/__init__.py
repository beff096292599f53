"""Quota policy and moderation: who may generate, how much, where; and what moderators changed.

``PolicyService.check`` runs before every job; ``ModeratorActions`` is the /seedream-admin API.
Nothing here imports discord: the cogs translate members, roles and channels into ids.
"""

from bot.moderation.admin import (
    PROVIDER_ACTIONS,
    RESETTABLE,
    ModeratorActions,
    canonical_resolution,
    canonical_timezone,
    providers_serving,
    timezone_suggestions,
)
from bot.moderation.models import (
    AuditEntry,
    Block,
    Decision,
    GuildSettings,
    LimitRule,
    MemberContext,
    MemberStatus,
    ResolvedLimit,
    ResumeOutcome,
    ScopeKind,
)
from bot.moderation.overview import ModelFacts, Overview, settings_overview
from bot.moderation.policy import PolicyService
from bot.moderation.store import ModerationStore
from bot.moderation.words import MATCHING_RULES, BannedMatch, banned_word_in, find_banned_word, fold

__all__ = [
    "MATCHING_RULES",
    "PROVIDER_ACTIONS",
    "RESETTABLE",
    "AuditEntry",
    "BannedMatch",
    "Block",
    "Decision",
    "GuildSettings",
    "LimitRule",
    "MemberContext",
    "MemberStatus",
    "ModelFacts",
    "ModerationStore",
    "ModeratorActions",
    "Overview",
    "PolicyService",
    "ResolvedLimit",
    "ResumeOutcome",
    "ScopeKind",
    "banned_word_in",
    "canonical_resolution",
    "canonical_timezone",
    "find_banned_word",
    "fold",
    "providers_serving",
    "settings_overview",
    "timezone_suggestions",
]
