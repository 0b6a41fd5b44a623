//! [`S3BlobStore`]: image bytes as objects in an S3-compatible bucket, under a key
//! prefix, through `object_store`'s S3 client.
//!
//! How it meets the [`BlobStore`] contract (read in `object_store` 0.14's `aws/`, and
//! checked against Ceph RGW by `tests/s3.rs`):
//! - a put is one `PutObject` (we never use multipart uploads: images are at most tens
//!   of MiB, so there are no incomplete uploads to abort and nothing for
//!   [`sweep_staging`](BlobStore::sweep_staging) to do); S3 puts are atomic;
//! - create-only puts send `If-None-Match: *`; the server answers 412 when the key
//!   exists (409 on AWS under a concurrent conditional write), which object_store
//!   reports as `AlreadyExists`. A server that ignored the header would overwrite: the
//!   tests put twice against the real server to rule that out. object_store retries a
//!   put after a 5xx answer, so a put the server stored but answered with a 5xx can come
//!   back as `AlreadyExists` on its retry: nothing is overwritten, the write fails and
//!   its blob is an orphan for the cleaner, as the design allows;
//! - deletes use `DeleteObjects`, one request per [`MAX_DELETE_BATCH`] keys, one
//!   request at a time; S3 reports a missing key as deleted. How fast the cleaner
//!   deletes is its own setting (`CleanerConfig::delete_rate`), not the store's;
//! - listings are `ListObjectsV2` under `{prefix}/`; `LastModified` becomes the
//!   creation time, rounded up to the next second. With a list concurrency of 1 that
//!   is one walk, a server page (≤ 1000 keys) at a time; above 1 (the default is
//!   [`DEFAULT_LIST_CONCURRENCY`]) the common prefixes below `{prefix}/` (the 256
//!   shards) are listed in parallel and put back in key order (module `listing`), so
//!   the result is the same, in the same order, in a fraction of the time.
//!
//! The bucket's versioning, which decides whether a delete removes a photo's bytes, is
//! read at start by [`check_versioning`] through a small SigV4 client of our own
//! ([`BucketConfigClient`]): `object_store` has no API for bucket settings.
//!
//! The client is built from [`S3Options`] alone: explicit credentials or explicitly
//! unsigned requests, never the environment and never a cloud metadata endpoint.

use std::collections::HashSet;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use profilestore_core::error::{StoreError, StoreErrorKind};
use profilestore_core::ids::{BlobKey, mint_time_bound};
use profilestore_core::store::{BlobStore, CLOCK_PROBE_KEY, ClockProbe, ListedBlob, PAIRING_MARKER_KEY};
use profilestore_core::time::Timestamp;

use crate::open::{OpenError, OpenMode, S3Options};

mod attempts;
mod bucket_config;
mod client;
mod errors;
mod listing;
mod location;
mod measure;
mod sigv4;
#[cfg(test)]
mod tests;
mod versioning;

pub use bucket_config::{BucketConfigClient, BucketConfigError, LifecycleRule, Versioning};
pub use listing::{DEFAULT_LIST_CONCURRENCY, ListingStats, MAX_LIST_CONCURRENCY, PREFETCH_PAGES, max_pages_held};
pub use measure::{ListingRun, time_listing};
pub use versioning::{CHECK_LIMIT, NoncurrentExpiry, VersioningCheck, check_versioning};

use errors::{created_rounded_up, is_missing_key, is_no_such_bucket, store_error};
use location::Location;

/// What an [`OpenError`] calls this kind of store.
const WHAT: &str = "S3 bucket";

/// The most keys one `DeleteObjects` request names: S3's limit.
pub const MAX_DELETE_BATCH: usize = 1000;

/// Opens the S3 blob store at `bucket_and_prefix` (the URL after `s3://`) as
/// [`S3BlobStore::open`] does, as a shared [`BlobStore`].
pub async fn open(
    bucket_and_prefix: &str,
    redacted: String,
    mode: OpenMode,
    options: &S3Options,
) -> Result<Arc<dyn BlobStore>, OpenError> {
    Ok(Arc::new(S3BlobStore::open(bucket_and_prefix, redacted, mode, options).await?))
}

/// Image bytes as objects in one S3 bucket, every key under one prefix.
///
/// Promises: every [`BlobStore`] contract, on any S3 server that honours
/// `If-None-Match: *` on `PutObject`; every key it reads, writes, deletes or lists lies
/// under its prefix, and listed keys are relative to it; creation times are the
/// server's `LastModified`, moved to the start of the next whole second so that no
/// blob looks older than it is.
#[derive(Clone)]
pub struct S3BlobStore {
    s3: Arc<AmazonS3>,
    location: Location,
    /// The store's URL with secrets redacted, for messages.
    url: String,
    /// How many common prefixes a listing lists at once; 1 for one sequential walk.
    list_concurrency: usize,
    stats: Arc<ListingStats>,
}

impl fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3BlobStore").field("url", &self.url).finish_non_exhaustive()
    }
}

impl S3BlobStore {
    /// Opens `bucket[/prefix]` (the URL after `s3://`; `redacted` is the URL to name in
    /// messages) on the server `options` describe.
    ///
    /// Refuses, before any request, a malformed bucket name or prefix, options that
    /// neither give credentials nor skip signing, and a list concurrency above
    /// [`MAX_LIST_CONCURRENCY`]. Then checks with one small request
    /// that the bucket exists and answers us, in both modes: buckets are never created
    /// ([`OpenMode::Migrate`] has nothing to create; the prefix needs no creating), and
    /// whether the store is ours is decided by its pairing marker, not by its prefix.
    pub async fn open(
        bucket_and_prefix: &str,
        redacted: String,
        mode: OpenMode,
        options: &S3Options,
    ) -> Result<Self, OpenError> {
        let location = Location::parse(bucket_and_prefix)
            .map_err(|reason| OpenError::InvalidUrl { url: redacted.clone(), reason })?;
        let failed = |source| OpenError::Store { what: WHAT, location: redacted.clone(), source };
        let s3 = client::build(&location.bucket, options).map_err(failed)?;
        let list_concurrency = list_concurrency(options.list_concurrency).map_err(failed)?;
        let store =
            S3BlobStore { s3: Arc::new(s3), location, url: redacted.clone(), list_concurrency, stats: Arc::default() };
        match mode {
            OpenMode::Migrate | OpenMode::Existing => store.check_bucket().await.map_err(failed)?,
        }
        Ok(store)
    }

    /// The bucket this store keeps its objects in.
    pub fn bucket(&self) -> &str {
        &self.location.bucket
    }

    /// The key prefix every object of this store lives under, without slashes at either
    /// end; empty for the bucket's root.
    pub fn prefix(&self) -> &str {
        self.location.prefix.as_ref().map_or("", |p| p.as_ref())
    }

    /// How many common prefixes a listing lists at once (1: one sequential walk).
    pub fn list_concurrency(&self) -> usize {
        self.list_concurrency
    }

    /// What this store's parallel listings have done: pages held, tasks running, and
    /// their peaks. Sequential listings (concurrency 1) leave it untouched.
    pub fn listing_stats(&self) -> &ListingStats {
        &self.stats
    }

    /// The parallel listing (see `listing`), one item at a time.
    fn list_parallel(
        &self,
        concurrency: usize,
        skip_through: Option<Arc<str>>,
    ) -> BoxStream<'_, Result<ListedBlob, StoreError>> {
        listing::parallel(Arc::new(self.clone()), concurrency, skip_through)
            .map_ok(|page| stream::iter(page.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    /// Every object under the prefix, one item at a time, by one sequential walk.
    fn list_sequential(&self) -> BoxStream<'_, Result<ListedBlob, StoreError>> {
        // object_store fetches one ListObjectsV2 page (≤ 1000 keys) at a time as the
        // stream is polled.
        self.s3
            .list(self.location.prefix.as_ref())
            .map(move |item| match item {
                Ok(meta) => self.listed(meta),
                Err(e) => Err(self.error("listing blobs", e)),
            })
            .boxed()
    }

    fn error(&self, doing: &str, e: object_store::Error) -> StoreError {
        store_error(&self.url, doing, e)
    }

    fn path(&self, key: &str) -> Result<Path, StoreError> {
        self.location.path_of(key).map_err(|e| {
            StoreError::new(StoreErrorKind::Corrupt, format!("blob key {key:?} is not a valid object path: {e}"))
        })
    }

    /// One cheap request that succeeds only when the bucket exists and lets us read:
    /// a GET of the pairing marker (a few bytes, or a 404 whose S3 error code tells a
    /// missing key from a missing bucket, which a HEAD's empty 404 cannot).
    async fn check_bucket(&self) -> Result<(), StoreError> {
        self.get_raw(PAIRING_MARKER_KEY, "checking the bucket").await.map(drop)
    }

    async fn put_create(&self, key: &str, bytes: Bytes, doing: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        self.s3
            .put_opts(&path, PutPayload::from(bytes), PutMode::Create.into())
            .await
            .map_err(|e| self.error(doing, e))?;
        Ok(())
    }

    async fn get_raw(&self, key: &str, doing: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(key)?;
        match self.s3.get(&path).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(|e| self.error(doing, e))?)),
            // A missing bucket also answers 404: that is a broken setup, not a missing blob.
            Err(e @ object_store::Error::NotFound { .. }) if is_no_such_bucket(&e) => Err(self.error(doing, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(doing, e)),
        }
    }

    fn listed(&self, meta: ObjectMeta) -> Result<ListedBlob, StoreError> {
        let full = meta.location.as_ref();
        let Some(key) = self.location.relative(full) else {
            return Err(StoreError::new(
                StoreErrorKind::Corrupt,
                format!("S3 blob store {}: the listing returned {full:?}, outside the prefix", self.url),
            ));
        };
        Ok(ListedBlob {
            key: key.to_owned(),
            created: created_rounded_up(meta.last_modified.timestamp()),
            size: meta.size,
        })
    }
}

#[async_trait::async_trait]
impl BlobStore for S3BlobStore {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        let (stored, requests) = attempts::counting(self.put_create(&key.to_string(), bytes, "storing a blob")).await;
        if requests > 1 {
            metrics::counter!(crate::measured::BLOB_PUT_RETRIES, "backend" => "s3").increment(u64::from(requests - 1));
        }
        stored
    }

    async fn get(&self, key: &BlobKey) -> Result<Option<Bytes>, StoreError> {
        self.get_raw(&key.to_string(), "reading a blob").await
    }

    async fn exists(&self, key: &BlobKey) -> Result<bool, StoreError> {
        match self.s3.head(&self.path(&key.to_string())?).await {
            Ok(_) => Ok(true),
            // A HEAD's 404 has no body, so it cannot say whether the key or the whole
            // bucket is missing; one more request rules out the bucket.
            Err(object_store::Error::NotFound { .. }) => self.check_bucket().await.map(|()| false),
            Err(e) => Err(self.error("checking that a blob exists", e)),
        }
    }

    async fn delete_many(&self, keys: &[BlobKey]) -> Result<(), StoreError> {
        // Each key once: DeleteObjects answers per key, and a repeated key would make
        // the answer ambiguous.
        let mut seen = HashSet::new();
        let mut paths = Vec::with_capacity(keys.len());
        for key in keys {
            if seen.insert(*key) {
                paths.push(self.path(&key.to_string())?);
            }
        }
        // One DeleteObjects request per batch, one batch at a time (object_store would
        // send up to 20 at once): the caller paces deletes by keys, and a batch is what
        // a request costs. Every batch is tried even after a failure; the first failure
        // is reported.
        let (mut failures, mut first) = (0usize, None);
        let mut paths = paths.into_iter().peekable();
        while paths.peek().is_some() {
            let batch: Vec<Path> = paths.by_ref().take(MAX_DELETE_BATCH).collect();
            let mut results = self.s3.delete_stream(stream::iter(batch.into_iter().map(Ok)).boxed());
            while let Some(result) = results.next().await {
                match result {
                    Ok(_) => {}
                    Err(e) if is_missing_key(&e) => {}
                    Err(e) => {
                        failures += 1;
                        first.get_or_insert(e);
                    }
                }
            }
        }
        match first {
            None => Ok(()),
            Some(e) => {
                Err(self.error(&format!("deleting {} blobs ({failures} failures, the first shown)", seen.len()), e))
            }
        }
    }

    fn list(&self, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        let blobs = if self.list_concurrency <= 1 {
            self.list_sequential()
        } else {
            self.list_parallel(self.list_concurrency, None)
        };
        in_pages(blobs, page_size)
    }

    /// Lists each shard only after `{shard}/{mint_time_bound(horizon)}` (S3's
    /// `StartAfter`): one request per shard plus one per 1000 newer keys. Runs the
    /// parallel listing even at concurrency 1, since a single sequential walk cannot
    /// skip inside every shard.
    fn list_since(&self, horizon: Timestamp, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        let bound: Arc<str> = mint_time_bound(horizon).into();
        in_pages(self.list_parallel(self.list_concurrency.max(1), Some(bound)), page_size)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check_bucket().await
    }

    async fn probe_clock(&self) -> Result<ClockProbe, StoreError> {
        // Replacing the probe is the one overwrite this store makes: it is outside the
        // layout and holds nothing. `Last-Modified` has whole seconds.
        let path = self.path(CLOCK_PROBE_KEY)?;
        self.s3.put(&path, PutPayload::new()).await.map_err(|e| self.error("writing the clock probe", e))?;
        let meta = self.s3.head(&path).await.map_err(|e| self.error("reading the clock probe's time", e))?;
        let created = Timestamp::from_millis(meta.last_modified.timestamp().saturating_mul(1000));
        Ok(ClockProbe { created, precision: std::time::Duration::from_secs(1) })
    }

    async fn read_marker(&self) -> Result<Option<Bytes>, StoreError> {
        self.get_raw(PAIRING_MARKER_KEY, "reading the pairing marker").await
    }

    async fn create_marker(&self, contents: Bytes) -> Result<(), StoreError> {
        self.put_create(PAIRING_MARKER_KEY, contents, "writing the pairing marker").await
    }
}

/// The list concurrency `asked` for (the default when `None`), or why it is refused.
/// `blobs` cut into our own pages of `page_size`, in order, whatever the server's pages
/// were; the first error ends the listing.
fn in_pages(
    blobs: BoxStream<'_, Result<ListedBlob, StoreError>>,
    page_size: usize,
) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
    blobs
        .try_chunks(page_size.max(1))
        .map_err(|failed| failed.1)
        .scan(false, |failed, page| {
            let stop = std::mem::replace(failed, page.is_err());
            futures::future::ready((!stop).then_some(page))
        })
        .boxed()
}

fn list_concurrency(asked: Option<NonZeroUsize>) -> Result<usize, StoreError> {
    let n = asked.map_or(DEFAULT_LIST_CONCURRENCY, NonZeroUsize::get);
    if n > MAX_LIST_CONCURRENCY {
        return Err(StoreError::new(
            StoreErrorKind::Misconfigured,
            format!("an S3 list concurrency of {n} is too high: it must be 1 to {MAX_LIST_CONCURRENCY}"),
        ));
    }
    Ok(n)
}
