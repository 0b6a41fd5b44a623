//! [`SqliteMetadataStore`]: profile records in one SQLite file, the embedded default.
//!
//! Durability and concurrency settings, and why:
//! - WAL journal, so readers (reads, the cleaner's "is it referenced?") never wait for a
//!   writer, and one writer at a time appends;
//! - `synchronous=FULL`: every commit is fsynced before it is acknowledged, so a profile
//!   a client was told is stored survives a power loss (in WAL mode `NORMAL` may lose
//!   the last commits);
//! - a busy timeout, so writers queue on the write lock instead of failing at once;
//! - a small pool: SQLite has one writer anyway, and each connection is a thread.
//!
//! The deadline of [`put_before`](MetadataStore::put_before) is evaluated by SQLite
//! against its own clock (`julianday('now')`, the operating system's wall clock read
//! with millisecond precision, stable within a statement), in the statement that
//! writes, after the write lock is held; under the same lock the request's time on the
//! writer's tick clock (`CLOCK_BOOTTIME`) must not have run out either.
//!
//! # The store protocol: check, then commit
//!
//! A record whose deadline check passed must be visible to the cleaner's
//! [`referenced`](MetadataStore::referenced) query before that query runs, or never
//! later than its deadline, whatever freezes the writer between its check and its
//! `COMMIT`. SQLite guarantees it with its single write lock:
//! - a write holds the lock (`BEGIN IMMEDIATE`) from before its checks until its commit
//!   lands, and the cleaner's query takes the same lock: while a checked write is not
//!   yet committed, the query cannot run, however long the writer is frozen;
//! - a write that takes the lock after the query reads SQLite's clock after it, past
//!   the deadline of every blob old enough to have been listed (the timing rules), and
//!   its tick-clock check covers a wall clock stepped backwards meanwhile;
//! - the query's transaction also writes a row (`cleaner_fence`): its commit appends
//!   frames right after the WAL's last valid frame, overwriting any commit frames of a
//!   writer killed before it updated the WAL index, so no later recovery replays a
//!   commit the cleaner did not see;
//! - a query abandoned at the cleaner's call timeout drops its transaction, whose
//!   queued `ROLLBACK` releases the lock as a writer's does.
//!
//! This holds for processes on one host sharing the file through a local filesystem
//! (SQLite's locks are not reliable over network filesystems). Its cost: a frozen
//! cleaner holds up writers for as long as it holds the lock, so the locked window is
//! one page of ids.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
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
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection, SqlitePool};

use crate::open::{OpenError, OpenMode};

/// SQL for SQLite's clock in integer milliseconds since the Unix epoch.
///
/// `julianday('now')` is SQLite's integer-millisecond clock divided by 86 400 000 as a
/// double; `ROUND` undoes the division's rounding error (about 1e-4 ms), which plain
/// truncation would turn into reading the clock one millisecond early.
macro_rules! db_now_ms {
    () => {
        "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
    };
}

/// The pairing's row, read as text (`Decoder::pairing`).
const PAIRING: &str = "SELECT cluster_id, timings FROM pairing WHERE singleton = 1";

mod changes;
mod cleaner_state;
mod errors;
mod fenced;
#[cfg(test)]
mod group_commit_tests;
#[cfg(test)]
mod protocol_tests;
mod reads;
mod schema;
#[cfg(test)]
mod tests;
mod writer;

use reads::PointReads;

use errors::{corrupt, failed};
use writer::Writer;

use crate::decode::{Decoder, timings_changed};

const DECODE: Decoder = Decoder { backend: "SQLite" };

/// How long a statement waits for SQLite's write lock before failing as busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections in the pool. One writes at a time; the others serve reads meanwhile.
const POOL_SIZE: u32 = 4;

/// `image_size` as SQLite's integer, or why nothing can be written.
fn fits_sqlite(image_size: u64) -> Result<i64, StoreError> {
    i64::try_from(image_size).map_err(|_| {
        StoreError::new(
            StoreErrorKind::Corrupt,
            format!("image size {image_size} does not fit SQLite's integers; nothing was written"),
        )
    })
}

/// Profile records and the pairing in a SQLite database file.
///
/// Promises: every [`MetadataStore`] contract, with each method one short transaction on
/// the file itself (there are no replicas), and every acknowledged write fsynced.
#[derive(Debug, Clone)]
pub struct SqliteMetadataStore {
    pool: SqlitePool,
    /// Every record write and delete goes through it (group commit).
    writer: Writer,
    /// Profile reads, on connections of their own.
    reads: PointReads,
    path: PathBuf,
    /// The timings this process runs under, once bound (see `run_under_timings`).
    timings: Arc<RwLock<Option<Timings>>>,
    /// The cleaner's questions of this process take turns (see `fenced`).
    cleaner_turn: Arc<tokio::sync::Mutex<()>>,
}

impl SqliteMetadataStore {
    /// Opens the database file at `path`.
    ///
    /// [`OpenMode::Migrate`] creates the file (and its parent directories) when missing
    /// and applies any pending schema migrations; concurrent openers are safe.
    /// [`OpenMode::Existing`] requires the file to exist at this build's schema version
    /// and changes nothing. Either mode refuses a schema newer than this build knows.
    pub async fn open(path: impl AsRef<Path>, mode: OpenMode) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        let location = path.display().to_string();
        let store_failed =
            |source: StoreError| OpenError::Store { what: "database", location: location.clone(), source };
        let io_failed = |doing: &str, e: std::io::Error| {
            store_failed(StoreError::new(StoreErrorKind::Misconfigured, format!("{doing}: {e}")))
        };

        let exists = tokio::fs::try_exists(&path).await.map_err(|e| io_failed("checking that it exists", e))?;
        match mode {
            OpenMode::Existing if !exists => {
                return Err(OpenError::Missing { what: "database file", location });
            }
            OpenMode::Migrate if !exists => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    tokio::fs::create_dir_all(parent).await.map_err(|e| io_failed("creating its directory", e))?;
                }
            }
            _ => {}
        }

        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(mode == OpenMode::Migrate)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // WAL is a property of the file: a migrating open sets it once, on a connection
        // of its own; an Existing open only checks it (below), so it never writes to a
        // file it may not change, and pooled connections never ask for the switch.
        if mode == OpenMode::Migrate {
            switch_to_wal(&options).await.map_err(|e| store_failed(errors::store_error("switching to WAL", e)))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A connection to a local file does not go stale the way a network one
            // does, and the ping sqlx would send on every acquire is one more trip to
            // the connection's worker thread on every read.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(|e| store_failed(errors::store_error("connecting", e)))?;

        let checked = match mode {
            OpenMode::Migrate => schema::migrate(&pool, &location).await,
            OpenMode::Existing => match schema::check_current(&pool, &location).await {
                Ok(()) => schema::check_wal(&pool, &location).await,
                Err(e) => Err(e),
            },
        };
        if let Err(e) = checked {
            pool.close().await;
            return Err(e);
        }
        let timings = Arc::default();
        let writer = match Writer::start(path.clone(), BUSY_TIMEOUT, Arc::clone(&timings)).await {
            Ok(writer) => writer,
            Err(e) => {
                pool.close().await;
                return Err(store_failed(e));
            }
        };
        let reads = PointReads::new(path.clone(), BUSY_TIMEOUT, DECODE);
        Ok(SqliteMetadataStore { pool, writer, reads, path, timings, cleaner_turn: Arc::default() })
    }

    /// The database file this store reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many write transactions (each one fsync) this store has committed for its
    /// record writes and deletes: fewer than the changes when concurrent changes
    /// shared a commit.
    pub fn write_transactions(&self) -> u64 {
        self.writer.commits()
    }

    /// Closes every connection, waiting for statements in flight. Later calls fail as
    /// [`Unavailable`](StoreErrorKind::Unavailable).
    pub async fn close(&self) {
        self.writer.close().await;
        self.reads.close().await;
        self.pool.close().await;
    }

    /// Fails with `TimingsChanged` when the stored timings are no longer the ones this
    /// process runs under. Called holding the write lock, which `update_timings` needs
    /// too: no change can land between this check and the cleaner's question.
    pub(super) async fn check_timings(&self, tx: &mut SqliteConnection) -> Result<(), StoreError> {
        let Some(bound) = *self.timings.read().unwrap_or_else(|p| p.into_inner()) else { return Ok(()) };
        match stored_timings(tx).await? {
            Some(stored) if stored != bound => Err(timings_changed(&bound, &stored)),
            _ => Ok(()),
        }
    }

    /// The pool, for this crate's tests that plant rows no method would write.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// The timings the database holds; `None` before the store is paired (opening refuses
/// unpaired stores, so there is nothing to compare with).
async fn stored_timings(tx: &mut SqliteConnection) -> Result<Option<Timings>, StoreError> {
    let row = sqlx::query(PAIRING).fetch_optional(&mut *tx).await.map_err(failed("reading the cluster's timings"))?;
    Ok(row.as_ref().map(|r| DECODE.pairing(r, failed("reading the pairing"))).transpose()?.map(|p| p.timings))
}

/// Puts the database file into WAL mode (creating it when `options` say so), retrying
/// while another process holds the lock the switch needs.
///
/// Why retry: the switch takes an exclusive lock that SQLite's busy timeout does not
/// wait for, so two processes creating the same file at once would otherwise see one
/// fail with "database is locked". Once the file is in WAL mode, asking again is a
/// read that needs no such lock.
async fn switch_to_wal(options: &SqliteConnectOptions) -> Result<(), sqlx::Error> {
    const PAUSE: Duration = Duration::from_millis(20);
    let attempts = BUSY_TIMEOUT.as_millis() / PAUSE.as_millis();
    let options = options.clone().journal_mode(SqliteJournalMode::Wal);
    let mut attempt = 0;
    loop {
        match SqliteConnection::connect_with(&options).await {
            Ok(conn) => return conn.close().await,
            Err(e) if errors::is_busy(&e) && attempt < attempts => {
                attempt += 1;
                tokio::time::sleep(PAUSE).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[async_trait::async_trait]
impl MetadataStore for SqliteMetadataStore {
    async fn get(&self, user: &UserId) -> Result<Option<Record>, StoreError> {
        self.reads.get(user).await
    }

    async fn put_if_before(
        &self,
        record: &Record,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<CommitOutcome, StoreError> {
        if deadline.passed() {
            return Ok(CommitOutcome::DeadlineExceeded);
        }
        let image_size = fits_sqlite(record.image_size)?;
        self.writer.put(record.clone(), image_size, precondition, deadline).await
    }

    async fn put_keyed_before(
        &self,
        record: &Record,
        precondition: &Precondition,
        key: &IdempotencyKey,
        deadline: &Deadline,
    ) -> Result<KeyedOutcome, StoreError> {
        if deadline.passed() {
            return Ok(KeyedOutcome::DeadlineExceeded);
        }
        let image_size = fits_sqlite(record.image_size)?;
        self.writer.put_keyed(record.clone(), image_size, precondition, key, deadline).await
    }

    async fn keyed_record(&self, user: &UserId, key: &str) -> Result<Option<(Record, String)>, StoreError> {
        let row = sqlx::query(changes::KEYED_RECORD)
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
        self.writer.delete(user.clone(), precondition, deadline).await
    }

    async fn names_image(&self, image_id: &ImageId) -> Result<bool, StoreError> {
        self.reads.names_image(image_id).await
    }

    async fn referenced(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        // All ids travel as one JSON array bound to one parameter, so any number of ids
        // is one statement with no limit on bound parameters and no SQL built from
        // data. The planner probes the image_id index once per id (the tests check
        // the plan).
        // In sorted order, so the probes walk the index forward (ids minted close
        // together sit on the same pages).
        let mut wanted: Vec<String> = ids.iter().map(ImageId::to_string).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let json = serde_json::to_string(&wanted).map_err(|e| corrupt(format!("ids do not serialise: {e}")))?;
        let mut tx = self.begin_fenced("to ask which images are referenced").await?;
        let rows = sqlx::query(REFERENCED)
            .bind(json)
            .fetch_all(&mut *tx)
            .await
            .map_err(failed("asking which images are referenced"))?;
        tx.commit().await.map_err(failed("committing the cleaner's fence row"))?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0).map_err(failed("reading a referenced image id"))?;
                DECODE.image_id(&id)
            })
            .collect()
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
        // BINARY collation: byte order, the order of `UserId`'s `Ord`.
        let query = match after {
            Some(after) => sqlx::query(concat!(
                "SELECT user_id, metadata, image_id, content_type, image_size, updated_at_ms ",
                "FROM profiles WHERE user_id > ? ORDER BY user_id LIMIT ?"
            ))
            .bind(after.as_str()),
            None => sqlx::query(concat!(
                "SELECT user_id, metadata, image_id, content_type, image_size, updated_at_ms ",
                "FROM profiles ORDER BY user_id LIMIT ?"
            )),
        };
        let rows = query.bind(limit).fetch_all(&self.pool).await.map_err(failed("listing profile records"))?;
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
        let row = sqlx::query(PAIRING).fetch_optional(&self.pool).await.map_err(failed("reading the pairing"))?;
        row.as_ref().map(|r| DECODE.pairing(r, failed("reading the pairing"))).transpose()
    }

    async fn create_pairing(&self, pairing: &Pairing) -> Result<Pairing, StoreError> {
        let timings = DECODE.timings_json(&pairing.timings)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(failed("taking the write lock"))?;
        sqlx::query(concat!(
            "INSERT INTO pairing (singleton, cluster_id, timings, created_at_ms) VALUES (1, ?, ?, ",
            db_now_ms!(),
            ") ON CONFLICT (singleton) DO NOTHING"
        ))
        .bind(pairing.cluster_id.hyphenated().to_string())
        .bind(timings)
        .execute(&mut *tx)
        .await
        .map_err(failed("storing the pairing"))?;
        let row = sqlx::query(PAIRING).fetch_one(&mut *tx).await.map_err(failed("reading the pairing back"))?;
        let stored = DECODE.pairing(&row, failed("reading the pairing"))?;
        tx.commit().await.map_err(failed("committing the pairing"))?;
        Ok(stored)
    }

    async fn update_timings(&self, cluster_id: uuid::Uuid, timings: &Timings) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE pairing SET timings = ? WHERE singleton = 1 AND cluster_id = ?")
            .bind(DECODE.timings_json(timings)?)
            .bind(cluster_id.hyphenated().to_string())
            .execute(&self.pool)
            .await
            .map_err(failed("updating the timings"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::new(
                StoreErrorKind::Misconfigured,
                format!("SQLite: the database holds no pairing with cluster id {cluster_id}"),
            ));
        }
        Ok(())
    }
}

const REFERENCED: &str = "SELECT DISTINCT image_id FROM profiles WHERE image_id IN (SELECT value FROM json_each(?))";
