-- Schema version 1: profile records, the pairing row, and the commit-time deadline guard.

-- COLLATE "C": user ids compare and sort by their bytes, as in every other backend, so
-- `records_after` pages in the same order whatever the database's default collation.
CREATE TABLE profiles (
    user_id       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    metadata      TEXT   NOT NULL,
    image_id      UUID   NOT NULL,
    content_type  TEXT   NOT NULL,
    image_size    BIGINT NOT NULL CHECK (image_size >= 0),
    updated_at_ms BIGINT NOT NULL
);

-- The cleaner asks "which of these image ids does some record name?" once per page of
-- listed blobs; without this index each question scans every record.
CREATE INDEX profiles_image_id ON profiles (image_id);

-- At most one row: the pairing of this database with its blob store.
CREATE TABLE pairing (
    singleton     SMALLINT NOT NULL PRIMARY KEY CHECK (singleton = 1),
    cluster_id    UUID     NOT NULL,
    timings       JSONB    NOT NULL, -- profilestore_core::settings::Timings
    created_at_ms BIGINT   NOT NULL
);

-- The last word on a record write's deadline, read at COMMIT.
--
-- `put_before` stores its deadline (epoch milliseconds) in the transaction-local setting
-- `profilestore.put_deadline_ms` and guards its INSERT with the same deadline. The guard
-- inside the statement cannot see every wait: an INSERT that finds another
-- transaction's uncommitted row with the same user id waits for it, and when that
-- transaction rolls back the INSERT goes ahead with the clock it read before waiting.
-- This deferred trigger runs inside COMMIT, after every lock wait and every pause of
-- the client between statements, and fails the commit once the database's clock has
-- reached the deadline. Writes that set no deadline (an operator's manual fix) pass.
CREATE FUNCTION profiles_refuse_late_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    deadline_ms TEXT := current_setting('profilestore.put_deadline_ms', true);
BEGIN
    IF deadline_ms IS NOT NULL AND deadline_ms <> ''
       AND extract(epoch FROM clock_timestamp()) * 1000 >= deadline_ms::BIGINT THEN
        RAISE EXCEPTION 'the record write reached its deadline (% ms since the epoch) before it could commit', deadline_ms
            USING ERRCODE = 'PSD01';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER profiles_refuse_late_commit
    AFTER INSERT OR UPDATE ON profiles
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION profiles_refuse_late_commit();
