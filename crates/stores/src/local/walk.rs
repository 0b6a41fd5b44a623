//! A depth-first walk over the regular files under the blob directory (blocking; run
//! it on a blocking thread). Shared by the listing and the staging-file sweep.
//!
//! Why not `object_store`'s own listing: it ends the whole listing at the first file
//! whose name is not a valid object path (e.g. not UTF-8), so one stray file would stop
//! every cleaner cycle and audit. This walk reports such files and goes on.

use std::fs::{DirEntry, ReadDir};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use profilestore_core::error::StoreError;

use super::io_error;

/// The regular files under a root, depth-first. Symbolic links are neither followed
/// nor yielded; entries that vanish during the walk (deletes, sweeps) are skipped.
pub(crate) struct Walk {
    dirs: Vec<PathBuf>,
    entries: Option<(PathBuf, ReadDir)>,
}

impl Walk {
    /// A walk over everything under `root`.
    pub(crate) fn new(root: &Path) -> Walk {
        Walk { dirs: vec![root.to_path_buf()], entries: None }
    }
}

impl Iterator for Walk {
    type Item = Result<(PathBuf, DirEntry), StoreError>;

    /// The next regular file, with the directory it is in.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.entries.is_none() {
                let dir = self.dirs.pop()?;
                match std::fs::read_dir(&dir) {
                    Ok(entries) => self.entries = Some((dir, entries)),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Some(Err(io_error(&format!("reading directory {}", dir.display()), &e))),
                }
                continue;
            }
            let (dir, entries) = self.entries.as_mut()?;
            let entry = match entries.next() {
                None => {
                    self.entries = None;
                    continue;
                }
                Some(Ok(entry)) => entry,
                Some(Err(e)) if e.kind() == ErrorKind::NotFound => continue,
                Some(Err(e)) => return Some(Err(io_error(&format!("reading directory {}", dir.display()), &e))),
            };
            // `file_type` does not follow symlinks.
            match entry.file_type() {
                Ok(t) if t.is_dir() => self.dirs.push(entry.path()),
                Ok(t) if t.is_file() => return Some(Ok((dir.clone(), entry))),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    return Some(Err(io_error(&format!("reading the type of {}", entry.path().display()), &e)));
                }
            }
        }
    }
}
