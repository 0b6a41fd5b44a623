//! The strict write floor on the embedded default: the blob put (without the local
//! store's listing journal, whose append counts against the product), then a plain upsert
//! committed by SQLite on a connection of its own (WAL, `synchronous=FULL`,
//! autocommit), into a table shaped like `profiles` but with none of its triggers: no
//! deadline guard, no timings check, no batching, no queue. What any design that keeps
//! a record and a blob must pay at least; the product's write is judged against it.
//!
//! The table, `bench_floor_profiles`, lives in the benchmark's own database file, so
//! its commits append to the same WAL and wait for the same fsync as the product's.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use profilestore_core::ids::{BlobKey, IdSource, UserId};
use profilestore_core::store::BlobStore;
use profilestore_runtime::UuidV7Ids;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, SqliteConnection};
use tokio::sync::Mutex;

use super::library::user_for;
use crate::error::BenchError;
use crate::fixture::{METADATA, Stores};
use crate::load::Operation;

const CREATE: &str = "CREATE TABLE IF NOT EXISTS bench_floor_profiles (
    user_id       TEXT    NOT NULL PRIMARY KEY,
    metadata      TEXT    NOT NULL,
    image_id      TEXT    NOT NULL,
    content_type  TEXT    NOT NULL,
    image_size    INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS bench_floor_profiles_image_id ON bench_floor_profiles (image_id)";

const UPSERT: &str = "INSERT INTO bench_floor_profiles \
     (user_id, metadata, image_id, content_type, image_size, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
     ON CONFLICT (user_id) DO UPDATE SET metadata = excluded.metadata, image_id = excluded.image_id, \
     content_type = excluded.content_type, image_size = excluded.image_size, updated_at_ms = excluded.updated_at_ms";

/// The strict floor when the database is SQLite; `None` for another database, whose
/// floor stays the guarded `put_before` (see `library::write_floor`).
pub(crate) async fn write_floor(
    stores: &Stores,
    users: Arc<Vec<UserId>>,
    image: Bytes,
) -> Result<Option<Operation>, BenchError> {
    let Some(path) = stores.urls.0.strip_prefix("sqlite://") else { return Ok(None) };
    let failed = |e: sqlx::Error| BenchError::Config(format!("the strict write floor's SQLite connection: {e}"));
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
        .map_err(failed)?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5));
    let mut conn = options.connect().await.map_err(failed)?;
    sqlx::raw_sql(CREATE).execute(&mut conn).await.map_err(failed)?;
    let conn: Arc<Mutex<SqliteConnection>> = Arc::new(Mutex::new(conn));
    // The journal exists only for incremental cleaning: the floor does not pay it.
    let blobs: Arc<dyn BlobStore> = match stores.local_blobs().await? {
        Some(local) => Arc::new(local.without_journal()),
        None => stores.blobs.clone(),
    };
    let clock = stores.clock.clone();
    Ok(Some(Arc::new(move |n| {
        let (conn, blobs, clock, image) = (conn.clone(), blobs.clone(), clock.clone(), image.clone());
        let user = user_for(&users, n);
        async move {
            let image_id = UuidV7Ids.next_image_id();
            let size = image.len() as i64;
            blobs.put_new(&BlobKey::original(image_id), image).await.map_err(|e| e.to_string())?;
            let mut conn = conn.lock().await;
            sqlx::query(UPSERT)
                .bind(user.as_str())
                .bind(METADATA)
                .bind(image_id.to_string())
                .bind("image/png")
                .bind(size)
                .bind(clock.now().as_millis())
                .execute(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        }
        .boxed()
    })))
}
