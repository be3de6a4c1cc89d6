-- Enrollment codes can be listed and cancelled: each gets an id and a hint (its first group,
-- never enough to use it), and a cancellation that is kept on record.
ALTER TABLE enrollments ADD COLUMN id TEXT;
ALTER TABLE enrollments ADD COLUMN hint TEXT NOT NULL DEFAULT '';
ALTER TABLE enrollments ADD COLUMN cancelled_at INTEGER;
ALTER TABLE enrollments ADD COLUMN cancelled_by TEXT;
UPDATE enrollments SET id = 'enr-' || substr(code_hash, 1, 16) WHERE id IS NULL;
CREATE UNIQUE INDEX enrollments_by_id ON enrollments (id);
