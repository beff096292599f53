-- Jobs, their images, and the append-only quota ledger.

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('imagine', 'edit', 'reroll', 'vary', 'cli')),
    requester_id    INTEGER NOT NULL,
    guild_id        INTEGER,
    channel_id      INTEGER,
    provider        TEXT NOT NULL,
    options         TEXT NOT NULL,                     -- GenerationRequest as JSON (without references)
    state           TEXT NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'submitted', 'downloaded', 'posted', 'done', 'failed', 'cancelled')),
    provider_task   TEXT,                              -- Submission as JSON once submitted
    attempts        INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    finished_at     REAL
);
CREATE INDEX jobs_by_state ON jobs (state, created_at);
CREATE INDEX jobs_by_requester ON jobs (requester_id, created_at);

CREATE TABLE job_images (
    id                  INTEGER PRIMARY KEY,
    job_id              TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    role                TEXT NOT NULL CHECK (role IN ('reference', 'result')),
    position            INTEGER NOT NULL,
    path                TEXT NOT NULL,
    sha256              TEXT NOT NULL,
    size_bytes          INTEGER NOT NULL,
    width               INTEGER NOT NULL,
    height              INTEGER NOT NULL,
    mime                TEXT NOT NULL,
    provider            TEXT,
    provider_image_id   TEXT,
    created_at          REAL NOT NULL,
    UNIQUE (job_id, role, position)
);

CREATE TABLE quota_ledger (
    id          INTEGER PRIMARY KEY,
    guild_id    INTEGER,
    user_id     INTEGER NOT NULL,
    job_id      TEXT REFERENCES jobs (id),
    entry       TEXT NOT NULL CHECK (entry IN ('reserve', 'commit', 'refund')),
    units       INTEGER NOT NULL CHECK (units >= 0),
    note        TEXT,
    created_at  REAL NOT NULL
);
CREATE INDEX ledger_by_user ON quota_ledger (guild_id, user_id, created_at);
CREATE INDEX ledger_by_job ON quota_ledger (job_id);
