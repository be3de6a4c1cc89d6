-- Violations staff see (D5): indexes for `haven violations` filters, newest first.
CREATE INDEX violations_occurred ON violations (occurred_at);
CREATE INDEX violations_device ON violations (device_id, occurred_at);
CREATE INDEX violations_kind ON violations (kind, occurred_at);

-- Manager tasks (GD3): an attempt to reach an unknown contact opens one; repeats within a
-- short time are counted on the same open task. Closed with a manager's note, never deleted.
CREATE TABLE manager_tasks (
    id               TEXT PRIMARY KEY,
    home_id          TEXT NOT NULL REFERENCES homes (id),
    child_id         TEXT NOT NULL REFERENCES children (id),
    kind             TEXT NOT NULL,
    address          TEXT NOT NULL,
    address_key      TEXT NOT NULL,
    channel          TEXT NOT NULL,
    summary          TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    first_attempt_at BIGINT NOT NULL,
    last_attempt_at  BIGINT NOT NULL,
    opened_at        BIGINT NOT NULL,
    closed_at        BIGINT,
    closed_by        TEXT,
    note             TEXT
);
CREATE INDEX manager_tasks_open ON manager_tasks (child_id, address_key, closed_at);
