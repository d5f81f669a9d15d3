-- Large file content may live outside the database, in a blob store (see
-- backends/blobs.py): such a chunk row names its blob (the SHA-256 hex of its
-- bytes) and keeps no bytes itself (data = x''). hash and size stay those of
-- the content, so checksums, sharing and reference counts work as for any chunk.
-- Dropping the last row of a blob leaves the blob: it is collected later,
-- after a grace period, once no agent that shares the store references it.
ALTER TABLE chunks ADD COLUMN blob TEXT;
CREATE INDEX chunks_by_blob ON chunks(blob) WHERE blob IS NOT NULL;
