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
use super::journal::JOURNAL_DIR;

/// The regular files under a root, depth-first. Symbolic links are neither followed
/// nor yielded; entries that vanish during the walk (deletes, sweeps) are skipped.
pub(crate) struct Walk {
    /// Directories still to read, with their depth below the root.
    dirs: Vec<(PathBuf, usize)>,
    entries: Option<(PathBuf, usize, ReadDir)>,
    /// The store's own journal directory, never entered: its files are not objects.
    journal: PathBuf,
}

impl Walk {
    /// A walk over everything under `root` but the listing journal.
    pub(crate) fn new(root: &Path) -> Walk {
        Walk { dirs: vec![(root.to_path_buf(), 0)], entries: None, journal: root.join(JOURNAL_DIR) }
    }
}

impl Iterator for Walk {
    type Item = Result<(PathBuf, DirEntry), StoreError>;

    /// The next regular file, with the directory it is in.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.entries.is_none() {
                let (dir, depth) = self.dirs.pop()?;
                match std::fs::read_dir(&dir) {
                    Ok(entries) => self.entries = Some((dir, depth, entries)),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Some(Err(io_error(&format!("reading directory {}", dir.display()), &e))),
                }
                continue;
            }
            let (dir, depth, entries) = self.entries.as_mut()?;
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
                Ok(t) if t.is_dir() => {
                    let path = entry.path();
                    // The journal is two levels down, like an image's directory; its
                    // name is compared first, which is cheap for the million others.
                    let is_journal = *depth == 1 && entry.file_name() == "journal" && path == self.journal;
                    if !is_journal {
                        self.dirs.push((path, *depth + 1));
                    }
                }
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
