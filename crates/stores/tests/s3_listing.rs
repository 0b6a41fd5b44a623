//! The S3 store's parallel listing against a real server: the same keys in the same
//! order as one sequential walk (foreign keys included), each image's keys together,
//! bounded prefetch, a failure that ends the stream, and tasks that stop with it.
//!
//! Needs the same `PROFILESTORE_TEST_S3_*` variables as `tests/s3.rs`, and skips or
//! fails without them the same way.
#![cfg(feature = "s3")]

mod s3_support;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use profilestore_core::error::StoreErrorKind;
use profilestore_core::ids::BlobKey;
use profilestore_core::store::{BlobStore, ListedBlob};
use profilestore_stores::s3::{S3BlobStore, max_pages_held};
use profilestore_stores::{OpenMode, S3Options};
use s3_support::{Server, forwarder, list_pages, put_many, server};

/// Puts `keys` (relative to `location`'s prefix) with a plain client, 32 at a time.
async fn put_raw(server: &Server, location: &str, keys: impl IntoIterator<Item = String>) {
    let raw = server.raw();
    let prefix = location.split_once('/').expect("bucket/prefix").1;
    futures::stream::iter(keys)
        .map(|key| {
            let raw = &raw;
            async move { raw.put(&Path::from(format!("{prefix}/{key}")), PutPayload::from_static(b"x")).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .expect("raw puts");
}

fn keys_of(pages: &[Vec<ListedBlob>]) -> Vec<String> {
    pages.iter().flatten().map(|b| b.key.clone()).collect()
}

/// Fails unless the keys sharing their part before the last `/` (an image's keys:
/// `{shard}/{id}/`) form one run in `keys`. Keys at the root have no such part.
fn assert_directories_contiguous(keys: &[String]) {
    let mut seen_runs: HashMap<&str, usize> = HashMap::new();
    let mut previous = None;
    for key in keys {
        let dir = key.rsplit_once('/').map_or("", |(dir, _)| dir);
        if !dir.is_empty() && previous != Some(dir) {
            *seen_runs.entry(dir).or_default() += 1;
        }
        previous = Some(dir);
    }
    let split: Vec<_> = seen_runs.iter().filter(|(_, runs)| **runs > 1).collect();
    assert!(split.is_empty(), "keys of one directory are not adjacent: {split:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_listing_returns_the_sequential_listing_in_the_same_order() {
    let Some(server) = server() else { return };
    let location = server.fresh_location();
    let sequential = server.open_listing(&location, 1).await;
    let stored = put_many(&sequential, 600).await;
    sequential.create_marker(Bytes::from_static(b"{}")).await.unwrap();
    sequential.probe_clock().await.unwrap();
    // Foreign keys at the root (one named like a shard, around which the shard's keys
    // sort), inside shards, under an extra variant of a real image, and a foreign
    // folder of more than one server page (its task pages with continuation tokens
    // and waits on its full channel).
    let image = stored[0];
    let shard = image.image_id.shard();
    let mut foreign: Vec<String> = ["zz-foreign", "0", "00", "00a", "ab", "ab0", "ab_", "_x", "7f/not-an-image"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    foreign.push(format!("{shard}/{}/thumbnail", image.image_id));
    foreign.push(format!("{shard}/{}/zz", image.image_id));
    foreign.extend((0..1050).map(|n| format!("odd/deep/{n:05}")));
    put_raw(&server, &location, foreign.iter().cloned()).await;

    let walked = list_pages(&sequential, 1000).await;
    let expected = keys_of(&walked);
    assert_eq!(expected.len(), 600 + 2 + foreign.len(), "the sequential walk lists everything");
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(expected, sorted, "the server lists in key order");

    for concurrency in [2, 8] {
        let parallel = server.open_listing(&location, concurrency).await;
        for page_size in [1000, 7] {
            let pages = list_pages(&parallel, page_size).await;
            let keys = keys_of(&pages);
            assert_eq!(keys, expected, "concurrency {concurrency}, pages of {page_size}");
            // Pages are full but for the last, as in the sequential listing.
            let short: Vec<usize> = pages.iter().rev().skip(1).map(Vec::len).filter(|&n| n != page_size).collect();
            assert!(short.is_empty(), "short pages before the last: {short:?}");
            assert_directories_contiguous(&keys);
            let blobs: Vec<&ListedBlob> = pages.iter().flatten().collect();
            let walked_blobs: Vec<&ListedBlob> = walked.iter().flatten().collect();
            assert_eq!(blobs, walked_blobs, "times and sizes as the walk has them");
        }
        let stats = parallel.listing_stats();
        assert!(stats.peak_tasks() <= concurrency, "{} tasks at once", stats.peak_tasks());
        assert!(stats.peak_tasks() >= 2, "the prefixes were never listed in parallel");
        assert!(stats.peak_pages_held() <= max_pages_held(concurrency), "{} pages held", stats.peak_pages_held());
    }
    let image_keys: HashSet<String> = stored.iter().map(BlobKey::to_string).collect();
    assert!(image_keys.iter().all(|k| expected.contains(k)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_reader_holds_no_more_than_the_permitted_prefixes() {
    let Some(server) = server() else { return };
    let location = server.fresh_location();
    let concurrency = 4;
    let store = server.open_listing(&location, concurrency).await;
    // About 250 shards of a handful of keys: one server page per prefix.
    let stored = put_many(&store, 1000).await;
    let stats = store.listing_stats();
    let mut listing = store.list(1);
    let mut listed = 0;
    while let Some(page) = listing.next().await {
        listed += page.expect("list").len();
        // Before each next page, let the tasks run as far ahead as they may: they stop
        // only when every permit is taken.
        tokio::time::timeout(Duration::from_secs(30), stats.tasks_stopped()).await.expect("the tasks never stopped");
        assert!(
            stats.pages_held() <= concurrency,
            "{} pages held with {concurrency} permits of one page each",
            stats.pages_held()
        );
    }
    assert_eq!(listed, stored.len());
    assert!(stats.peak_pages_held() >= 2, "nothing was ever listed ahead: {}", stats.peak_pages_held());
    assert!(stats.peak_pages_held() <= concurrency, "peak of {} pages", stats.peak_pages_held());
    assert!(stats.peak_tasks() <= concurrency);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_a_listing_stops_its_tasks_and_frees_its_pages() {
    let Some(server) = server() else { return };
    let location = server.fresh_location();
    let store = server.open_listing(&location, 8).await;
    put_many(&store, 1000).await;
    put_raw(&server, &location, (0..2500).map(|n| format!("odd/{n:05}"))).await;
    let stats = store.listing_stats();
    let mut listing = store.list(10);
    listing.next().await.expect("a page").expect("list");
    drop(listing);
    tokio::time::timeout(Duration::from_secs(10), stats.released()).await.unwrap_or_else(|_| {
        panic!("after 10 s, {} tasks are still listing and {} pages held", stats.tasks(), stats.pages_held())
    });
    assert!(stats.peak_tasks() <= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failure_mid_listing_ends_the_stream_with_the_error() {
    let Some(server) = server() else { return };
    let target = server.endpoint.trim_start_matches("http://").parse().expect("endpoint is http://IP:PORT");
    let (addr, forwarding) = forwarder(target).await;
    let location = server.fresh_location();
    let direct = server.open_listing(&location, 2).await;
    let stored = put_many(&direct, 600).await;
    let options = S3Options {
        endpoint: Some(format!("http://{addr}")),
        list_concurrency: NonZeroUsize::new(2),
        ..server.options()
    };
    let store = S3BlobStore::open(&location, "s3://x".into(), OpenMode::Existing, &options).await.unwrap();
    let mut listing = store.list(10);
    let mut listed = listing.next().await.expect("a page").expect("list").len();

    // The server goes away with most prefixes not yet listed (two at a time).
    forwarding.abort();
    let _ = forwarding.await;
    let error = loop {
        match listing.next().await {
            Some(Ok(page)) => listed += page.len(),
            Some(Err(e)) => break e,
            None => panic!("the listing ended without an error after {listed} of {} keys", stored.len()),
        }
    };
    assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{error}");
    assert!(listed < stored.len(), "listed all {listed} keys before failing");
    assert!(listing.next().await.is_none(), "the stream went on after its error");
    tokio::time::timeout(Duration::from_secs(10), store.listing_stats().tasks_stopped()).await.expect("tasks");
}
