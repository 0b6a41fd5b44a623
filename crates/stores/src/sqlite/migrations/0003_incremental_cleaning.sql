-- Schema version 3: incremental cleaning (docs/incremental-cleaning.md).
--
-- The superseded-image queue: the image a record named before a write replaced it or
-- a delete removed it. Triggers fill it inside the very statement that changes the
-- record, so an entry becomes visible exactly when its change does, and an operator's
-- own UPDATE or DELETE queues too. `first_seen_ms` stays NULL until a cleaner first
-- reads the entry: the delete delay starts there, by this database's clock.
-- A re-queued id (named again, then replaced again) starts its delay over.
CREATE TABLE superseded_images (
    image_id      TEXT    NOT NULL PRIMARY KEY,
    first_seen_ms INTEGER
) STRICT;

CREATE INDEX superseded_images_first_seen ON superseded_images (first_seen_ms);

CREATE TRIGGER profiles_queue_replaced_image
    AFTER UPDATE OF image_id ON profiles
    WHEN OLD.image_id <> NEW.image_id
BEGIN
    INSERT OR REPLACE INTO superseded_images (image_id, first_seen_ms) VALUES (OLD.image_id, NULL);
END;

CREATE TRIGGER profiles_queue_deleted_image
    AFTER DELETE ON profiles
BEGIN
    INSERT OR REPLACE INTO superseded_images (image_id, first_seen_ms) VALUES (OLD.image_id, NULL);
END;

-- What completed cleaner cycles proved: every blob of an image minted at or before
-- `listing_horizon_ms` was listed old enough; the last full sweep started at
-- `last_full_sweep_ms`. Both only move forward.
CREATE TABLE sweep_marks (
    singleton          INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    listing_horizon_ms INTEGER,
    last_full_sweep_ms INTEGER
) STRICT;

INSERT INTO sweep_marks (singleton) VALUES (1);
