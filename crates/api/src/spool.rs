//! The spool: a bounded directory on disk where large uploads are received, so that a
//! slow client trickling a 10 MiB image holds disk rather than memory while it does.
//!
//! The bytes cannot go straight to the blob store as they arrive: a multipart upload
//! there has no create-only mode, and the blob put must stay create-only. So they wait
//! here, each upload in its own file, and are read back into memory (within the memory
//! budget) once the whole body is in.
//!
//! Promises:
//! - a file is created exclusively, under an unpredictable name, readable and writable
//!   by this process's user only, in a directory no one else may enter;
//! - it is removed on every path (written and stored, refused, client gone, panic):
//!   [`SpoolFile`] removes it when dropped, and only then gives its disk share back;
//! - the files together hold at most the disk budget: each takes its share as its
//!   bytes arrive (a declared length costs nothing until it is sent, so clients that
//!   announce large bodies and trickle them cannot spend the budget), and a write
//!   beyond the budget is refused, the upload answered 503 `overloaded`;
//! - files left by a process that was killed are removed when the spool is opened.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::admission::budget_units;
use crate::error::ApiError;

/// The names of spool files start with this; only such files are removed at start.
const PREFIX: &str = "upload-";

/// Where and when uploads are spooled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSettings {
    /// The directory the files go in. Created (mode 0700) if missing; an existing one
    /// must give no access to group or others.
    pub dir: PathBuf,
    /// Uploads that may hold more than this many bytes (their declared length, or the
    /// body limit when they declare none) are spooled; `0` spools every upload.
    pub above: u64,
    /// Bytes the spool files may hold together; beyond, 503 `overloaded`.
    pub max_bytes: u64,
}

impl SpoolSettings {
    /// The default [`above`](Self::above): 1 MiB. Smaller uploads are held in memory,
    /// where a slow one holds little; larger ones are where memory goes under load.
    pub const DEFAULT_ABOVE: u64 = 1024 * 1024;
    /// The default [`max_bytes`](Self::max_bytes): 1 GiB, a hundred 10 MiB uploads.
    pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024 * 1024;
}

/// Why the spool could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The directory could not be created, read or cleaned.
    #[error("spool directory {}: {source}", dir.display())]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The directory lets group or others in: they could read uploads or plant files.
    #[error("spool directory {} is open to others (mode {mode:o}); give it mode 0700", dir.display())]
    NotPrivate {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// An open spool, shared by every router of one process (cloning shares its budget).
#[derive(Debug, Clone)]
pub struct Spool(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    above: u64,
    disk: Arc<Semaphore>,
}

impl Spool {
    /// Opens the spool in `settings.dir`: creates the directory (mode 0700) or checks
    /// that an existing one is private, and removes the files a killed process left
    /// there. A file another live process still uses is unharmed: each upload reads its
    /// file back through the handle it wrote with, never by name.
    pub fn open(settings: SpoolSettings) -> Result<Spool, SpoolError> {
        let dir = settings.dir;
        let failed = |source| SpoolError::Directory { dir: dir.clone(), source };
        private_dir(&dir).map_err(|e| match e {
            Private::Io(source) => failed(source),
            Private::Open(mode) => SpoolError::NotPrivate { dir: dir.clone(), mode },
        })?;
        let mut removed = 0u64;
        for entry in std::fs::read_dir(&dir).map_err(failed)? {
            let entry = entry.map_err(failed)?;
            let stale = entry.file_name().to_str().is_some_and(|n| n.starts_with(PREFIX))
                && entry.file_type().map_err(failed)?.is_file();
            if stale {
                std::fs::remove_file(entry.path()).map_err(failed)?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(dir = %dir.display(), removed, "removed spool files left by an earlier process");
        }
        let disk = Arc::new(Semaphore::new(budget_units(settings.max_bytes) as usize));
        Ok(Spool(Arc::new(Inner { dir, above: settings.above, disk })))
    }

    /// The directory the files go in.
    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    /// Whether an upload that may hold `bytes` is spooled.
    pub(crate) fn takes(&self, bytes: u64) -> bool {
        bytes > self.0.above
    }

    /// A fresh, empty file (500 when it cannot be created).
    pub(crate) fn create(&self) -> Result<SpoolFile, ApiError> {
        // An empty share, grown as bytes are written.
        let share = self.0.disk.clone().try_acquire_many_owned(0).map_err(|_| ApiError::internal())?;
        // tempfile: O_EXCL, a random name, mode 0600.
        let created = tempfile::Builder::new().prefix(PREFIX).tempfile_in(&self.0.dir).map_err(|e| {
            tracing::error!(dir = %self.0.dir.display(), error = %e, "a spool file could not be created");
            ApiError::internal()
        })?;
        let (file, path) = created.into_parts();
        let disk = self.0.disk.clone();
        Ok(SpoolFile { file: tokio::fs::File::from_std(file), written: 0, disk, _path: path, share })
    }
}

/// One upload's file in the spool. Dropping it removes the file, then gives its share
/// of the disk budget back (fields drop in order).
pub(crate) struct SpoolFile {
    file: tokio::fs::File,
    written: u64,
    disk: Arc<Semaphore>,
    _path: tempfile::TempPath,
    share: OwnedSemaphorePermit,
}

impl SpoolFile {
    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.written
    }

    /// Appends `chunk`, after taking room for it from the disk budget; an error of kind
    /// [`StorageFull`](std::io::ErrorKind::StorageFull) when the budget has none.
    pub(crate) async fn append(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        let needed = budget_units(self.written.saturating_add(chunk.len() as u64));
        let more = needed.saturating_sub(self.share.num_permits() as u32);
        if more > 0 {
            let full = |_| std::io::Error::new(std::io::ErrorKind::StorageFull, "the spool's disk budget is spent");
            self.share.merge(self.disk.clone().try_acquire_many_owned(more).map_err(full)?);
        }
        self.file.write_all(chunk).await?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// Everything written, read back into one buffer of exactly that size (on a
    /// blocking thread); the file is removed and its share returned when this ends.
    pub(crate) async fn read_back(self) -> std::io::Result<Bytes> {
        use std::io::{Read, Seek};
        // The path and the share stay in `self` until this returns.
        let SpoolFile { mut file, written, .. } = self;
        file.flush().await?;
        let len = usize::try_from(written).map_err(std::io::Error::other)?;
        let mut file = file.into_std().await;
        // Allocated here, on one of the runtime's few threads, not on the blocking
        // thread: glibc gives each thread that allocates its own arena, and freed 10 MiB
        // buffers left in dozens of blocking threads' arenas stayed resident (the
        // hostile-load test's peak went from about 130 MiB to about 300 MiB).
        let mut buf = vec![0; len];
        let read = tokio::task::spawn_blocking(move || {
            file.rewind()?;
            file.read_exact(&mut buf)?;
            Ok::<_, std::io::Error>(buf)
        });
        let bytes = read.await.map_err(std::io::Error::other)??;
        Ok(Bytes::from(bytes))
    }
}

/// Why a directory is not fit for the spool.
enum Private {
    Io(std::io::Error),
    Open(u32),
}

/// Creates `dir` (and its parents) with mode 0700, or checks an existing one grants
/// group and others nothing.
fn private_dir(dir: &Path) -> Result<(), Private> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(Private::Io)?;
        let mode = std::fs::metadata(dir).map_err(Private::Io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Private::Open(mode));
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(Private::Io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, max_bytes: u64) -> SpoolSettings {
        SpoolSettings { dir: dir.join("spool"), above: 0, max_bytes }
    }

    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[tokio::test]
    async fn a_file_is_private_read_back_whole_and_removed_with_its_share() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(settings(root.path(), 8 * 1024)).unwrap();
        let mut file = spool.create().unwrap();
        file.append(b"hello ").await.unwrap();
        file.append(b"spool").await.unwrap();
        let mut second = spool.create().unwrap();
        second.append(&[0; 7 * 1024]).await.unwrap();
        let full = second.append(&[0; 1]).await.unwrap_err();
        assert_eq!(full.kind(), std::io::ErrorKind::StorageFull, "the disk budget is spent");
        drop(second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let dir_mode = std::fs::metadata(spool.dir()).unwrap().permissions().mode() & 0o777;
            assert_eq!(dir_mode, 0o700);
            let entry = std::fs::read_dir(spool.dir()).unwrap().next().unwrap().unwrap();
            assert_eq!(entry.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(file.read_back().await.unwrap(), Bytes::from_static(b"hello spool"));
        assert_eq!(files(spool.dir()), 0, "removed once read back");
        let mut third = spool.create().unwrap();
        third.append(&[0; 8 * 1024]).await.expect("the shares came back with their files");
        drop(third);
        assert_eq!(files(spool.dir()), 0, "removed when dropped unread");
    }

    #[tokio::test]
    async fn stale_files_are_removed_at_open_and_an_open_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let first = Spool::open(settings(root.path(), 1 << 20)).unwrap();
        let left = first.create().unwrap();
        // A killed process leaves its file behind; forgetting the guard stands for it.
        std::mem::forget(left);
        std::fs::write(first.dir().join("operators-notes"), b"kept").unwrap();
        assert_eq!(files(first.dir()), 2);
        let second = Spool::open(settings(root.path(), 1 << 20)).unwrap();
        assert_eq!(files(second.dir()), 1, "only the spool's own files are removed");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(second.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let refused = Spool::open(settings(root.path(), 1 << 20));
            assert!(matches!(refused, Err(SpoolError::NotPrivate { mode: 0o755, .. })), "{refused:?}");
        }
    }
}
