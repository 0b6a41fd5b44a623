//! [`LocalBlobStore`]: image bytes as files under one directory, through
//! `object_store`'s local backend (the same API the S3 backend will use).
//!
//! What the local backend does, and why it meets the [`BlobStore`] contract (read in
//! `object_store` 0.14's `local.rs`):
//! - a put writes a staging file `{key}#{n}` next to the key, then publishes it; with
//!   `PutMode::Create` it publishes by `hard_link(staging, key)`, which fails with
//!   `EEXIST` when the key exists, so a put is atomic (no partial file is ever visible
//!   under the key) and never overwrites;
//! - with `with_fsync(true)` the staging file and the directory entry are fsynced
//!   before the put returns, so an acknowledged image survives a power loss;
//! - a process killed mid-put leaves its staging file behind; listings hide such files,
//!   so [`sweep_staging`](BlobStore::sweep_staging) walks the directory itself, and
//!   [`list_sweeping_staging`](BlobStore::list_sweeping_staging) removes them during
//!   the listing's own walk (a full sweep's one walk instead of two);
//! - `with_automatic_cleanup(true)` removes the directories a delete empties, or every
//!   deleted image would leave two directory levels behind forever.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use profilestore_core::error::{StoreError, StoreErrorKind};
use profilestore_core::ids::{BlobKey, mint_time_bound};
use profilestore_core::store::{
    BlobStore, CLOCK_PROBE_KEY, ClockProbe, ListedBlob, PAIRING_MARKER_KEY, StagingTally, SweepingListing,
};
use profilestore_core::time::Timestamp;
use sweep::SweepAlong;
use walk::Walk;

use crate::open::{OpenError, OpenMode};

mod sweep;
#[cfg(test)]
mod tests;
mod walk;

/// Image bytes as files under one local directory.
///
/// Promises: every [`BlobStore`] contract; creation times are the files' modification
/// times by the local clock, rounded up to whole milliseconds.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
    fs: Arc<LocalFileSystem>,
}

impl LocalBlobStore {
    /// The pages of `walk`: our own walk (see `walk`), one page per trip to a blocking
    /// thread, so only one page and the walk's directory stack are in memory.
    /// With `sweep`, stale staging files met on the way are removed too.
    fn list_walk(
        &self,
        walk: Walk,
        page_size: usize,
        sweep: Option<SweepAlong>,
    ) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        let root = self.root.clone();
        let page_size = page_size.max(1);
        stream::unfold(Some(walk), move |walk| {
            let (root, sweep) = (root.clone(), sweep.clone());
            async move {
                let mut walk = walk?;
                let joined = tokio::task::spawn_blocking(move || {
                    let page = sweep::list_page(&root, &mut walk, page_size, sweep.as_ref());
                    (page, walk)
                })
                .await;
                match joined {
                    Ok((Ok(page), _)) if page.is_empty() => None,
                    Ok((Ok(page), walk)) => Some((Ok(page), Some(walk))),
                    Ok((Err(e), _)) => Some((Err(e), None)),
                    Err(e) => Some((Err(StoreError::unavailable(format!("local blob store, listing: {e}"))), None)),
                }
            }
        })
        .boxed()
    }

    /// Opens the blob directory `dir`. [`OpenMode::Migrate`] creates it (and its
    /// parents) when missing; [`OpenMode::Existing`] requires it to exist.
    pub async fn open(dir: impl AsRef<FsPath>, mode: OpenMode) -> Result<Self, OpenError> {
        let dir = dir.as_ref();
        let location = dir.display().to_string();
        let failed = |doing: &str, e: std::io::Error| OpenError::Store {
            what: "blob directory",
            location: location.clone(),
            source: io_error(doing, &e),
        };
        if dir.to_str().is_none() {
            return Err(not_utf8(location));
        }
        match tokio::fs::metadata(dir).await {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                let source = StoreError::new(StoreErrorKind::Misconfigured, "it exists but is not a directory");
                return Err(OpenError::Store { what: "blob directory", location, source });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && mode == OpenMode::Existing => {
                return Err(OpenError::Missing { what: "blob directory", location });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tokio::fs::create_dir_all(dir).await.map_err(|e| failed("creating it", e))?;
            }
            Err(e) => return Err(failed("reading its metadata", e)),
        }
        // object_store resolves the prefix the same way; the sweep must walk the very
        // directory the store writes to.
        let root = tokio::fs::canonicalize(dir).await.map_err(|e| failed("resolving its path", e))?;
        if root.to_str().is_none() {
            return Err(not_utf8(location));
        }
        let fs = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| OpenError::Store {
                what: "blob directory",
                location: location.clone(),
                source: store_error("opening", e),
            })?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(LocalBlobStore { root, fs: Arc::new(fs) })
    }

    /// The directory the blobs live in, with symlinks resolved.
    pub fn root(&self) -> &FsPath {
        &self.root
    }

    async fn put_create(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = object_path(key)?;
        self.fs
            .put_opts(&path, PutPayload::from(bytes), PutMode::Create.into())
            .await
            .map_err(|e| store_error("storing a blob", e))?;
        Ok(())
    }

    async fn get_raw(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = object_path(key)?;
        match self.fs.get(&path).await {
            // The file is open now: a delete from here on cannot cut the read short.
            Ok(found) => Ok(Some(found.bytes().await.map_err(|e| store_error("reading a blob", e))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error("opening a blob", e)),
        }
    }
}

/// Why: object_store 0.14 unwraps the path as UTF-8 when a create-only put finds the key
/// taken, so a non-UTF-8 root would turn that answer into a panic.
fn not_utf8(location: String) -> OpenError {
    let source = StoreError::new(StoreErrorKind::Misconfigured, "its path is not valid UTF-8");
    OpenError::Store { what: "blob directory", location, source }
}

/// The `object_store` path of a key; every key this crate builds is valid.
fn object_path(key: &str) -> Result<Path, StoreError> {
    Path::parse(key)
        .map_err(|e| StoreError::new(StoreErrorKind::Corrupt, format!("blob key {key:?} is not a valid path: {e}")))
}

/// Milliseconds since the epoch of `secs` + `nanos`, rounded up: a blob must never look
/// older than it is.
fn millis_rounded_up(secs: i64, nanos: u32) -> Timestamp {
    Timestamp::from_millis(secs.saturating_mul(1000).saturating_add(i64::from(nanos.div_ceil(1_000_000))))
}

/// The kind of an I/O failure: refused permissions and read-only file systems need an
/// operator; anything else (a full disk, an I/O error) may pass.
fn io_kind(e: &std::io::Error) -> StoreErrorKind {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => StoreErrorKind::Misconfigured,
        _ => StoreErrorKind::Unavailable,
    }
}

pub(crate) fn io_error(doing: &str, e: &std::io::Error) -> StoreError {
    StoreError::new(io_kind(e), format!("local blob store, {doing}: {e}"))
}

/// `e` as a store error. The local backend wraps most failures as `Generic` around an
/// I/O error, so the I/O error found in the source chain decides the kind.
fn store_error(doing: &str, e: object_store::Error) -> StoreError {
    use object_store::Error as E;
    let kind = match &e {
        E::AlreadyExists { .. } => StoreErrorKind::AlreadyExists,
        // A file whose name object_store cannot represent: the listing is malformed.
        E::InvalidPath { .. } => StoreErrorKind::Corrupt,
        E::NotImplemented { .. }
        | E::NotSupported { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => StoreErrorKind::Misconfigured,
        _ => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            let mut kind = StoreErrorKind::Unavailable;
            while let Some(err) = source {
                if let Some(io) = err.downcast_ref::<std::io::Error>() {
                    kind = io_kind(io);
                    break;
                }
                source = err.source();
            }
            kind
        }
    };
    StoreError::new(kind, format!("local blob store, {doing}: {e}"))
}

#[async_trait::async_trait]
impl BlobStore for LocalBlobStore {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        self.put_create(&key.to_string(), bytes).await
    }

    async fn get(&self, key: &BlobKey) -> Result<Option<Bytes>, StoreError> {
        self.get_raw(&key.to_string()).await
    }

    async fn exists(&self, key: &BlobKey) -> Result<bool, StoreError> {
        match self.fs.head(&object_path(&key.to_string())?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_error("checking that a blob exists", e)),
        }
    }

    async fn delete_many(&self, keys: &[BlobKey]) -> Result<(), StoreError> {
        let paths = keys.iter().map(|k| object_path(&k.to_string())).collect::<Result<Vec<_>, _>>()?;
        // `delete_stream` is object_store's bulk delete (batched requests on S3; here ten
        // file removals at a time). Every key is tried even after a failure, so one bad
        // file does not hold back the rest; the first failure is reported.
        let mut results = self.fs.delete_stream(stream::iter(paths.into_iter().map(Ok)).boxed());
        let (mut failures, mut first) = (0usize, None);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    failures += 1;
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            None => Ok(()),
            Some(e) => {
                Err(store_error(&format!("deleting blobs ({failures} of {} failed, first shown)", keys.len()), e))
            }
        }
    }

    fn list(&self, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        self.list_walk(Walk::new(&self.root), page_size, None)
    }

    /// Enters only the image directories past the horizon's bound in each shard: the
    /// names of every shard directory are read (one directory entry per image, no file
    /// metadata), the files of older images are not visited.
    fn list_since(&self, horizon: Timestamp, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        self.list_walk(Walk::after(&self.root, mint_time_bound(horizon)), page_size, None)
    }

    async fn sweep_staging(&self, older_than: Timestamp) -> Result<u64, StoreError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || sweep::sweep_staging(&root, older_than))
            .await
            .map_err(|e| StoreError::unavailable(format!("local blob store, sweeping staging files: {e}")))?
    }

    /// One walk: the listing removes each stale staging file it meets.
    async fn list_sweeping_staging(&self, page_size: usize, older_than: Timestamp) -> SweepingListing<'_> {
        let staging = Arc::new(StagingTally::default());
        let sweep = SweepAlong { older_than, tally: staging.clone() };
        SweepingListing { pages: self.list_walk(Walk::new(&self.root), page_size, Some(sweep)), staging }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match tokio::fs::metadata(&self.root).await {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(StoreError::new(
                StoreErrorKind::Misconfigured,
                format!("local blob store: {} is no longer a directory", self.root.display()),
            )),
            Err(e) => Err(io_error(&format!("checking {}", self.root.display()), &e)),
        }
    }

    async fn probe_clock(&self) -> Result<ClockProbe, StoreError> {
        // The kernel stamps the file with its coarse clock: creation times here have
        // the granularity of a scheduler tick, at most 10 ms, on a filesystem that
        // keeps fractions of a second.
        let path = self.root.join(CLOCK_PROBE_KEY);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_error("creating the clock probe's directory", &e))?;
        }
        tokio::fs::write(&path, b"").await.map_err(|e| io_error("writing the clock probe", &e))?;
        let meta = tokio::fs::metadata(&path).await.map_err(|e| io_error("reading the clock probe's time", &e))?;
        let modified = meta.modified().map_err(|e| io_error("reading the clock probe's time", &e))?;
        let since_epoch = modified.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let created = Timestamp::from_millis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX));
        // A filesystem that keeps whole seconds (some network and FAT-like ones) shows
        // no fraction: a nanosecond clock lands exactly on a second once in 10^9.
        let precision = if since_epoch.subsec_nanos() == 0 {
            std::time::Duration::from_secs(1)
        } else {
            std::time::Duration::from_millis(10)
        };
        Ok(ClockProbe { created, precision })
    }

    async fn read_marker(&self) -> Result<Option<Bytes>, StoreError> {
        self.get_raw(PAIRING_MARKER_KEY).await
    }

    async fn create_marker(&self, contents: Bytes) -> Result<(), StoreError> {
        self.put_create(PAIRING_MARKER_KEY, contents).await
    }
}
