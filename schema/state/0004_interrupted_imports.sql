-- A run records the pid of the process doing it, so that a later run can tell
-- a killed one (pid gone, status still 'running') and mark it 'interrupted'.
-- SQLite cannot change a CHECK in place: the tables are rebuilt. Renaming the
-- old parent first moves the child's reference along with it, so dropping the
-- old tables cascades into nothing.

ALTER TABLE migration_sources RENAME TO migration_sources_0003;
ALTER TABLE migration_runs RENAME TO migration_runs_0003;
DROP INDEX migration_runs_by_agent;

CREATE TABLE migration_runs (
    id            INTEGER PRIMARY KEY,
    agent         TEXT NOT NULL,
    source_dir    TEXT NOT NULL,
    started_at    REAL NOT NULL,
    finished_at   REAL,
    keep_sources  INTEGER NOT NULL DEFAULT 0,
    pid           INTEGER,
    status        TEXT NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'ok', 'nothing-new', 'partial', 'failed',
                                    'interrupted'))
);
CREATE INDEX migration_runs_by_agent ON migration_runs (agent, started_at);
CREATE INDEX migration_runs_running ON migration_runs (agent) WHERE status = 'running';

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

INSERT INTO migration_runs (id, agent, source_dir, started_at, finished_at, keep_sources, status)
    SELECT id, agent, source_dir, started_at, finished_at, keep_sources, status
    FROM migration_runs_0003;
INSERT INTO migration_sources SELECT * FROM migration_sources_0003;
DROP TABLE migration_sources_0003;
DROP TABLE migration_runs_0003;
