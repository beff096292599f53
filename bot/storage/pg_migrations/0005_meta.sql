-- PostgreSQL twin of migrations/0005_meta.sql: small facts the bot keeps about itself, one row each (the
-- heartbeat `seedream-bot health` reads, the hash of the command tree last synced to each scope).
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
