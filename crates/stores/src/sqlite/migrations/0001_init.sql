-- Schema version 1: profile records and the pairing row.
--
-- STRICT tables: SQLite then refuses values of the wrong type instead of storing them,
-- so a row can only be unreadable through outside tampering (which reads report as
-- corrupt data, never as a panic).

CREATE TABLE profiles (
    user_id       TEXT    NOT NULL PRIMARY KEY,
    metadata      TEXT    NOT NULL,
    image_id      TEXT    NOT NULL,
    content_type  TEXT    NOT NULL,
    image_size    INTEGER NOT NULL CHECK (image_size >= 0),
    updated_at_ms INTEGER NOT NULL
) STRICT;

-- The cleaner asks "which of these image ids does some record name?" once per page of
-- listed blobs; without this index each question scans every record.
CREATE INDEX profiles_image_id ON profiles (image_id);

-- At most one row: the pairing of this database with its blob store.
CREATE TABLE pairing (
    singleton     INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    cluster_id    TEXT    NOT NULL,
    timings       TEXT    NOT NULL, -- JSON of profilestore_core::settings::Timings
    created_at_ms INTEGER NOT NULL
) STRICT;
