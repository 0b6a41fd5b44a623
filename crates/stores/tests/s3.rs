//! The S3 blob store against a real S3 server: the shared conformance suite, then what
//! only a real server can show (create-only puts honoured, DeleteObjects batches,
//! ListObjectsV2 paging, `LastModified` times, prefixes, refused credentials, missing
//! buckets, a server that goes away).
//!
//! Needs `PROFILESTORE_TEST_S3_ENDPOINT`, `_BUCKET`, `_ACCESS_KEY_ID` and
//! `_SECRET_ACCESS_KEY` naming a server on 127.0.0.1 and an existing bucket
//! (scripts/test.sh starts Ceph's RADOS Gateway). Every test works under a fresh prefix
//! of its own (`test-<uuid>/`). Without the variables the tests that need the server
//! print that they are skipped and pass, unless `PROFILESTORE_REQUIRE_SERVICES=1`,
//! which makes a missing server a failure. The tests that need no server always run.
#![cfg(feature = "s3")]
// The server stamps objects by the wall clock, and "fails fast" is a claim about real
// elapsed time: these tests read both clocks directly.
#![allow(clippy::disallowed_methods)]

mod s3_support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::TryStreamExt;
use profilestore_core::error::{StoreError, StoreErrorKind};
use profilestore_core::ids::IdSource;
use profilestore_core::store::{BlobStore, ListedBlob, PAIRING_MARKER_KEY};
use profilestore_core::time::Timestamp;
use profilestore_runtime::{SystemClock, UuidV7Ids};
use profilestore_stores::s3::S3BlobStore;
use profilestore_stores::{OpenError, OpenMode, S3Options, open_blobs};
use profilestore_testkit::conformance::{BlobUnderTest, blob_store_conformance};
use s3_support::{forwarder, key, list_pages, listed_keys, put_many, server};
use tokio::net::TcpListener;

fn options_at(endpoint: String) -> S3Options {
    S3Options {
        endpoint: Some(endpoint),
        region: None,
        access_key_id: Some("profilestore-test".into()),
        secret_access_key: Some("wrong".into()),
        session_token: None,
        skip_signature: false,
        list_concurrency: None,
    }
}

/// The store error inside an `OpenError::Store`; panics on any other error.
fn store_source(err: OpenError) -> StoreError {
    match err {
        OpenError::Store { source, .. } => source,
        other => panic!("expected OpenError::Store, got {other:?}"),
    }
}

/// Milliseconds since the epoch by the wall clock (the server stamps objects by it).
fn wall_now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_blob_store_conforms() {
    let Some(server) = server() else { return };
    let server = &server;
    let report = blob_store_conformance(|| async move {
        BlobUnderTest {
            store: Arc::new(server.fresh().await),
            clock: Arc::new(SystemClock::new()),
            // LastModified is moved to the start of the next whole second.
            timestamp_precision: Duration::from_secs(1),
        }
    })
    .await;
    report.assert_passed();
    assert!(report.outcomes().len() >= 10, "suite shrank: {report}");
}

#[tokio::test]
async fn open_refuses_without_credentials_before_any_request() {
    // A listener standing in for the server: nothing may connect to it (nor anywhere).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let no_credentials = S3Options { endpoint: Some(endpoint), ..S3Options::default() };
    let started = Instant::now();
    let clock = Arc::new(SystemClock::new());
    let err = open_blobs("s3://bucket/prefix", OpenMode::Existing, clock, &no_credentials).await.err().expect("opened");
    assert!(started.elapsed() < Duration::from_millis(500), "refusing took {:?}", started.elapsed());
    let display = err.to_string();
    let message = format!("{display}: {}", store_source(err));
    for needle in ["s3://bucket/prefix", "AWS_ACCESS_KEY_ID", "--s3-access-key-id", "--s3-skip-signature"] {
        assert!(message.contains(needle), "{message:?} does not mention {needle}");
    }
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "opening without credentials sent a request");
}

#[tokio::test]
async fn a_closed_port_is_unavailable_within_seconds() {
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    // The listener is dropped: connections to the port are refused.
    let started = Instant::now();
    let err = S3BlobStore::open(
        "bucket/p",
        "s3://bucket/p".into(),
        OpenMode::Existing,
        &options_at(format!("http://127.0.0.1:{port}")),
    )
    .await
    .expect_err("opened a store on a closed port");
    let source = store_source(err);
    assert_eq!(source.kind(), StoreErrorKind::Unavailable, "{source}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?} to give up", started.elapsed());
}

#[tokio::test]
async fn a_wrong_secret_or_key_is_refused_at_open_naming_the_problem() {
    let Some(server) = server() else { return };
    let location = server.fresh_location();
    for (key, secret, code) in [
        (server.key.clone(), "not-the-secret".to_owned(), "SignatureDoesNotMatch"),
        ("no-such-key-id".to_owned(), server.secret.clone(), "InvalidAccessKeyId"),
    ] {
        let options = S3Options { access_key_id: Some(key), secret_access_key: Some(secret), ..server.options() };
        let err = S3BlobStore::open(&location, "s3://redacted".into(), OpenMode::Existing, &options)
            .await
            .expect_err("opened with wrong credentials");
        let source = store_source(err);
        assert_eq!(source.kind(), StoreErrorKind::Misconfigured, "{source}");
        let message = source.to_string();
        assert!(message.contains("refused our credentials") && message.contains(code), "{message}");
    }
}

#[tokio::test]
async fn unsigned_requests_are_sent_when_asked_and_refused_by_a_private_bucket() {
    let Some(server) = server() else { return };
    let options = S3Options { access_key_id: None, secret_access_key: None, skip_signature: true, ..server.options() };
    let err = S3BlobStore::open(&server.fresh_location(), "s3://x".into(), OpenMode::Existing, &options)
        .await
        .expect_err("an anonymous client opened a private bucket");
    let source = store_source(err);
    assert_eq!(source.kind(), StoreErrorKind::Misconfigured, "{source}");
    assert!(source.to_string().contains("AccessDenied"), "{source}");
}

#[tokio::test]
async fn a_missing_bucket_is_refused_in_both_modes() {
    let Some(server) = server() else { return };
    let missing = format!("profilestore-missing-{}", UuidV7Ids.next_image_id().as_uuid().simple());
    for mode in [OpenMode::Migrate, OpenMode::Existing] {
        let err = S3BlobStore::open(&format!("{missing}/p"), format!("s3://{missing}/p"), mode, &server.options())
            .await
            .expect_err("opened a missing bucket");
        let display = err.to_string();
        assert!(display.contains(&missing), "{display}");
        let source = store_source(err);
        assert_eq!(source.kind(), StoreErrorKind::Misconfigured, "{source}");
        assert!(source.to_string().contains("bucket does not exist"), "{source}");
    }
}

#[tokio::test]
async fn create_only_puts_hold_against_the_server() {
    let Some(server) = server() else { return };
    let store = server.fresh().await;
    let k = key();
    store.put_new(&k, Bytes::from_static(b"first")).await.unwrap();
    let err = store.put_new(&k, Bytes::from_static(b"second, longer")).await.expect_err("overwrote a blob");
    assert_eq!(err.kind(), StoreErrorKind::AlreadyExists, "{err}");
    assert_eq!(store.get(&k).await.unwrap(), Some(Bytes::from_static(b"first")));
    store.create_marker(Bytes::from_static(b"{}")).await.unwrap();
    let err = store.create_marker(Bytes::from_static(b"other")).await.expect_err("overwrote the marker");
    assert_eq!(err.kind(), StoreErrorKind::AlreadyExists, "{err}");
    assert_eq!(store.read_marker().await.unwrap(), Some(Bytes::from_static(b"{}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_many_spans_several_batches_and_ignores_missing_keys() {
    let Some(server) = server() else { return };
    let store = server.fresh().await;
    let stored = put_many(&store, 2000).await;
    store.create_marker(Bytes::from_static(b"{}")).await.unwrap();
    // 2500 keys, the missing ones spread among the present: three DeleteObjects batches,
    // each with some of both.
    let mut keys = Vec::new();
    for (n, k) in stored.iter().enumerate() {
        keys.push(*k);
        if n % 4 == 0 {
            keys.push(key());
        }
    }
    assert_eq!(keys.len(), 2500);
    store.delete_many(&keys).await.expect("delete_many");
    let left = listed_keys(&store).await;
    assert_eq!(left, HashSet::from([PAIRING_MARKER_KEY.to_owned()]), "objects left after delete_many");
    assert!(!store.exists(&stored[1234]).await.unwrap());
    store.delete_many(&keys).await.expect("deleting them all again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_page_through_more_than_one_server_page() {
    let Some(server) = server() else { return };
    let location = server.fresh_location();
    let store = server.open_listing(&location, 1).await;
    let parallel = server.open_listing(&location, 8).await;
    let stored = put_many(&store, 1100).await;
    let expected: HashSet<String> = stored.iter().map(ToString::to_string).collect();
    for (store, page_size) in [(&store, 1000usize), (&store, 333), (&parallel, 1000), (&parallel, 333)] {
        let pages = list_pages(store, page_size).await;
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        let mut want = vec![page_size; 1100 / page_size];
        want.push(1100 % page_size);
        assert_eq!(sizes, want, "page sizes for page_size {page_size}");
        let mut seen: HashMap<String, usize> = HashMap::new();
        for blob in pages.into_iter().flatten() {
            *seen.entry(blob.key).or_default() += 1;
        }
        assert!(seen.values().all(|&n| n == 1), "a key was listed twice");
        assert_eq!(seen.into_keys().collect::<HashSet<_>>(), expected);
    }
    store.delete_many(&stored).await.unwrap();
}

#[tokio::test]
async fn creation_times_are_never_earlier_than_the_put() {
    let Some(server) = server() else { return };
    let store = server.fresh().await;
    let mut puts = Vec::new();
    for n in 0..5 {
        let before = wall_now();
        let k = key();
        store.put_new(&k, Bytes::from(vec![7u8; 10 + n])).await.unwrap();
        puts.push((k, before));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let listed: Vec<ListedBlob> = list_pages(&store, 1000).await.into_iter().flatten().collect();
    let after = wall_now();
    for (k, before) in puts {
        let blob = listed.iter().find(|b| b.key == k.to_string()).expect("listed");
        let (created, before, after) = (blob.created.as_millis(), before.as_millis(), after.as_millis());
        // Rounded up to whole seconds, so never before the put started (not even by
        // the part of a second a truncating server would drop) ...
        assert_eq!(created % 1000, 0, "{k}: {created} is not a whole second");
        assert!(created > before, "{k} is listed as created at {created}, before its put started at {before}");
        // ... and at most a second after the listing.
        assert!(created <= after + 1000, "{k}: created {created}, listing ended {after}");
    }
}

#[tokio::test]
async fn keys_outside_the_prefix_are_never_touched() {
    let Some(server) = server() else { return };
    let run = server.fresh_location();
    // `a` and `ab`: one prefix is a prefix of the other's name.
    let (a, ab, parent) =
        (server.open(&format!("{run}/a")).await, server.open(&format!("{run}/ab")).await, server.open(&run).await);
    let (in_a, in_ab) = (key(), key());
    a.put_new(&in_a, Bytes::from_static(b"a")).await.unwrap();
    ab.put_new(&in_ab, Bytes::from_static(b"ab")).await.unwrap();
    ab.create_marker(Bytes::from_static(b"{}")).await.unwrap();
    parent.put_new(&key(), Bytes::from_static(b"p")).await.unwrap();

    assert_eq!(listed_keys(&a).await, HashSet::from([in_a.to_string()]));
    assert_eq!(a.read_marker().await.unwrap(), None, "a read the marker of ab");
    assert_eq!(a.get(&in_ab).await.unwrap(), None);
    assert!(!a.exists(&in_ab).await.unwrap());
    a.delete_many(&[in_ab]).await.unwrap();
    assert!(ab.exists(&in_ab).await.unwrap(), "a deleted a key of ab");
    // The parent sees both, relative to its own prefix.
    let seen = listed_keys(&parent).await;
    assert!(seen.contains(&format!("a/{in_a}")) && seen.contains(&format!("ab/{in_ab}")), "{seen:?}");
    assert_eq!(seen.len(), 4, "{seen:?}");
    // The same prefix spelled with extra slashes is the same store.
    let respelled = server.open(&format!("{}//{}/a/", server.bucket, run.split_once('/').unwrap().1)).await;
    assert_eq!(respelled.get(&in_a).await.unwrap(), Some(Bytes::from_static(b"a")));
}

#[tokio::test]
async fn a_server_that_goes_away_makes_every_call_unavailable_within_seconds() {
    let Some(server) = server() else { return };
    let target: SocketAddr = server.endpoint.trim_start_matches("http://").parse().expect("endpoint is http://IP:PORT");
    let (addr, forwarding) = forwarder(target).await;
    let location = server.fresh_location();
    let options = S3Options { endpoint: Some(format!("http://{addr}")), ..server.options() };
    let store = S3BlobStore::open(&location, "s3://x".into(), OpenMode::Existing, &options).await.unwrap();
    let k = key();
    store.put_new(&k, Bytes::from_static(b"x")).await.unwrap();

    forwarding.abort();
    let _ = forwarding.await;
    let mut started = Instant::now();
    let mut unavailable = |what: &str, r: Result<(), StoreError>| {
        let err = r.expect_err(what);
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{what}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5), "{what} took {:?} to fail", started.elapsed());
        started = Instant::now();
    };
    unavailable("get", store.get(&k).await.map(drop));
    unavailable("exists", store.exists(&k).await.map(drop));
    unavailable("put_new", store.put_new(&key(), Bytes::from_static(b"y")).await);
    unavailable("delete_many", store.delete_many(&[k]).await);
    unavailable("list", store.list(10).try_collect::<Vec<_>>().await.map(drop));
    unavailable("ping", store.ping().await);
}
