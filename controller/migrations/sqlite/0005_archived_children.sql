-- A child who has left the home is archived, never deleted: their records are kept until
-- their 75th birthday (Regulation 36 and the retention guidance).
ALTER TABLE children ADD COLUMN archived_at BIGINT;
ALTER TABLE children ADD COLUMN archived_by TEXT;
ALTER TABLE children ADD COLUMN archive_reason TEXT;
