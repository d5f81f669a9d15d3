-- The stores on top of the workspace: tool/run artifacts, scoped caches,
-- sessions and transcript events. Content bytes of artifacts and of large cache
-- values share the chunk store with files (same refcount triggers as file_chunks).

-- One tool call or run. seq is the stable number behind the /.vfs/runs inodes.
CREATE TABLE runs (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    session_key  TEXT,
    tool         TEXT,
    call_id      TEXT,
    inputs       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(inputs)),
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ok', 'error')),
    error        TEXT,
    started_at   REAL NOT NULL,
    ended_at     REAL,
    duration     REAL GENERATED ALWAYS AS (ended_at - started_at) VIRTUAL
);
CREATE INDEX runs_by_started ON runs(started_at);
CREATE INDEX runs_by_tool ON runs(tool, started_at);
CREATE INDEX runs_by_session ON runs(session_key, started_at);

-- A named output of a run; content is a list of chunks like a file's
-- (chunk idx covers [idx * chunk_size, (idx + 1) * chunk_size), trailing zeros trimmed).
CREATE TABLE run_outputs (
    id          INTEGER PRIMARY KEY,
    run         INTEGER NOT NULL REFERENCES runs(seq) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    chunk_size  INTEGER NOT NULL,
    hash        TEXT NOT NULL,                 -- xxh3-128 hex of the content
    media_type  TEXT,
    source      TEXT,                          -- workspace path it was attached from
    created_at  REAL NOT NULL,
    UNIQUE (run, name)
);

CREATE TABLE run_output_chunks (
    output  INTEGER NOT NULL REFERENCES run_outputs(id) ON DELETE CASCADE,
    idx     INTEGER NOT NULL,
    chunk   INTEGER NOT NULL REFERENCES chunks(id),
    PRIMARY KEY (output, idx)
) WITHOUT ROWID;
CREATE INDEX run_output_chunks_by_chunk ON run_output_chunks(chunk);

CREATE TRIGGER run_output_chunks_ref AFTER INSERT ON run_output_chunks BEGIN
    UPDATE chunks SET refs = refs + 1 WHERE id = NEW.chunk;
END;
CREATE TRIGGER run_output_chunks_unref AFTER DELETE ON run_output_chunks BEGIN
    UPDATE chunks SET refs = refs - 1 WHERE id = OLD.chunk;
    DELETE FROM chunks WHERE id = OLD.chunk AND refs <= 0;
END;

-- Scoped caches. Small values live inline; larger ones in chunks.
CREATE TABLE cache_entries (
    id           INTEGER PRIMARY KEY,
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('bytes', 'json')),
    value        BLOB,                         -- NULL when the value is in cache_chunks
    size         INTEGER NOT NULL,
    expires_at   REAL,                         -- NULL: never
    accessed_at  REAL NOT NULL,
    created_at   REAL NOT NULL,
    UNIQUE (scope, key)
);
CREATE INDEX cache_by_access ON cache_entries(accessed_at, id);
CREATE INDEX cache_by_expiry ON cache_entries(expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE cache_chunks (
    entry  INTEGER NOT NULL REFERENCES cache_entries(id) ON DELETE CASCADE,
    idx    INTEGER NOT NULL,
    chunk  INTEGER NOT NULL REFERENCES chunks(id),
    PRIMARY KEY (entry, idx)
) WITHOUT ROWID;
CREATE INDEX cache_chunks_by_chunk ON cache_chunks(chunk);

CREATE TRIGGER cache_chunks_ref AFTER INSERT ON cache_chunks BEGIN
    UPDATE chunks SET refs = refs + 1 WHERE id = NEW.chunk;
END;
CREATE TRIGGER cache_chunks_unref AFTER DELETE ON cache_chunks BEGIN
    UPDATE chunks SET refs = refs - 1 WHERE id = OLD.chunk;
    DELETE FROM chunks WHERE id = OLD.chunk AND refs <= 0;
END;

-- Counters and the size budget; 'bytes' follows the entries through triggers
-- so enforcing the budget never sums the table.
CREATE TABLE cache_state (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
INSERT INTO cache_state (name, value) VALUES
    ('bytes', 0), ('hits', 0), ('misses', 0), ('evictions', 0), ('expirations', 0),
    ('budget', 67108864);

CREATE TRIGGER cache_entries_add AFTER INSERT ON cache_entries BEGIN
    UPDATE cache_state SET value = value + NEW.size WHERE name = 'bytes';
END;
CREATE TRIGGER cache_entries_remove AFTER DELETE ON cache_entries BEGIN
    UPDATE cache_state SET value = value - OLD.size WHERE name = 'bytes';
END;

-- Sessions: one row per key; data is the session's JSON object, kept as given.
CREATE TABLE sessions (
    key         TEXT PRIMARY KEY,
    data        TEXT NOT NULL CHECK (json_valid(data) AND json_type(data) = 'object'),
    session_id  TEXT GENERATED ALWAYS AS (json_extract(data, '$.sessionId')) VIRTUAL,
    updated_at  INTEGER NOT NULL,              -- epoch milliseconds
    created_at  INTEGER NOT NULL
);
CREATE INDEX sessions_by_updated ON sessions(updated_at);
CREATE INDEX sessions_by_session_id ON sessions(session_id);

-- Transcripts: the optional header line of each session, then append-only
-- events; seq is the append order, parent_id links form a tree.
CREATE TABLE transcripts (
    session_id  TEXT PRIMARY KEY,
    header      TEXT CHECK (header IS NULL OR json_valid(header)),
    created_at  REAL NOT NULL
);

CREATE TABLE transcript_events (
    seq              INTEGER PRIMARY KEY,
    session_id       TEXT NOT NULL REFERENCES transcripts(session_id),
    id               TEXT NOT NULL,
    parent_id        TEXT,
    type             TEXT,
    idempotency_key  TEXT,
    event            TEXT NOT NULL CHECK (json_valid(event)),
    created_at       REAL NOT NULL,
    UNIQUE (session_id, id),
    UNIQUE (session_id, idempotency_key)
);
CREATE INDEX transcript_events_by_session ON transcript_events(session_id, seq);
