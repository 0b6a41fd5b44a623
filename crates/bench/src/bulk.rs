//! Populating the embedded default (a SQLite file and a local blob directory) fast,
//! for the sweep at a million blobs, where a put and a commit per blob would take
//! most of an hour.
//!
//! What it writes is what the stores' own calls would leave, so the cleaner and the
//! floor meet the same store: each blob is a file at its key's path under the blob
//! directory (`{shard}/{image_id}/original`), holding the image's bytes, last
//! modified when it was written (the creation time the store reports); each record
//! is a row of `profiles` as `put_before` writes a first record for a user. What it
//! skips is what makes those calls durable and safe under concurrency: no staging
//! file and hard link, no fsync, no deadline or timings check, and many rows per
//! transaction (`RECORDS_PER_TRANSACTION`). Only for stores nothing else uses while
//! it runs; other targets (PostgreSQL, S3) are populated through the store traits.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use profilestore_core::ids::{BlobKey, IdSource, ImageId, UserId};
use profilestore_runtime::UuidV7Ids;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::error::BenchError;
use crate::fixture::{METADATA, Stores};

/// Rows inserted per transaction.
const RECORDS_PER_TRANSACTION: usize = 20_000;
/// Blob files written per trip to a blocking thread.
const FILES_PER_TASK: usize = 5_000;

/// A record as `put_before` stores a first write (the columns of `profiles`).
const INSERT: &str = "INSERT INTO profiles (user_id, metadata, image_id, content_type, image_size, updated_at_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Where the embedded stores of a [`Stores`] keep their data.
#[derive(Debug, Clone)]
pub(crate) struct BulkTarget {
    database: PathBuf,
    blob_root: PathBuf,
}

impl BulkTarget {
    /// The files behind `stores`, when they are a SQLite file and a local blob
    /// directory; `None` for any other store.
    pub(crate) async fn of(stores: &Stores) -> Result<Option<BulkTarget>, BenchError> {
        let (Some(database), Some(blobs)) =
            (stores.urls.0.strip_prefix("sqlite://"), stores.urls.1.strip_prefix("file://"))
        else {
            return Ok(None);
        };
        // The store's own root: the directory it resolved when it opened.
        let blob_root = tokio::fs::canonicalize(blobs).await.map_err(BenchError::io("resolving the blob directory"))?;
        Ok(Some(BulkTarget { database: PathBuf::from(database), blob_root }))
    }

    /// Adds `referenced` blobs each named by a record of a user of its own (user ids
    /// `{prefix}-{i:08}`), and `orphans` blobs nobody references.
    pub(crate) async fn populate(
        &self,
        stores: &Stores,
        prefix: &str,
        referenced: u64,
        orphans: u64,
        image: &Bytes,
    ) -> Result<(), BenchError> {
        let total = usize::try_from(referenced + orphans).map_err(|_| BenchError::Config("too many blobs".into()))?;
        let ids: Vec<ImageId> = (0..total).map(|_| UuidV7Ids.next_image_id()).collect();
        let referenced = usize::try_from(referenced).unwrap_or(usize::MAX);
        self.populate_ids(stores, prefix, &ids, referenced, image).await
    }

    /// Adds a blob of each of `ids`, the first `referenced` of them each named by a
    /// record of a user of its own (user ids `{prefix}-{i:08}`).
    pub(crate) async fn populate_ids(
        &self,
        stores: &Stores,
        prefix: &str,
        ids: &[ImageId],
        referenced: usize,
        image: &Bytes,
    ) -> Result<(), BenchError> {
        for chunk in ids.chunks(FILES_PER_TASK) {
            let (root, chunk, image) = (self.blob_root.clone(), chunk.to_vec(), image.clone());
            tokio::task::spawn_blocking(move || chunk.iter().try_for_each(|id| write_blob(&root, *id, &image)))
                .await
                .map_err(|e| BenchError::Child(format!("writing blob files: {e}")))?
                .map_err(BenchError::io("writing a blob file"))?;
        }
        self.insert_records(stores, prefix, &ids[..referenced.min(ids.len())], image.len() as i64).await
    }

    async fn insert_records(
        &self,
        stores: &Stores,
        prefix: &str,
        ids: &[ImageId],
        size: i64,
    ) -> Result<(), BenchError> {
        let failed = |e: sqlx::Error| BenchError::Config(format!("inserting sweep records into SQLite: {e}"));
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", self.database.display()))
            .map_err(failed)?
            .busy_timeout(Duration::from_secs(30));
        let mut conn = options.connect().await.map_err(failed)?;
        let updated_at = stores.clock.now().as_millis();
        for (n, chunk) in ids.chunks(RECORDS_PER_TRANSACTION).enumerate() {
            let mut tx = conn.begin().await.map_err(failed)?;
            for (i, id) in chunk.iter().enumerate() {
                let user = user_id(prefix, n * RECORDS_PER_TRANSACTION + i);
                sqlx::query(INSERT)
                    .bind(user.as_str())
                    .bind(METADATA)
                    .bind(id.to_string())
                    .bind("image/png")
                    .bind(size)
                    .bind(updated_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed)?;
            }
            tx.commit().await.map_err(failed)?;
        }
        conn.close().await.map_err(failed)
    }
}

/// The `i`-th user of a populate call.
pub(crate) fn user_id(prefix: &str, i: usize) -> UserId {
    UserId::parse(&format!("{prefix}-{i:08}")).expect("sweep user ids are valid")
}

/// The file the local store's `put_new` of `id`'s original would leave: its key's path
/// under `root`, with the image's bytes, modified now.
fn write_blob(root: &Path, id: ImageId, image: &[u8]) -> std::io::Result<()> {
    let path = root.join(BlobKey::original(id).to_string());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Create-only, as the store's put: a fresh id never names an existing file.
    std::fs::OpenOptions::new().write(true).create_new(true).open(&path).and_then(|mut f| {
        use std::io::Write;
        f.write_all(image)
    })
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use profilestore_core::store::{ListedBlob, Record};
    use profilestore_core::time::Deadline;

    use super::*;
    use crate::config::StoreTarget;
    use crate::sweep::SWEEP_TIMINGS;

    #[tokio::test]
    async fn bulk_blobs_and_records_are_what_the_stores_own_calls_leave() {
        let stores = Stores::open(&StoreTarget::default(), SWEEP_TIMINGS).await.unwrap();
        let target = BulkTarget::of(&stores).await.unwrap().expect("the embedded default");
        let image = crate::fixture::image(0);

        // One blob and record through the stores, one of each in bulk.
        let by_store = UuidV7Ids.next_image_id();
        let before = stores.clock.now();
        stores.blobs.put_new(&BlobKey::original(by_store), image.clone()).await.unwrap();
        let record = Record {
            user_id: user_id("store", 0),
            metadata: METADATA.to_owned(),
            image_id: by_store,
            content_type: "image/png".to_owned(),
            image_size: image.len() as u64,
            updated_at: stores.clock.now(),
        };
        let deadline = Deadline::after(stores.clock.clone(), stores.timings.request_timeout).under(stores.timings);
        stores.metadata.put_before(&record, &deadline).await.unwrap();
        target.populate(&stores, "bulk", 1, 1, &image).await.unwrap();
        let after = stores.clock.now();

        let pages: Vec<Vec<ListedBlob>> = stores.blobs.list(100).try_collect().await.unwrap();
        let listed: Vec<ListedBlob> =
            pages.into_iter().flatten().filter(|b| BlobKey::parse(&b.key).is_some()).collect();
        assert_eq!(listed.len(), 3, "{listed:?}");
        for blob in &listed {
            let key = BlobKey::parse(&blob.key).unwrap();
            assert_eq!(key, BlobKey::original(key.image_id), "the same key layout");
            assert_eq!(blob.size, image.len() as u64);
            // The kernel stamps a file from its coarse clock, up to a tick (1–10 ms)
            // behind the fine clock `before` was read from.
            let coarse_tick = 20;
            assert!(
                blob.created.as_millis() >= before.as_millis() - coarse_tick
                    && blob.created.as_millis() <= after.as_millis() + 1,
                "modified when written: {blob:?}, between {before:?} and {after:?}"
            );
            assert_eq!(stores.blobs.get(&key).await.unwrap(), Some(image.clone()), "the same bytes");
        }
        // The same file on disk: mode and place (the store's file vs a bulk one).
        let mode = |id: ImageId| {
            use std::os::unix::fs::PermissionsExt;
            let path = target.blob_root.join(BlobKey::original(id).to_string());
            std::fs::metadata(path).unwrap().permissions().mode()
        };
        let bulk_ids: Vec<ImageId> =
            listed.iter().map(|b| BlobKey::parse(&b.key).unwrap().image_id).filter(|id| *id != by_store).collect();
        assert!(bulk_ids.iter().all(|id| mode(*id) == mode(by_store)));

        // The bulk record reads back as a record `put_before` would have stored.
        let bulk_user = user_id("bulk", 0);
        let got = stores.metadata.get(&bulk_user).await.unwrap().expect("the bulk record");
        assert!(bulk_ids.contains(&got.image_id));
        let stored = stores.metadata.get(&record.user_id).await.unwrap().unwrap();
        assert_eq!(
            (got.metadata, got.content_type, got.image_size),
            (stored.metadata, stored.content_type, stored.image_size)
        );
        assert_eq!(stores.metadata.count_records().await.unwrap(), 2, "one orphan, no record");
        let referenced = stores.metadata.referenced(&bulk_ids).await.unwrap();
        assert_eq!(referenced.len(), 1);
    }
}
