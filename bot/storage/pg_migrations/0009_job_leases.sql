-- PostgreSQL twin of migrations/0008_job_leases.sql: job leases, their fencing epoch and cross-process cancel.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cancel_requested_at DOUBLE PRECISION;

CREATE INDEX jobs_by_lease ON jobs (lease_owner, state);
