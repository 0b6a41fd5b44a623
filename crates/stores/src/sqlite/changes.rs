//! The record changes the writer makes (see `writer`), each one guarded statement
//! under the write lock: its deadline checked by SQLite's clock and its precondition
//! checked against the current record, in the statement that writes.

use profilestore_core::error::StoreError;
use profilestore_core::ids::UserId;
use profilestore_core::store::{CommitOutcome, DeleteOutcome, Precondition, Record};
use profilestore_core::time::Deadline;
use sqlx::SqliteConnection;

use super::errors::failed;
use crate::decode::bind_record_write;

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
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Done {
    Put(CommitOutcome),
    Delete(DeleteOutcome),
}

impl Done {
    /// The outcome of a change refused because its deadline had passed.
    pub(super) fn deadline_exceeded(change: &Change) -> Done {
        match change {
            Change::Put(..) => Done::Put(CommitOutcome::DeadlineExceeded),
            Change::Delete(..) => Done::Delete(DeleteOutcome::DeadlineExceeded),
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
pub(super) async fn apply(
    tx: &mut SqliteConnection,
    change: &Change,
    deadline: &Deadline,
) -> Result<Applied, StoreError> {
    let deadline_ms = deadline.at().as_millis();
    match change {
        Change::Put(record, image_size, precondition) => {
            let sql = match precondition {
                Precondition::Any => PUT_BEFORE,
                Precondition::Absent => CREATE_BEFORE,
                Precondition::Present | Precondition::Is { .. } => REPLACE_BEFORE,
            };
            let mut statement = bind_record_write(sqlx::query(sql), record, *image_size, deadline.at());
            if sql == REPLACE_BEFORE {
                let (image_id, metadata) = expected(precondition);
                statement = statement.bind(image_id).bind(metadata);
            }
            let done = statement.execute(&mut *tx).await.map_err(failed("writing a profile record"))?;
            if done.rows_affected() > 0 {
                return Ok(Applied::Wrote(Done::Put(CommitOutcome::Committed)));
            }
            // Unconditioned, only the deadline refuses; else the clock tells which did.
            let late = *precondition == Precondition::Any || past(tx, deadline_ms).await?;
            Ok(Applied::Refused(Done::Put(if late {
                CommitOutcome::DeadlineExceeded
            } else {
                CommitOutcome::PreconditionFailed
            })))
        }
        Change::Delete(user, precondition) => {
            let (image_id, metadata) = expected(precondition);
            // With `Absent`, a record there fails the precondition and none is NotFound:
            // either way nothing is deleted, so no statement deletes.
            if *precondition != Precondition::Absent {
                let done = sqlx::query(DELETE_BEFORE)
                    .bind(user.as_str())
                    .bind(deadline_ms)
                    .bind(image_id)
                    .bind(metadata)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("deleting a profile record"))?;
                if done.rows_affected() > 0 {
                    return Ok(Applied::Wrote(Done::Delete(DeleteOutcome::Deleted)));
                }
            }
            let outcome = if past(tx, deadline_ms).await? {
                DeleteOutcome::DeadlineExceeded
            } else if *precondition != Precondition::Any && has_record(tx, user).await? {
                DeleteOutcome::PreconditionFailed
            } else {
                DeleteOutcome::NotFound
            };
            Ok(Applied::Refused(Done::Delete(outcome)))
        }
    }
}

/// The image id and metadata a compare-and-set expects, as bound parameters (NULL:
/// any record).
fn expected(precondition: &Precondition) -> (Option<String>, Option<String>) {
    match precondition {
        Precondition::Is { image_id, metadata } => (Some(image_id.to_string()), Some(metadata.clone())),
        _ => (None, None),
    }
}

async fn past(tx: &mut SqliteConnection, deadline_ms: i64) -> Result<bool, StoreError> {
    sqlx::query_scalar(PAST_DEADLINE)
        .bind(deadline_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(failed("reading the database's clock"))
}

async fn has_record(tx: &mut SqliteConnection, user: &UserId) -> Result<bool, StoreError> {
    sqlx::query_scalar(HAS_RECORD)
        .bind(user.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(failed("reading whether a profile record exists"))
}
