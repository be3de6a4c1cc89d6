-- Haven's schema on PostgreSQL: the final schema of migrations/sqlite/0001..0020, translated
-- (integers BIGINT, since the code reads i64; blobs BYTEA; booleans BOOLEAN, as the code binds
-- them). A later SQLite migration needs its PostgreSQL twin here, numbered 0002 onwards.

CREATE TABLE sequences (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO sequences (name, value) VALUES ('policy', 0);
CREATE TABLE staff (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('staff', 'manager', 'admin')),
    token_hash   TEXT NOT NULL UNIQUE,
    token_hint   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT,
    token_expires_at BIGINT);
CREATE TABLE homes (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    name_key         TEXT NOT NULL UNIQUE,
    time_zone        TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    created_by       TEXT NOT NULL,
    policy_version   BIGINT NOT NULL DEFAULT 0,
    policy_changed_at BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE children (
    id                TEXT PRIMARY KEY,
    home_id           TEXT NOT NULL REFERENCES homes (id),
    name              TEXT NOT NULL,
    name_key          TEXT NOT NULL,
    date_of_birth     TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    created_by        TEXT NOT NULL,
    policy_version    BIGINT NOT NULL DEFAULT 0,
    policy_changed_at BIGINT NOT NULL DEFAULT 0,
    archived_at BIGINT, archived_by TEXT, archive_reason TEXT);
CREATE INDEX children_home ON children (home_id);
CREATE INDEX children_name ON children (name_key);
CREATE TABLE devices (
    id                TEXT PRIMARY KEY,
    child_id          TEXT NOT NULL REFERENCES children (id),
    cert_fingerprint  TEXT NOT NULL UNIQUE,
    status            TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    enrolled_at       BIGINT NOT NULL,
    last_seen_at      BIGINT,
    inventory         TEXT,
    applied_version   BIGINT NOT NULL DEFAULT 0,
    applied_at        BIGINT,
    apply_error       TEXT,
    revoked_at        BIGINT,
    revoked_by        TEXT,
    revoked_reason    TEXT,
    policy_version    BIGINT NOT NULL DEFAULT 0,
    policy_changed_at BIGINT NOT NULL DEFAULT 0,
    guards TEXT, guards_at BIGINT);
CREATE INDEX devices_child ON devices (child_id);
CREATE TABLE enrollments (
    code_hash  TEXT PRIMARY KEY,
    child_id   TEXT NOT NULL REFERENCES children (id),
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    device_id  TEXT REFERENCES devices (id),
    id TEXT, hint TEXT NOT NULL DEFAULT '', cancelled_at BIGINT, cancelled_by TEXT);
CREATE TABLE violations (
    id           TEXT NOT NULL,
    device_id    TEXT NOT NULL REFERENCES devices (id),
    child_id     TEXT NOT NULL REFERENCES children (id),
    kind         TEXT NOT NULL,
    channel      TEXT NOT NULL,
    subject      TEXT NOT NULL,
    detail       TEXT NOT NULL,
    occurred_at  BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (device_id, id)
);
CREATE INDEX violations_child ON violations (child_id, occurred_at);
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TABLE risk_assessments (
    id         TEXT PRIMARY KEY,
    child_id   TEXT NOT NULL REFERENCES children (id),
    made_at    BIGINT NOT NULL,
    made_by    TEXT NOT NULL,
    document   TEXT NOT NULL
);
CREATE INDEX risk_assessments_child ON risk_assessments (child_id, made_at);
CREATE TABLE plan_revisions (
    child_id   TEXT NOT NULL REFERENCES children (id),
    number     BIGINT NOT NULL,
    made_at    BIGINT NOT NULL,
    made_by    TEXT NOT NULL,
    document   TEXT NOT NULL,
    PRIMARY KEY (child_id, number)
);
CREATE TABLE off_duty_reports (
    id                    TEXT PRIMARY KEY,
    home_id               TEXT NOT NULL REFERENCES homes (id),
    child_id              TEXT REFERENCES children (id),
    reported_by           TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    document              TEXT NOT NULL,
    acknowledged_by       TEXT,
    acknowledged_at       BIGINT,
    manager_note          TEXT
);
CREATE INDEX off_duty_reports_home ON off_duty_reports (home_id, created_at);
CREATE TABLE photography_approvals (
    id           TEXT PRIMARY KEY,
    child_id     TEXT NOT NULL REFERENCES children (id),
    recorded_by  TEXT NOT NULL,
    recorded_at  BIGINT NOT NULL,
    document     TEXT NOT NULL
);
CREATE INDEX photography_approvals_child ON photography_approvals (child_id, recorded_at);
CREATE TABLE child_requests (
    id           TEXT NOT NULL,
    device_id    TEXT NOT NULL REFERENCES devices (id),
    child_id     TEXT NOT NULL REFERENCES children (id),
    text         TEXT NOT NULL,
    made_at      BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    decision     TEXT,
    reason       TEXT,
    answered_by  TEXT,
    answered_at  BIGINT,
    PRIMARY KEY (device_id, id)
);
CREATE INDEX child_requests_child ON child_requests (child_id, received_at);
CREATE TABLE staff_homes (
    staff_id TEXT NOT NULL REFERENCES staff (id),
    home_id  TEXT NOT NULL REFERENCES homes (id),
    added_at BIGINT NOT NULL,
    added_by TEXT NOT NULL,
    PRIMARY KEY (staff_id, home_id)
);
CREATE INDEX staff_homes_by_home ON staff_homes (home_id);
CREATE TABLE protected_contacts (
    id       TEXT PRIMARY KEY,
    home_id  TEXT NOT NULL REFERENCES homes (id),
    child_id TEXT REFERENCES children (id),
    name     TEXT NOT NULL,
    address  TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    added_by TEXT NOT NULL,
    removed_at BIGINT, removed_by TEXT, removed_reason TEXT);
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
CREATE INDEX violations_occurred ON violations (occurred_at);
CREATE INDEX violations_device ON violations (device_id, occurred_at);
CREATE INDEX violations_kind ON violations (kind, occurred_at);
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
    note             TEXT,
    decision TEXT);
CREATE INDEX manager_tasks_open ON manager_tasks (child_id, address_key, closed_at);
CREATE TABLE camera_incidents (
    id                      TEXT PRIMARY KEY,
    child_id                TEXT NOT NULL REFERENCES children (id),
    recorded_by             TEXT NOT NULL,
    recorded_at             BIGINT NOT NULL,
    what_happened           TEXT NOT NULL,
    images_may_reach_others BOOLEAN NOT NULL
);
CREATE INDEX camera_incidents_child ON camera_incidents (child_id, recorded_at);
CREATE TABLE sanctions (
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
CREATE TABLE obligations (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    lockdown_id   TEXT REFERENCES lockdowns (id),
    sanction_id   TEXT REFERENCES sanctions (id),
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
CREATE INDEX sanctions_home ON sanctions (home_id, opened_at);
CREATE INDEX obligations_home ON obligations (home_id, closed_at, due_at);
CREATE UNIQUE INDEX protected_contacts_once
    ON protected_contacts (home_id, COALESCE(child_id, ''), address) WHERE removed_at IS NULL;
CREATE UNIQUE INDEX enrollments_by_id ON enrollments (id);
CREATE TABLE filter_lists (
    category     TEXT    NOT NULL,
    version      BIGINT NOT NULL,
    domains      BIGINT NOT NULL,
    skipped      BIGINT NOT NULL,
    source       TEXT    NOT NULL,
    licence      TEXT    NOT NULL,
    sha256       TEXT    NOT NULL,
    compiled     BYTEA    NOT NULL,
    imported_at  BIGINT NOT NULL,
    imported_by  TEXT    NOT NULL,
    PRIMARY KEY (category, version)
);
CREATE TABLE home_web_exceptions (
    home_id   TEXT    NOT NULL REFERENCES homes (id),
    domain    TEXT    NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('allow', 'deny')),
    added_at  BIGINT NOT NULL,
    added_by  TEXT    NOT NULL,
    PRIMARY KEY (home_id, domain)
);
CREATE TABLE audit_checkpoints (
    entry_seq  BIGINT NOT NULL,
    entry_hash TEXT NOT NULL,
    entries    BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    key_id     TEXT NOT NULL,
    signature  TEXT NOT NULL,
    PRIMARY KEY (at, entry_seq)
);
CREATE TABLE audit_reads (
    at       BIGINT NOT NULL,
    staff_id TEXT NOT NULL,
    child_id TEXT NOT NULL,
    what     TEXT NOT NULL
);
CREATE INDEX audit_reads_child ON audit_reads (child_id, at);
CREATE TABLE device_certificates (
    fingerprint    TEXT PRIMARY KEY,
    device_id      TEXT NOT NULL REFERENCES devices (id),
    issued_at      BIGINT NOT NULL,
    not_after      BIGINT NOT NULL,
    first_used_at  BIGINT,
    superseded_at  BIGINT
);
CREATE INDEX device_certificates_device ON device_certificates (device_id, issued_at);
