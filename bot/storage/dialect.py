"""The few statements SQLite and PostgreSQL cannot share, one constant each, chosen by the store.

Everything else in the repositories is one statement for both stores: ``?`` placeholders and SQLite's
null-safe ``x IS ?`` are translated by ``bot.storage.postgres.translate``. What is here looks inside the
JSON the tables keep as TEXT (SQLite's ``json_group_array``/``json_each``/``json_extract`` against
PostgreSQL's ``json_agg``/``jsonb_array_elements_text``/``->>``) or asks the catalogue whether a table
exists. Each store has a ``dialect`` attribute (``Database.dialect`` is ``SQLITE``, ``PostgresDatabase``'s
is ``POSTGRES``); a repository reads ``db.dialect.select_jobs`` and never branches on the backend itself.
Both versions of each statement take the same parameters in the same order and give the same rows
(tests run every repository on both stores).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    name: str
    #: One parameter, the table's name: a row if the table exists, none otherwise.
    table_exists: str
    #: ``SELECT jobs.*, <images as a JSON array (TEXT, '[]' for none)> AS images FROM jobs``: append a WHERE.
    select_jobs: str
    #: After ``select_jobs``: the job whose posted result message is the first parameter, or whose card
    #: (or, in older rows, status) message is the second; both parameters are the same message id.
    jobs_by_message: str
    #: After ``select_jobs`` and a WHERE: the job's card does not show its outcome yet.
    outcome_not_shown: str
    #: One row: the member's guild settings and, as JSON text, everything else a policy check reads.
    #: Parameters: guild id (or NULL), user id, now, the member's role and channel ids as a JSON array.
    member_rules: str
    #: Ends the sub-select that picks jobs to claim: PostgreSQL skips rows another process is claiming right
    #: now; SQLite has one writer at a time and needs nothing.
    skip_locked: str = ""
    #: Serialises the claims of one provider's jobs across processes (one parameter: the provider's name), so
    #: its ``max_concurrent`` holds bot-wide; empty where one writer at a time already serialises them.
    provider_lock: str = ""
    #: Inside a transaction, one parameter (a user id): hold the member's quota lock until it ends, the lock
    #: the admission trigger takes, so a read-then-write of their ledger (a moderator's refund) cannot
    #: interleave with another. SQLite's write transaction already holds the one write lock.
    lock_member: str = "SELECT CAST(? AS INTEGER)"


_SQLITE_SELECT_JOBS = (
    "SELECT jobs.*, (SELECT json_group_array(json_object('role', role, 'position', position, 'path', path,"
    " 'sha256', sha256, 'size_bytes', size_bytes, 'width', width, 'height', height, 'mime', mime,"
    " 'provider', provider, 'provider_image_id', provider_image_id))"
    " FROM job_images WHERE job_images.job_id = jobs.id) AS images FROM jobs"
)

_SQLITE_MEMBER_RULES = """
WITH me (guild, user, now, ids) AS (SELECT ?, ?, ?, ?)
SELECT s.*,
    (SELECT json_group_array(channel_id) FROM allowed_channels WHERE guild_id = me.guild) AS channels,
    (SELECT json_group_array(word) FROM banned_words WHERE guild_id = me.guild) AS words,
    (SELECT json_array(reason, until, blocked_by, created_at) FROM member_blocks
        WHERE guild_id = me.guild AND user_id = me.user AND (until IS NULL OR until > me.now)) AS block,
    (SELECT COUNT(*) FROM jobs WHERE requester_id = me.user AND guild_id IS me.guild
        AND state IN ('queued', 'submitted', 'downloaded', 'posted')) AS in_flight,
    (SELECT role_ids FROM member_roles WHERE guild_id = me.guild AND user_id = me.user) AS stored_roles,
    (SELECT json_group_array(json_array(scope, scope_id, units)) FROM quota_limits
        WHERE guild_id = me.guild AND ((scope = 'user' AND scope_id = me.user)
            OR (scope = 'guild' AND scope_id = me.guild)
            OR (scope IN ('role', 'channel') AND scope_id IN (SELECT value FROM json_each(me.ids))))) AS limits
FROM me LEFT JOIN guild_settings AS s ON s.guild_id = me.guild
"""

SQLITE = Dialect(
    name="sqlite",
    table_exists="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
    select_jobs=_SQLITE_SELECT_JOBS,
    jobs_by_message=(
        f"{_SQLITE_SELECT_JOBS}, json_each(jobs.posted_message_ids) AS posted WHERE posted.value = ?"
        f" UNION {_SQLITE_SELECT_JOBS} WHERE COALESCE(json_extract(delivery, '$.card_message_id'),"
        " json_extract(delivery, '$.status_message_id')) = ? LIMIT 1"
    ),
    outcome_not_shown="COALESCE(json_extract(delivery, '$.outcome_shown'), 0) = 0",
    member_rules=_SQLITE_MEMBER_RULES,
)

# JSON columns are TEXT on PostgreSQL too (read back byte for byte); a query that looks inside casts to jsonb.
_PG_SELECT_JOBS = (
    "SELECT jobs.*, (SELECT COALESCE(json_agg(json_build_object('role', role, 'position', position, 'path', path,"
    " 'sha256', sha256, 'size_bytes', size_bytes, 'width', width, 'height', height, 'mime', mime,"
    " 'provider', provider, 'provider_image_id', provider_image_id)), '[]')::text"
    " FROM job_images WHERE job_images.job_id = jobs.id) AS images FROM jobs"
)

# ``user`` is a reserved word and untyped parameters cannot be compared: name and type each one.
_PG_MEMBER_RULES = """
WITH me AS (SELECT CAST(? AS bigint) AS guild, CAST(? AS bigint) AS member, CAST(? AS double precision) AS now,
    CAST(? AS text) AS ids)
SELECT s.*,
    (SELECT COALESCE(json_agg(channel_id), '[]')::text FROM allowed_channels WHERE guild_id = me.guild) AS channels,
    (SELECT COALESCE(json_agg(word), '[]')::text FROM banned_words WHERE guild_id = me.guild) AS words,
    (SELECT json_build_array(reason, until, blocked_by, created_at)::text FROM member_blocks
        WHERE guild_id = me.guild AND user_id = me.member AND (until IS NULL OR until > me.now)) AS block,
    (SELECT COUNT(*) FROM jobs WHERE requester_id = me.member AND guild_id IS NOT DISTINCT FROM me.guild
        AND state IN ('queued', 'submitted', 'downloaded', 'posted')) AS in_flight,
    (SELECT role_ids FROM member_roles WHERE guild_id = me.guild AND user_id = me.member) AS stored_roles,
    (SELECT COALESCE(json_agg(json_build_array(scope, scope_id, units)), '[]')::text FROM quota_limits
        WHERE guild_id = me.guild AND ((scope = 'user' AND scope_id = me.member)
            OR (scope = 'guild' AND scope_id = me.guild)
            OR (scope IN ('role', 'channel')
                AND scope_id IN (SELECT jsonb_array_elements_text(me.ids::jsonb)::bigint)))) AS limits
FROM me LEFT JOIN guild_settings AS s ON s.guild_id = me.guild
"""

POSTGRES = Dialect(
    name="postgresql",
    table_exists="SELECT 1 WHERE to_regclass(CAST(? AS text)) IS NOT NULL",
    select_jobs=_PG_SELECT_JOBS,
    jobs_by_message=(
        f"{_PG_SELECT_JOBS} WHERE posted_message_ids::jsonb @> jsonb_build_array(CAST(? AS bigint))"
        f" UNION {_PG_SELECT_JOBS} WHERE COALESCE(delivery::jsonb ->> 'card_message_id',"
        " delivery::jsonb ->> 'status_message_id') = CAST(CAST(? AS bigint) AS text) LIMIT 1"
    ),
    outcome_not_shown="NOT COALESCE(CAST(delivery::jsonb ->> 'outcome_shown' AS boolean), false)",
    member_rules=_PG_MEMBER_RULES,
    skip_locked=" FOR UPDATE SKIP LOCKED",
    provider_lock="SELECT pg_advisory_xact_lock(24303, hashtext(CAST(? AS text)))",
    lock_member="SELECT pg_advisory_xact_lock(24301, hashtext(CAST(CAST(? AS bigint) AS text)))",
)
