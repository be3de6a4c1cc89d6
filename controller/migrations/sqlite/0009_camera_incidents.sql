-- Camera incidents (IM2): each puts the child's camera arrangement into "review required"
-- until a manager makes a new plan revision.
CREATE TABLE camera_incidents (
    id                      TEXT PRIMARY KEY,
    child_id                TEXT NOT NULL REFERENCES children (id),
    recorded_by             TEXT NOT NULL,
    recorded_at             BIGINT NOT NULL,
    what_happened           TEXT NOT NULL,
    images_may_reach_others BOOLEAN NOT NULL
);
CREATE INDEX camera_incidents_child ON camera_incidents (child_id, recorded_at);
