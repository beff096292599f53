-- PostgreSQL twin of migrations/0002_job_delivery.sql: where and how a job's results are delivered.

ALTER TABLE jobs ADD COLUMN cost_units INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN delivery TEXT NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN posted_message_ids TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN notices TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN parent_job_id TEXT REFERENCES jobs (id);
ALTER TABLE jobs ADD COLUMN started_at DOUBLE PRECISION;
CREATE INDEX jobs_by_guild ON jobs (guild_id, created_at);
