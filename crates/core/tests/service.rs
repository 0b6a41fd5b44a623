//! The write and read drivers against in-memory stores, with Tokio's clock paused so
//! stalls of any length take no real time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use profilestore_core::error::{ErrorKind, ServiceError, StoreError};
use profilestore_core::ids::{BlobKey, IdSource, UserId};
use profilestore_core::memory::{MemoryBlobStore, MemoryMetadataStore};
use profilestore_core::service::{NewProfile, ProfileService};
use profilestore_core::settings::Timings;
use profilestore_core::store::{BlobStore, CommitOutcome, MetadataStore, Record};
use profilestore_core::time::{Clock, Deadline, Timestamp};
use profilestore_runtime::{TokioClock, UuidV7Ids};
use profilestore_testkit::hooked::{CallHook, Hooked, StoreCall};

const TIMINGS: Timings = Timings {
    request_timeout: Duration::from_secs(3600),
    min_blob_age: Duration::from_secs(7200),
    delete_delay: Duration::from_secs(3600),
    clock_skew: Duration::from_secs(300),
};

/// Which store call stalls, and for how long.
#[derive(Clone, Copy, Default)]
struct Faults {
    stall_put: Option<Duration>,
    stall_get_blob: Option<Duration>,
    stall_commit: Option<Duration>,
    fail_all: bool,
}

#[async_trait::async_trait]
impl CallHook for Faults {
    async fn before(&self, call: StoreCall) -> Result<(), StoreError> {
        if self.fail_all {
            return Err(StoreError::unavailable("injected failure"));
        }
        let stall = match call {
            StoreCall::PutBlob => self.stall_put,
            StoreCall::GetBlob => self.stall_get_blob,
            StoreCall::CommitRecord => self.stall_commit,
            _ => None,
        };
        if let Some(stall) = stall {
            tokio::time::sleep(stall).await;
        }
        Ok(())
    }
}

struct World {
    metadata: Arc<MemoryMetadataStore>,
    blobs: Arc<MemoryBlobStore>,
    clock: Arc<TokioClock>,
}

impl World {
    fn new() -> Self {
        let clock = Arc::new(TokioClock::starting_at(Timestamp::from_millis(1_700_000_000_000)));
        World {
            metadata: Arc::new(MemoryMetadataStore::new(clock.clone())),
            blobs: Arc::new(MemoryBlobStore::new(clock.clone())),
            clock,
        }
    }

    fn service(&self, faults: Faults) -> ProfileService {
        let metadata: Arc<dyn MetadataStore> = self.metadata.clone();
        let blobs: Arc<dyn BlobStore> = self.blobs.clone();
        ProfileService::new(
            Hooked::new(metadata, faults),
            Hooked::new(blobs, faults),
            self.clock.clone(),
            Arc::new(UuidV7Ids),
            TIMINGS,
        )
    }
}

fn user() -> UserId {
    UserId::parse("alice").unwrap()
}

fn profile(tag: &str) -> NewProfile {
    NewProfile {
        metadata: format!(r#"{{"name":"{tag}"}}"#),
        image: Bytes::from(format!("image bytes of {tag}")),
        content_type: "image/png".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_write_then_a_read_answers_the_same_pair() {
    let world = World::new();
    let service = world.service(Faults::default());
    let stored = service.write(user(), profile("v1")).await.unwrap();
    assert_eq!(stored.updated_at, world.clock.now());
    let read = service.read(&user()).await.unwrap().unwrap();
    assert_eq!(read.record, stored);
    assert_eq!(read.image, Bytes::from("image bytes of v1"));
    assert!(service.read(&UserId::parse("bob").unwrap()).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_replaced_profile_gets_a_fresh_image_and_leaves_the_old_blob_for_the_cleaner() {
    let world = World::new();
    let service = world.service(Faults::default());
    let first = service.write(user(), profile("v1")).await.unwrap();
    let second = service.write(user(), profile("v2")).await.unwrap();
    assert_ne!(first.image_id, second.image_id);
    assert_eq!(world.blobs.keys().len(), 2, "the old blob is an orphan, not overwritten");
    assert_eq!(service.read(&user()).await.unwrap().unwrap().image, Bytes::from("image bytes of v2"));
}

#[tokio::test(start_paused = true)]
async fn a_write_stalled_between_blob_and_record_past_its_deadline_is_refused_and_stores_no_record() {
    let world = World::new();
    world.service(Faults::default()).write(user(), profile("v1")).await.unwrap();
    let stalled = world.service(Faults { stall_commit: Some(TIMINGS.request_timeout), ..Faults::default() });
    let err = stalled.write(user(), profile("v2")).await.unwrap_err();
    assert!(matches!(err, ServiceError::DeadlineExceeded), "{err:?}");
    let kept = world.service(Faults::default()).read(&user()).await.unwrap().unwrap();
    assert_eq!(kept.record.metadata, r#"{"name":"v1"}"#, "the old profile is intact");
    assert_eq!(world.blobs.keys().len(), 2, "the stalled write's blob is an orphan");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_blob_put_ends_at_the_deadline() {
    let world = World::new();
    let service = world.service(Faults { stall_put: Some(Duration::from_secs(2 * 3600)), ..Faults::default() });
    let started = world.clock.now();
    let err = service.write(user(), profile("v1")).await.unwrap_err();
    assert!(matches!(err, ServiceError::DeadlineExceeded), "{err:?}");
    assert_eq!(
        world.clock.now().saturating_since(started),
        TIMINGS.request_timeout,
        "abandoned exactly at the deadline"
    );
    assert!(world.metadata.get(&user()).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn the_database_refuses_a_commit_that_arrives_after_the_deadline_even_without_a_driver_timeout() {
    // A paused process cannot run its own timers; the database's check is what stops
    // the late write. Call the store directly, as a resumed process would.
    let world = World::new();
    let deadline = Deadline::after(world.clock.clone(), Duration::from_secs(1));
    tokio::time::advance(Duration::from_secs(2)).await;
    let record = Record {
        user_id: user(),
        metadata: "{}".into(),
        image_id: UuidV7Ids.next_image_id(),
        content_type: "image/png".into(),
        image_size: 1,
        updated_at: world.clock.now(),
    };
    let outcome = world.metadata.put_before(&record, &deadline).await.unwrap();
    assert_eq!(outcome, CommitOutcome::DeadlineExceeded);
    assert!(world.metadata.get(&user()).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_record_naming_a_missing_blob_is_a_dangling_reference_not_no_profile() {
    let world = World::new();
    let service = world.service(Faults::default());
    let stored = service.write(user(), profile("v1")).await.unwrap();
    world.blobs.delete_many(&[BlobKey::original(stored.image_id)]).await.unwrap();
    let err = service.read(&user()).await.unwrap_err();
    assert_eq!(err.code(), "dangling_reference");
    assert_eq!(err.kind(), ErrorKind::Internal);
}

/// The first time a read fetches a blob, a concurrent update replaces the record and
/// the old blob is deleted (what a cleaner without a delete delay would do), so the
/// fetch answers "missing".
struct RacingUpdate {
    blobs: Arc<MemoryBlobStore>,
    metadata: Arc<MemoryMetadataStore>,
    fired: AtomicBool,
    replacement: Record,
}

#[async_trait::async_trait]
impl CallHook for RacingUpdate {
    async fn before(&self, call: StoreCall) -> Result<(), StoreError> {
        if call == StoreCall::GetBlob && !self.fired.swap(true, Ordering::SeqCst) {
            let clock = Arc::new(TokioClock::starting_at(self.replacement.updated_at));
            let far = Deadline::new(clock, Timestamp::from_millis(i64::MAX), Duration::from_secs(1));
            self.metadata.put_before(&self.replacement, &far).await?;
            let old: Vec<BlobKey> = self
                .blobs
                .keys()
                .iter()
                .filter_map(|k| BlobKey::parse(k))
                .filter(|k| k.image_id != self.replacement.image_id)
                .collect();
            self.blobs.delete_many(&old).await?;
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_read_racing_an_update_re_reads_and_answers_the_new_pair_never_a_mix() {
    let world = World::new();
    let plain = world.service(Faults::default());
    plain.write(user(), profile("old")).await.unwrap();
    let new_id = UuidV7Ids.next_image_id();
    world.blobs.put_new(&BlobKey::original(new_id), Bytes::from("image bytes of new")).await.unwrap();
    let replacement = Record {
        user_id: user(),
        metadata: r#"{"name":"new"}"#.into(),
        image_id: new_id,
        content_type: "image/png".into(),
        image_size: 18,
        updated_at: world.clock.now(),
    };
    let racing = RacingUpdate {
        blobs: world.blobs.clone(),
        metadata: world.metadata.clone(),
        fired: AtomicBool::new(false),
        replacement,
    };
    let blobs: Arc<dyn BlobStore> = world.blobs.clone();
    let service = ProfileService::new(
        world.metadata.clone(),
        Hooked::new(blobs, racing),
        world.clock.clone(),
        Arc::new(UuidV7Ids),
        TIMINGS,
    );
    let read = service.read(&user()).await.unwrap().unwrap();
    assert_eq!(read.record.metadata, r#"{"name":"new"}"#);
    assert_eq!(read.image, Bytes::from("image bytes of new"));
}

#[tokio::test(start_paused = true)]
async fn bytes_that_arrive_after_the_deadline_are_not_answered() {
    let world = World::new();
    world.service(Faults::default()).write(user(), profile("v1")).await.unwrap();
    let slow = world.service(Faults { stall_get_blob: Some(TIMINGS.request_timeout), ..Faults::default() });
    let err = slow.read(&user()).await.unwrap_err();
    assert!(matches!(err, ServiceError::DeadlineExceeded), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_is_unavailable_and_changes_nothing() {
    let world = World::new();
    world.service(Faults::default()).write(user(), profile("v1")).await.unwrap();
    let broken = world.service(Faults { fail_all: true, ..Faults::default() });
    let err = broken.write(user(), profile("v2")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(err.code(), "store_unavailable");
    assert!(broken.ready(Duration::from_secs(1)).await.is_err());
    let kept = world.service(Faults::default()).read(&user()).await.unwrap().unwrap();
    assert_eq!(kept.record.metadata, r#"{"name":"v1"}"#);
}

/// Runs `scenario` with a recorder of its own on this thread and answers the scrape.
async fn figures_of<F: std::future::Future<Output = ()>>(scenario: impl FnOnce() -> F) -> String {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    scenario().await;
    handle.render()
}

/// The value of the sample `series` (labels exactly as rendered), if present.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Writes once with `faults` and answers the figures and the error.
async fn write_with(faults: Faults) -> (String, ServiceError) {
    let world = World::new();
    let mut error = None;
    let text = figures_of(|| async {
        error = world.service(faults).write(user(), profile("v1")).await.err();
    })
    .await;
    (text, error.expect("the write failed"))
}

#[tokio::test(start_paused = true)]
async fn a_deadline_cut_is_counted_in_the_phase_it_cut() {
    let timeout = TIMINGS.request_timeout;
    let cases = [
        // The put outlasts the deadline: abandoned before the blob was stored.
        (Faults { stall_put: Some(2 * timeout), ..Faults::default() }, "before_blob"),
        // The put lands exactly at the deadline: stored, and the commit never starts.
        (Faults { stall_put: Some(timeout), ..Faults::default() }, "between_blob_and_record"),
        // The commit reaches the database exactly at the deadline: refused there.
        (Faults { stall_commit: Some(timeout), ..Faults::default() }, "refused_at_commit"),
    ];
    for (faults, phase) in cases {
        let (text, error) = write_with(faults).await;
        assert!(matches!(error, ServiceError::DeadlineExceeded), "{phase}: {error:?}");
        let cut = format!(r#"profilestore_write_deadline_cuts_total{{phase="{phase}"}}"#);
        assert_eq!(sample(&text, &cut), Some(1.0), "{phase}: {text}");
        assert_eq!(
            text.matches("profilestore_write_deadline_cuts_total{").count(),
            1,
            "{phase}: one phase only: {text}"
        );
        assert_eq!(sample(&text, r#"profilestore_writes_total{outcome="deadline_exceeded"}"#), Some(1.0), "{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_commit_abandoned_in_flight_counts_as_unknown_not_as_a_cut() {
    let (text, error) =
        write_with(Faults { stall_commit: Some(2 * TIMINGS.request_timeout), ..Faults::default() }).await;
    assert!(matches!(error, ServiceError::CommitUnknown(_)), "{error:?}");
    assert_eq!(sample(&text, r#"profilestore_writes_total{outcome="commit_unknown"}"#), Some(1.0), "{text}");
    assert!(!text.contains("profilestore_write_deadline_cuts_total{"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_dangling_reference_is_counted_once_with_the_missing_blob_that_led_to_it() {
    let world = World::new();
    let service = world.service(Faults::default());
    let text = figures_of(|| async {
        let stored = service.write(user(), profile("v1")).await.unwrap();
        world.blobs.delete_many(&[BlobKey::original(stored.image_id)]).await.unwrap();
        assert_eq!(service.read(&user()).await.unwrap_err().code(), "dangling_reference");
    })
    .await;
    assert_eq!(sample(&text, "profilestore_dangling_references_total"), Some(1.0), "{text}");
    // The blob's absence sent the read back to the record once; the record still
    // named it, so the read concluded.
    assert_eq!(sample(&text, "profilestore_read_blob_missing_total"), Some(1.0), "{text}");
    assert_eq!(sample(&text, r#"profilestore_writes_total{outcome="committed"}"#), Some(1.0), "{text}");
}

#[tokio::test(start_paused = true)]
async fn the_status_counts_records_and_blobs_with_their_bytes_up_to_the_cap() {
    let world = World::new();
    let service = world.service(Faults::default());
    for (user, tag) in [("alice", "a"), ("bob", "bb")] {
        service.write(UserId::parse(user).unwrap(), profile(tag)).await.unwrap();
    }
    let bytes = (profile("a").image.len() + profile("bb").image.len()) as u64;
    let status = service.status(Duration::from_secs(5), 1000).await;
    let (records, named) = status.records.unwrap();
    assert_eq!((records, named.count, named.bytes, named.complete), (2, 2, bytes, true));
    let blobs = status.blobs.unwrap();
    assert_eq!((blobs.count, blobs.bytes, blobs.complete), (2, bytes, true));
    assert!(status.rules.iter().all(|(_, holds)| *holds), "{:?}", status.rules);
    assert_eq!(status.superseded_queued.unwrap(), 0);

    let capped = service.status(Duration::from_secs(5), 1).await;
    assert!(!capped.blobs.unwrap().complete, "one blob counted of two: the page says 'at least'");
    let failing =
        world.service(Faults { fail_all: true, ..Faults::default() }).status(Duration::from_secs(5), 10).await;
    assert!(failing.records.unwrap_err().contains("injected failure"));
}
