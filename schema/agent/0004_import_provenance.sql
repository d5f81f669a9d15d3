-- What a legacy import wrote, so that a later import never undoes the API's work.
--
-- sessions.revision counts every write of a row; imported_revision is the
-- revision an import last wrote (NULL: never imported). A row whose revision
-- is past imported_revision was written through the API after the import,
-- and imports leave it alone whatever its updated_at says.
ALTER TABLE sessions ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN imported_revision INTEGER;

-- The seq of the last event added by append (NULL: none). Once set it is the
-- session's head: imported events, whatever their seq, never move it.
ALTER TABLE transcripts ADD COLUMN appended_seq INTEGER;
