-- Requests and views a child sends from their own device (Regulation 7), and staff answers.
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
