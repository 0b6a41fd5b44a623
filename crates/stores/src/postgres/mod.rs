//! [`PostgresMetadataStore`]: profile records in PostgreSQL, for many servers and
//! cleaners sharing one database.
//!
//! Every method is one short transaction on the primary (opening refuses a standby, and
//! so does every new pooled connection), under PostgreSQL's default read-committed
//! isolation: each statement sees everything committed before it started, never an
//! older snapshot.
//!
//! # How a record write keeps its deadline
//!
//! [`put_before`](MetadataStore::put_before) runs one transaction:
//!
//! 1. `set_config(..., true)` (transaction-local): `statement_timeout` and
//!    `idle_in_transaction_session_timeout` to the caller's statement timeout (so
//!    neither a slow statement nor a frozen caller holds the user's row lock for longer
//!    than the request had left), and `profilestore.put_deadline_ms` to the deadline;
//! 2. `INSERT ... SELECT ... WHERE clock_timestamp() < deadline ON CONFLICT DO UPDATE
//!    ... WHERE clock_timestamp() < deadline`; no row affected means the deadline had
//!    passed;
//! 3. `COMMIT`, during which a deferred constraint trigger checks the deadline once more
//!    and fails the commit when it has passed.
//!
//! Why three checks, all against `clock_timestamp()` (the clock at the moment it is
//! read; `now()` is frozen at the transaction's start, before any wait): the `SELECT`'s
//! condition is read before the INSERT looks for a conflicting row, so it can be
//! followed by a lock wait. When the user's row exists and another transaction holds
//! it, the `DO UPDATE`'s condition is read after that wait, with the row locked. But
//! when the conflicting row is another transaction's *uncommitted insert* (or a delete
//! of the existing row) the INSERT waits for that transaction and then, if the row is
//! gone, inserts without reading the clock again. Taking a lock first (`SELECT ... FOR
//! UPDATE` finds no row to lock; an advisory lock only binds writers that take it too)
//! does not close that gap for every writer. The commit-time trigger does, and also
//! covers a pause of this process between the INSERT and its COMMIT: the deadline is
//! judged by the database's clock after every wait, in the COMMIT itself.
//!
//! # Abandoning a write
//!
//! The whole call is bounded by `tokio::time::timeout(statement_timeout)`. When that
//! strikes, the future is dropped mid-transaction. sqlx does not cancel the statement
//! on the server; it queues a `ROLLBACK` on the connection, and the pool flushes it when
//! the connection comes back, after waiting for the running statement to finish. The
//! server-side `statement_timeout` is what bounds that wait (a lock wait included), so
//! the statement ends by then at the latest, and the `ROLLBACK` that follows means
//! nothing was written, unless `COMMIT` had already been sent: then the outcome is
//! unknown, and the error says so.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use profilestore_core::error::{StoreError, StoreErrorKind};
use profilestore_core::ids::{ImageId, UserId};
use profilestore_core::settings::Timings;
use profilestore_core::store::{
    CommitOutcome, DeleteOutcome, IdempotencyKey, KeyedOutcome, MetadataStore, Pairing, Precondition, Record,
    SupersededClaim, SweepMarks,
};
use profilestore_core::time::{Deadline, Timestamp};
use sqlx::PgPool;

use crate::open::{OpenError, OpenMode, redact_url};

/// SQL for the database's clock in whole milliseconds since the Unix epoch (rounded
/// down), read when evaluated, not at the transaction's start. For timestamps we
/// record; deadlines are compared with the unrounded clock.
macro_rules! db_now_ms {
    () => {
        "CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT)"
    };
}

/// The columns `Decoder::record` reads, in SQL.
macro_rules! record_columns {
    () => {
        "user_id, metadata, image_id::text AS image_id, content_type, image_size, updated_at_ms"
    };
}

mod changes;
mod cleaner_state;
mod commit;
mod errors;
mod guard;
mod pool;
mod schema;
#[cfg(test)]
mod tests;

use crate::decode::Decoder;
use commit::{commit_guarded, not_written, roll_back_unchanged};
use errors::{corrupt, failed};

const DECODE: Decoder = Decoder { backend: "PostgreSQL" };

/// The advisory lock that orders guarded writes and cleaner queries (shared) against
/// changes of the cluster's timings (exclusive): a change waits for the writes in
/// flight, and whatever runs after it sees it. The value spells "pstiming".
const TIMINGS_LOCK: i64 = 0x7073_7469_6d69_6e67;

/// One query for any number of ids: they travel as one `text[]` parameter, cast to
/// `uuid[]` by the server, and the `image_id` index is probed once per element.
const REFERENCED: &str = "SELECT DISTINCT image_id::text FROM profiles WHERE image_id = ANY($1::uuid[])";

const READ_PAIRING: &str =
    "SELECT cluster_id::text AS cluster_id, timings::text AS timings FROM pairing WHERE singleton = 1";

/// How the store connects; [`Default`] suits a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresSettings {
    /// The most connections the pool opens at once.
    pub max_connections: u32,
    /// How long opening waits for its first connection before failing as unavailable.
    pub connect_timeout: Duration,
    /// How long a call waits for a pooled connection (including connecting a new one,
    /// which sqlx retries while the server refuses) before failing as unavailable.
    pub acquire_timeout: Duration,
}

impl Default for PostgresSettings {
    /// 16 connections, 5 s to connect, 5 s to get a pooled connection.
    fn default() -> Self {
        PostgresSettings {
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Profile records and the pairing in a PostgreSQL database.
///
/// Promises: every [`MetadataStore`] contract, with each method one short transaction
/// on the primary; `put_before`'s deadline judged by the database's own clock after
/// every lock wait (see the module docs); user ids ordered by their bytes.
#[derive(Debug, Clone)]
pub struct PostgresMetadataStore {
    pool: PgPool,
    location: String,
    /// The timings this process runs under, once bound (see `run_under_timings`).
    timings: Arc<RwLock<Option<Timings>>>,
}

/// Opens the PostgreSQL database at `url` (`redacted` is its printable form, used in
/// every message) with [`PostgresSettings::default`]; the store behind a trait object.
pub async fn open(url: &str, redacted: String, mode: OpenMode) -> Result<Arc<dyn MetadataStore>, OpenError> {
    let store = PostgresMetadataStore::connect(url, redacted, mode, PostgresSettings::default()).await?;
    Ok(Arc::new(store))
}

impl PostgresMetadataStore {
    /// Opens the database at `url` (`postgres://user:password@host:port/db?...`, as
    /// sqlx reads it) with [`PostgresSettings::default`].
    ///
    /// [`OpenMode::Migrate`] creates the schema in an empty database and applies
    /// pending migrations; many processes may do so at once. [`OpenMode::Existing`]
    /// requires the schema at this build's version and changes nothing. Either mode
    /// refuses a schema newer than this build, and a server that is a standby. Errors
    /// name the URL with its credentials redacted.
    pub async fn open(url: &str, mode: OpenMode) -> Result<Self, OpenError> {
        Self::open_with(url, mode, PostgresSettings::default()).await
    }

    /// [`open`](Self::open) with explicit connection settings.
    pub async fn open_with(url: &str, mode: OpenMode, settings: PostgresSettings) -> Result<Self, OpenError> {
        Self::connect(url, redact_url(url), mode, settings).await
    }

    async fn connect(
        url: &str,
        location: String,
        mode: OpenMode,
        settings: PostgresSettings,
    ) -> Result<Self, OpenError> {
        let pool = pool::connect(url, &location, mode, &settings).await?;
        Ok(PostgresMetadataStore { pool, location, timings: Arc::default() })
    }

    /// The database's URL with credentials redacted, as used in messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Closes every connection, waiting for statements in flight. Later calls fail as
    /// [`Unavailable`](StoreErrorKind::Unavailable).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A guarded record write, keyed or not (see `put_keyed_before`): the key's row is
    /// claimed first in the transaction, so a concurrent attempt with the same key waits
    /// for this one's commit or rollback.
    async fn put_guarded(
        &self,
        record: &Record,
        precondition: &Precondition,
        key: Option<&IdempotencyKey>,
        deadline: &Deadline,
    ) -> Result<KeyedOutcome, StoreError> {
        if deadline.passed() {
            return Ok(KeyedOutcome::DeadlineExceeded);
        }
        let image_size = i64::try_from(record.image_size).map_err(|_| {
            corrupt(format!("image size {} does not fit a BIGINT; nothing was written", record.image_size))
        })?;
        // Set just before COMMIT is sent: from then on a timeout cannot tell whether
        // the commit happened.
        let commit_sent = AtomicBool::new(false);
        let attempt = async {
            let Some(mut tx) = self.begin_guarded(deadline).await? else {
                return Ok(KeyedOutcome::DeadlineExceeded);
            };
            if let Some(key) = key
                && let Some(earlier) = changes::claim_key(&mut tx, record, image_size, key).await?
            {
                roll_back_unchanged(tx).await;
                return Ok(earlier);
            }
            let done = changes::record_write(record, image_size, precondition, deadline.at())
                .execute(&mut *tx)
                .await
                .map_err(not_written("writing a profile record"))?;
            if done.rows_affected() == 0 {
                let refused = changes::refused_put(&mut tx, precondition, deadline.at()).await?;
                roll_back_unchanged(tx).await;
                return Ok(refused.into());
            }
            #[cfg(feature = "failpoints")]
            if crate::failpoint::take_park_before_commit() {
                // A frozen process: the commit survives the caller's timeouts.
                commit_sent.store(true, std::sync::atomic::Ordering::SeqCst);
                let parked = tokio::spawn({
                    let (deadline, pool) = (deadline.clone(), self.pool.clone());
                    async move {
                        crate::failpoint::park().await;
                        let committed = commit_guarded(&pool, tx, &deadline, &AtomicBool::new(false)).await;
                        tracing::warn!(outcome = ?committed, "failpoint: the parked commit finished");
                        committed
                    }
                });
                let committed = parked.await.map_err(|e| StoreError::unavailable(format!("parked commit: {e}")))?;
                return Ok(if committed? { KeyedOutcome::Committed } else { KeyedOutcome::DeadlineExceeded });
            }
            let committed = commit_guarded(&self.pool, tx, deadline, &commit_sent).await?;
            Ok(if committed { KeyedOutcome::Committed } else { KeyedOutcome::DeadlineExceeded })
        };
        // On timeout, dropping the transaction queued its ROLLBACK behind the running
        // statement, which the server-side statement timeout ends (see the module docs).
        DECODE.within_request(deadline, &commit_sent, attempt).await
    }

    /// The pool, for this module's tests that plant rows no method would write.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait::async_trait]
impl MetadataStore for PostgresMetadataStore {
    async fn get(&self, user: &UserId) -> Result<Option<Record>, StoreError> {
        let sql = concat!("SELECT ", record_columns!(), " FROM profiles WHERE user_id = $1");
        let row = sqlx::query(sql)
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("reading a profile record"))?;
        row.as_ref().map(|r| DECODE.record(r, failed("reading a profile record"))).transpose()
    }

    async fn put_if_before(
        &self,
        record: &Record,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<CommitOutcome, StoreError> {
        match self.put_guarded(record, precondition, None, deadline).await? {
            KeyedOutcome::Committed => Ok(CommitOutcome::Committed),
            KeyedOutcome::DeadlineExceeded => Ok(CommitOutcome::DeadlineExceeded),
            KeyedOutcome::PreconditionFailed => Ok(CommitOutcome::PreconditionFailed),
            KeyedOutcome::Earlier { .. } => Err(corrupt("an unkeyed write found an earlier keyed write")),
        }
    }

    async fn put_keyed_before(
        &self,
        record: &Record,
        precondition: &Precondition,
        key: &IdempotencyKey,
        deadline: &Deadline,
    ) -> Result<KeyedOutcome, StoreError> {
        self.put_guarded(record, precondition, Some(key), deadline).await
    }

    async fn keyed_record(&self, user: &UserId, key: &str) -> Result<Option<(Record, String)>, StoreError> {
        let row = sqlx::query(changes::LIVE_KEYED_RECORD)
            .bind(user.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("reading an idempotency key"))?;
        row.map(|row| DECODE.keyed_record(&row, failed("reading an idempotency key"))).transpose()
    }

    async fn delete_if_before(
        &self,
        user: &UserId,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<DeleteOutcome, StoreError> {
        if deadline.passed() {
            return Ok(DeleteOutcome::DeadlineExceeded);
        }
        let commit_sent = AtomicBool::new(false);
        let attempt = async {
            let Some(mut tx) = self.begin_guarded(deadline).await? else {
                return Ok(DeleteOutcome::DeadlineExceeded);
            };
            let deleted = match changes::record_delete(user, precondition, deadline.at()) {
                Some(statement) => {
                    let done = statement.execute(&mut *tx).await.map_err(not_written("deleting a profile record"))?;
                    done.rows_affected() > 0
                }
                None => false,
            };
            if !deleted {
                let refused = changes::refused_delete(&mut tx, user, precondition, deadline.at()).await?;
                roll_back_unchanged(tx).await;
                return Ok(refused);
            }
            let committed = commit_guarded(&self.pool, tx, deadline, &commit_sent).await?;
            Ok(if committed { DeleteOutcome::Deleted } else { DeleteOutcome::DeadlineExceeded })
        };
        DECODE.within_request(deadline, &commit_sent, attempt).await
    }

    async fn names_image(&self, image_id: &ImageId) -> Result<bool, StoreError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM profiles WHERE image_id = $1::uuid)")
            .bind(image_id.to_string())
            .fetch_one(&self.pool)
            .await
            .map_err(failed("asking whether a record names an image"))
    }

    async fn referenced(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let wanted: HashSet<&ImageId> = ids.iter().collect();
        let wanted: Vec<String> = wanted.into_iter().map(ImageId::to_string).collect();
        let mut tx = self.begin_cleaner_query().await?;
        let found: Vec<String> = sqlx::query_scalar(REFERENCED)
            .bind(wanted)
            .fetch_all(&mut *tx)
            .await
            .map_err(failed("asking which images are referenced"))?;
        tx.commit().await.map_err(failed("ending the referenced query's transaction"))?;
        found.iter().map(|id| DECODE.image_id(id)).collect()
    }

    async fn claim_superseded(&self, delete_delay: Duration, limit: usize) -> Result<SupersededClaim, StoreError> {
        self.claim_superseded_here(delete_delay, limit).await
    }

    async fn forget_superseded(&self, ids: &[ImageId]) -> Result<u64, StoreError> {
        self.forget_superseded_here(ids).await
    }

    async fn superseded_among(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        self.superseded_among_here(ids).await
    }

    async fn count_superseded(&self) -> Result<u64, StoreError> {
        self.count_superseded_here().await
    }

    async fn sweep_marks(&self) -> Result<SweepMarks, StoreError> {
        self.sweep_marks_here().await
    }

    async fn record_sweep(
        &self,
        horizon: Timestamp,
        full_sweep_started: Option<Timestamp>,
    ) -> Result<SweepMarks, StoreError> {
        self.record_sweep_here(horizon, full_sweep_started).await
    }

    fn run_under_timings(&self, timings: &Timings) {
        *self.timings.write().unwrap_or_else(|p| p.into_inner()) = Some(*timings);
    }

    async fn count_records(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM profiles")
            .fetch_one(&self.pool)
            .await
            .map_err(failed("counting profile records"))?;
        u64::try_from(n).map_err(|_| corrupt(format!("record count {n} is negative")))
    }

    async fn has_records(&self) -> Result<bool, StoreError> {
        let query = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM profiles)").fetch_one(&self.pool);
        query.await.map_err(failed("asking whether any profile record exists"))
    }

    async fn records_after(&self, after: Option<&UserId>, limit: usize) -> Result<Vec<Record>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // `user_id` is COLLATE "C": byte order, the order of `UserId`'s `Ord`; the
        // comparison with `$1` takes the column's collation.
        let rows = match after {
            Some(after) => {
                let sql = concat!(
                    "SELECT ",
                    record_columns!(),
                    " FROM profiles WHERE user_id > $1 ORDER BY user_id LIMIT $2"
                );
                sqlx::query(sql).bind(after.as_str()).bind(limit).fetch_all(&self.pool).await
            }
            None => {
                let sql = concat!("SELECT ", record_columns!(), " FROM profiles ORDER BY user_id LIMIT $1");
                sqlx::query(sql).bind(limit).fetch_all(&self.pool).await
            }
        }
        .map_err(failed("listing profile records"))?;
        rows.iter().map(|r| DECODE.record(r, failed("reading a profile record"))).collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(failed("answering a ping"))?;
        Ok(())
    }

    async fn clock(&self) -> Result<Timestamp, StoreError> {
        let ms: i64 = sqlx::query_scalar(concat!("SELECT ", db_now_ms!()))
            .fetch_one(&self.pool)
            .await
            .map_err(failed("reading the database's clock"))?;
        Ok(Timestamp::from_millis(ms))
    }

    async fn read_pairing(&self) -> Result<Option<Pairing>, StoreError> {
        let row = sqlx::query(READ_PAIRING).fetch_optional(&self.pool).await.map_err(failed("reading the pairing"))?;
        row.as_ref().map(|r| DECODE.pairing(r, failed("reading the pairing"))).transpose()
    }

    async fn create_pairing(&self, pairing: &Pairing) -> Result<Pairing, StoreError> {
        let timings = DECODE.timings_json(&pairing.timings)?;
        let mut tx = self.pool.begin().await.map_err(failed("starting a transaction"))?;
        // A concurrent creator's uncommitted row makes this INSERT wait for it; once it
        // commits, DO NOTHING applies, and the SELECT (a new statement, so a new
        // snapshot under read committed) sees the winner's row.
        sqlx::query(concat!(
            "INSERT INTO pairing (singleton, cluster_id, timings, created_at_ms) VALUES (1, $1::uuid, $2::jsonb, ",
            db_now_ms!(),
            ") ON CONFLICT (singleton) DO NOTHING"
        ))
        .bind(pairing.cluster_id.hyphenated().to_string())
        .bind(timings)
        .execute(&mut *tx)
        .await
        .map_err(failed("storing the pairing"))?;
        let row = sqlx::query(READ_PAIRING).fetch_one(&mut *tx).await.map_err(failed("reading the pairing back"))?;
        let stored = DECODE.pairing(&row, failed("reading the pairing"))?;
        tx.commit().await.map_err(failed("committing the pairing"))?;
        Ok(stored)
    }

    async fn update_timings(&self, cluster_id: uuid::Uuid, timings: &Timings) -> Result<(), StoreError> {
        // Exclusive: waits for every guarded write and cleaner query in flight, and
        // everything after it sees the new timings.
        let mut tx = self.pool.begin().await.map_err(failed("starting a transaction"))?;
        // A commit stuck in flight must not queue this (and every write behind it)
        // for ever: give up after a while and say so.
        sqlx::query("SET LOCAL lock_timeout = '30s'")
            .execute(&mut *tx)
            .await
            .map_err(failed("bounding the lock wait"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(TIMINGS_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(failed("taking the timings lock (waiting for the writes in flight)"))?;
        let done = sqlx::query("UPDATE pairing SET timings = $1::jsonb WHERE singleton = 1 AND cluster_id = $2::uuid")
            .bind(DECODE.timings_json(timings)?)
            .bind(cluster_id.hyphenated().to_string())
            .execute(&mut *tx)
            .await
            .map_err(failed("updating the timings"))?;
        tx.commit().await.map_err(failed("committing the timings"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::new(
                StoreErrorKind::Misconfigured,
                format!("PostgreSQL: the database holds no pairing with cluster id {cluster_id}"),
            ));
        }
        Ok(())
    }
}
