//! [`Measured`]: any store, with the latency and the errors of every call recorded by
//! backend, operation and error kind. Every store the resolver opens is measured, so
//! the server, the cleaner and the audit report alike.
//!
//! A call abandoned before it answered (its request's deadline, the cleaner's call
//! timeout) is counted as an error of kind `abandoned`: a stalled store shows up even
//! when no call ever fails.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, histogram};
use profilestore_core::error::{StoreError, StoreErrorKind};
use profilestore_core::ids::{BlobKey, ImageId, UserId};
use profilestore_core::settings::Timings;
use profilestore_core::store::{
    BlobStore, ClockProbe, CommitOutcome, DeleteOutcome, IdempotencyKey, KeyedOutcome, ListedBlob, MetadataStore,
    Pairing, Precondition, Record, SupersededClaim, SweepMarks, SweepingListing,
};
use profilestore_core::time::{Deadline, Timestamp};

/// Store call latency in seconds, by `store` (`database`, `blobs`), `backend` and `op`.
pub const CALL_DURATION: &str = "profilestore_store_call_duration_seconds";
/// Store calls that failed, by `store`, `backend`, `op` and `kind` (the error's kind,
/// or `abandoned` for a call given up before it answered).
pub const CALL_ERRORS: &str = "profilestore_store_call_errors_total";

/// Retries the blob store's client made inside blob puts, by `backend` (S3 only: the
/// other backends do not retry). A retried put whose first attempt landed fails as
/// `already_exists` and leaves an orphan, so retries explain such errors.
pub const BLOB_PUT_RETRIES: &str = "profilestore_blob_put_retries_total";

/// The S3 blob bucket's versioning as read at start, by `state` (`off`, `enabled`,
/// `suspended`, `unknown`): 1 for the state found, 0 for the others. On a versioned
/// bucket deleted photos' bytes stay as noncurrent versions (`s3::check_versioning`).
pub const BLOB_BUCKET_VERSIONING: &str = "profilestore_blob_bucket_versioning";
/// Days after which the S3 blob bucket's lifecycle rules expire the store's noncurrent
/// versions, as read at start; set only for a versioned bucket with such a rule.
pub const BLOB_NONCURRENT_EXPIRATION_DAYS: &str = "profilestore_blob_noncurrent_expiration_days";

/// Every figure the stores record, by name.
pub const NAMES: &[&str] =
    &[CALL_DURATION, CALL_ERRORS, BLOB_PUT_RETRIES, BLOB_BUCKET_VERSIONING, BLOB_NONCURRENT_EXPIRATION_DAYS];

/// The buckets of [`CALL_DURATION`], in seconds: from a cached point read to a stalled
/// store.
pub const CALL_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Registers the help text of the store figures with the installed recorder.
pub fn describe() {
    describe_histogram!(CALL_DURATION, Unit::Seconds, "Store call latency by store, backend and operation.");
    describe_counter!(CALL_ERRORS, "Store calls that failed or were abandoned, by error kind.");
    describe_counter!(BLOB_PUT_RETRIES, "Retries the blob store's client made inside blob puts.");
    describe_gauge!(BLOB_BUCKET_VERSIONING, "The S3 blob bucket's versioning as read at start: 1 for the state found.");
    describe_gauge!(
        BLOB_NONCURRENT_EXPIRATION_DAYS,
        "Days until the S3 blob bucket's lifecycle rules expire deleted photos' noncurrent versions, as read at start."
    );
}

/// A store whose every call is measured. Keeps the inner store's contract exactly.
pub struct Measured<S: ?Sized> {
    inner: Arc<S>,
    store: &'static str,
    backend: &'static str,
}

impl<S: ?Sized> Measured<S> {
    /// `inner`, measured as `store` (`database` or `blobs`) on `backend`.
    pub fn new(inner: Arc<S>, store: &'static str, backend: &'static str) -> Arc<Self> {
        Arc::new(Measured { inner, store, backend })
    }

    async fn call<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let mut timer = CallTimer::start(self.store, self.backend, op);
        let result = call.await;
        timer.finish(result.as_ref().err().map(StoreError::kind));
        result
    }
}

/// Times one call; a timer dropped before [`finish`](CallTimer::finish) counts the
/// call as abandoned.
struct CallTimer {
    labels: [(&'static str, &'static str); 3],
    started: std::time::Instant,
    finished: bool,
}

impl CallTimer {
    fn start(store: &'static str, backend: &'static str, op: &'static str) -> CallTimer {
        // Latency for the figures only: no decision depends on it, so it need not go
        // through the Clock seam.
        #[allow(clippy::disallowed_methods)]
        let started = std::time::Instant::now();
        CallTimer { labels: [("store", store), ("backend", backend), ("op", op)], started, finished: false }
    }

    fn finish(&mut self, error: Option<StoreErrorKind>) {
        self.finished = true;
        histogram!(CALL_DURATION, &self.labels).record(self.started.elapsed().as_secs_f64());
        if let Some(kind) = error {
            self.error(kind_label(kind));
        }
    }

    fn error(&self, kind: &'static str) {
        let [store, backend, op] = self.labels;
        counter!(CALL_ERRORS, &[store, backend, op, ("kind", kind)]).increment(1);
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        if !self.finished {
            self.error("abandoned");
        }
    }
}

/// The label of an error kind.
fn kind_label(kind: StoreErrorKind) -> &'static str {
    match kind {
        StoreErrorKind::Unavailable => "unavailable",
        StoreErrorKind::AlreadyExists => "already_exists",
        StoreErrorKind::Corrupt => "corrupt",
        StoreErrorKind::Misconfigured => "misconfigured",
        StoreErrorKind::CommitUnknown => "commit_unknown",
        StoreErrorKind::TimingsChanged => "timings_changed",
    }
}

#[async_trait::async_trait]
impl MetadataStore for Measured<dyn MetadataStore> {
    async fn get(&self, user: &UserId) -> Result<Option<Record>, StoreError> {
        self.call("get", self.inner.get(user)).await
    }

    async fn put_if_before(
        &self,
        record: &Record,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<CommitOutcome, StoreError> {
        self.call("put", self.inner.put_if_before(record, precondition, deadline)).await
    }

    async fn put_keyed_before(
        &self,
        record: &Record,
        precondition: &Precondition,
        key: &IdempotencyKey,
        deadline: &Deadline,
    ) -> Result<KeyedOutcome, StoreError> {
        self.call("put", self.inner.put_keyed_before(record, precondition, key, deadline)).await
    }

    async fn keyed_record(&self, user: &UserId, key: &str) -> Result<Option<(Record, String)>, StoreError> {
        self.call("get", self.inner.keyed_record(user, key)).await
    }

    fn run_under_timings(&self, timings: &Timings) {
        self.inner.run_under_timings(timings);
    }

    async fn delete_if_before(
        &self,
        user: &UserId,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<DeleteOutcome, StoreError> {
        self.call("delete", self.inner.delete_if_before(user, precondition, deadline)).await
    }

    async fn referenced(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        self.call("referenced", self.inner.referenced(ids)).await
    }

    async fn names_image(&self, image_id: &ImageId) -> Result<bool, StoreError> {
        self.call("names_image", self.inner.names_image(image_id)).await
    }

    async fn claim_superseded(&self, delete_delay: Duration, limit: usize) -> Result<SupersededClaim, StoreError> {
        self.call("claim_superseded", self.inner.claim_superseded(delete_delay, limit)).await
    }

    async fn forget_superseded(&self, ids: &[ImageId]) -> Result<u64, StoreError> {
        self.call("forget_superseded", self.inner.forget_superseded(ids)).await
    }

    async fn superseded_among(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        self.call("superseded_among", self.inner.superseded_among(ids)).await
    }

    async fn count_superseded(&self) -> Result<u64, StoreError> {
        self.call("count_superseded", self.inner.count_superseded()).await
    }

    async fn sweep_marks(&self) -> Result<SweepMarks, StoreError> {
        self.call("sweep_marks", self.inner.sweep_marks()).await
    }

    async fn record_sweep(
        &self,
        horizon: Timestamp,
        full_sweep_started: Option<Timestamp>,
    ) -> Result<SweepMarks, StoreError> {
        self.call("record_sweep", self.inner.record_sweep(horizon, full_sweep_started)).await
    }

    async fn count_records(&self) -> Result<u64, StoreError> {
        self.call("count_records", self.inner.count_records()).await
    }

    async fn has_records(&self) -> Result<bool, StoreError> {
        self.call("has_records", self.inner.has_records()).await
    }

    async fn records_after(&self, after: Option<&UserId>, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.call("records_after", self.inner.records_after(after, limit)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.call("ping", self.inner.ping()).await
    }

    async fn clock(&self) -> Result<Timestamp, StoreError> {
        self.call("clock", self.inner.clock()).await
    }

    async fn read_pairing(&self) -> Result<Option<Pairing>, StoreError> {
        self.call("read_pairing", self.inner.read_pairing()).await
    }

    async fn create_pairing(&self, pairing: &Pairing) -> Result<Pairing, StoreError> {
        self.call("create_pairing", self.inner.create_pairing(pairing)).await
    }

    async fn update_timings(&self, cluster_id: uuid::Uuid, timings: &Timings) -> Result<(), StoreError> {
        self.call("update_timings", self.inner.update_timings(cluster_id, timings)).await
    }
}

#[async_trait::async_trait]
impl BlobStore for Measured<dyn BlobStore> {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        self.call("put", self.inner.put_new(key, bytes)).await
    }

    async fn get(&self, key: &BlobKey) -> Result<Option<Bytes>, StoreError> {
        self.call("get", self.inner.get(key)).await
    }

    async fn exists(&self, key: &BlobKey) -> Result<bool, StoreError> {
        self.call("exists", self.inner.exists(key)).await
    }

    async fn delete_many(&self, keys: &[BlobKey]) -> Result<(), StoreError> {
        self.call("delete_many", self.inner.delete_many(keys)).await
    }

    fn list(&self, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        self.pages(self.inner.list(page_size))
    }

    fn list_since(&self, horizon: Timestamp, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        self.pages(self.inner.list_since(horizon, page_size))
    }

    async fn sweep_staging(&self, older_than: Timestamp) -> Result<u64, StoreError> {
        self.call("sweep_staging", self.inner.sweep_staging(older_than)).await
    }

    async fn list_sweeping_staging(&self, page_size: usize, older_than: Timestamp) -> SweepingListing<'_> {
        let SweepingListing { pages, staging } = self.inner.list_sweeping_staging(page_size, older_than).await;
        SweepingListing { pages: self.pages(pages), staging }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.call("ping", self.inner.ping()).await
    }

    async fn probe_clock(&self) -> Result<ClockProbe, StoreError> {
        self.call("probe_clock", self.inner.probe_clock()).await
    }

    async fn read_marker(&self) -> Result<Option<Bytes>, StoreError> {
        self.call("read_marker", self.inner.read_marker()).await
    }

    async fn create_marker(&self, contents: Bytes) -> Result<(), StoreError> {
        self.call("create_marker", self.inner.create_marker(contents)).await
    }
}

impl Measured<dyn BlobStore> {
    /// `pages` with each page's wait measured as one `list_page` call.
    fn pages<'a>(
        &'a self,
        pages: BoxStream<'a, Result<Vec<ListedBlob>, StoreError>>,
    ) -> BoxStream<'a, Result<Vec<ListedBlob>, StoreError>> {
        futures::stream::unfold(Some(pages), move |pages| async move {
            let mut pages = pages?;
            let mut timer = CallTimer::start(self.store, self.backend, "list_page");
            let next = pages.next().await;
            timer.finish(next.as_ref().and_then(|page| page.as_ref().err()).map(StoreError::kind));
            let next = next?;
            let more = next.is_ok();
            Some((next, more.then_some(pages)))
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use profilestore_core::memory::MemoryBlobStore;
    use profilestore_core::time::ManualClock;
    use profilestore_testkit::hooked::{CallHook, Hooked, StoreCall};

    fn store() -> Arc<Measured<dyn BlobStore>> {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000)));
        let inner: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new(clock));
        Measured::new(inner, "blobs", "memory")
    }

    fn key() -> BlobKey {
        BlobKey::original("0190a8b0-0000-7000-8000-000000000001".parse::<ImageId>().unwrap())
    }

    /// The lines of `scrape` that start with `prefix`.
    fn lines<'a>(scrape: &'a str, prefix: &str) -> Vec<&'a str> {
        scrape.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn every_call_is_timed_and_every_failure_counted_by_kind_with_the_inner_answers_unchanged() {
        let recorder = PrometheusBuilder::new().set_buckets(CALL_BUCKETS).unwrap().build_recorder();
        let handle = recorder.handle();
        let _local = metrics::set_default_local_recorder(&recorder);
        let store = store();
        store.put_new(&key(), Bytes::from_static(b"png")).await.unwrap();
        let again = store.put_new(&key(), Bytes::from_static(b"other")).await.unwrap_err();
        assert_eq!(again.kind(), StoreErrorKind::AlreadyExists, "create-only, as the inner store");
        assert_eq!(store.get(&key()).await.unwrap(), Some(Bytes::from_static(b"png")));
        let listed: Vec<_> = store.list(10).collect().await;
        assert_eq!(listed.len(), 1, "one page");

        let scrape = handle.render();
        let puts = r#"profilestore_store_call_duration_seconds_count{store="blobs",backend="memory",op="put"}"#;
        assert_eq!(lines(&scrape, puts), vec![format!("{puts} 2").as_str()], "{scrape}");
        let gets = r#"profilestore_store_call_duration_seconds_count{store="blobs",backend="memory",op="get"}"#;
        assert_eq!(lines(&scrape, gets), vec![format!("{gets} 1").as_str()], "{scrape}");
        let pages = r#"profilestore_store_call_duration_seconds_count{store="blobs",backend="memory",op="list_page"}"#;
        assert_eq!(lines(&scrape, pages), vec![format!("{pages} 2").as_str()], "a page and the end: {scrape}");
        let errors =
            r#"profilestore_store_call_errors_total{store="blobs",backend="memory",op="put",kind="already_exists"}"#;
        assert_eq!(lines(&scrape, errors), vec![format!("{errors} 1").as_str()], "{scrape}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_given_up_before_it_answered_counts_as_abandoned() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let _local = metrics::set_default_local_recorder(&recorder);
        /// Holds every blob put forever: a stalled store.
        struct Stall;
        #[async_trait::async_trait]
        impl CallHook for Stall {
            async fn before(&self, call: StoreCall) -> Result<(), StoreError> {
                if call == StoreCall::PutBlob {
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        }
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000)));
        let memory: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new(clock));
        let stalled: Arc<dyn BlobStore> = Hooked::new(memory, Stall);
        let store = Measured::new(stalled, "blobs", "memory");
        let key = key();
        let mut call = Box::pin(store.put_new(&key, Bytes::from_static(b"png")));
        // Polled once, then dropped: the caller's deadline gave up on it.
        assert!(futures::poll!(&mut call).is_pending(), "the stalled put answered");
        drop(call);
        let scrape = handle.render();
        let abandoned =
            r#"profilestore_store_call_errors_total{store="blobs",backend="memory",op="put",kind="abandoned"}"#;
        assert_eq!(lines(&scrape, abandoned).len(), 1, "{scrape}");
    }
}
