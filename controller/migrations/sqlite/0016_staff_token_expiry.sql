-- Staff tokens expire (default 90 days after they were made) and can be rotated. Existing
-- tokens get 90 days from when they were made, so a long-forgotten token stops working.
ALTER TABLE staff ADD COLUMN token_expires_at INTEGER;
UPDATE staff SET token_expires_at = created_at + 7776000000;
