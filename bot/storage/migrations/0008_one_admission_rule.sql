-- The one quota rule (issue 18): the admission trigger of 0004 also enforces a server's max_in_flight, which a
-- policy check in Python used to test beforehand (advisory: two requests at once, or two processes, could both
-- pass it). The trigger is now the only place the rule is written; bot/quota.py only resolves what the row
-- must fit in (Ledger.admission) and words a refusal afterwards (Ledger.explain), and the PostgreSQL trigger
-- (pg_migrations/0008) is its twin. The checks, in the order a refusal names them:
--   'queued'     the member's unfinished jobs in every server, against the bot owner's cap (admit_queued_cap);
--   'in flight'  the member's unfinished jobs in this server, against the server's own max_in_flight;
--   'allowance'  the member's net units in their window, against their resolved limit;
--   'daily cap'  the whole bot's net units today, against [quota] global_daily_cap.
-- The new row counts itself (the trigger runs after the INSERT), hence '>' rather than '>='.

DROP TRIGGER jobs_admit;

CREATE TRIGGER jobs_admit AFTER INSERT ON jobs
WHEN NEW.admit_window_start IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'admission refused: queued')
    WHERE NEW.admit_queued_cap IS NOT NULL AND (
        SELECT COUNT(*) FROM jobs
        WHERE requester_id = NEW.requester_id AND state IN ('queued', 'submitted', 'downloaded', 'posted')
    ) > NEW.admit_queued_cap;

    SELECT RAISE(ABORT, 'admission refused: in flight')
    FROM guild_settings AS s
    WHERE s.guild_id = NEW.guild_id AND s.max_in_flight IS NOT NULL AND (
        SELECT COUNT(*) FROM jobs
        WHERE requester_id = NEW.requester_id AND guild_id = NEW.guild_id
          AND state IN ('queued', 'submitted', 'downloaded', 'posted')
    ) > s.max_in_flight;

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
