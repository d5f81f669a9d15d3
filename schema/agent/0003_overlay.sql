-- hybrid mode: the copy-on-write overlay over the agent's disk tree.
-- The upper layer is the sqlite-mode tables (inodes, entries, file_chunks);
-- these tables tie upper inodes to the lower (disk) tree and record deletions.

-- An upper inode that stands for, or merges with, an object of the lower tree.
-- Directories: lower_path is the lower directory whose entries show through
-- (NULL = opaque: nothing from the lower tree shows through).
-- Files: bytes below lower_limit that no file_chunks row overrides are read
-- from lower_path; a file_chunks row always wins, even an empty one (zeros).
-- base_* describe the lower object when it was copied up: commit compares the
-- disk against them to find files changed behind the overlay's back.
CREATE TABLE overlay_nodes (
    ino            INTEGER PRIMARY KEY REFERENCES inodes(ino) ON DELETE CASCADE,
    lower_path     TEXT,
    lower_limit    INTEGER NOT NULL DEFAULT 0,
    base_size      INTEGER,
    base_mtime_ns  INTEGER,
    base_hash      TEXT
);

-- A whiteout: the lower entry `name` of directory `parent` was deleted (or
-- moved away, or replaced by an upper entry of that name).
CREATE TABLE overlay_whiteouts (
    parent         INTEGER NOT NULL REFERENCES inodes(ino) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    base_size      INTEGER,
    base_mtime_ns  INTEGER,
    base_hash      TEXT,           -- only when a file was replaced, not merely deleted
    PRIMARY KEY (parent, name)
) WITHOUT ROWID;

-- The journal of a commit under way: every disk operation, written before the
-- disk is touched and marked done after. A commit that finds rows here resumes.
CREATE TABLE overlay_commit_ops (
    seq       INTEGER PRIMARY KEY,
    phase     INTEGER NOT NULL,      -- 1 stage, 2 remove, 3 place, 4 metadata, 5 settle
    op        TEXT NOT NULL,
    path      TEXT NOT NULL,         -- lower-relative target path
    source    TEXT,                  -- lower-relative path content is copied from
    ino       INTEGER,               -- upper inode the content comes from
    parent    INTEGER,               -- upper directory of the entry to clear afterwards
    name      TEXT,
    staged    TEXT,                  -- staging file name, for stage/place
    mode      INTEGER,
    mtime_ns  INTEGER,
    stamp     TEXT,                  -- the upper inode's state when planned
    done      INTEGER NOT NULL DEFAULT 0
);

-- A workspace mode switch under way (at most one). A run that finds it
-- finishes it before anything else.
CREATE TABLE mode_switch (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    from_mode   TEXT NOT NULL,
    to_mode     TEXT NOT NULL,
    force       INTEGER NOT NULL DEFAULT 0,
    started_at  REAL NOT NULL
);
