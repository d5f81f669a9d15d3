-- Checkpoints: named, read-only copies of the file tables that share chunks with
-- the live tree. Taking one copies rows, never file bytes; the chunk-list table
-- keeps chunk reference counts with the same triggers as file_chunks, so a chunk
-- lives as long as a file or a checkpoint needs it. In disk mode a checkpoint's
-- rows describe the disk tree as it was, its content imported as chunks.

CREATE TABLE checkpoints (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    message     TEXT,
    mode        TEXT NOT NULL,          -- the workspace mode it was taken in
    created_at  REAL NOT NULL
);

CREATE TABLE checkpoint_inodes (
    checkpoint  INTEGER NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,
    ino         INTEGER NOT NULL,
    mode        INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    gid         INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    nlink       INTEGER NOT NULL,
    rdev        INTEGER NOT NULL,
    atime_ns    INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    ctime_ns    INTEGER NOT NULL,
    btime_ns    INTEGER NOT NULL,
    target      BLOB,
    PRIMARY KEY (checkpoint, ino)
) WITHOUT ROWID;

-- id is the live entry's id, so a rollback brings back the same readdir offsets.
CREATE TABLE checkpoint_entries (
    checkpoint  INTEGER NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,
    id          INTEGER NOT NULL,
    parent      INTEGER NOT NULL,
    name        TEXT NOT NULL,
    ino         INTEGER NOT NULL,
    PRIMARY KEY (checkpoint, id),
    UNIQUE (checkpoint, parent, name)
) WITHOUT ROWID;
CREATE INDEX checkpoint_entries_by_ino ON checkpoint_entries(checkpoint, ino);

CREATE TABLE checkpoint_file_chunks (
    checkpoint  INTEGER NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,
    ino         INTEGER NOT NULL,
    idx         INTEGER NOT NULL,
    chunk       INTEGER NOT NULL REFERENCES chunks(id),
    PRIMARY KEY (checkpoint, ino, idx)
) WITHOUT ROWID;
CREATE INDEX checkpoint_file_chunks_by_chunk ON checkpoint_file_chunks(chunk);

CREATE TRIGGER checkpoint_file_chunks_ref AFTER INSERT ON checkpoint_file_chunks BEGIN
    UPDATE chunks SET refs = refs + 1 WHERE id = NEW.chunk;
END;
CREATE TRIGGER checkpoint_file_chunks_unref AFTER DELETE ON checkpoint_file_chunks BEGIN
    UPDATE chunks SET refs = refs - 1 WHERE id = OLD.chunk;
    DELETE FROM chunks WHERE id = OLD.chunk AND refs <= 0;
END;

CREATE TABLE checkpoint_xattrs (
    checkpoint  INTEGER NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,
    ino         INTEGER NOT NULL,
    name        BLOB NOT NULL,
    value       BLOB NOT NULL,
    PRIMARY KEY (checkpoint, ino, name)
) WITHOUT ROWID;

-- hybrid mode: the overlay's own tables, as they were.
CREATE TABLE checkpoint_overlay_nodes (
    checkpoint     INTEGER NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,
    ino            INTEGER NOT NULL,
    lower_path     TEXT,
    lower_limit    INTEGER NOT NULL,
    base_size      INTEGER,
    base_mtime_ns  INTEGER,
    base_hash      TEXT,
    PRIMARY KEY (checkpoint, ino)
) WITHOUT ROWID;

CREATE TABLE checkpoint_overlay_whiteouts (
    checkpoint     INTEGER NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,
    parent         INTEGER NOT NULL,
    name           TEXT NOT NULL,
    base_size      INTEGER,
    base_mtime_ns  INTEGER,
    base_hash      TEXT,
    PRIMARY KEY (checkpoint, parent, name)
) WITHOUT ROWID;
