-- Web filter category lists (WB1, WB4) and each home's own exceptions.
--
-- A list is stored compiled (the names reversed, sorted and front-coded, as devices receive
-- it) as one blob per category and version, not one row per domain: a million names import
-- in one insert and go to a device as the stored bytes. The current version and the one
-- before it are kept, so a device that holds the older one is sent only the change.
CREATE TABLE filter_lists (
    category     TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    domains      INTEGER NOT NULL,
    skipped      INTEGER NOT NULL,
    source       TEXT    NOT NULL,
    licence      TEXT    NOT NULL,
    sha256       TEXT    NOT NULL,
    compiled     BLOB    NOT NULL,
    imported_at  INTEGER NOT NULL,
    imported_by  TEXT    NOT NULL,
    PRIMARY KEY (category, version)
);

-- "allow" lets a site through the category lists for the home's devices; "deny" blocks it.
CREATE TABLE home_web_exceptions (
    home_id   TEXT    NOT NULL REFERENCES homes (id),
    domain    TEXT    NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('allow', 'deny')),
    added_at  INTEGER NOT NULL,
    added_by  TEXT    NOT NULL,
    PRIMARY KEY (home_id, domain)
);
