-- Workspace files stored as rows (sqlite mode; hybrid's upper layer).
-- An inode is a file, directory or symlink; entries name inodes inside directories;
-- content is a list of chunks per inode, and chunks are shared between inodes.

CREATE TABLE inodes (
    ino       INTEGER PRIMARY KEY,
    mode      INTEGER NOT NULL,            -- st_mode: type bits and permissions
    uid       INTEGER NOT NULL DEFAULT 0,
    gid       INTEGER NOT NULL DEFAULT 0,
    size      INTEGER NOT NULL DEFAULT 0,
    nlink     INTEGER NOT NULL DEFAULT 0,  -- 0 = unlinked, kept only while open
    rdev      INTEGER NOT NULL DEFAULT 0,
    atime_ns  INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    ctime_ns  INTEGER NOT NULL,
    btime_ns  INTEGER NOT NULL,
    target    BLOB                         -- symlink target, raw bytes
);

-- rowid is the stable readdir offset: it never changes while the entry exists.
CREATE TABLE entries (
    id      INTEGER PRIMARY KEY,
    parent  INTEGER NOT NULL REFERENCES inodes(ino),
    name    TEXT NOT NULL,
    ino     INTEGER NOT NULL REFERENCES inodes(ino),
    UNIQUE (parent, name)
);
CREATE INDEX entries_by_ino ON entries(ino);

-- Content chunks, identified by xxh3-128 but never trusted on the hash alone:
-- several rows may share a hash (a collision), and sharing compares bytes first.
CREATE TABLE chunks (
    id    INTEGER PRIMARY KEY,
    hash  BLOB NOT NULL,
    size  INTEGER NOT NULL,
    refs  INTEGER NOT NULL DEFAULT 0,
    data  BLOB NOT NULL
);
CREATE INDEX chunks_by_hash ON chunks(hash);

-- Chunk idx covers bytes [idx * chunk_size, (idx + 1) * chunk_size) of the file.
-- A missing idx is a hole and reads as zeros.
CREATE TABLE file_chunks (
    ino    INTEGER NOT NULL REFERENCES inodes(ino) ON DELETE CASCADE,
    idx    INTEGER NOT NULL,
    chunk  INTEGER NOT NULL REFERENCES chunks(id),
    PRIMARY KEY (ino, idx)
) WITHOUT ROWID;
CREATE INDEX file_chunks_by_chunk ON file_chunks(chunk);

CREATE TABLE xattrs (
    ino    INTEGER NOT NULL REFERENCES inodes(ino) ON DELETE CASCADE,
    name   BLOB NOT NULL,
    value  BLOB NOT NULL,
    PRIMARY KEY (ino, name)
) WITHOUT ROWID;

-- Reference counts follow the rows that point at a chunk; a chunk nobody
-- references is freed in the same transaction. Any table that shares chunks
-- (artifacts, the overlay) adds the same pair of triggers.
CREATE TRIGGER file_chunks_ref AFTER INSERT ON file_chunks BEGIN
    UPDATE chunks SET refs = refs + 1 WHERE id = NEW.chunk;
END;
CREATE TRIGGER file_chunks_unref AFTER DELETE ON file_chunks BEGIN
    UPDATE chunks SET refs = refs - 1 WHERE id = OLD.chunk;
    DELETE FROM chunks WHERE id = OLD.chunk AND refs <= 0;
END;
CREATE TRIGGER file_chunks_reref AFTER UPDATE OF chunk ON file_chunks
WHEN OLD.chunk IS NOT NEW.chunk BEGIN
    UPDATE chunks SET refs = refs + 1 WHERE id = NEW.chunk;
    UPDATE chunks SET refs = refs - 1 WHERE id = OLD.chunk;
    DELETE FROM chunks WHERE id = OLD.chunk AND refs <= 0;
END;

CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- Inodes with no name that a live process still holds open (an unlinked open
-- file, a file being written before it is published). A row whose process is
-- gone is reclaimed; nothing else deletes a nameless inode behind its back.
CREATE TABLE orphans (
    ino  INTEGER PRIMARY KEY REFERENCES inodes(ino) ON DELETE CASCADE,
    pid  INTEGER NOT NULL
);
