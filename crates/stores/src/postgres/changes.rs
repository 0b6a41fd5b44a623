//! The guarded statements of record writes and deletes: each checks the deadline by
//! PostgreSQL's clock and the precondition against the current record in the
//! statement that changes it, and when it changes nothing, tells which refused.

use profilestore_core::error::StoreError;
use profilestore_core::ids::UserId;
use profilestore_core::store::{CommitOutcome, DeleteOutcome, IdempotencyKey, KeyedOutcome, Precondition, Record};
use profilestore_core::time::Timestamp;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};

use super::commit::not_written;
use crate::decode::bind_record_write;

/// Inserts or replaces, but only while the database's clock is before `$7` (see the
/// parent module's docs for why both conditions, and the commit-time trigger, are there).
pub(super) const PUT_BEFORE: &str = "INSERT INTO profiles (user_id, metadata, image_id, content_type, image_size, updated_at_ms) \
     SELECT $1, $2, $3::uuid, $4, $5, $6 \
     WHERE extract(epoch FROM clock_timestamp()) * 1000 < $7::bigint \
     ON CONFLICT (user_id) DO UPDATE SET metadata = excluded.metadata, image_id = excluded.image_id, \
     content_type = excluded.content_type, image_size = excluded.image_size, \
     updated_at_ms = excluded.updated_at_ms \
     WHERE extract(epoch FROM clock_timestamp()) * 1000 < $7::bigint";

/// Inserts only while the user has no record (`If-None-Match: *`), while the clock is
/// before `$7`. A concurrent insert of the same user makes this one do nothing.
const CREATE_BEFORE: &str = "INSERT INTO profiles (user_id, metadata, image_id, content_type, image_size, updated_at_ms) \
     SELECT $1, $2, $3::uuid, $4, $5, $6 \
     WHERE extract(epoch FROM clock_timestamp()) * 1000 < $7::bigint \
     ON CONFLICT (user_id) DO NOTHING";

/// Replaces the user's record only while it names image `$8` with metadata `$9` (any
/// record when `$8` is NULL), while the clock is before `$7`: the compare-and-set of
/// `If-Match` and of a metadata-only update. A row changed by a concurrent commit while this one waited
/// for its lock is checked again in its new version (READ COMMITTED's recheck).
const REPLACE_BEFORE: &str = "UPDATE profiles SET metadata = $2, image_id = $3::uuid, content_type = $4, \
     image_size = $5, updated_at_ms = $6 \
     WHERE user_id = $1 AND ($8::text IS NULL OR (image_id = $8::uuid AND metadata = $9)) \
     AND extract(epoch FROM clock_timestamp()) * 1000 < $7::bigint";

/// Deletes the user's record only while it names image `$3` with metadata `$4` (any
/// record when `$3` is NULL), while the clock is before `$2`.
const DELETE_BEFORE: &str = "DELETE FROM profiles WHERE user_id = $1 \
     AND ($3::text IS NULL OR (image_id = $3::uuid AND metadata = $4)) \
     AND extract(epoch FROM clock_timestamp()) * 1000 < $2::bigint";

/// Claims key `$7` of user `$1` with fingerprint `$8` and a copy of the record (`$2` to
/// `$6`), kept for `$9` milliseconds by the database's clock; an expired row of the key
/// is taken over. A live row claims nothing (no row changed). A concurrent attempt's
/// uncommitted row makes this wait for its commit or rollback.
const CLAIM_KEY: &str = "INSERT INTO idempotency_keys (user_id, metadata, image_id, content_type, image_size, \
     updated_at_ms, key, fingerprint, expires_at_ms) \
     VALUES ($1, $2, $3::uuid, $4, $5, $6, $7, $8, (extract(epoch FROM clock_timestamp()) * 1000)::bigint + $9) \
     ON CONFLICT (user_id, key) DO UPDATE SET metadata = excluded.metadata, image_id = excluded.image_id, \
     content_type = excluded.content_type, image_size = excluded.image_size, \
     updated_at_ms = excluded.updated_at_ms, fingerprint = excluded.fingerprint, \
     expires_at_ms = excluded.expires_at_ms \
     WHERE idempotency_keys.expires_at_ms <= extract(epoch FROM clock_timestamp()) * 1000";

/// The record and fingerprint stored under key `$2` of user `$1`.
const KEYED_RECORD: &str = "SELECT fingerprint, user_id, metadata, image_id::text AS image_id, content_type, \
     image_size, updated_at_ms FROM idempotency_keys WHERE user_id = $1 AND key = $2";

/// The same, only while the key is live (a retry's look before it writes).
pub(super) const LIVE_KEYED_RECORD: &str = "SELECT fingerprint, user_id, metadata, image_id::text AS image_id, \
     content_type, image_size, updated_at_ms FROM idempotency_keys WHERE user_id = $1 AND key = $2 \
     AND expires_at_ms > extract(epoch FROM clock_timestamp()) * 1000";

/// Removes a few expired keys, so the table does not grow with keys nobody retries.
const PURGE_KEYS: &str = "DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys \
     WHERE expires_at_ms <= extract(epoch FROM clock_timestamp()) * 1000 LIMIT 16 FOR UPDATE SKIP LOCKED)";

/// Claims `key` for `record` in the write's transaction, before the record is written:
/// `Some(Earlier)` when a live key names an earlier write (the caller rolls back).
pub(super) async fn claim_key(
    tx: &mut PgConnection,
    record: &Record,
    image_size: i64,
    key: &IdempotencyKey,
) -> Result<Option<KeyedOutcome>, StoreError> {
    let claimed = sqlx::query(CLAIM_KEY)
        .bind(record.user_id.as_str())
        .bind(record.metadata.as_str())
        .bind(record.image_id.to_string())
        .bind(record.content_type.as_str())
        .bind(image_size)
        .bind(record.updated_at.as_millis())
        .bind(key.key.as_str())
        .bind(key.fingerprint.as_str())
        .bind(i64::try_from(key.keep_for.as_millis()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(not_written("claiming an idempotency key"))?;
    if claimed.rows_affected() > 0 {
        sqlx::query(PURGE_KEYS).execute(&mut *tx).await.map_err(not_written("removing expired idempotency keys"))?;
        return Ok(None);
    }
    let row = sqlx::query(KEYED_RECORD)
        .bind(record.user_id.as_str())
        .bind(key.key.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(not_written("reading an idempotency key"))?;
    let (record, fingerprint) = super::DECODE.keyed_record(&row, not_written("reading an idempotency key"))?;
    Ok(Some(KeyedOutcome::Earlier { record, fingerprint }))
}

/// The statement that writes `record` under `precondition` and `deadline`, bound.
pub(super) fn record_write<'q>(
    record: &Record,
    image_size: i64,
    precondition: &Precondition,
    deadline: Timestamp,
) -> Query<'q, Postgres, PgArguments> {
    let sql = match precondition {
        Precondition::Any => PUT_BEFORE,
        Precondition::Absent => CREATE_BEFORE,
        Precondition::Present | Precondition::Is { .. } => REPLACE_BEFORE,
    };
    let statement = bind_record_write(sqlx::query(sql), record, image_size, deadline);
    if sql == REPLACE_BEFORE {
        let (image_id, metadata) = expected(precondition);
        statement.bind(image_id).bind(metadata)
    } else {
        statement
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

/// The statement that deletes `user`'s record under `precondition` and `deadline`,
/// bound; `None` for [`Precondition::Absent`], which no delete can meet.
pub(super) fn record_delete<'q>(
    user: &UserId,
    precondition: &Precondition,
    deadline: Timestamp,
) -> Option<Query<'q, Postgres, PgArguments>> {
    if *precondition == Precondition::Absent {
        return None;
    }
    let (image_id, metadata) = expected(precondition);
    Some(
        sqlx::query(DELETE_BEFORE)
            .bind(user.as_str().to_owned())
            .bind(deadline.as_millis())
            .bind(image_id)
            .bind(metadata),
    )
}

/// Why a write that changed no row wrote nothing.
pub(super) async fn refused_put(
    tx: &mut PgConnection,
    precondition: &Precondition,
    deadline: Timestamp,
) -> Result<CommitOutcome, StoreError> {
    // Unconditioned, only the deadline refuses; else the clock tells which did.
    Ok(if *precondition == Precondition::Any || past(tx, deadline).await? {
        CommitOutcome::DeadlineExceeded
    } else {
        CommitOutcome::PreconditionFailed
    })
}

/// Why a delete that changed no row deleted nothing.
pub(super) async fn refused_delete(
    tx: &mut PgConnection,
    user: &UserId,
    precondition: &Precondition,
    deadline: Timestamp,
) -> Result<DeleteOutcome, StoreError> {
    Ok(if past(tx, deadline).await? {
        DeleteOutcome::DeadlineExceeded
    } else if *precondition != Precondition::Any && has_record(tx, user).await? {
        DeleteOutcome::PreconditionFailed
    } else {
        DeleteOutcome::NotFound
    })
}

async fn past(tx: &mut PgConnection, deadline: Timestamp) -> Result<bool, StoreError> {
    sqlx::query_scalar("SELECT extract(epoch FROM clock_timestamp()) * 1000 >= $1::bigint")
        .bind(deadline.as_millis())
        .fetch_one(&mut *tx)
        .await
        .map_err(not_written("reading the database's clock"))
}

async fn has_record(tx: &mut PgConnection, user: &UserId) -> Result<bool, StoreError> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM profiles WHERE user_id = $1)")
        .bind(user.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(not_written("reading whether a profile record exists"))
}
