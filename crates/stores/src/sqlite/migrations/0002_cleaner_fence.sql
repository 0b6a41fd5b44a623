-- Schema version 2: the store protocol that keeps "check, then commit" safe.
--
-- The cleaner's "which of these images are referenced" query now runs inside
-- BEGIN IMMEDIATE and bumps this row in the same transaction. Holding the write lock
-- excludes any write whose deadline check passed but whose COMMIT has not landed;
-- writing a row appends frames to the WAL right after its last valid frame, which
-- overwrites any commit frames a killed writer left beyond it, so a later recovery
-- cannot replay that commit after the cleaner saw the row missing.
--
-- A build older than this schema does not take that lock, and refuses to open a
-- database whose schema is newer than it knows: the schema version is the protocol
-- version on SQLite.
CREATE TABLE cleaner_fence (
    singleton  INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    queries    INTEGER NOT NULL
) STRICT;

INSERT INTO cleaner_fence (singleton, queries) VALUES (1, 0);
