//! Local-directory behaviour the shared suite cannot reach: what is on disk, staging
//! files, opening modes, and how file times become creation times.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::TryStreamExt;
use profilestore_core::error::StoreErrorKind;
use profilestore_core::ids::{BlobKey, IdSource};
use profilestore_core::store::{BlobStore, ListedBlob};
use profilestore_core::time::{Clock, Time, Timestamp};
use profilestore_runtime::{SystemClock, UuidV7Ids};

use super::LocalBlobStore;
use crate::open::{OpenError, OpenMode};

async fn fresh() -> (tempfile::TempDir, LocalBlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path().join("blobs"), OpenMode::Migrate).await.unwrap();
    (dir, store)
}

fn key() -> BlobKey {
    BlobKey::original(UuidV7Ids.next_image_id())
}

fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

async fn list(store: &LocalBlobStore) -> Vec<ListedBlob> {
    let pages: Vec<Vec<ListedBlob>> = store.list(100).try_collect().await.unwrap();
    pages.into_iter().flatten().collect()
}

fn files_under(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn existing_mode_never_creates_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = LocalBlobStore::open(&missing, OpenMode::Existing).await.unwrap_err();
    assert!(matches!(err, OpenError::Missing { .. }), "{err:?}");
    assert!(!missing.exists());
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = LocalBlobStore::open(&file, OpenMode::Migrate).await.unwrap_err();
    assert!(matches!(err, OpenError::Store { .. }), "{err:?}");
}

#[tokio::test]
async fn migrate_creates_nested_directories_and_existing_reopens_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/blobs");
    LocalBlobStore::open(&root, OpenMode::Migrate).await.unwrap();
    assert!(root.is_dir());
    LocalBlobStore::open(&root, OpenMode::Existing).await.unwrap();
}

#[tokio::test]
async fn a_put_leaves_exactly_the_keyed_file_and_no_staging_file() {
    let (_dir, store) = fresh().await;
    let k = key();
    store.put_new(&k, Bytes::from_static(b"image")).await.unwrap();
    let files = files_under(store.root());
    let blob_files: Vec<&String> = files.iter().filter(|f| !f.starts_with(super::journal::JOURNAL_DIR)).collect();
    assert_eq!(blob_files, [&k.to_string()]);
    assert_eq!(std::fs::read(store.root().join(k.to_string())).unwrap(), b"image");
}

#[tokio::test]
async fn deleting_the_last_blob_of_a_directory_removes_the_emptied_directories() {
    let (_dir, store) = fresh().await;
    let k = key();
    store.put_new(&k, Bytes::from_static(b"x")).await.unwrap();
    store.delete_many(&[k]).await.unwrap();
    assert!(store.root().is_dir(), "the root itself must stay");
    // Only the store's own directory (the listing journal) is left.
    let leftovers: Vec<_> = std::fs::read_dir(store.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "_profilestore")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn creation_times_are_file_times_rounded_up_to_the_millisecond() {
    let (_dir, store) = fresh().await;
    let (exact, fraction) = (key(), key());
    store.put_new(&exact, Bytes::from_static(b"a")).await.unwrap();
    store.put_new(&fraction, Bytes::from_static(b"b")).await.unwrap();
    let base = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    set_mtime(&store.root().join(exact.to_string()), base);
    set_mtime(&store.root().join(fraction.to_string()), base + Duration::from_nanos(1));
    let listed = list(&store).await;
    let created = |k: &BlobKey| listed.iter().find(|b| b.key == k.to_string()).unwrap().created;
    assert_eq!(created(&exact), Timestamp::from_millis(1_700_000_000_123));
    assert_eq!(created(&fraction), Timestamp::from_millis(1_700_000_000_124));
}

#[tokio::test]
async fn staging_files_are_hidden_and_only_old_ones_are_swept() {
    let (_dir, store) = fresh().await;
    let root = store.root().to_path_buf();
    let clock = SystemClock::new();
    let hour_ago = UNIX_EPOCH + Duration::from_millis(clock.now().as_millis() as u64) - Duration::from_secs(3600);
    let cutoff = Timestamp::from_millis(clock.now().as_millis() - 60_000);

    // A put that died before publishing, long ago: swept.
    let dead = key();
    let dead_staging = root.join(format!("{dead}#1"));
    write_file(&dead_staging, b"partial");
    set_mtime(&dead_staging, hour_ago);
    // A put that published but died before removing its staging name: the staging name
    // goes, the blob stays.
    let published = key();
    store.put_new(&published, Bytes::from_static(b"whole")).await.unwrap();
    let leftover = root.join(format!("{published}#2"));
    std::fs::hard_link(root.join(published.to_string()), &leftover).unwrap();
    set_mtime(&leftover, hour_ago);
    // A put in progress right now: kept.
    let live = root.join(format!("{}#1", key()));
    write_file(&live, b"writing");
    // An old real blob, and an old file that only looks similar: kept.
    let old_blob = key();
    store.put_new(&old_blob, Bytes::from_static(b"old")).await.unwrap();
    set_mtime(&root.join(old_blob.to_string()), hour_ago);
    let lookalike = root.join("x/name#1b");
    write_file(&lookalike, b"?");
    set_mtime(&lookalike, hour_ago);

    let mut keys: Vec<String> = list(&store).await.into_iter().map(|b| b.key).collect();
    keys.sort();
    let mut expected = vec![published.to_string(), old_blob.to_string(), "x/name#1b".to_string()];
    expected.sort();
    assert_eq!(keys, expected, "staging files must not be listed");

    assert_eq!(store.sweep_staging(cutoff).await.unwrap(), 2);
    assert!(!dead_staging.exists() && !leftover.exists());
    assert!(!dead_staging.parent().unwrap().exists(), "the dead put's emptied directory should go too");
    assert!(live.exists() && lookalike.exists());
    assert_eq!(store.get(&published).await.unwrap(), Some(Bytes::from_static(b"whole")));
    assert_eq!(store.get(&old_blob).await.unwrap(), Some(Bytes::from_static(b"old")));
    assert_eq!(store.sweep_staging(cutoff).await.unwrap(), 0, "a second sweep finds nothing");
    // The boundary: a staging file modified exactly at the cutoff is old enough.
    let at_cutoff = root.join(format!("{}#1", key()));
    write_file(&at_cutoff, b"x");
    set_mtime(&at_cutoff, UNIX_EPOCH + Duration::from_millis(cutoff.as_millis() as u64));
    assert_eq!(store.sweep_staging(cutoff).await.unwrap(), 1);
    assert_eq!(store.sweep_staging(clock.now().plus(Duration::from_secs(60))).await.unwrap(), 1, "the live one");
}

#[cfg(unix)]
#[tokio::test]
async fn the_sweep_neither_follows_nor_removes_symlinks() {
    let (dir, store) = fresh().await;
    let outside = dir.path().join("outside");
    let victim = outside.join("precious#1");
    write_file(&victim, b"not ours");
    set_mtime(&victim, UNIX_EPOCH);
    std::os::unix::fs::symlink(&outside, store.root().join("link")).unwrap();
    std::os::unix::fs::symlink(&victim, store.root().join("alias#1")).unwrap();
    let far_future = Timestamp::from_millis(i64::MAX);
    assert_eq!(store.sweep_staging(far_future).await.unwrap(), 0);
    assert!(victim.exists());
    assert!(store.root().join("alias#1").symlink_metadata().is_ok());
}

#[tokio::test]
async fn a_vanished_root_fails_ping() {
    let (_dir, store) = fresh().await;
    store.ping().await.unwrap();
    std::fs::remove_dir_all(store.root()).unwrap();
    let err = store.ping().await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
}

#[test]
fn io_failures_inside_object_store_errors_map_by_their_kind() {
    // The local backend wraps I/O errors as `Generic`; the kind comes from the I/O error.
    let wrapped = |kind: std::io::ErrorKind| object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(std::io::Error::from(kind)),
    };
    let kind_of = |e| super::store_error("testing", e).kind();
    assert_eq!(kind_of(wrapped(std::io::ErrorKind::PermissionDenied)), StoreErrorKind::Misconfigured);
    assert_eq!(kind_of(wrapped(std::io::ErrorKind::ReadOnlyFilesystem)), StoreErrorKind::Misconfigured);
    assert_eq!(kind_of(wrapped(std::io::ErrorKind::StorageFull)), StoreErrorKind::Unavailable);
    let exists = object_store::Error::AlreadyExists { path: "k".into(), source: "exists".into() };
    assert_eq!(kind_of(exists), StoreErrorKind::AlreadyExists);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_directory_whose_path_is_not_utf8_is_refused() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join(std::ffi::OsStr::from_bytes(b"blobs-\xff"));
    let err = LocalBlobStore::open(&odd, OpenMode::Migrate).await.unwrap_err();
    let OpenError::Store { source, .. } = err else { panic!("{err:?}") };
    assert_eq!(source.kind(), StoreErrorKind::Misconfigured);
    assert!(!odd.exists(), "refused, yet created");
}

#[tokio::test]
async fn a_file_whose_name_is_not_a_valid_key_is_skipped_not_fatal() {
    use std::os::unix::ffi::OsStrExt;
    let (_dir, store) = fresh().await;
    let ours = key();
    store.put_new(&ours, Bytes::from_static(b"x")).await.unwrap();
    write_file(&store.root().join(std::ffi::OsStr::from_bytes(b"stray-\xff")), b"junk");
    let listed = list(&store).await;
    assert_eq!(listed.iter().map(|b| b.key.clone()).collect::<Vec<_>>(), vec![ours.to_string()]);
}

#[tokio::test]
async fn one_listing_removes_old_staging_files_keeps_young_ones_and_lists_every_blob() {
    let (_dir, store) = fresh().await;
    let root = store.root().to_path_buf();
    let clock = SystemClock::new();
    let hour_ago = UNIX_EPOCH + Duration::from_millis(clock.now().as_millis() as u64) - Duration::from_secs(3600);
    let cutoff = Timestamp::from_millis(clock.now().as_millis() - 60_000);
    let mut blobs = Vec::new();
    for _ in 0..25 {
        let k = key();
        store.put_new(&k, Bytes::from_static(b"img")).await.unwrap();
        blobs.push(k.to_string());
    }
    // Old staging files: of a dead put (its own directory), and a second name of a
    // published blob. Young ones: puts in progress.
    let mut old = Vec::new();
    for _ in 0..3 {
        let dead = root.join(format!("{}#1", key()));
        write_file(&dead, b"half");
        set_mtime(&dead, hour_ago);
        old.push(dead);
    }
    let second_name = root.join(format!("{}#7", blobs[0]));
    std::fs::hard_link(root.join(&blobs[0]), &second_name).unwrap();
    set_mtime(&second_name, hour_ago);
    old.push(second_name);
    let young: Vec<_> = (0..2).map(|_| root.join(format!("{}#1", key()))).collect();
    for path in &young {
        write_file(path, b"writing");
    }

    // Pages of 4: the sweep goes on across pages.
    let listing = store.list_sweeping_staging(4, cutoff).await;
    let pages: Vec<Vec<ListedBlob>> = listing.pages.try_collect().await.unwrap();
    assert!(pages.len() > 1 && pages.iter().all(|p| p.len() <= 4));
    let mut keys: Vec<String> = pages.into_iter().flatten().map(|b| b.key).collect();
    keys.sort();
    blobs.sort();
    assert_eq!(keys, blobs, "every blob listed, no staging file");
    assert_eq!(listing.staging.removed(), 4);
    assert!(listing.staging.take_error().is_none());
    assert!(old.iter().all(|p| !p.exists()), "old staging files removed");
    assert!(young.iter().all(|p| p.exists()), "young staging files kept");
    assert_eq!(store.get(&BlobKey::parse(&blobs[0]).unwrap()).await.unwrap(), Some(Bytes::from_static(b"img")));
    assert_eq!(store.sweep_staging(cutoff).await.unwrap(), 0, "nothing left for a sweep of its own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_beyond_the_concurrent_limit_wait_their_turn_and_all_answer() {
    let (_dir, store) = fresh().await;
    let keys: Vec<BlobKey> = (0..4).map(|_| key()).collect();
    for (n, k) in keys.iter().enumerate() {
        store.put_new(k, Bytes::from(vec![n as u8; 1000])).await.unwrap();
    }
    // Eight times the limit at once, twice over: a turn that was never given back
    // would leave the second round waiting for ever.
    let reads = 8 * super::concurrent_reads();
    for _ in 0..2 {
        let answers = futures::future::join_all((0..reads).map(|n| {
            let (store, k) = (store.clone(), keys[n % keys.len()]);
            async move { (n, store.get(&k).await) }
        }));
        for (n, answer) in tokio::time::timeout(Duration::from_secs(60), answers).await.expect("reads stalled") {
            assert_eq!(answer.unwrap().unwrap(), Bytes::from(vec![(n % keys.len()) as u8; 1000]), "read {n}");
        }
    }
}
