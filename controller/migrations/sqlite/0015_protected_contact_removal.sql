-- A home's own protected contact can be removed (a social worker who moved on), never deleted:
-- the record keeps who removed it, when and why. The built-in contacts (999, Childline, …) are
-- not rows at all, so nothing here can remove them.
ALTER TABLE protected_contacts ADD COLUMN removed_at INTEGER;
ALTER TABLE protected_contacts ADD COLUMN removed_by TEXT;
ALTER TABLE protected_contacts ADD COLUMN removed_reason TEXT;
DROP INDEX protected_contacts_once;
CREATE UNIQUE INDEX protected_contacts_once
    ON protected_contacts (home_id, COALESCE(child_id, ''), address) WHERE removed_at IS NULL;
