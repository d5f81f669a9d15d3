-- Audit of legacy imports (`vfs migrate`): one row per run, one row per source
-- file it looked at, with the file's size and content hash at the time.

CREATE TABLE migration_runs (
    id            INTEGER PRIMARY KEY,
    agent         TEXT NOT NULL,
    source_dir    TEXT NOT NULL,
    started_at    REAL NOT NULL,
    finished_at   REAL,
    keep_sources  INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'ok', 'nothing-new', 'partial', 'failed'))
);
CREATE INDEX migration_runs_by_agent ON migration_runs (agent, started_at);

CREATE TABLE migration_sources (
    run          INTEGER NOT NULL REFERENCES migration_runs(id) ON DELETE CASCADE,
    path         TEXT NOT NULL,
    kind         TEXT NOT NULL,            -- 'sessions' or 'transcript'
    size         INTEGER,
    hash         TEXT,                     -- xxh3-128 hex of the bytes read
    status       TEXT NOT NULL,            -- 'imported', 'unchanged', 'failed'
    imported     INTEGER NOT NULL DEFAULT 0,
    kept         INTEGER NOT NULL DEFAULT 0,
    skipped      INTEGER NOT NULL DEFAULT 0,
    archived_to  TEXT,
    error        TEXT,
    PRIMARY KEY (run, path)
);
