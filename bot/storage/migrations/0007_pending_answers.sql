-- Commands acknowledged ("thinking…") whose job is not written yet. The row is written right after the
-- acknowledgement and removed when the job is (same statement, by the trigger below) or when the command is
-- refused; whatever a crash leaves here is answered by the next start, so no command stays "thinking…".
CREATE TABLE pending_answers (
    token           TEXT PRIMARY KEY,           -- the interaction token (also in the job's delivery JSON)
    application_id  INTEGER NOT NULL,
    message_id      INTEGER,                    -- the "thinking…" message, which would have become the card
    channel_id      INTEGER,
    usable_until    REAL NOT NULL,              -- after this the message is edited with the bot token instead
    created_at      REAL NOT NULL
);

CREATE TRIGGER jobs_settle_pending_answer AFTER INSERT ON jobs
WHEN json_extract(NEW.delivery, '$.interaction.token') IS NOT NULL
BEGIN
    DELETE FROM pending_answers WHERE token = json_extract(NEW.delivery, '$.interaction.token');
END;
