//! The local directory's record of what it was asked to store, so that a listing of
//! the images minted since a horizon reads only what changed, not the whole store.
//!
//! Why a journal: a directory lists its entries in hash order, not by name, so unlike
//! an S3 listing it cannot start after a name. Finding the images minted since a
//! horizon by the directories alone means reading the name of every image in the
//! store, which grows with the store, not with the change.
//!
//! Each `put_new` first appends its key, as one line, to the segment file named by the
//! first eight hex digits of its image id: the top 32 bits of its mint time in
//! milliseconds, so one segment holds the images minted in one span of 65.536 s. The
//! line goes to the page cache and is not synced: it survives the process being
//! killed at any point, not a power loss. A lost line, or a file placed in the
//! directory by other means, only hides an orphan from incremental cycles: the full
//! sweep still lists every file, and nothing is deleted on the journal's word alone
//! (every listed blob still passes the age filter, the "referenced" query and the
//! delay). The line is written before the blob, so a put killed in between leaves a
//! line naming no file, which a listing skips.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use profilestore_core::error::StoreError;
use profilestore_core::ids::{BlobKey, mint_time_bound};
use profilestore_core::store::ListedBlob;
use profilestore_core::time::Timestamp;

use super::io_error;
use super::sweep::modified_rounded_up;

/// The journal's directory under the blob directory's root; walks of the store skip
/// it, so its files are never listed as objects.
pub(crate) const JOURNAL_DIR: &str = "_profilestore/journal";

/// Hex digits of an image id that name its segment.
const SEGMENT_DIGITS: usize = 8;

/// How long a full sweep keeps a segment after its span ended: an incremental cleaner
/// whose horizon is older than this (stopped for a week) finds the orphans of that
/// time in its next full sweep instead. Only full sweeps prune: they are real cycles
/// (a dry run lists without them), and segments older than a horizon cost a listing
/// nothing but their names.
const FULL_SWEEP_KEEPS: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Appends keys to their segments; one segment file is kept open at a time.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    open: Mutex<Option<(String, File)>>,
}

impl Journal {
    pub(crate) fn new(root: &Path) -> Journal {
        Journal { dir: root.join(JOURNAL_DIR), open: Mutex::new(None) }
    }

    /// Appends `key` to its segment (blocking, but one short write to the page cache).
    pub(crate) fn record(&self, key: &BlobKey) -> Result<(), StoreError> {
        let line = format!("{key}\n");
        let segment = segment_of(&key.image_id.to_string());
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if open.as_ref().is_none_or(|(name, _)| *name != segment) {
            let file = self.open_segment(&segment)?;
            *open = Some((segment, file));
        }
        let (_, file) = open.as_mut().expect("a segment was just opened");
        // One `write` of a short line to a file opened for appending lands whole, so
        // lines of concurrent writers (other processes too) do not interleave. After
        // a failed write the handle is dropped: the next put opens the file again.
        if let Err(e) = file.write_all(line.as_bytes()) {
            *open = None;
            return Err(io_error("recording a put in the listing journal", &e));
        }
        Ok(())
    }

    fn open_segment(&self, segment: &str) -> Result<File, StoreError> {
        let path = self.dir.join(segment);
        let open = || OpenOptions::new().append(true).create(true).open(&path);
        match open() {
            Ok(file) => Ok(file),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.dir).map_err(|e| io_error("creating the listing journal", &e))?;
                open().map_err(|e| io_error("opening a listing journal segment", &e))
            }
            Err(e) => Err(io_error("opening a listing journal segment", &e)),
        }
    }
}

/// `span` before `t`.
fn before(t: Timestamp, span: std::time::Duration) -> Timestamp {
    Timestamp::from_millis(t.as_millis().saturating_sub(i64::try_from(span.as_millis()).unwrap_or(i64::MAX)))
}

/// The segment an image id's line goes to.
fn segment_of(image_id: &str) -> String {
    image_id[..SEGMENT_DIGITS].to_owned()
}

/// The segments, in name order (so in mint-time order), whose span holds `t` or later.
fn segments_from(dir: &Path, t: Timestamp) -> Result<VecDeque<PathBuf>, StoreError> {
    let first = segment_of(&mint_time_bound(t));
    let mut names = segment_names(dir)?;
    names.retain(|name| *name >= first);
    names.sort();
    Ok(names.into_iter().map(|name| dir.join(name)).collect())
}

/// The names of the segment files in `dir` (none when it does not exist yet).
fn segment_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("reading the listing journal", &e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("reading the listing journal", &e))?;
        if let Some(name) = entry.file_name().to_str().filter(|n| is_segment_name(n)) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

fn is_segment_name(name: &str) -> bool {
    name.len() == SEGMENT_DIGITS && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Removes the segments whose whole span ended before `t`. Failures are logged, not
/// returned: a segment left behind costs a little disk.
fn remove_segments_before(dir: &Path, t: Timestamp) {
    let first_kept = segment_of(&mint_time_bound(t));
    let names = match segment_names(dir) {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(error = %e, "local blob store: cannot read the listing journal to prune it");
            return;
        }
    };
    let mut removed = 0usize;
    for name in names.into_iter().filter(|name| *name < first_kept) {
        match std::fs::remove_file(dir.join(&name)) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(segment = %name, error = %e, "local blob store: cannot prune a listing journal segment")
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "local blob store: pruned week-old listing journal segments");
    }
}

/// What a full sweep does to the journal: removes the segments whose span ended more
/// than a week before `now`.
pub(crate) fn prune_after_full_sweep(root: &Path, now: Timestamp) {
    remove_segments_before(&root.join(JOURNAL_DIR), before(now, FULL_SWEEP_KEEPS))
}

/// The blobs the journal names that were minted at or after a horizon and still exist,
/// a segment at a time (so memory holds one segment's keys, not the whole change).
#[derive(Debug)]
pub(crate) struct JournalListing {
    root: PathBuf,
    horizon: Timestamp,
    segments: Option<VecDeque<PathBuf>>,
    /// The current segment's keys still to look up, sorted and without repeats.
    keys: VecDeque<String>,
}

impl JournalListing {
    pub(crate) fn new(root: &Path, horizon: Timestamp) -> JournalListing {
        JournalListing { root: root.to_path_buf(), horizon, segments: None, keys: VecDeque::new() }
    }

    /// Up to `page_size` blobs; an empty page means the listing is done.
    pub(crate) fn next_page(&mut self, page_size: usize) -> Result<Vec<ListedBlob>, StoreError> {
        if self.segments.is_none() {
            self.segments = Some(segments_from(&self.root.join(JOURNAL_DIR), self.horizon)?);
        }
        let mut page = Vec::new();
        while page.len() < page_size {
            let Some(key) = self.keys.pop_front() else {
                let Some(segment) = self.segments.as_mut().and_then(VecDeque::pop_front) else { break };
                self.keys = read_segment(&segment, self.horizon)?;
                continue;
            };
            if let Some(blob) = stat(&self.root, key)? {
                page.push(blob);
            }
        }
        Ok(page)
    }
}

/// The keys in one segment minted at or after `horizon`, sorted, each once. Lines
/// that are not keys (a line cut short by a full disk) are skipped.
fn read_segment(path: &Path, horizon: Timestamp) -> Result<VecDeque<String>, StoreError> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(VecDeque::new()),
        Err(e) => return Err(io_error(&format!("reading listing journal segment {}", path.display()), &e)),
    };
    let mut keys: Vec<String> = text
        .split(|b| *b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .filter_map(BlobKey::parse)
        .filter(|key| key.image_id.minted_at() >= horizon)
        .map(|key| key.to_string())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    Ok(keys.into())
}

/// The blob under `key` as a listing reports it, or `None` when there is no such file
/// (deleted since, or its put never got past the journal).
fn stat(root: &Path, key: String) -> Result<Option<ListedBlob>, StoreError> {
    let path = root.join(&key);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&format!("reading the metadata of {}", path.display()), &e)),
    };
    let created = match meta.modified() {
        Ok(t) => modified_rounded_up(t),
        Err(e) => return Err(io_error(&format!("reading the modification time of {}", path.display()), &e)),
    };
    Ok(Some(ListedBlob { key, created, size: meta.len() }))
}
