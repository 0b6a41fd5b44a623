//! Test support: the core's in-memory stores behind thin wrappers that can fail on
//! cue, add latency, run a hook at a chosen moment, and note when calls happened.
//! Wrappers only inject and observe; the behaviour under test is the stores' own.
#![allow(dead_code)] // each test file uses a different part

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};

use profilestore_cleaner::{Cleaner, CleanerConfig};
use profilestore_core::error::StoreError;
use profilestore_core::ids::{BlobKey, ImageId, UserId};
use profilestore_core::memory::{MemoryBlobStore, MemoryMetadataStore};
use profilestore_core::settings::Timings;
use profilestore_core::store::{BlobStore, CommitOutcome, DeleteOutcome, ListedBlob, MetadataStore, Pairing, Record};
use profilestore_core::time::{Clock, Deadline, Time, Timestamp};
use profilestore_runtime::TokioClock;

pub const H: Duration = Duration::from_secs(3600);
pub const MIN: Duration = Duration::from_secs(60);
/// 2025-01-01T00:00:00Z: where every test's clock starts.
pub const T0: Timestamp = Timestamp::from_millis(1_735_689_600_000);

pub type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// The image id numbered `n`; its shard is `n`'s low byte.
pub fn image(n: u32) -> ImageId {
    format!("01900000-0000-7000-8000-{n:012x}").parse().expect("a valid UUIDv7")
}

pub fn user(n: u32) -> UserId {
    UserId::parse(&format!("user-{n}")).expect("a valid user id")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn injected(what: &str) -> StoreError {
    StoreError::unavailable(format!("injected failure: {what}"))
}

/// A metadata store whose `referenced` can fail, run a hook first, and is timed.
pub struct TestMetadata {
    pub inner: Arc<MemoryMetadataStore>,
    clock: Arc<dyn Clock>,
    /// The 0-based `referenced` call that fails.
    pub fail_referenced_call: Mutex<Option<usize>>,
    /// Runs at the start of the first `referenced` call.
    pub before_first_referenced: Mutex<Option<Hook>>,
    /// Each `referenced` call: when it finished, and what it was asked.
    pub referenced_calls: Mutex<Vec<(Timestamp, Vec<ImageId>)>>,
    /// How long `count_records` takes.
    pub count_latency: Mutex<Duration>,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl MetadataStore for TestMetadata {
    async fn get(&self, user: &UserId) -> Result<Option<Record>, StoreError> {
        self.inner.get(user).await
    }
    async fn put_before(&self, record: &Record, deadline: &Deadline) -> Result<CommitOutcome, StoreError> {
        self.inner.put_before(record, deadline).await
    }
    async fn delete_before(&self, user: &UserId, deadline: &Deadline) -> Result<DeleteOutcome, StoreError> {
        self.inner.delete_before(user, deadline).await
    }
    async fn referenced(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let hook = lock(&self.before_first_referenced).take();
        if let Some(hook) = hook {
            hook().await;
        }
        if *lock(&self.fail_referenced_call) == Some(call) {
            return Err(injected("referenced"));
        }
        let answer = self.inner.referenced(ids).await;
        lock(&self.referenced_calls).push((self.clock.now(), ids.to_vec()));
        answer
    }
    async fn count_records(&self) -> Result<u64, StoreError> {
        let latency = *lock(&self.count_latency);
        self.clock.sleep_until(self.clock.now().plus(latency)).await;
        self.inner.count_records().await
    }
    async fn records_after(&self, after: Option<&UserId>, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.inner.records_after(after, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn read_pairing(&self) -> Result<Option<Pairing>, StoreError> {
        self.inner.read_pairing().await
    }
    async fn create_pairing(&self, pairing: &Pairing) -> Result<Pairing, StoreError> {
        self.inner.create_pairing(pairing).await
    }
    async fn update_timings(&self, cluster_id: uuid::Uuid, timings: &Timings) -> Result<(), StoreError> {
        self.inner.update_timings(cluster_id, timings).await
    }
}

/// A blob store whose listing can fail or be slow, whose deletes can fail, with a
/// hook on `exists`, and which notes deletes and staging sweeps.
pub struct TestBlobs {
    pub inner: Arc<MemoryBlobStore>,
    clock: Arc<dyn Clock>,
    /// This many `list` calls (the first ones) fail at their first page.
    pub failing_listings: AtomicUsize,
    /// Every listing fails at this 0-based page.
    pub fail_list_page: Mutex<Option<usize>>,
    /// How long each listed page takes.
    pub list_latency: Mutex<Duration>,
    /// The 0-based `delete_many` call that fails (before deleting anything).
    pub fail_delete_call: Mutex<Option<usize>>,
    /// Each `delete_many` call that went through: when, and which keys.
    pub deletes: Mutex<Vec<(Timestamp, Vec<String>)>>,
    /// Each `delete_many` call, failed or not.
    pub delete_attempts: AtomicUsize,
    /// Each `sweep_staging` call's cutoff.
    pub sweeps: Mutex<Vec<Timestamp>>,
    /// What `sweep_staging` answers.
    pub staging_files: Mutex<u64>,
    /// Runs at the start of the first `exists` call.
    pub before_first_exists: Mutex<Option<Hook>>,
    pub list_calls: AtomicUsize,
}

#[async_trait::async_trait]
impl BlobStore for TestBlobs {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        self.inner.put_new(key, bytes).await
    }
    async fn get(&self, key: &BlobKey) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(key).await
    }
    async fn exists(&self, key: &BlobKey) -> Result<bool, StoreError> {
        let hook = lock(&self.before_first_exists).take();
        if let Some(hook) = hook {
            hook().await;
        }
        self.inner.exists(key).await
    }
    async fn delete_many(&self, keys: &[BlobKey]) -> Result<(), StoreError> {
        let call = self.delete_attempts.fetch_add(1, Ordering::SeqCst);
        if *lock(&self.fail_delete_call) == Some(call) {
            return Err(injected("delete_many"));
        }
        lock(&self.deletes).push((self.clock.now(), keys.iter().map(|k| k.to_string()).collect()));
        self.inner.delete_many(keys).await
    }
    fn list(&self, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        self.list_calls.fetch_add(1, Ordering::SeqCst);
        let fail_first =
            self.failing_listings.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let fail_at = if fail_first { Some(0) } else { *lock(&self.fail_list_page) };
        let latency = *lock(&self.list_latency);
        self.inner
            .list(page_size)
            .enumerate()
            .then(move |(i, page)| async move {
                tokio::time::sleep(latency).await;
                if fail_at == Some(i) { Err(injected("list")) } else { page }
            })
            .boxed()
    }
    async fn sweep_staging(&self, older_than: Timestamp) -> Result<u64, StoreError> {
        lock(&self.sweeps).push(older_than);
        Ok(*lock(&self.staging_files))
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn read_marker(&self) -> Result<Option<Bytes>, StoreError> {
        self.inner.read_marker().await
    }
    async fn create_marker(&self, contents: Bytes) -> Result<(), StoreError> {
        self.inner.create_marker(contents).await
    }
}

/// Two wrapped in-memory stores sharing one clock that starts at [`T0`].
pub struct World {
    pub clock: Arc<TokioClock>,
    pub metadata: Arc<TestMetadata>,
    pub blobs: Arc<TestBlobs>,
}

impl World {
    /// Must run inside a Tokio runtime (the clock follows Tokio's time).
    pub fn new() -> Self {
        let clock = Arc::new(TokioClock::starting_at(T0));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let metadata = Arc::new(TestMetadata {
            inner: Arc::new(MemoryMetadataStore::new(dyn_clock.clone())),
            clock: dyn_clock.clone(),
            fail_referenced_call: Mutex::new(None),
            before_first_referenced: Mutex::new(None),
            referenced_calls: Mutex::new(Vec::new()),
            count_latency: Mutex::new(Duration::ZERO),
            calls: AtomicUsize::new(0),
        });
        let blobs = Arc::new(TestBlobs {
            inner: Arc::new(MemoryBlobStore::new(dyn_clock.clone())),
            clock: dyn_clock,
            failing_listings: AtomicUsize::new(0),
            fail_list_page: Mutex::new(None),
            list_latency: Mutex::new(Duration::ZERO),
            fail_delete_call: Mutex::new(None),
            deletes: Mutex::new(Vec::new()),
            delete_attempts: AtomicUsize::new(0),
            sweeps: Mutex::new(Vec::new()),
            staging_files: Mutex::new(0),
            before_first_exists: Mutex::new(None),
            list_calls: AtomicUsize::new(0),
        });
        World { clock, metadata, blobs }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn cleaner(&self, config: CleanerConfig) -> Cleaner {
        Cleaner::new(self.metadata.clone(), self.blobs.clone(), self.clock.clone(), config).expect("a valid config")
    }

    /// Plants an object under a raw key, created `age` ago.
    pub fn plant_raw(&self, key: &str, age: Duration) {
        let created = Timestamp::from_millis(self.now().as_millis() - age.as_millis() as i64);
        self.blobs.inner.insert_raw(key, Bytes::from_static(b"img"), created);
    }

    /// Plants the blob of image `n`, created `age` ago, with no record.
    pub fn orphan(&self, n: u32, age: Duration) -> ImageId {
        let id = image(n);
        self.plant_raw(&BlobKey::original(id).to_string(), age);
        id
    }

    /// Plants the blob of image `n` created `age` ago and a record of user `n` naming it.
    pub async fn profile(&self, n: u32, age: Duration) -> ImageId {
        let id = self.orphan(n, age);
        self.point(n, id).await;
        id
    }

    /// Writes user `u`'s record, naming image `id`.
    pub async fn point(&self, u: u32, id: ImageId) {
        write_record(self.metadata.inner.as_ref(), self.now(), u, id).await;
    }

    pub fn has(&self, id: ImageId) -> bool {
        self.blobs.inner.keys().contains(&BlobKey::original(id).to_string())
    }

    pub fn keys(&self) -> Vec<String> {
        self.blobs.inner.keys()
    }
}

/// Commits user `u`'s record naming `id`, as a write starting at `now` would.
pub async fn write_record(metadata: &dyn MetadataStore, now: Timestamp, u: u32, id: ImageId) {
    let record = Record {
        user_id: user(u),
        metadata: "{}".into(),
        image_id: id,
        content_type: "image/png".into(),
        image_size: 3,
        updated_at: now,
    };
    let deadline = Deadline::new(Arc::new(TokioClock::starting_at(now)), now.plus(H), H);
    let outcome = metadata.put_before(&record, &deadline).await.expect("memory store writes");
    assert_eq!(outcome, CommitOutcome::Committed);
}

/// The case-study configuration with the given page size.
pub fn config(page_size: usize) -> CleanerConfig {
    CleanerConfig { page_size, ..CleanerConfig::default() }
}
