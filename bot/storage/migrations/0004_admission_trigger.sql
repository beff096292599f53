-- Admission in one statement: the job row carries what it must fit in (the member's resolved limit and
-- window start, the queued cap, the bot's daily cap), and a trigger checks it and appends the ledger's
-- 'reserve' entry as part of the same INSERT. An INSERT takes SQLite's write lock before it reads, so
-- the check and the append cannot interleave with another writer, in this process or another one.
-- A refusal aborts the INSERT with a message starting 'admission refused:'; nothing is written.
-- Rows written without admit_window_start (older code, tests of other tables) are left alone.
-- The sums are bot/quota.py's _USED_SQL and _GLOBAL_USED_SQL; tests/test_quota.py keeps them in step.

ALTER TABLE jobs ADD COLUMN admit_limit INTEGER;            -- units allowed in the window; NULL = unlimited
ALTER TABLE jobs ADD COLUMN admit_window_start REAL;        -- start of the member's window at admission
ALTER TABLE jobs ADD COLUMN admit_queued_cap INTEGER;       -- unfinished jobs a member may have; NULL = no cap
ALTER TABLE jobs ADD COLUMN admit_daily_cap INTEGER;        -- units the whole bot may spend a day; NULL = no cap
ALTER TABLE jobs ADD COLUMN admit_daily_start REAL;         -- start of the bot's day at admission

CREATE TRIGGER jobs_admit AFTER INSERT ON jobs
WHEN NEW.admit_window_start IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'admission refused: queued')
    WHERE NEW.admit_queued_cap IS NOT NULL AND (
        SELECT COUNT(*) FROM jobs
        WHERE requester_id = NEW.requester_id AND state IN ('queued', 'submitted', 'downloaded', 'posted')
    ) > NEW.admit_queued_cap;

    SELECT RAISE(ABORT, 'admission refused: allowance')
    WHERE NEW.cost_units > 0 AND NEW.admit_limit IS NOT NULL AND MAX(0, (
        SELECT COALESCE(SUM(CASE l.entry WHEN 'reserve' THEN l.units WHEN 'refund' THEN -l.units ELSE 0 END), 0)
        FROM quota_ledger AS l
        LEFT JOIN quota_ledger AS r ON r.job_id = l.job_id AND r.entry = 'reserve'
        WHERE l.guild_id IS NEW.guild_id AND l.user_id = NEW.requester_id
          AND l.created_at >= NEW.admit_window_start
          AND COALESCE(r.created_at, l.created_at) >= NEW.admit_window_start
    )) + NEW.cost_units > NEW.admit_limit;

    SELECT RAISE(ABORT, 'admission refused: daily cap')
    WHERE NEW.cost_units > 0 AND NEW.admit_daily_cap IS NOT NULL AND (
        SELECT COALESCE(SUM(CASE l.entry WHEN 'reserve' THEN l.units WHEN 'refund' THEN -l.units ELSE 0 END), 0)
        FROM quota_ledger AS l
        LEFT JOIN quota_ledger AS r ON r.job_id = l.job_id AND r.entry = 'reserve'
        WHERE l.created_at >= NEW.admit_daily_start
          AND COALESCE(r.created_at, l.created_at) >= NEW.admit_daily_start
    ) + NEW.cost_units > NEW.admit_daily_cap;

    INSERT INTO quota_ledger (guild_id, user_id, job_id, entry, units, note, actor_id, created_at)
    SELECT NEW.guild_id, NEW.requester_id, NEW.id, 'reserve', NEW.cost_units, NULL, NULL, NEW.created_at
    WHERE NEW.cost_units > 0;
END;
