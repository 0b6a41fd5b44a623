//! The record changes the writer makes (see `writer`), each one guarded statement
//! under the write lock: its deadline checked by SQLite's clock and its precondition
//! checked against the current record, in the statement that writes. They run on the
//! writer's own thread, with rusqlite: each statement is a call, not a trip to another
//! thread.

use profilestore_core::error::StoreError;
use profilestore_core::ids::UserId;
use profilestore_core::store::{CommitOutcome, DeleteOutcome, IdempotencyKey, KeyedOutcome, Precondition, Record};
use profilestore_core::time::Deadline;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Params, params, params_from_iter};

use super::errors::rusqlite_failed as failed;
use crate::decode::StoredRecord;

/// Inserts or replaces, but only while SQLite's clock is before `?7`. Run inside
/// `BEGIN IMMEDIATE`, so the clock is read after the write lock is ours.
const PUT_BEFORE: &str = concat!(
    "INSERT INTO profiles (user_id, metadata, image_id, content_type, image_size, updated_at_ms) ",
    "SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE ",
    db_now_ms!(),
    " < ?7 ",
    "ON CONFLICT (user_id) DO UPDATE SET metadata = excluded.metadata, image_id = excluded.image_id, ",
    "content_type = excluded.content_type, image_size = excluded.image_size, updated_at_ms = excluded.updated_at_ms"
);

/// Inserts only while the user has no record, and only while SQLite's clock is before
/// `?7` (`If-None-Match: *`).
const CREATE_BEFORE: &str = concat!(
    "INSERT INTO profiles (user_id, metadata, image_id, content_type, image_size, updated_at_ms) ",
    "SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE ",
    db_now_ms!(),
    " < ?7 ON CONFLICT (user_id) DO NOTHING"
);

/// Replaces the user's record only while there is one naming image `?8` with metadata
/// `?9` (any record when `?8` is NULL), and only while SQLite's clock is before `?7`:
/// the compare-and-set of `If-Match` and of a metadata-only update.
const REPLACE_BEFORE: &str = concat!(
    "UPDATE profiles SET metadata = ?2, image_id = ?3, content_type = ?4, image_size = ?5, updated_at_ms = ?6 ",
    "WHERE user_id = ?1 AND (?8 IS NULL OR (image_id = ?8 AND metadata = ?9)) AND ",
    db_now_ms!(),
    " < ?7"
);

/// Deletes the user's record, but only while it names image `?3` with metadata `?4`
/// (any record when `?3` is NULL) and SQLite's clock is before `?2`.
const DELETE_BEFORE: &str = concat!(
    "DELETE FROM profiles WHERE user_id = ?1 AND (?3 IS NULL OR (image_id = ?3 AND metadata = ?4)) AND ",
    db_now_ms!(),
    " < ?2"
);

/// The live idempotency key `?2` of user `?1`: the record stored under it and its
/// fingerprint.
pub(super) const KEYED_RECORD: &str = concat!(
    "SELECT fingerprint, user_id, metadata, image_id, content_type, image_size, updated_at_ms ",
    "FROM idempotency_keys WHERE user_id = ?1 AND key = ?2 AND expires_at_ms > ",
    db_now_ms!()
);

/// Stores key `?8` with fingerprint `?9` and a copy of the record (`?1` to `?6`), kept
/// for `?10` milliseconds by SQLite's clock (an expired row of the key is replaced).
const STORE_KEY: &str = concat!(
    "INSERT OR REPLACE INTO idempotency_keys (user_id, metadata, image_id, content_type, image_size, ",
    "updated_at_ms, key, fingerprint, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?8, ?9, ",
    db_now_ms!(),
    " + ?10)"
);

/// Removes a few expired keys, so the table does not grow with keys nobody retries.
const PURGE_KEYS: &str = concat!(
    "DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys WHERE expires_at_ms <= ",
    db_now_ms!(),
    " LIMIT 16)"
);

/// Whether SQLite's clock has reached `?1`.
const PAST_DEADLINE: &str = concat!("SELECT ", db_now_ms!(), " >= ?1");

/// Whether the user `?1` has a record.
const HAS_RECORD: &str = "SELECT EXISTS (SELECT 1 FROM profiles WHERE user_id = ?1)";

/// One change the writer makes.
#[derive(Debug)]
pub(super) enum Change {
    /// Insert or replace the record (its image size already checked to fit SQLite) if
    /// the current one meets the precondition.
    Put(Record, i64, Precondition),
    /// Delete the user's record if it meets the precondition.
    Delete(UserId, Precondition),
    /// [`Change::Put`], unless a live key of the user names an earlier write; the key
    /// is stored with the record.
    PutKeyed(Record, i64, Precondition, IdempotencyKey),
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Done {
    Put(CommitOutcome),
    Delete(DeleteOutcome),
    Keyed(KeyedOutcome),
}

impl Done {
    /// The outcome of a change refused because its deadline had passed.
    pub(super) fn deadline_exceeded(change: &Change) -> Done {
        match change {
            Change::Put(..) => Done::Put(CommitOutcome::DeadlineExceeded),
            Change::Delete(..) => Done::Delete(DeleteOutcome::DeadlineExceeded),
            Change::PutKeyed(..) => Done::Keyed(KeyedOutcome::DeadlineExceeded),
        }
    }
}

/// What one change's statement did.
pub(super) enum Applied {
    /// It changed a row: the change's outcome once the batch commits.
    Wrote(Done),
    /// It changed nothing, for a reason final whatever the batch does.
    Refused(Done),
}

/// Runs `change`'s statement under `deadline` in the writer's open transaction.
pub(super) fn apply(tx: &Connection, change: &Change, deadline: &Deadline) -> Result<Applied, StoreError> {
    let deadline_ms = deadline.at().as_millis();
    match change {
        Change::PutKeyed(record, image_size, precondition, key) => {
            if let Some((record, fingerprint)) = keyed_record(tx, &record.user_id, key)? {
                // Answered once the batch commits: the earlier write may be in this very
                // batch, not yet committed.
                return Ok(Applied::Wrote(Done::Keyed(KeyedOutcome::Earlier { record, fingerprint })));
            }
            match put(tx, record, *image_size, precondition, deadline)? {
                Applied::Wrote(_) => {}
                Applied::Refused(Done::Put(outcome)) => return Ok(Applied::Refused(Done::Keyed(outcome.into()))),
                refused @ Applied::Refused(_) => return Ok(refused),
            }
            let mut values = record_write(record, *image_size, deadline);
            values.extend([
                Value::Text(key.key.clone()),
                Value::Text(key.fingerprint.clone()),
                Value::Integer(i64::try_from(key.keep_for.as_millis()).unwrap_or(i64::MAX)),
            ]);
            execute(tx, STORE_KEY, params_from_iter(values), "storing an idempotency key")?;
            execute(tx, PURGE_KEYS, [], "removing expired idempotency keys")?;
            Ok(Applied::Wrote(Done::Keyed(KeyedOutcome::Committed)))
        }
        Change::Put(record, image_size, precondition) => put(tx, record, *image_size, precondition, deadline),
        Change::Delete(user, precondition) => {
            let (image_id, metadata) = expected(precondition);
            // With `Absent`, a record there fails the precondition and none is NotFound:
            // either way nothing is deleted, so no statement deletes.
            if *precondition != Precondition::Absent {
                let params = params![user.as_str(), deadline_ms, image_id, metadata];
                let deleted = execute(tx, DELETE_BEFORE, params, "deleting a profile record")?;
                if deleted > 0 {
                    return Ok(Applied::Wrote(Done::Delete(DeleteOutcome::Deleted)));
                }
            }
            let outcome = if past(tx, deadline_ms)? {
                DeleteOutcome::DeadlineExceeded
            } else if *precondition != Precondition::Any && has_record(tx, user)? {
                DeleteOutcome::PreconditionFailed
            } else {
                DeleteOutcome::NotFound
            };
            Ok(Applied::Refused(Done::Delete(outcome)))
        }
    }
}

/// Inserts or replaces `record` if the current one meets `precondition`, unless the
/// deadline has passed by SQLite's clock.
fn put(
    tx: &Connection,
    record: &Record,
    image_size: i64,
    precondition: &Precondition,
    deadline: &Deadline,
) -> Result<Applied, StoreError> {
    let sql = match precondition {
        Precondition::Any => PUT_BEFORE,
        Precondition::Absent => CREATE_BEFORE,
        Precondition::Present | Precondition::Is { .. } => REPLACE_BEFORE,
    };
    let mut values = record_write(record, image_size, deadline);
    if sql == REPLACE_BEFORE {
        let (image_id, metadata) = expected(precondition);
        values.extend([image_id.map_or(Value::Null, Value::Text), metadata.map_or(Value::Null, Value::Text)]);
    }
    let wrote = execute(tx, sql, params_from_iter(values), "writing a profile record")?;
    if wrote > 0 {
        return Ok(Applied::Wrote(Done::Put(CommitOutcome::Committed)));
    }
    // Unconditioned, only the deadline refuses; else the clock tells which did.
    let late = *precondition == Precondition::Any || past(tx, deadline.at().as_millis())?;
    Ok(Applied::Refused(Done::Put(if late {
        CommitOutcome::DeadlineExceeded
    } else {
        CommitOutcome::PreconditionFailed
    })))
}

/// A guarded record write's seven parameters, in the order the statements take them:
/// user id, metadata, image id, content type, image size, update time, then the
/// deadline (milliseconds since the epoch).
fn record_write(record: &Record, image_size: i64, deadline: &Deadline) -> Vec<Value> {
    vec![
        Value::Text(record.user_id.as_str().to_owned()),
        Value::Text(record.metadata.clone()),
        Value::Text(record.image_id.to_string()),
        Value::Text(record.content_type.clone()),
        Value::Integer(image_size),
        Value::Integer(record.updated_at.as_millis()),
        Value::Integer(deadline.at().as_millis()),
    ]
}

/// The record and fingerprint a live idempotency key of `user` holds.
fn keyed_record(tx: &Connection, user: &UserId, key: &IdempotencyKey) -> Result<Option<(Record, String)>, StoreError> {
    let read = failed("reading an idempotency key");
    let row = tx
        .prepare_cached(KEYED_RECORD)
        .and_then(|mut s| {
            s.query_row(params![user.as_str(), key.key.as_str()], |row| {
                let stored = StoredRecord {
                    user_id: row.get("user_id")?,
                    metadata: row.get("metadata")?,
                    image_id: row.get("image_id")?,
                    content_type: row.get("content_type")?,
                    image_size: row.get("image_size")?,
                    updated_at_ms: row.get("updated_at_ms")?,
                };
                Ok((stored, row.get::<_, String>("fingerprint")?))
            })
            .optional()
        })
        .map_err(read)?;
    row.map(|(stored, fingerprint)| Ok((super::DECODE.stored_record(stored)?, fingerprint))).transpose()
}

/// The image id and metadata a compare-and-set expects, as bound parameters (NULL:
/// any record).
fn expected(precondition: &Precondition) -> (Option<String>, Option<String>) {
    match precondition {
        Precondition::Is { image_id, metadata } => (Some(image_id.to_string()), Some(metadata.clone())),
        _ => (None, None),
    }
}

fn past(tx: &Connection, deadline_ms: i64) -> Result<bool, StoreError> {
    ask(tx, PAST_DEADLINE, [deadline_ms], "reading the database's clock")
}

fn has_record(tx: &Connection, user: &UserId) -> Result<bool, StoreError> {
    ask(tx, HAS_RECORD, [user.as_str()], "reading whether a profile record exists")
}

/// Runs the statement `sql` (prepared once per connection) with `params`: the rows it
/// changed.
fn execute(tx: &Connection, sql: &str, params: impl Params, doing: &'static str) -> Result<usize, StoreError> {
    tx.prepare_cached(sql).and_then(|mut s| s.execute(params)).map_err(failed(doing))
}

/// The one-column, one-row answer of the query `sql` with `params`.
fn ask(tx: &Connection, sql: &str, params: impl Params, doing: &'static str) -> Result<bool, StoreError> {
    tx.prepare_cached(sql).and_then(|mut s| s.query_row(params, |row| row.get(0))).map_err(failed(doing))
}
