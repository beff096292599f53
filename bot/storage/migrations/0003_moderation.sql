-- Moderation: per-guild settings, limits per scope, blocks, channels, banned words, the audit log.
-- NULL in a guild setting means "use the config default". Usage is attributed to models through
-- jobs.provider (a configured provider name is one provider+model) and to roles through the member's
-- roles as last seen by a policy check (member_roles), so role totals may overlap.

CREATE TABLE guild_settings (
    guild_id            INTEGER PRIMARY KEY,
    timezone            TEXT,                                   -- IANA name, e.g. Europe/Berlin
    window_kind         TEXT CHECK (window_kind IN ('daily', 'weekly', 'monthly', 'rolling')),
    rolling_hours       INTEGER CHECK (rolling_hours >= 1),
    paused              INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    paused_reason       TEXT,
    log_channel_id      INTEGER,
    allowed_providers   TEXT,                                   -- JSON list of provider names; NULL = all
    max_resolution      TEXT CHECK (max_resolution IN ('1K', '2K', '4K')),
    max_count           INTEGER CHECK (max_count >= 1),
    max_in_flight       INTEGER CHECK (max_in_flight >= 1),
    updated_at          REAL NOT NULL
);

-- Units per window for one scope; a row that exists is set, units NULL means unlimited.
CREATE TABLE quota_limits (
    guild_id    INTEGER NOT NULL,
    scope       TEXT NOT NULL CHECK (scope IN ('guild', 'role', 'channel', 'user')),
    scope_id    INTEGER NOT NULL,                               -- the guild id for the guild scope
    units       INTEGER CHECK (units IS NULL OR units >= 0),
    updated_by  INTEGER NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (guild_id, scope, scope_id)
);

CREATE TABLE member_blocks (
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    until       REAL,                                           -- NULL = until unblocked
    blocked_by  INTEGER NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);

-- No rows for a guild = every channel is allowed.
CREATE TABLE allowed_channels (
    guild_id    INTEGER NOT NULL,
    channel_id  INTEGER NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
);

CREATE TABLE banned_words (
    guild_id    INTEGER NOT NULL,
    word        TEXT NOT NULL,                                  -- stored lower-case
    added_by    INTEGER NOT NULL,
    added_at    REAL NOT NULL,
    PRIMARY KEY (guild_id, word)
);

CREATE TABLE member_roles (
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    role_ids    TEXT NOT NULL DEFAULT '[]',                     -- JSON list, as last seen
    seen_at     REAL NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    actor_id    INTEGER NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    details     TEXT NOT NULL DEFAULT '{}',                     -- JSON
    reason      TEXT,
    created_at  REAL NOT NULL
);
CREATE INDEX audit_by_guild ON audit_log (guild_id, created_at);

-- The moderator behind a manual ledger entry (a refund without a job).
ALTER TABLE quota_ledger ADD COLUMN actor_id INTEGER;
CREATE INDEX ledger_by_time ON quota_ledger (created_at);
CREATE INDEX ledger_by_guild ON quota_ledger (guild_id, created_at);
