-- Reads of a child's records are listed a page at a time, newest first, seeking past the last
-- one sent (issue 15). Two reads can share a millisecond, so each gets `seq`, the order it was
-- written in (an alias of SQLite's rowid), and the seek has an index.
CREATE TABLE audit_reads_seq (
    seq      INTEGER PRIMARY KEY,
    at       BIGINT NOT NULL,
    staff_id TEXT NOT NULL,
    child_id TEXT NOT NULL,
    what     TEXT NOT NULL
);
INSERT INTO audit_reads_seq (at, staff_id, child_id, what)
    SELECT at, staff_id, child_id, what FROM audit_reads ORDER BY rowid;
DROP TABLE audit_reads;
ALTER TABLE audit_reads_seq RENAME TO audit_reads;
CREATE INDEX audit_reads_child ON audit_reads (child_id, at, seq);
