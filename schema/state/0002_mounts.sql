-- Active FUSE mounts: one row per mount point, written by the serving process.
-- A row whose pid no longer runs is stale and is dropped when read.

CREATE TABLE mounts (
    mountpoint  TEXT PRIMARY KEY,
    agent       TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    started_at  REAL NOT NULL
);

CREATE INDEX mounts_by_agent ON mounts (agent);
