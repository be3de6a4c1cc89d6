-- The twin of SQLite's 0022: reads of a child's records are listed a page at a time, newest
-- first, seeking past the last one sent (issue 15). Two reads can share a millisecond, so each
-- gets `seq`, the order it was written in (existing rows are numbered as the column is added),
-- and the seek has an index.
ALTER TABLE audit_reads ADD COLUMN seq BIGSERIAL PRIMARY KEY;
DROP INDEX audit_reads_child;
CREATE INDEX audit_reads_child ON audit_reads (child_id, at, seq);
