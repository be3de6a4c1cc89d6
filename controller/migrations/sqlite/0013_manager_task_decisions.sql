-- A manager task (GD3) closes only with a decision — assess, refuse or no-action — and a note.
-- Its due time (the next working day after it opened, in the home's zone) is computed from
-- opened_at, so nothing else is stored.
ALTER TABLE manager_tasks ADD COLUMN decision TEXT;
