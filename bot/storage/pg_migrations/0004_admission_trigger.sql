-- PostgreSQL twin of migrations/0004_admission_trigger.sql: admission in one statement. The job row
-- carries what it must fit in (the member's resolved limit and window start, the queued cap, the bot's
-- daily cap); a trigger checks it and appends the ledger's 'reserve' entry as part of the same INSERT.
-- A refusal raises 'admission refused: queued|allowance|daily cap' (SQLSTATE P0001); nothing is written.
-- Rows written without admit_window_start (older code, tests of other tables) are not checked.
--
-- SQLite serialises every writer on its one write lock. PostgreSQL runs writers side by side, so the
-- trigger serialises only what the rule needs, with transaction-scoped advisory locks, always in this
-- order (so two admissions never deadlock):
--   1. the member's lock (namespace 24301, the requester id's hash): the queued cap counts the member's
--      jobs in every guild, the allowance sums the member's ledger;
--   2. the bot-wide daily lock (namespace 24302): exclusive for a row that carries a daily cap,
--      shared for every other reservation, so a capped admission waits for every reservation in
--      flight and none starts beside it, while uncapped admissions never wait for each other.
-- Each check is its own statement, so under READ COMMITTED (the default, and what the store uses) it
-- reads a snapshot taken after the lock was granted: every reservation of an earlier holder is
-- committed and counted. Commits and refunds take no lock: they can only lower a sum, so a check that
-- misses one refuses conservatively and never overspends.
--
-- The sums are bot/quota.py's _USED_SQL and _GLOBAL_USED_SQL (and SQLite's trigger), written for speed:
-- those join every entry to its job's 'reserve' entry to date it; here only refunds are looked up, since
-- a job has exactly one 'reserve' entry (this trigger writes it), a reserve entry is its own reservation
-- and commits add nothing. The member's sum costs one index range scan instead of a join against the
-- whole ledger (0.3 ms instead of 2 ms at 300 entries a member). tests/test_postgres_store.py checks
-- that the trigger admits exactly what Ledger.used leaves.

ALTER TABLE jobs ADD COLUMN admit_limit INTEGER;
ALTER TABLE jobs ADD COLUMN admit_window_start DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN admit_queued_cap INTEGER;
ALTER TABLE jobs ADD COLUMN admit_daily_cap INTEGER;
ALTER TABLE jobs ADD COLUMN admit_daily_start DOUBLE PRECISION;

CREATE FUNCTION jobs_admit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queued  BIGINT;
    used    BIGINT;
BEGIN
    -- Every new job of a member counts towards the queued cap, checked or not.
    PERFORM pg_advisory_xact_lock(24301, hashtext(NEW.requester_id::text));
    IF NEW.admit_window_start IS NULL THEN
        RETURN NULL;
    END IF;
    IF NEW.cost_units > 0 THEN
        IF NEW.admit_daily_cap IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock(24302, 0);
        ELSE
            PERFORM pg_advisory_xact_lock_shared(24302, 0);
        END IF;
    END IF;

    IF NEW.admit_queued_cap IS NOT NULL THEN
        SELECT COUNT(*) INTO queued FROM jobs
        WHERE requester_id = NEW.requester_id AND state IN ('queued', 'submitted', 'downloaded', 'posted');
        IF queued > NEW.admit_queued_cap THEN
            RAISE EXCEPTION 'admission refused: queued';
        END IF;
    END IF;

    IF NEW.cost_units > 0 AND NEW.admit_limit IS NOT NULL THEN
        SELECT COALESCE(SUM(l.units) FILTER (WHERE l.entry = 'reserve'), 0)
             - COALESCE(SUM(l.units) FILTER (WHERE l.entry = 'refund' AND COALESCE(
                   (SELECT r.created_at FROM quota_ledger AS r WHERE r.job_id = l.job_id AND r.entry = 'reserve' LIMIT 1),
                   l.created_at) >= NEW.admit_window_start), 0)
        INTO used
        FROM quota_ledger AS l
        WHERE l.user_id = NEW.requester_id AND l.guild_id IS NOT DISTINCT FROM NEW.guild_id
          AND l.created_at >= NEW.admit_window_start AND l.entry <> 'commit';
        IF GREATEST(0, used) + NEW.cost_units > NEW.admit_limit THEN
            RAISE EXCEPTION 'admission refused: allowance';
        END IF;
    END IF;

    IF NEW.cost_units > 0 AND NEW.admit_daily_cap IS NOT NULL THEN
        SELECT COALESCE(SUM(l.units) FILTER (WHERE l.entry = 'reserve'), 0)
             - COALESCE(SUM(l.units) FILTER (WHERE l.entry = 'refund' AND COALESCE(
                   (SELECT r.created_at FROM quota_ledger AS r WHERE r.job_id = l.job_id AND r.entry = 'reserve' LIMIT 1),
                   l.created_at) >= NEW.admit_daily_start), 0)
        INTO used
        FROM quota_ledger AS l
        WHERE l.created_at >= NEW.admit_daily_start AND l.entry <> 'commit';
        IF used + NEW.cost_units > NEW.admit_daily_cap THEN
            RAISE EXCEPTION 'admission refused: daily cap';
        END IF;
    END IF;

    IF NEW.cost_units > 0 THEN
        INSERT INTO quota_ledger (guild_id, user_id, job_id, entry, units, note, actor_id, created_at)
        VALUES (NEW.guild_id, NEW.requester_id, NEW.id, 'reserve', NEW.cost_units, NULL, NULL, NEW.created_at);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_admit AFTER INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_admit();
