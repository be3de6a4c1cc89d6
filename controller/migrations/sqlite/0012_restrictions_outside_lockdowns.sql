-- Sanctions and obligations that no lockdown opened (RM4, RM5): a plan revision that reduces
-- telephone or messaging access opens the same Regulation 35 record, and a camera withdrawal
-- made without consultation owes the social worker a notification. So `lockdown_id` may be
-- empty, and `plan_revision` names the revision that opened the record instead. The sign-off
-- records that the manager spoke to the person who imposed the measure (RM5).
--
-- SQLite cannot drop NOT NULL in place: both tables are rebuilt with the same rows. The new
-- obligations table points at the new sanctions table, whose rename carries the reference.

CREATE TABLE sanctions_v2 (
    id                 TEXT PRIMARY KEY,
    lockdown_id        TEXT REFERENCES lockdowns (id),
    child_id           TEXT NOT NULL REFERENCES children (id),
    home_id            TEXT NOT NULL REFERENCES homes (id),
    opened_at          BIGINT NOT NULL,
    record             TEXT NOT NULL,
    completed_at       BIGINT,
    completed_by       TEXT,
    signed_off_at      BIGINT,
    signed_off_by      TEXT,
    sign_off_note      TEXT,
    discussed_at       BIGINT,
    discussed_by       TEXT,
    child_views        TEXT,
    plan_revision      BIGINT,
    spoke_with_imposer TEXT
);
INSERT INTO sanctions_v2 (id, lockdown_id, child_id, home_id, opened_at, record, completed_at,
    completed_by, signed_off_at, signed_off_by, sign_off_note, discussed_at, discussed_by,
    child_views)
SELECT id, lockdown_id, child_id, home_id, opened_at, record, completed_at, completed_by,
    signed_off_at, signed_off_by, sign_off_note, discussed_at, discussed_by, child_views
FROM sanctions;

CREATE TABLE obligations_v2 (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    lockdown_id   TEXT REFERENCES lockdowns (id),
    sanction_id   TEXT REFERENCES sanctions_v2 (id),
    child_id      TEXT NOT NULL REFERENCES children (id),
    home_id       TEXT NOT NULL REFERENCES homes (id),
    opened_at     BIGINT NOT NULL,
    due_at        BIGINT NOT NULL,
    closed_at     BIGINT,
    closed_by     TEXT,
    done_by       TEXT,
    how           TEXT,
    done_at       BIGINT,
    note          TEXT,
    plan_revision BIGINT
);
INSERT INTO obligations_v2 (id, kind, lockdown_id, sanction_id, child_id, home_id, opened_at,
    due_at, closed_at, closed_by, done_by, how, done_at, note)
SELECT id, kind, lockdown_id, sanction_id, child_id, home_id, opened_at, due_at, closed_at,
    closed_by, done_by, how, done_at, note
FROM obligations;

DROP TABLE obligations;
DROP TABLE sanctions;
ALTER TABLE sanctions_v2 RENAME TO sanctions;
ALTER TABLE obligations_v2 RENAME TO obligations;
CREATE INDEX sanctions_home ON sanctions (home_id, opened_at);
CREATE INDEX obligations_home ON obligations (home_id, closed_at, due_at);
