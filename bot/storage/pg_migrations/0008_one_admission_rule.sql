-- PostgreSQL twin of migrations/0008_one_admission_rule.sql: the admission trigger of 0004 also enforces a
-- server's max_in_flight (the member's unfinished jobs in this server), which a Python policy check used to
-- test beforehand, advisory only. The member's advisory lock (24301), taken first by every insert, already
-- serialises everything the new check counts, so two processes cannot both fit the last place. The checks,
-- in the order a refusal names them: 'queued' (every server, the bot owner's cap), 'in flight' (this server's
-- max_in_flight), 'allowance', 'daily cap'. The rest is 0004's function unchanged (see its comments).

CREATE OR REPLACE FUNCTION jobs_admit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queued  BIGINT;
    server  INTEGER;
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

    IF NEW.guild_id IS NOT NULL THEN
        SELECT max_in_flight INTO server FROM guild_settings WHERE guild_id = NEW.guild_id;
        IF server IS NOT NULL THEN
            SELECT COUNT(*) INTO queued FROM jobs
            WHERE requester_id = NEW.requester_id AND guild_id = NEW.guild_id
              AND state IN ('queued', 'submitted', 'downloaded', 'posted');
            IF queued > server THEN
                RAISE EXCEPTION 'admission refused: in flight';
            END IF;
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

