//! A profile's record (or whether a record names an image) read on a connection of its
//! own, on a blocking thread.
//!
//! A read is the hottest call the store answers, and one point query costs SQLite a
//! few microseconds. Through sqlx it also costs a round trip to the connection's
//! worker thread and, when the connection goes back to the pool, a ping that is a
//! second round trip: together several times the query. Here a read takes an idle
//! connection, runs one prepared statement on the blocking pool and puts the
//! connection back, with no trip in between.
//!
//! What it promises is what the pool's read promised: the latest committed state at
//! the statement's start (WAL readers see every commit made before they began), never
//! a write (the connections are `query_only`), and any failure mapped to the same
//! store error kinds.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use profilestore_core::error::{StoreError, StoreErrorKind};
use profilestore_core::ids::{ImageId, UserId};
use profilestore_core::store::Record;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::Semaphore;

use super::errors::rusqlite_error;
use crate::decode::{Decoder, StoredRecord};

const GET_RECORD: &str = "SELECT user_id, metadata, image_id, content_type, image_size, updated_at_ms \
     FROM profiles WHERE user_id = ?1";

const NAMES_IMAGE: &str = "SELECT EXISTS (SELECT 1 FROM profiles WHERE image_id = ?1)";

/// At most this many reads run at once, each on a connection of its own; more wait
/// for one. Two cores gain nothing from more, and each connection holds a page cache.
const READERS: usize = 8;

/// Point reads of the profiles table of one database file.
#[derive(Debug, Clone)]
pub(super) struct PointReads {
    path: Arc<PathBuf>,
    busy_timeout: Duration,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
    decode: Decoder,
}

impl PointReads {
    /// Reads of the file at `path`, waiting at most `busy_timeout` for a lock (a WAL
    /// reader waits only while a connection recovers the log). Connects lazily.
    pub(super) fn new(path: PathBuf, busy_timeout: Duration, decode: Decoder) -> PointReads {
        PointReads {
            path: Arc::new(path),
            busy_timeout,
            idle: Arc::default(),
            permits: Arc::new(Semaphore::new(READERS)),
            decode,
        }
    }

    /// The record of `user`, or `None` when it has none.
    pub(super) async fn get(&self, user: &UserId) -> Result<Option<Record>, StoreError> {
        let user = user.as_str().to_owned();
        let stored = self.run("reading a profile record", move |conn| read_record(conn, &user)).await?;
        stored.map(|s| self.decode.stored_record(s)).transpose()
    }

    /// Whether some record names `image_id` now: a plain read, without the cleaner's
    /// fence (for serving an image, never for deciding a delete).
    pub(super) async fn names_image(&self, image_id: &ImageId) -> Result<bool, StoreError> {
        let id = image_id.to_string();
        self.run("asking whether a record names an image", move |conn| {
            conn.prepare_cached(NAMES_IMAGE)?.query_row([id], |row| row.get::<_, bool>(0))
        })
        .await
    }

    /// Runs `read` on an idle connection (or a new one) on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        doing: &'static str,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit =
            self.permits.clone().acquire_owned().await.map_err(|_| unavailable(doing, "the store is closed"))?;
        let reads = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            reads.run_blocking(doing, read)
        })
        .await
        .map_err(|e| unavailable(doing, &format!("the reading thread failed: {e}")))?
    }

    /// Waits for reads in flight, then closes every connection; later reads fail as
    /// unavailable.
    pub(super) async fn close(&self) {
        // Taking every permit waits for the reads holding one.
        if let Ok(all) = self.permits.acquire_many(READERS as u32).await {
            self.permits.close();
            drop(all);
        }
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn run_blocking<T>(
        &self,
        doing: &str,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = match self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            Some(conn) => conn,
            None => self.connect().map_err(|e| rusqlite_error("opening a reading connection", &e))?,
        };
        let result = read(&conn);
        // A connection whose statement failed may be in any state: it is dropped (and
        // closed) rather than handed to the next read.
        if result.is_ok() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        }
        result.map_err(|e| rusqlite_error(doing, &e))
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        // Read-write without create: a missing file is an error, and a WAL reader needs
        // the shared-memory index; `query_only` makes any write fail instead.
        let conn = Connection::open_with_flags(
            self.path.as_path(),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }
}

fn read_record(conn: &Connection, user: &str) -> rusqlite::Result<Option<StoredRecord>> {
    conn.prepare_cached(GET_RECORD)?
        .query_row([user], |row| {
            Ok(StoredRecord {
                user_id: row.get(0)?,
                metadata: row.get(1)?,
                image_id: row.get(2)?,
                content_type: row.get(3)?,
                image_size: row.get(4)?,
                updated_at_ms: row.get(5)?,
            })
        })
        .optional()
}

fn unavailable(doing: &str, what: &str) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, format!("SQLite, {doing}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_file_is_an_error_not_a_new_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.db");
        let reads = PointReads::new(path.clone(), Duration::from_millis(10), Decoder { backend: "SQLite" });
        let err = reads.get(&UserId::parse("alice").unwrap()).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Misconfigured, "{err}");
        assert!(!path.exists(), "a read created the file");
    }

    #[tokio::test]
    async fn reads_after_close_fail_as_unavailable() {
        let reads = PointReads::new("unused.db".into(), Duration::from_millis(10), Decoder { backend: "SQLite" });
        reads.close().await;
        let err = reads.get(&UserId::parse("alice").unwrap()).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    }
}
