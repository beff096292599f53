-- PostgreSQL twin of migrations/0006_resolution_tiers.sql: a server's largest resolution may be any tier the
-- bot knows (bot/sizes.py RESOLUTIONS, which gained 3K for Seedream 5.x); 0003 allowed only 1K, 2K and 4K.
-- PostgreSQL changes the CHECK in place (SQLite rebuilds the table); the pattern is SQLite's GLOB '[1-9]K'.
ALTER TABLE guild_settings
    DROP CONSTRAINT guild_settings_max_resolution_check,
    ADD CONSTRAINT guild_settings_max_resolution_check CHECK (max_resolution ~ '^[1-9]K$');
