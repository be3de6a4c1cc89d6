-- Which homes each member of staff works in. Care staff and managers see and act on the
-- children of their own homes only; administrators run Haven for the whole provider.
CREATE TABLE staff_homes (
    staff_id TEXT NOT NULL REFERENCES staff (id),
    home_id  TEXT NOT NULL REFERENCES homes (id),
    added_at BIGINT NOT NULL,
    added_by TEXT NOT NULL,
    PRIMARY KEY (staff_id, home_id)
);
CREATE INDEX staff_homes_by_home ON staff_homes (home_id);

-- A protected contact now belongs either to the whole home (Childline, Ofsted, 999) or to one
-- child (their social worker, Independent Reviewing Officer, advocate). SQLite cannot change a
-- table's constraints in place, so the table is rebuilt with its rows kept as they were.
CREATE TABLE protected_contacts_v2 (
    id       TEXT PRIMARY KEY,
    home_id  TEXT NOT NULL REFERENCES homes (id),
    child_id TEXT REFERENCES children (id),
    name     TEXT NOT NULL,
    address  TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    added_by TEXT NOT NULL
);
INSERT INTO protected_contacts_v2 (id, home_id, child_id, name, address, added_at, added_by)
    SELECT id, home_id, NULL, name, address, added_at, added_by FROM protected_contacts;
DROP TABLE protected_contacts;
ALTER TABLE protected_contacts_v2 RENAME TO protected_contacts;
CREATE UNIQUE INDEX protected_contacts_once
    ON protected_contacts (home_id, COALESCE(child_id, ''), address);
