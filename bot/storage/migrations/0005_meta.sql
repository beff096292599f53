-- Small facts the bot keeps about itself, one row each: the heartbeat `seedream-bot health` reads,
-- the hash of the command tree last synced to each scope (so a restart syncs only what changed).
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
