-- Where and how a job's results are delivered, so a restart can finish posting without repeating it.

ALTER TABLE jobs ADD COLUMN cost_units INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN delivery TEXT NOT NULL DEFAULT '{}';        -- JSON: channel/thread/status message ids
ALTER TABLE jobs ADD COLUMN posted_message_ids TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN notices TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN parent_job_id TEXT REFERENCES jobs (id);
ALTER TABLE jobs ADD COLUMN started_at REAL;
CREATE INDEX jobs_by_guild ON jobs (guild_id, created_at);
