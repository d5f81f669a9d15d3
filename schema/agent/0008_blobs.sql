-- Large file content may live outside the database, in a blob store (see
-- backends/blobs.py). Such a chunk row keeps no bytes itself (data = x''):
-- they are blob_at.. blob_at + size of the blob it names (the SHA-256 hex of
-- the blob's bytes). One blob packs the chunks one write stored together, so a
-- large file is a few objects rather than one per chunk; a chunk rewritten
-- later gets a row (and a blob) of its own. hash and size stay those of the
-- chunk, so checksums, sharing and reference counts work as for any chunk.
-- Dropping the last row that names a blob leaves the blob: it is collected
-- later, after a grace period, once no agent that shares the store names it.
ALTER TABLE chunks ADD COLUMN blob TEXT;
ALTER TABLE chunks ADD COLUMN blob_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX chunks_by_blob ON chunks(blob, blob_at) WHERE blob IS NOT NULL;
