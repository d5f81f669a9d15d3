-- readdir pages through a directory in rowid order (the stable offset). Without
-- an index on (parent, rowid) every page sorted the whole directory, so listing
-- 100,000 entries cost 200 sorts of 100,000 rows; with it each page is a range seek.
CREATE INDEX entries_by_parent ON entries(parent);
