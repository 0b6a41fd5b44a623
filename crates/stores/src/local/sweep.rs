//! Listing the blob directory, and removing the staging files interrupted puts leave
//! behind, on their own or while listing (all blocking; run them on a blocking thread).
//!
//! Removing a staging file is always safe: a put whose staging file vanishes fails at
//! its publishing `hard_link` and publishes nothing, and a staging file left after a
//! successful publish is a second name of the published file, whose removal leaves the
//! blob intact.

use std::fs::DirEntry;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use profilestore_core::error::StoreError;
use profilestore_core::store::{ListedBlob, StagingTally};
use profilestore_core::time::Timestamp;

use super::walk::Walk;
use super::{io_error, millis_rounded_up};

/// Whether `name` is a staging file by `object_store`'s own rule (`local.rs`,
/// `is_valid_file_path`): the text after the name's first `#` is one or more digits.
/// Exactly these files are hidden from listings and cannot be addressed as objects.
pub(crate) fn is_staging_name(name: &str) -> bool {
    matches!(name.split_once('#'), Some((_, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

pub(crate) fn modified_rounded_up(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => millis_rounded_up(i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos()),
        Err(_) => Timestamp::from_millis(0),
    }
}

/// Removes every staging file under `root` last modified at or before `older_than`
/// (modification times rounded up, so a file of unclear age is kept); returns how many
/// it removed. Symbolic links are neither followed nor removed. Files or directories
/// that vanish during the walk (other sweepers, deletes) are skipped.
pub(crate) fn sweep_staging(root: &Path, older_than: Timestamp) -> Result<u64, StoreError> {
    let mut removed = 0;
    for file in Walk::new(root) {
        let (dir, entry) = file?;
        if is_staging(&entry) && remove_if_stale(root, &dir, &entry, older_than)? {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Staging files a listing removes as it meets them: those last modified at or before
/// `older_than`, counted on `tally`.
#[derive(Debug, Clone)]
pub(crate) struct SweepAlong {
    pub(crate) older_than: Timestamp,
    pub(crate) tally: Arc<StagingTally>,
}

fn is_staging(entry: &DirEntry) -> bool {
    entry.file_name().to_str().is_some_and(is_staging_name)
}

/// Removes the staging file `entry`, in `dir`, when it was last modified at or before
/// `older_than`; whether it removed it (`false` too when it vanished meanwhile).
fn remove_if_stale(root: &Path, dir: &Path, entry: &DirEntry, older_than: Timestamp) -> Result<bool, StoreError> {
    let path = entry.path();
    let modified = match entry.metadata().and_then(|m| m.modified()) {
        Ok(t) => modified_rounded_up(t),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(&format!("reading the modification time of {}", path.display()), &e)),
    };
    if modified > older_than {
        return Ok(false);
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {
            tracing::info!(file = %path.display(), "removed a stale staging file");
            // Drop the directory too if this emptied it (a put that finds it gone
            // recreates it); errors only mean it is not empty.
            if dir != root {
                let _ = std::fs::remove_dir(dir);
            }
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(&format!("removing {}", path.display()), &e)),
    }
}

/// Up to `page_size` objects from `walk`: every regular file except staging files,
/// keyed by its path relative to `root` with `/` separators. Files whose path is not
/// UTF-8 are logged and skipped: no key can name them, so nothing can delete them.
/// With `sweep`, the staging files met on the way are removed when stale; a failure
/// to remove one is noted on the tally and the listing goes on.
pub(crate) fn list_page(
    root: &Path,
    walk: &mut Walk,
    page_size: usize,
    sweep: Option<&SweepAlong>,
) -> Result<Vec<ListedBlob>, StoreError> {
    let mut page = Vec::new();
    while page.len() < page_size {
        let Some(file) = walk.next() else { break };
        let (dir, entry) = file?;
        if is_staging(&entry) {
            if let Some(sweep) = sweep {
                match remove_if_stale(root, &dir, &entry, sweep.older_than) {
                    Ok(true) => sweep.tally.removed_some(1),
                    Ok(false) => {}
                    Err(e) => sweep.tally.failed(e),
                }
            }
            continue;
        }
        let path = entry.path();
        let Some(key) = path.strip_prefix(root).ok().and_then(|rel| rel.to_str()).map(|k| k.replace('\\', "/")) else {
            tracing::warn!(file = %path.display(), "local blob store: skipping a file whose name is not UTF-8");
            continue;
        };
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&format!("reading the metadata of {}", path.display()), &e)),
        };
        let created = match meta.modified() {
            Ok(t) => modified_rounded_up(t),
            Err(e) => return Err(io_error(&format!("reading the modification time of {}", path.display()), &e)),
        };
        page.push(ListedBlob { key, created, size: meta.len() });
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::is_staging_name;

    #[test]
    fn staging_names_follow_object_stores_rule() {
        assert!(is_staging_name("original#1"));
        assert!(is_staging_name("pairing.json#42"));
        assert!(!is_staging_name("original"));
        assert!(!is_staging_name("original#"));
        assert!(!is_staging_name("original#1a"));
        // object_store splits at the first '#': this is a (strange) object, not staging.
        assert!(!is_staging_name("a#b#1"));
    }
}
