-- Several processes share one database (docs/scaling.md section 2.2): a process runs a job only while it
-- holds the job's lease, renews it while it works, and every write of a leased job names the lease it holds
-- (owner and epoch), so a process whose lease was taken over can no longer change the job.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;              -- host/pid/random of the process running it
ALTER TABLE jobs ADD COLUMN lease_until REAL;              -- the lease ends here unless renewed
ALTER TABLE jobs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;  -- +1 at every claim: the fencing token
ALTER TABLE jobs ADD COLUMN cancel_requested_at REAL;      -- Cancel pressed where the job does not run

CREATE INDEX jobs_by_lease ON jobs (lease_owner, state);
