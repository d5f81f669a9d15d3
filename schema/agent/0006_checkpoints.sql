-- Checkpoints: named, read-only copies of the file tables that share chunks with
-- the live tree. Taking one copies rows, never file bytes. In disk mode a
-- checkpoint's rows describe the disk tree as it was, its content imported as chunks.
--
-- A chunk a checkpoint uses lives while any checkpoint_file_chunks row names it,
-- and chunks.refs does not count those rows: changing refs rewrites the chunk's
-- row, and SQLite reads the whole row (its bytes, up to a chunk) to rewrite it,
-- so counting would make a checkpoint read every byte of the workspace. Instead
-- the triggers that free a chunk at refs 0 first look for a checkpoint using it
-- (an index lookup), and deleting a checkpoint frees the chunks it alone held.

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

-- The freeing triggers of 0001 and 0002, now sparing chunks a checkpoint uses.
DROP TRIGGER file_chunks_unref;
CREATE TRIGGER file_chunks_unref AFTER DELETE ON file_chunks BEGIN
    UPDATE chunks SET refs = refs - 1 WHERE id = OLD.chunk;
    DELETE FROM chunks WHERE id = OLD.chunk AND refs <= 0
        AND NOT EXISTS (SELECT 1 FROM checkpoint_file_chunks WHERE chunk = OLD.chunk);
END;
DROP TRIGGER file_chunks_reref;
CREATE TRIGGER file_chunks_reref AFTER UPDATE OF chunk ON file_chunks
WHEN OLD.chunk IS NOT NEW.chunk BEGIN
    UPDATE chunks SET refs = refs + 1 WHERE id = NEW.chunk;
    UPDATE chunks SET refs = refs - 1 WHERE id = OLD.chunk;
    DELETE FROM chunks WHERE id = OLD.chunk AND refs <= 0
        AND NOT EXISTS (SELECT 1 FROM checkpoint_file_chunks WHERE chunk = OLD.chunk);
END;
DROP TRIGGER run_output_chunks_unref;
CREATE TRIGGER run_output_chunks_unref AFTER DELETE ON run_output_chunks BEGIN
    UPDATE chunks SET refs = refs - 1 WHERE id = OLD.chunk;
    DELETE FROM chunks WHERE id = OLD.chunk AND refs <= 0
        AND NOT EXISTS (SELECT 1 FROM checkpoint_file_chunks WHERE chunk = OLD.chunk);
END;
DROP TRIGGER cache_chunks_unref;
CREATE TRIGGER cache_chunks_unref AFTER DELETE ON cache_chunks BEGIN
    UPDATE chunks SET refs = refs - 1 WHERE id = OLD.chunk;
    DELETE FROM chunks WHERE id = OLD.chunk AND refs <= 0
        AND NOT EXISTS (SELECT 1 FROM checkpoint_file_chunks WHERE chunk = OLD.chunk);
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
