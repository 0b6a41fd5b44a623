//! The status page asks the stores at most once per 10 s, however often it is loaded:
//! its counts walk up to 100,000 records and blobs, which reloads must not multiply.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use profilestore_api::{ApiConfig, StatusPage, admin_router, router};
use profilestore_core::error::StoreError;
use profilestore_core::memory::{MemoryBlobStore, MemoryMetadataStore};
use profilestore_core::service::ProfileService;
use profilestore_core::settings::Timings;
use profilestore_runtime::{TokioClock, UuidV7Ids};
use profilestore_testkit::hooked::{CallHook, Hooked, StoreCall};
use tower::ServiceExt as _;

/// Counts the record counts asked for: one per status gathered.
#[derive(Default)]
struct Counts(AtomicU64);

#[async_trait::async_trait]
impl CallHook for Counts {
    async fn before(&self, call: StoreCall) -> Result<(), StoreError> {
        if call == StoreCall::CountRecords {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn loads_within_ten_seconds_share_one_gathering() {
    let clock = Arc::new(TokioClock::starting_at(profilestore_core::time::Timestamp::from_millis(1_700_000_000_000)));
    let counts = Arc::new(Counts::default());
    let memory: Arc<dyn profilestore_core::store::MetadataStore> = Arc::new(MemoryMetadataStore::new(clock.clone()));
    let metadata = Hooked::new(memory, counts.clone());
    let blobs = Arc::new(MemoryBlobStore::new(clock.clone()));
    let service = ProfileService::new(metadata, blobs, clock, Arc::new(UuidV7Ids), Timings::default());
    let page = StatusPage::new(service.clone(), "cluster".into());
    let app = admin_router(Arc::new(String::new), Some((page, router(service, ApiConfig::default()))));
    let load = || async {
        let response = app.clone().oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), 200);
    };
    load().await;
    load().await;
    load().await;
    assert_eq!(counts.0.load(Ordering::SeqCst), 1, "three loads within 10 s asked the stores more than once");
    tokio::time::advance(Duration::from_secs(11)).await;
    load().await;
    assert_eq!(counts.0.load(Ordering::SeqCst), 2, "a load after 10 s was served stale figures");
}
