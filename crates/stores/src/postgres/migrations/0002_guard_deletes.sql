-- Schema version 2: record deletes are guarded by the deadline at COMMIT too.
--
-- A DELETE whose request has run out of time must not remove a profile: the same
-- deferred trigger that refuses a late insert or update now also refuses a late
-- delete, judged by the database's clock in the COMMIT itself. Rows deleted without
-- the transaction-local deadline setting (an operator's own DELETE) are not checked.
--
-- The schema version is also the store protocol's version: a build older than this
-- one refuses to open the database.
CREATE CONSTRAINT TRIGGER profiles_refuse_late_delete
    AFTER DELETE ON profiles
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION profiles_refuse_late_commit();
