//! The listing journal: `list_since` lists what was put since a horizon from the
//! journal alone, skips what its lines name but the directory does not hold, and
//! full sweeps prune it; the full listing never shows it.

use std::collections::BTreeSet;

use bytes::Bytes;
use futures::TryStreamExt;
use profilestore_core::ids::BlobKey;
use profilestore_core::store::{BlobStore, ListedBlob};
use profilestore_core::time::{Clock, Timestamp};
use profilestore_runtime::SystemClock;

use super::LocalBlobStore;
use super::journal::JOURNAL_DIR;
use crate::open::OpenMode;

async fn fresh() -> (tempfile::TempDir, LocalBlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path().join("blobs"), OpenMode::Migrate).await.unwrap();
    (dir, store)
}

/// The key of an image minted `offset_ms` after `base`, shard `tail`'s low byte.
fn minted(base: Timestamp, offset_ms: i64, tail: u64) -> BlobKey {
    let ms = base.as_millis() + offset_ms;
    BlobKey::original(format!("{:08x}-{:04x}-7000-8000-{tail:012x}", ms >> 16, ms & 0xffff).parse().unwrap())
}

async fn since(store: &LocalBlobStore, horizon: Timestamp, page_size: usize) -> Vec<String> {
    let pages: Vec<Vec<ListedBlob>> = store.list_since(horizon, page_size).try_collect().await.unwrap();
    assert!(pages.iter().all(|p| !p.is_empty() && p.len() <= page_size), "pages of 1 to {page_size}");
    pages.into_iter().flatten().map(|b| b.key).collect()
}

async fn everything(store: &LocalBlobStore) -> BTreeSet<String> {
    let pages: Vec<Vec<ListedBlob>> = store.list(1000).try_collect().await.unwrap();
    pages.into_iter().flatten().map(|b| b.key).collect()
}

fn segments(store: &LocalBlobStore) -> BTreeSet<String> {
    match std::fs::read_dir(store.root().join(JOURNAL_DIR)) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().into_string().unwrap()).collect(),
        Err(_) => BTreeSet::new(),
    }
}

#[tokio::test]
async fn puts_since_the_horizon_are_listed_across_segments_and_a_file_put_by_hand_is_not() {
    let (_dir, store) = fresh().await;
    let horizon = SystemClock::new().now();
    let mut expected = BTreeSet::new();
    // Images on both sides of the horizon, over several 65 s segments and shards.
    for (i, offset) in [-200_000i64, -70_000, -1, 0, 1, 70_000, 140_000, 3_600_000].into_iter().enumerate() {
        for shard in [0x03u64, 0xa0, 0xff] {
            let key = minted(horizon, offset, (i as u64) << 8 | shard);
            store.put_new(&key, Bytes::from_static(b"img")).await.unwrap();
            if offset >= 0 {
                expected.insert(key.to_string());
            }
        }
    }
    // A layout file minted after the horizon that no put of this store made.
    let by_hand = minted(horizon, 5, 0x77);
    let path = store.root().join(by_hand.to_string());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"img").unwrap();

    let listed = since(&store, horizon, 4).await;
    assert_eq!(listed.len(), expected.len(), "each key once: {listed:?}");
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), expected, "every put minted at or after the horizon");
    assert!(segments(&store).len() >= 5, "one segment per 65 s span of mint times: {:?}", segments(&store));
    // The full listing lists the file put by hand and never the journal.
    let all = everything(&store).await;
    assert!(all.contains(&by_hand.to_string()));
    assert_eq!(all.len(), 8 * 3 + 1, "blobs only: {all:?}");
    assert!(all.iter().all(|k| !k.starts_with(JOURNAL_DIR)));
}

#[tokio::test]
async fn lines_naming_no_file_repeated_lines_and_torn_lines_are_skipped() {
    let (_dir, store) = fresh().await;
    let horizon = SystemClock::new().now();
    let kept = minted(horizon, 10, 0x10);
    let deleted = minted(horizon, 20, 0x11);
    let never_stored = minted(horizon, 30, 0x12);
    for key in [&kept, &deleted] {
        store.put_new(key, Bytes::from_static(b"img")).await.unwrap();
    }
    // A second put of a taken key fails, but its line is written again.
    assert!(store.put_new(&kept, Bytes::from_static(b"other")).await.is_err());
    store.delete_many(std::slice::from_ref(&deleted)).await.unwrap();
    // A put killed between its line and its file.
    store.journal.as_ref().unwrap().record(&never_stored).unwrap();
    // A line cut short, then garbage, in the same segment.
    let segment = store.root().join(JOURNAL_DIR).join(&kept.image_id.to_string()[..8]);
    let mut text = std::fs::read(&segment).unwrap();
    text.extend_from_slice(b"not a key\n");
    text.extend_from_slice(&kept.to_string().as_bytes()[..20]);
    std::fs::write(&segment, text).unwrap();

    let pages: Vec<Vec<ListedBlob>> = store.list_since(horizon, 10).try_collect().await.unwrap();
    let listed: Vec<ListedBlob> = pages.into_iter().flatten().collect();
    assert_eq!(listed.len(), 1, "only the file that exists, once: {listed:?}");
    assert_eq!(listed[0].key, kept.to_string());
    assert_eq!(listed[0].size, 3, "the first put's bytes");
}

#[tokio::test]
async fn concurrent_puts_each_leave_a_whole_line() {
    let (_dir, store) = fresh().await;
    let horizon = SystemClock::new().now();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut keys = Vec::new();
            for n in 0..40u64 {
                let key = minted(horizon, 1 + (n as i64 % 3) * 70_000, t << 16 | n << 8 | n);
                store.put_new(&key, Bytes::from_static(b"img")).await.unwrap();
                keys.push(key.to_string());
            }
            keys
        }));
    }
    let mut expected = BTreeSet::new();
    for task in tasks {
        expected.extend(task.await.unwrap());
    }
    let listed = since(&store, horizon, 64).await;
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), expected);
}

#[tokio::test]
async fn a_store_without_its_journal_puts_what_list_since_does_not_list() {
    let (_dir, store) = fresh().await;
    let horizon = SystemClock::new().now();
    let journaled = minted(horizon, 1, 0x21);
    let unjournaled = minted(horizon, 2, 0x22);
    store.put_new(&journaled, Bytes::from_static(b"img")).await.unwrap();
    store.clone().without_journal().put_new(&unjournaled, Bytes::from_static(b"img")).await.unwrap();
    assert_eq!(since(&store, horizon, 10).await, vec![journaled.to_string()]);
    assert!(everything(&store).await.contains(&unjournaled.to_string()));
}

#[tokio::test]
async fn full_sweeps_remove_week_old_segments_and_listings_remove_nothing() {
    let (_dir, store) = fresh().await;
    let now = SystemClock::new().now();
    let day: i64 = 24 * 3600 * 1000;
    let old_key = |days: i64, tail: u64| minted(now, -days * day, tail);
    let (ten_days, three_days, two_hours, fresh_key) =
        (old_key(10, 0x31), old_key(3, 0x32), minted(now, -2 * 3600 * 1000, 0x33), minted(now, 0, 0x34));
    for key in [&ten_days, &three_days, &two_hours, &fresh_key] {
        store.put_new(key, Bytes::from_static(b"img")).await.unwrap();
    }
    let segment = |key: &BlobKey| key.image_id.to_string()[..8].to_owned();
    assert_eq!(segments(&store).len(), 4);

    // A listing since a horizon (a dry run's too) changes nothing.
    let horizon = Timestamp::from_millis(now.as_millis() - 3600 * 1000);
    assert_eq!(since(&store, horizon, 10).await, vec![fresh_key.to_string()]);
    assert_eq!(segments(&store).len(), 4, "a listing prunes nothing");

    // A full sweep keeps a week of segments.
    let listing = store.list_sweeping_staging(100, now).await;
    let _: Vec<Vec<ListedBlob>> = listing.pages.try_collect().await.unwrap();
    let left = segments(&store);
    assert!(!left.contains(&segment(&ten_days)), "a segment ten days old is removed: {left:?}");
    for kept in [&three_days, &two_hours, &fresh_key] {
        assert!(left.contains(&segment(kept)), "{left:?}");
    }
    // The blobs themselves are untouched, and listed since an old horizon still.
    assert_eq!(everything(&store).await.len(), 4);
    let week_ago = Timestamp::from_millis(now.as_millis() - 7 * day);
    assert_eq!(since(&store, week_ago, 10).await.len(), 3);
}
