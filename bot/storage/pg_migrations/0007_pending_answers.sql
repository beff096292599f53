-- PostgreSQL twin of migrations/0007_pending_answers.sql: commands acknowledged ("thinking…") whose job is
-- not written yet. The row is written right after the acknowledgement and removed when the job is (same
-- statement, by the trigger below) or when the command is refused; whatever a crash leaves here is answered
-- by the next start, so no command stays "thinking…".
CREATE TABLE pending_answers (
    token           TEXT PRIMARY KEY,
    application_id  BIGINT NOT NULL,
    message_id      BIGINT,
    channel_id      BIGINT,
    usable_until    DOUBLE PRECISION NOT NULL,
    created_at      DOUBLE PRECISION NOT NULL
);

CREATE FUNCTION jobs_settle_pending_answer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM pending_answers WHERE token = NEW.delivery::jsonb #>> '{interaction,token}';
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_settle_pending_answer AFTER INSERT ON jobs
FOR EACH ROW WHEN (NEW.delivery::jsonb #>> '{interaction,token}' IS NOT NULL)
EXECUTE FUNCTION jobs_settle_pending_answer();
