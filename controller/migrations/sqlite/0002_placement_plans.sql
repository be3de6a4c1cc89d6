-- Placement plans: risk assessments and the communication section's numbered revisions.
-- Each is kept whole as the JSON document staff recorded (the domain's shape), never edited
-- or deleted: a change is a new revision with the next number.

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
