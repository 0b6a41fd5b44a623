//! The case study's own counterexamples, replayed as fixed schedules against the real
//! code (the service's write and read drivers, the real cleaner) on in-memory stores
//! with Tokio's clock paused, so hours pass instantly and every step lands exactly
//! when the schedule says. Each fails under the flawed settings and passes under the
//! working ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use profilestore_cleaner::{Cleaner, CleanerConfig};
use profilestore_core::error::{ServiceError, StoreError};
use profilestore_core::ids::{BlobKey, UserId};
use profilestore_core::memory::{MemoryBlobStore, MemoryMetadataStore};
use profilestore_core::service::{NewProfile, ProfileService};
use profilestore_core::settings::Timings;
use profilestore_core::store::{BlobStore, MetadataStore};
use profilestore_core::time::Timestamp;
use profilestore_runtime::{TokioClock, UuidV7Ids};
use profilestore_testkit::hooked::{CallHook, Hooked, StoreCall};
use tokio::sync::Semaphore;

const H: Duration = Duration::from_secs(3600);
const MIN: Duration = Duration::from_secs(60);

/// A gate a store call waits at until the schedule opens it.
struct Gate(Semaphore);

impl Gate {
    fn closed() -> Arc<Gate> {
        Arc::new(Gate(Semaphore::new(0)))
    }
    fn open(&self) {
        self.0.add_permits(1000);
    }
    async fn pass(&self) {
        let _permit = self.0.acquire().await;
    }
}

/// Holds one kind of store call at a gate, and counts blob fetches that find their
/// blob gone (reads only fetch what a record named a moment before).
struct Gated {
    at: StoreCall,
    gate: Arc<Gate>,
    vanished: AtomicU64,
}

impl Gated {
    fn at(at: StoreCall, gate: &Arc<Gate>) -> Self {
        Gated { at, gate: gate.clone(), vanished: AtomicU64::new(0) }
    }
}

#[async_trait::async_trait]
impl CallHook for Gated {
    async fn before(&self, call: StoreCall) -> Result<(), StoreError> {
        if call == self.at {
            self.gate.pass().await;
        }
        Ok(())
    }

    fn fetched(&self, found: bool) {
        if !found {
            self.vanished.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn alice() -> UserId {
    UserId::parse("alice").unwrap()
}

fn profile(tag: &str) -> NewProfile {
    NewProfile {
        metadata: format!(r#"{{"v":"{tag}"}}"#),
        image: Bytes::from(tag.to_owned()),
        content_type: "image/png".into(),
    }
}

fn cleaner(
    metadata: Arc<MemoryMetadataStore>,
    blobs: Arc<MemoryBlobStore>,
    clock: Arc<TokioClock>,
    timings: Timings,
) -> Cleaner {
    let config =
        CleanerConfig { timings, allow_unsafe_timing: true, allow_empty_database: true, ..CleanerConfig::default() };
    Cleaner::new(metadata, blobs, clock, config).unwrap()
}

/// Seed 000's counterexample: a write stalls between its blob and its record for three
/// hours; a cleaner with the two-hour age filter finds the blob unreferenced and
/// deletes it; then the stalled write's record lands, naming nothing. Returns whether
/// the user's record ended up dangling.
async fn stalled_write(timings: Timings) -> bool {
    let clock = Arc::new(TokioClock::starting_at(Timestamp::from_millis(1_700_000_000_000)));
    let metadata = Arc::new(MemoryMetadataStore::new(clock.clone()));
    let blobs = Arc::new(MemoryBlobStore::new(clock.clone()));
    let gate = Gate::closed();
    let gated = Hooked::new(metadata.clone() as Arc<dyn MetadataStore>, Gated::at(StoreCall::CommitRecord, &gate));
    let service = ProfileService::new(gated, blobs.clone(), clock.clone(), Arc::new(UuidV7Ids), timings);

    // 0 h: the write puts its blob, then stalls before its record.
    let write = tokio::spawn(async move { service.write(alice(), profile("stalled")).await });
    tokio::time::sleep(MIN).await;
    // 2 h 6 min: the blob is older than the age filter; a cleaner cycle starts.
    tokio::time::sleep(2 * H + 5 * MIN).await;
    let sweeper = cleaner(metadata.clone(), blobs.clone(), clock.clone(), timings);
    let cycle = tokio::spawn(async move { sweeper.run_cycle().await });
    // 3 h 30 min: the cleaner has waited out its delay and deleted; the write resumes.
    tokio::time::sleep(H + 24 * MIN).await;
    gate.open();
    let written = write.await.unwrap();
    cycle.await.unwrap();
    match metadata.get(&alice()).await.unwrap() {
        Some(record) => {
            assert!(written.is_ok(), "a record landed for a write that reported {written:?}");
            !blobs.exists(&BlobKey::original(record.image_id)).await.unwrap()
        }
        None => {
            // Cut during its record's commit call: the service cannot know whether the
            // store's check passed, so it says the outcome is unknown.
            assert!(matches!(written, Err(ServiceError::CommitUnknown(_))), "{written:?}");
            false
        }
    }
}

/// Seed 000's second counterexample (fixed by seed 003's delete delay): a read fetches
/// the record naming image X and stalls before fetching X; a write moves the record to
/// Y; a cleaner finds X unreferenced and deletes it; the read resumes within its
/// deadline and finds X gone. Returns how many reads found their blob gone.
async fn stalled_read(timings: Timings) -> u64 {
    let clock = Arc::new(TokioClock::starting_at(Timestamp::from_millis(1_700_000_000_000)));
    let metadata = Arc::new(MemoryMetadataStore::new(clock.clone()));
    let blobs = Arc::new(MemoryBlobStore::new(clock.clone()));
    let plain = ProfileService::new(metadata.clone(), blobs.clone(), clock.clone(), Arc::new(UuidV7Ids), timings);
    plain.write(alice(), profile("x")).await.unwrap();
    // X is old enough for any age filter.
    tokio::time::sleep(3 * H).await;

    let gate = Gate::closed();
    let gated = Hooked::new(blobs.clone() as Arc<dyn BlobStore>, Gated::at(StoreCall::GetBlob, &gate));
    let reader = ProfileService::new(metadata.clone(), gated.clone(), clock.clone(), Arc::new(UuidV7Ids), timings);
    // 0 min: the read has the record (→ X) and stalls before fetching X.
    let read = tokio::spawn(async move { reader.read(&alice()).await });
    tokio::time::sleep(MIN).await;
    // 1 min: an update moves the record to Y.
    plain.write(alice(), profile("y")).await.unwrap();
    // 2 min: a cleaner cycle finds X unreferenced.
    let sweeper = cleaner(metadata.clone(), blobs.clone(), clock.clone(), timings);
    let cycle = tokio::spawn(async move { sweeper.run_cycle().await });
    tokio::time::sleep(MIN).await;
    // 30 min: the read resumes, well within its one-hour deadline.
    tokio::time::sleep(28 * MIN).await;
    gate.open();
    let answer = read.await.unwrap().expect("the read answers").expect("a profile");
    // The read path re-reads and answers a consistent pair either way; only the
    // counter below sees the damage.
    assert_eq!(answer.record.metadata, format!(r#"{{"v":"{}"}}"#, String::from_utf8_lossy(&answer.image)));
    cycle.await.unwrap();
    gated.hook().vanished.load(Ordering::SeqCst)
}

const WORKING: Timings = Timings {
    request_timeout: H,
    min_blob_age: Duration::from_secs(7200),
    delete_delay: H,
    clock_skew: Duration::ZERO,
};

#[tokio::test(start_paused = true)]
async fn a_write_stalled_for_hours_loses_its_blob_only_when_requests_are_never_killed() {
    let never_killed = Timings { request_timeout: 10 * H, ..WORKING };
    assert!(stalled_write(never_killed).await, "flaw 4: the late record dangles");
    assert!(!stalled_write(WORKING).await, "killed at one hour, the write never commits");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_read_finds_its_blob_gone_only_without_the_delete_delay() {
    let no_delay = Timings { delete_delay: Duration::ZERO, ..WORKING };
    assert_eq!(stalled_read(no_delay).await, 1, "flaw 5: the stalled read's blob vanished");
    assert_eq!(stalled_read(WORKING).await, 0, "the delete delay outlasts every read that holds X");
}
