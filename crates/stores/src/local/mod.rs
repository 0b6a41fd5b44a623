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
//!
//! Beside the blobs, a journal of the keys put (see `journal`) lets a listing of the
//! images minted since a horizon read only what changed.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use journal::{Journal, JournalListing};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use profilestore_core::error::{StoreError, StoreErrorKind};
use profilestore_core::ids::BlobKey;
use profilestore_core::store::{
    BlobStore, CLOCK_PROBE_KEY, ClockProbe, ListedBlob, PAIRING_MARKER_KEY, StagingTally, SweepingListing,
};
use profilestore_core::time::Timestamp;
use sweep::SweepAlong;
use tokio::sync::Semaphore;
use walk::Walk;

use crate::open::{OpenError, OpenMode};

mod journal;
#[cfg(test)]
mod journal_tests;
mod sweep;
#[cfg(test)]
mod tests;
mod walk;

/// Bulk deletes run as this many of object_store's delete streams at once.
const DELETE_STREAMS: usize = 2;

/// Image bytes as files under one local directory.
///
/// Promises: every [`BlobStore`] contract; creation times are the files' modification
/// times by the local clock, rounded up to whole milliseconds. [`list_since`]
/// (BlobStore::list_since) lists what this store's `put_new` calls put (any process's,
/// on this directory, unless its journal was turned off), not files placed in the
/// directory by other means, nor a put whose journal line a power loss took (the full
/// sweep finds those).
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
    fs: Arc<LocalFileSystem>,
    /// `None` when turned off by [`without_journal`](LocalBlobStore::without_journal).
    journal: Option<Arc<Journal>>,
    /// Blob reads on blocking threads at once (see `get_raw`).
    reads: Arc<Semaphore>,
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
        blocking_pages(walk, page_size, move |walk, n| sweep::list_page(&root, walk, n, sweep.as_ref()))
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
        let journal = Some(Arc::new(Journal::new(&root)));
        Ok(LocalBlobStore { root, fs: Arc::new(fs), journal, reads: Arc::new(Semaphore::new(concurrent_reads())) })
    }

    /// This store with its listing journal turned off: its puts cost one short
    /// `write` less, and [`list_since`](BlobStore::list_since) will not list them. For
    /// measuring what the journal costs a write (the benchmark's floor), not for
    /// serving.
    pub fn without_journal(self) -> Self {
        LocalBlobStore { journal: None, ..self }
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

    /// Opens and reads the file in one trip to a blocking thread (object_store's `get`
    /// takes two: one to open, one to read). Once the file is open, a delete cannot
    /// cut the read short. A directory at the key is no blob, as object_store says.
    ///
    /// At most two reads per core (at least four) run at once; more wait for a turn.
    /// Why: every read in flight holds a thread of tokio's blocking pool, and at 64
    /// clients the pool grew to one thread per read, whose switching on two cores cost
    /// more than the reads. A read from the page cache is CPU work, so two per core
    /// keep the cores busy; cold reads queue a little longer.
    async fn get_raw(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = object_path(key)?;
        let file = self.root.join(path.as_ref());
        let turn = self
            .reads
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::unavailable("local blob store: closed"))?;
        let read = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            std::fs::read(file)
        })
        .await
        .map_err(|e| StoreError::unavailable(format!("local blob store, reading a blob: {e}")))?;
        match read {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory) => Ok(None),
            Err(e) => Err(io_error("reading a blob", &e)),
        }
    }
}

/// The pages `next_page(state, page_size)` answers, each made on a blocking thread,
/// until an empty page or an error; `state` travels with each trip.
fn blocking_pages<'a, S, F>(
    state: S,
    page_size: usize,
    next_page: F,
) -> BoxStream<'a, Result<Vec<ListedBlob>, StoreError>>
where
    S: Send + 'static,
    F: Fn(&mut S, usize) -> Result<Vec<ListedBlob>, StoreError> + Clone + Send + Sync + 'static,
{
    let page_size = page_size.max(1);
    stream::unfold(Some(state), move |state| {
        let next_page = next_page.clone();
        async move {
            let mut state = state?;
            let joined = tokio::task::spawn_blocking(move || {
                let page = next_page(&mut state, page_size);
                (page, state)
            })
            .await;
            match joined {
                Ok((Ok(page), _)) if page.is_empty() => None,
                Ok((Ok(page), state)) => Some((Ok(page), Some(state))),
                Ok((Err(e), _)) => Some((Err(e), None)),
                Err(e) => Some((Err(StoreError::unavailable(format!("local blob store, listing: {e}"))), None)),
            }
        }
    })
    .boxed()
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
    /// Records the key in the journal first (so a put killed after it leaves a line
    /// naming no file, which listings skip, never a file the journal does not name),
    /// then stores the blob.
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        if let Some(journal) = &self.journal {
            // Inline, not on a blocking thread: one short append to the page cache
            // (not synced) costs less than the trip to another thread.
            journal.record(key)?;
        }
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
        // `delete_stream` is object_store's bulk delete: here ten file removals at a
        // time, each on a blocking thread. Two streams over halves of the keys keep
        // twenty in flight: a removal (unlink, then the emptied directories) mostly
        // waits on the filesystem's locks, and twenty at once took about a third less
        // time per file than ten on two cores. Every key is tried even after a
        // failure, so one bad file does not hold back the rest; the first failure is
        // reported.
        let half = paths.len().div_ceil(DELETE_STREAMS).max(1);
        let halves: Vec<Vec<Path>> = paths.chunks(half).map(<[Path]>::to_vec).collect();
        let streams =
            halves.into_iter().map(|half| self.fs.delete_stream(stream::iter(half.into_iter().map(Ok)).boxed()));
        let mut results = stream::select_all(streams);
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

    /// Reads the journal's segments from the horizon's on and looks up each key they
    /// name (sorted, so an image's keys are adjacent): the cost follows the puts since
    /// the horizon, not the store's size. Changes nothing.
    fn list_since(&self, horizon: Timestamp, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        blocking_pages(JournalListing::new(&self.root, horizon), page_size, JournalListing::next_page)
    }

    async fn sweep_staging(&self, older_than: Timestamp) -> Result<u64, StoreError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || sweep::sweep_staging(&root, older_than))
            .await
            .map_err(|e| StoreError::unavailable(format!("local blob store, sweeping staging files: {e}")))?
    }

    /// One walk: the listing removes each stale staging file it meets. Journal
    /// segments whose span ended a week before `older_than` are removed first (only
    /// here: this is the full listing of a real cycle).
    async fn list_sweeping_staging(&self, page_size: usize, older_than: Timestamp) -> SweepingListing<'_> {
        let root = self.root.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || journal::prune_after_full_sweep(&root, older_than)).await {
            tracing::warn!(error = %e, "local blob store: pruning the listing journal failed");
        }
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

/// Blob reads one store runs at once: two per core, at least four.
fn concurrent_reads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from).saturating_mul(2).max(4)
}
