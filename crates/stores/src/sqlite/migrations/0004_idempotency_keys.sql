-- Schema version 4: idempotency keys (docs/security.md, conditional and idempotent
-- writes).
--
-- A keyed write stores its key here in the transaction that commits its record, with a
-- copy of that record: a retry with the same key finds it and answers the first
-- write's record instead of writing again, whatever happened to the profile since.
-- `fingerprint` identifies the request the key was sent with (a reuse of the key for
-- another request is refused). Rows expire by this database's clock and are removed
-- a few at a time by later keyed writes.
CREATE TABLE idempotency_keys (
    user_id       TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    metadata      TEXT    NOT NULL,
    image_id      TEXT    NOT NULL,
    content_type  TEXT    NOT NULL,
    image_size    INTEGER NOT NULL CHECK (image_size >= 0),
    updated_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
) STRICT;

CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at_ms);
