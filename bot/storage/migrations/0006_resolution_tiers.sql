-- A server's largest resolution may be any tier the bot knows (bot/sizes.py RESOLUTIONS, which gained 3K
-- for Seedream 5.x); 0003 allowed only 1K, 2K and 4K. SQLite cannot change a CHECK in place, so the table
-- is rebuilt with the same columns and rows. The code validates the tier; the CHECK keeps its shape only.

CREATE TABLE guild_settings_0006 (
    guild_id            INTEGER PRIMARY KEY,
    timezone            TEXT,                                   -- IANA name, e.g. Europe/Berlin
    window_kind         TEXT CHECK (window_kind IN ('daily', 'weekly', 'monthly', 'rolling')),
    rolling_hours       INTEGER CHECK (rolling_hours >= 1),
    paused              INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    paused_reason       TEXT,
    log_channel_id      INTEGER,
    allowed_providers   TEXT,                                   -- JSON list of provider names; NULL = all
    max_resolution      TEXT CHECK (max_resolution GLOB '[1-9]K'),
    max_count           INTEGER CHECK (max_count >= 1),
    max_in_flight       INTEGER CHECK (max_in_flight >= 1),
    updated_at          REAL NOT NULL
);

INSERT INTO guild_settings_0006 (
    guild_id, timezone, window_kind, rolling_hours, paused, paused_reason, log_channel_id, allowed_providers,
    max_resolution, max_count, max_in_flight, updated_at
)
SELECT guild_id, timezone, window_kind, rolling_hours, paused, paused_reason, log_channel_id, allowed_providers,
    max_resolution, max_count, max_in_flight, updated_at
FROM guild_settings;

DROP TABLE guild_settings;

ALTER TABLE guild_settings_0006 RENAME TO guild_settings;
