-- Staff reports of off-duty contact (WB3) and the register of photography approvals (IM4).

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
