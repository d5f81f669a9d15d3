-- The change journal: what every write transaction did to the file tables, in
-- commit order. Followers (a mount invalidating the kernel's caches, vfs watch,
-- incremental work) read it from their last sequence number; it is trimmed once
-- every live follower has read past a point. Triggers write it, so no writer can
-- change a file row without a journal row; the connection layer stamps each
-- transaction's rows with the writer's identity before it commits.
CREATE TABLE journal (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: followers compare numbers
    ino     INTEGER NOT NULL,
    parent  INTEGER,          -- for a name: the directory it is, or was, in
    name    TEXT,             -- for a name: the entry's name
    what    TEXT NOT NULL,    -- 'attr' (attributes or content), 'link', 'unlink', 'free'
    writer  TEXT,             -- e.g. 'mount:4242'; NULL for a connection that does not say
    at_ns   INTEGER NOT NULL
);

CREATE TABLE journal_followers (
    name     TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL,     -- everything up to here is read
    pid      INTEGER NOT NULL,
    seen_ns  INTEGER NOT NULL
);

CREATE TRIGGER journal_entry_added AFTER INSERT ON entries BEGIN
    INSERT INTO journal (ino, parent, name, what, at_ns)
    VALUES (NEW.ino, NEW.parent, NEW.name, 'link', CAST(unixepoch('subsec') * 1e9 AS INTEGER));
END;
CREATE TRIGGER journal_entry_removed AFTER DELETE ON entries BEGIN
    INSERT INTO journal (ino, parent, name, what, at_ns)
    VALUES (OLD.ino, OLD.parent, OLD.name, 'unlink', CAST(unixepoch('subsec') * 1e9 AS INTEGER));
END;
CREATE TRIGGER journal_entry_changed AFTER UPDATE ON entries BEGIN
    INSERT INTO journal (ino, parent, name, what, at_ns)
    VALUES (OLD.ino, OLD.parent, OLD.name, 'unlink', CAST(unixepoch('subsec') * 1e9 AS INTEGER)),
           (NEW.ino, NEW.parent, NEW.name, 'link', CAST(unixepoch('subsec') * 1e9 AS INTEGER));
END;
CREATE TRIGGER journal_inode_changed AFTER UPDATE ON inodes BEGIN
    INSERT INTO journal (ino, what, at_ns)
    VALUES (NEW.ino, 'attr', CAST(unixepoch('subsec') * 1e9 AS INTEGER));
END;
CREATE TRIGGER journal_inode_freed AFTER DELETE ON inodes BEGIN
    INSERT INTO journal (ino, what, at_ns)
    VALUES (OLD.ino, 'free', CAST(unixepoch('subsec') * 1e9 AS INTEGER));
END;
