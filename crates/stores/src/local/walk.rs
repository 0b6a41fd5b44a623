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
    /// Directories still to read, with their depth below the root.
    dirs: Vec<(PathBuf, usize)>,
    entries: Option<(PathBuf, usize, ReadDir)>,
    /// Directories two levels down (`{shard}/{image_id}`) whose names sort at or
    /// before this are not entered.
    skip_through: Option<String>,
}

impl Walk {
    /// A walk over everything under `root`.
    pub(crate) fn new(root: &Path) -> Walk {
        Walk { dirs: vec![(root.to_path_buf(), 0)], entries: None, skip_through: None }
    }

    /// A walk that enters no second-level directory (an image's, in the blob-key
    /// layout) whose name sorts at or before `bound`: each shard directory's names are
    /// still read, but only later images' files are visited.
    pub(crate) fn after(root: &Path, bound: String) -> Walk {
        Walk { skip_through: Some(bound), ..Walk::new(root) }
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
                    let skipped = *depth == 1
                        && self.skip_through.as_deref().is_some_and(|bound| entry.file_name().as_encoded_bytes() <= bound.as_bytes());
                    if !skipped {
                        self.dirs.push((entry.path(), *depth + 1));
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
