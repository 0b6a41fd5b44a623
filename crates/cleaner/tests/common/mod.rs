//! Test support: the core's in-memory stores seen through one hook of the testkit's
//! hook layer that can fail calls on cue, add latency, run a closure at a chosen
//! moment, and note what was asked and when. The behaviour under test is the
//! stores' own.
#![allow(dead_code)] // each test file uses a different part

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

use profilestore_cleaner::{Cleaner, CleanerConfig};
use profilestore_core::error::StoreError;
use profilestore_core::ids::{BlobKey, ImageId, UserId};
use profilestore_core::memory::{MemoryBlobStore, MemoryMetadataStore};
use profilestore_core::store::{BlobStore, CommitOutcome, MetadataStore, Record};
use profilestore_core::time::{Clock, Deadline, Time, Timestamp};
use profilestore_runtime::TokioClock;
use profilestore_testkit::hooked::{Call, CallHook, Hooked, StoreCall};

pub const H: Duration = Duration::from_secs(3600);
pub const MIN: Duration = Duration::from_secs(60);
/// 2025-01-01T00:00:00Z: where every test's clock starts.
pub const T0: Timestamp = Timestamp::from_millis(1_735_689_600_000);

pub type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// The image id numbered `n`; its shard is `n`'s low byte.
pub fn image(n: u32) -> ImageId {
    format!("01900000-0000-7000-8000-{n:012x}").parse().expect("a valid UUIDv7")
}

/// The image id numbered `n`, minted at `at`; its shard is `n`'s low byte.
pub fn image_minted(n: u32, at: Timestamp) -> ImageId {
    let ms = at.as_millis();
    format!("{:08x}-{:04x}-7000-8000-{n:012x}", ms >> 16, ms & 0xffff).parse().expect("a valid UUIDv7")
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

/// The hook both stores of a test are seen through: it fails chosen calls, adds
/// latency, runs a closure at a chosen moment, and notes what was asked and when.
/// It only injects and observes; the behaviour under test is the stores' own.
pub struct CleanerHook {
    clock: Arc<dyn Clock>,
    /// The 0-based `referenced` call that fails.
    pub fail_referenced_call: Mutex<Option<usize>>,
    /// Runs at the start of the first `referenced` call.
    pub before_first_referenced: Mutex<Option<Hook>>,
    /// Each `referenced` call that answered: when it finished, and what it was asked.
    pub referenced_calls: Mutex<Vec<(Timestamp, Vec<ImageId>)>>,
    /// How long counting records takes.
    pub count_latency: Mutex<Duration>,
    /// This many listings (the first ones) fail at their first page.
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
    /// Every `sweep_staging` call fails (after noting its cutoff).
    pub fail_sweeps: std::sync::atomic::AtomicBool,
    /// Runs at the start of the first `exists` call.
    pub before_first_exists: Mutex<Option<Hook>>,
    /// Listings started.
    pub list_calls: AtomicUsize,
    referenced_attempts: AtomicUsize,
    /// Whether the listing in progress fails at its first page.
    listing_fails: std::sync::atomic::AtomicBool,
}

impl CleanerHook {
    fn new(clock: Arc<dyn Clock>) -> Self {
        CleanerHook {
            clock,
            fail_referenced_call: Mutex::new(None),
            before_first_referenced: Mutex::new(None),
            referenced_calls: Mutex::new(Vec::new()),
            count_latency: Mutex::new(Duration::ZERO),
            failing_listings: AtomicUsize::new(0),
            fail_list_page: Mutex::new(None),
            list_latency: Mutex::new(Duration::ZERO),
            fail_delete_call: Mutex::new(None),
            deletes: Mutex::new(Vec::new()),
            delete_attempts: AtomicUsize::new(0),
            sweeps: Mutex::new(Vec::new()),
            fail_sweeps: std::sync::atomic::AtomicBool::new(false),
            before_first_exists: Mutex::new(None),
            list_calls: AtomicUsize::new(0),
            referenced_attempts: AtomicUsize::new(0),
            listing_fails: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

#[async_trait::async_trait]
impl CallHook for CleanerHook {
    async fn before_call(&self, call: &Call<'_>) -> Result<(), StoreError> {
        match call {
            Call::Referenced(_) => {
                let n = self.referenced_attempts.fetch_add(1, Ordering::SeqCst);
                let hook = lock(&self.before_first_referenced).take();
                if let Some(hook) = hook {
                    hook().await;
                }
                if *lock(&self.fail_referenced_call) == Some(n) {
                    return Err(injected("referenced"));
                }
            }
            Call::Other(StoreCall::CountRecords) => {
                let latency = *lock(&self.count_latency);
                tokio::time::sleep(latency).await;
            }
            Call::ListPage { page } => {
                if *page == 0 {
                    self.list_calls.fetch_add(1, Ordering::SeqCst);
                    let fails =
                        self.failing_listings.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                    self.listing_fails.store(fails.is_ok(), Ordering::SeqCst);
                }
                let latency = *lock(&self.list_latency);
                tokio::time::sleep(latency).await;
                let fail_first = *page == 0 && self.listing_fails.load(Ordering::SeqCst);
                if fail_first || *lock(&self.fail_list_page) == Some(*page) {
                    return Err(injected("list"));
                }
            }
            Call::DeleteBlobs(keys) => {
                let n = self.delete_attempts.fetch_add(1, Ordering::SeqCst);
                if *lock(&self.fail_delete_call) == Some(n) {
                    return Err(injected("delete_many"));
                }
                lock(&self.deletes).push((self.clock.now(), keys.iter().map(|k| k.to_string()).collect()));
            }
            Call::SweepStaging(older_than) => {
                lock(&self.sweeps).push(*older_than);
                if self.fail_sweeps.load(Ordering::SeqCst) {
                    return Err(injected("sweep_staging"));
                }
            }
            Call::Other(StoreCall::BlobExists) => {
                let hook = lock(&self.before_first_exists).take();
                if let Some(hook) = hook {
                    hook().await;
                }
            }
            Call::Other(_) => {}
        }
        Ok(())
    }

    fn after(&self, call: &Call<'_>) {
        if let Call::Referenced(ids) = call {
            lock(&self.referenced_calls).push((self.clock.now(), ids.to_vec()));
        }
    }
}

/// Two in-memory stores seen through one [`CleanerHook`], sharing one clock that
/// starts at [`T0`].
pub struct World {
    pub clock: Arc<TokioClock>,
    /// What the cleaner uses.
    pub metadata: Arc<dyn MetadataStore>,
    pub blobs: Arc<dyn BlobStore>,
    /// The stores themselves, for planting and inspecting.
    pub metadata_store: Arc<MemoryMetadataStore>,
    pub blob_store: Arc<MemoryBlobStore>,
    pub hook: Arc<CleanerHook>,
}

impl World {
    /// Must run inside a Tokio runtime (the clock follows Tokio's time).
    pub fn new() -> Self {
        let clock = Arc::new(TokioClock::starting_at(T0));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let metadata_store = Arc::new(MemoryMetadataStore::new(dyn_clock.clone()));
        let blob_store = Arc::new(MemoryBlobStore::new(dyn_clock.clone()));
        let hook = Arc::new(CleanerHook::new(dyn_clock));
        let metadata = Hooked::new(metadata_store.clone() as Arc<dyn MetadataStore>, hook.clone());
        let blobs = Hooked::new(blob_store.clone() as Arc<dyn BlobStore>, hook.clone());
        World { clock, metadata, blobs, metadata_store, blob_store, hook }
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
        self.blob_store.insert_raw(key, Bytes::from_static(b"img"), created);
    }

    /// Plants the blob of image `n`, created `age` ago, with no record.
    pub fn orphan(&self, n: u32, age: Duration) -> ImageId {
        let id = image(n);
        self.plant_raw(&BlobKey::original(id).to_string(), age);
        id
    }

    /// Plants the blob of `id`, created `age` ago, with no record.
    pub fn orphan_id(&self, id: ImageId, age: Duration) -> ImageId {
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
        write_record(self.metadata_store.as_ref(), self.now(), u, id).await;
    }

    pub fn has(&self, id: ImageId) -> bool {
        self.blob_store.keys().contains(&BlobKey::original(id).to_string())
    }

    pub fn keys(&self) -> Vec<String> {
        self.blob_store.keys()
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
