-- Haven's first schema: homes, children, devices, staff, enrollment codes, the audit trail.
-- Times are milliseconds since the Unix epoch (UTC). Plain SQL that PostgreSQL also accepts,
-- so a second backend can share the shape of the data.

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
    last_used_at BIGINT
);

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

CREATE TABLE protected_contacts (
    id        TEXT PRIMARY KEY,
    home_id   TEXT NOT NULL REFERENCES homes (id),
    name      TEXT NOT NULL,
    address   TEXT NOT NULL,
    added_at  BIGINT NOT NULL,
    added_by  TEXT NOT NULL,
    UNIQUE (home_id, address)
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
    policy_changed_at BIGINT NOT NULL DEFAULT 0
);
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
    policy_changed_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX devices_child ON devices (child_id);

CREATE TABLE enrollments (
    code_hash  TEXT PRIMARY KEY,
    child_id   TEXT NOT NULL REFERENCES children (id),
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    device_id  TEXT REFERENCES devices (id)
);

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
