//! Removing the staging files interrupted puts leave behind (blocking; run it on a
//! blocking thread).
//!
//! Removing a staging file is always safe: a put whose staging file vanishes fails at
//! its publishing `hard_link` and publishes nothing, and a staging file left after a
//! successful publish is a second name of the published file, whose removal leaves the
//! blob intact.

use std::io::ErrorKind;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use profilestore_core::error::StoreError;
use profilestore_core::time::Timestamp;

use super::{io_error, millis_rounded_up};

/// Whether `name` is a staging file by `object_store`'s own rule (`local.rs`,
/// `is_valid_file_path`): the text after the name's first `#` is one or more digits.
/// Exactly these files are hidden from listings and cannot be addressed as objects.
pub(crate) fn is_staging_name(name: &str) -> bool {
    matches!(name.split_once('#'), Some((_, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn modified_rounded_up(t: SystemTime) -> Timestamp {
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
    let walk_error = |doing: &str, path: &Path, e: std::io::Error| io_error(&format!("{doing} {}", path.display()), &e);
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(walk_error("reading directory", &dir, e)),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(walk_error("reading directory", &dir, e)),
            };
            let path = entry.path();
            // `file_type` does not follow symlinks.
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(walk_error("reading the type of", &path, e)),
            };
            if file_type.is_dir() {
                dirs.push(path);
                continue;
            }
            let is_staging = entry.file_name().to_str().is_some_and(is_staging_name);
            if !file_type.is_file() || !is_staging {
                continue;
            }
            let modified = match entry.metadata().and_then(|m| m.modified()) {
                Ok(t) => modified_rounded_up(t),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(walk_error("reading the modification time of", &path, e)),
            };
            if modified > older_than {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    removed += 1;
                    tracing::info!(file = %path.display(), "removed a stale staging file");
                    // Drop the directory too if this emptied it (a put that finds it
                    // gone recreates it); errors only mean it is not empty.
                    if dir != root {
                        let _ = std::fs::remove_dir(&dir);
                    }
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(walk_error("removing", &path, e)),
            }
        }
    }
    Ok(removed)
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
