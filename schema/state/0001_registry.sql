-- Control plane: which agents exist, where their data lives, settings.

CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    mode        TEXT NOT NULL CHECK (mode IN ('disk', 'sqlite', 'hybrid')),
    db_path     TEXT NOT NULL,
    workspace   TEXT NOT NULL,
    created_at  REAL NOT NULL
);

CREATE TABLE settings (
    scope  TEXT NOT NULL,      -- '' for global, else an agent id
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,      -- JSON
    PRIMARY KEY (scope, key)
);
