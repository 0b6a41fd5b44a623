//! Both conformance suites against every backend this build has.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use profilestore_core::memory::{MemoryBlobStore, MemoryMetadataStore};
use profilestore_core::time::Clock;
use profilestore_runtime::SystemClock;
use profilestore_stores::{LocalBlobStore, OpenMode, SqliteMetadataStore};
use profilestore_testkit::conformance::{
    BlobUnderTest, MetadataUnderTest, blob_store_conformance, metadata_store_conformance,
};

fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock::new())
}

#[tokio::test]
async fn memory_metadata_store_conforms() {
    let report = metadata_store_conformance(|| async {
        let clock = system_clock();
        MetadataUnderTest { store: Arc::new(MemoryMetadataStore::new(clock.clone())), clock }
    })
    .await;
    report.assert_passed();
}

#[tokio::test]
async fn memory_blob_store_conforms() {
    let report = blob_store_conformance(|| async {
        let clock = system_clock();
        BlobUnderTest {
            store: Arc::new(MemoryBlobStore::new(clock.clone())),
            clock,
            timestamp_precision: Duration::ZERO,
        }
    })
    .await;
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_metadata_store_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let n = AtomicUsize::new(0);
    let report = metadata_store_conformance(|| async {
        // A fresh database file per check; SQLite's clock is this machine's wall clock.
        let path = dir.path().join(format!("check-{}.db", n.fetch_add(1, Ordering::SeqCst)));
        let store = SqliteMetadataStore::open(&path, OpenMode::Migrate).await.expect("open sqlite");
        MetadataUnderTest { store: Arc::new(store), clock: system_clock() }
    })
    .await;
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_blob_store_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let n = AtomicUsize::new(0);
    let report = blob_store_conformance(|| async {
        let root = dir.path().join(format!("check-{}", n.fetch_add(1, Ordering::SeqCst)));
        let store = LocalBlobStore::open(&root, OpenMode::Migrate).await.expect("open local dir");
        // File times are rounded up to whole milliseconds.
        BlobUnderTest { store: Arc::new(store), clock: system_clock(), timestamp_precision: Duration::from_millis(1) }
    })
    .await;
    report.assert_passed();
}
