-- Schema version 3: incremental cleaning (docs/incremental-cleaning.md).
--
-- The superseded-image queue: the image a record named before a write replaced it or
-- a delete removed it. A row trigger fills it inside the statement that changes the
-- record (no extra round trip), so an entry commits exactly when its change does, and
-- an operator's own UPDATE or DELETE queues too. `first_seen_ms` stays NULL until a
-- cleaner first reads the entry: the delete delay starts there, by this database's
-- clock. A re-queued id (named again, then replaced again) starts its delay over.
CREATE TABLE superseded_images (
    image_id      UUID   NOT NULL PRIMARY KEY,
    first_seen_ms BIGINT
);

CREATE INDEX superseded_images_first_seen ON superseded_images (first_seen_ms);

CREATE FUNCTION profiles_queue_superseded_image() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.image_id IS DISTINCT FROM NEW.image_id THEN
        INSERT INTO superseded_images (image_id, first_seen_ms) VALUES (OLD.image_id, NULL)
            ON CONFLICT (image_id) DO UPDATE SET first_seen_ms = NULL;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER profiles_queue_superseded_image
    AFTER UPDATE OF image_id OR DELETE ON profiles
    FOR EACH ROW EXECUTE FUNCTION profiles_queue_superseded_image();

-- What completed cleaner cycles proved: every blob of an image minted at or before
-- `listing_horizon_ms` was listed old enough; the last full sweep started at
-- `last_full_sweep_ms`. Both only move forward.
CREATE TABLE sweep_marks (
    singleton          SMALLINT NOT NULL PRIMARY KEY CHECK (singleton = 1),
    listing_horizon_ms BIGINT,
    last_full_sweep_ms BIGINT
);

INSERT INTO sweep_marks (singleton) VALUES (1);
