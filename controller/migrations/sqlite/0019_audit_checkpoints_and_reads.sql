-- R36: signed checkpoints of the audit trail, and who read which child's records.
--
-- A checkpoint is the controller's Ed25519 signature over (entry sequence number, that entry's
-- hash, how many entries the trail had, when, which key). It is not itself an audited change:
-- it changes no record, and its signature is what makes it trustworthy, not the chain.
CREATE TABLE audit_checkpoints (
    entry_seq  BIGINT NOT NULL,
    entry_hash TEXT NOT NULL,
    entries    BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    key_id     TEXT NOT NULL,
    signature  TEXT NOT NULL,
    PRIMARY KEY (at, entry_seq)
);

-- One row per member of staff, child and kind of record read, as read (subject access
-- requests). Not chained: reads change no record (see ARCHITECTURE.md).
CREATE TABLE audit_reads (
    at       BIGINT NOT NULL,
    staff_id TEXT NOT NULL,
    child_id TEXT NOT NULL,
    what     TEXT NOT NULL
);
CREATE INDEX audit_reads_child ON audit_reads (child_id, at);
