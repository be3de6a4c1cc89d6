-- Emergency action (RM3, GD4, D6, D8) and what the home owes after it (RM4, RM5, RM6):
-- lockdowns, the Regulation 35 sanction records they open, and the obligations with deadlines.
-- Nothing is deleted: a lockdown is lifted (lifted_at set), an obligation is closed.

CREATE TABLE lockdowns (
    id              TEXT PRIMARY KEY,
    target_kind     TEXT NOT NULL CHECK (target_kind IN ('home', 'child', 'device')),
    home_id         TEXT NOT NULL REFERENCES homes (id),
    child_id        TEXT REFERENCES children (id),
    device_id       TEXT REFERENCES devices (id),
    reason          TEXT NOT NULL,
    -- Comma-separated: calls, messages, web, camera, apps.
    channels        TEXT NOT NULL,
    note            TEXT NOT NULL,
    until_at        BIGINT,
    review_at       BIGINT,
    ofsted_advice   TEXT,
    started_at      BIGINT NOT NULL,
    started_by      TEXT NOT NULL,
    started_by_name TEXT NOT NULL,
    policy_version  BIGINT NOT NULL,
    lifted_at       BIGINT,
    lifted_by       TEXT,
    lift_note       TEXT,
    lifted_version  BIGINT
);
CREATE INDEX lockdowns_home ON lockdowns (home_id, lifted_at);

CREATE TABLE sanctions (
    id             TEXT PRIMARY KEY,
    lockdown_id    TEXT NOT NULL REFERENCES lockdowns (id),
    child_id       TEXT NOT NULL REFERENCES children (id),
    home_id        TEXT NOT NULL REFERENCES homes (id),
    opened_at      BIGINT NOT NULL,
    -- The Regulation 35 record, as the JSON of the domain's SanctionRecord.
    record         TEXT NOT NULL,
    completed_at   BIGINT,
    completed_by   TEXT,
    signed_off_at  BIGINT,
    signed_off_by  TEXT,
    sign_off_note  TEXT,
    discussed_at   BIGINT,
    discussed_by   TEXT,
    child_views    TEXT
);
CREATE INDEX sanctions_home ON sanctions (home_id, opened_at);

CREATE TABLE obligations (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    lockdown_id  TEXT NOT NULL REFERENCES lockdowns (id),
    sanction_id  TEXT REFERENCES sanctions (id),
    child_id     TEXT NOT NULL REFERENCES children (id),
    home_id      TEXT NOT NULL REFERENCES homes (id),
    opened_at    BIGINT NOT NULL,
    due_at       BIGINT NOT NULL,
    closed_at    BIGINT,
    closed_by    TEXT,
    -- For a notification: who told the social worker, how and when.
    done_by      TEXT,
    how          TEXT,
    done_at      BIGINT,
    note         TEXT
);
CREATE INDEX obligations_home ON obligations (home_id, closed_at, due_at);
