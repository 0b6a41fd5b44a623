//! The suites must catch broken stores: each test breaks one promise of an otherwise
//! correct in-memory store and asserts that the check for that promise fails.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use profilestore_core::error::StoreError;
use profilestore_core::ids::{BlobKey, ImageId, UserId};
use profilestore_core::memory::{MemoryBlobStore, MemoryMetadataStore};
use profilestore_core::settings::Timings;
use profilestore_core::store::{
    BlobStore, CommitOutcome, DeleteOutcome, IdempotencyKey, KeyedOutcome, ListedBlob, MetadataStore, Pairing,
    Precondition, Record,
};
use profilestore_core::time::{Clock, Deadline, Timestamp};
use profilestore_runtime::SystemClock;
use profilestore_testkit::conformance::{
    BlobUnderTest, MetadataUnderTest, Report, blob_store_conformance, metadata_store_conformance,
};
use profilestore_testkit::test_deadline;

#[derive(Clone, Copy, PartialEq)]
enum MetaFlaw {
    IgnoresDeadline,
    IgnoresPrecondition,
    ForgetsKeys,
    ReferencesEverythingAsked,
    IgnoresPageLimit,
    ReplacesPairing,
    AlwaysSaysEmpty,
}

struct BrokenMetadata {
    inner: MemoryMetadataStore,
    flaw: MetaFlaw,
}

#[async_trait::async_trait]
impl MetadataStore for BrokenMetadata {
    async fn get(&self, user: &UserId) -> Result<Option<Record>, StoreError> {
        self.inner.get(user).await
    }
    async fn put_if_before(
        &self,
        r: &Record,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<CommitOutcome, StoreError> {
        self.inner.put_if_before(r, self.precondition(precondition), &self.deadline(deadline)).await
    }
    async fn put_keyed_before(
        &self,
        r: &Record,
        precondition: &Precondition,
        key: &IdempotencyKey,
        deadline: &Deadline,
    ) -> Result<KeyedOutcome, StoreError> {
        let (precondition, deadline) = (self.precondition(precondition), self.deadline(deadline));
        if self.flaw == MetaFlaw::ForgetsKeys {
            return Ok(self.inner.put_if_before(r, precondition, &deadline).await?.into());
        }
        self.inner.put_keyed_before(r, precondition, key, &deadline).await
    }
    async fn keyed_record(&self, user: &UserId, key: &str) -> Result<Option<(Record, String)>, StoreError> {
        if self.flaw == MetaFlaw::ForgetsKeys {
            return Ok(None);
        }
        self.inner.keyed_record(user, key).await
    }
    async fn delete_if_before(
        &self,
        user: &UserId,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<DeleteOutcome, StoreError> {
        self.inner.delete_if_before(user, self.precondition(precondition), &self.deadline(deadline)).await
    }
    async fn referenced(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        if self.flaw == MetaFlaw::ReferencesEverythingAsked {
            return Ok(ids.iter().copied().collect());
        }
        self.inner.referenced(ids).await
    }
    // Each flaw is in one promise: the plain read of whether an image is named stays
    // the inner store's.
    async fn names_image(&self, image_id: &ImageId) -> Result<bool, StoreError> {
        self.inner.names_image(image_id).await
    }
    async fn count_records(&self) -> Result<u64, StoreError> {
        self.inner.count_records().await
    }
    async fn has_records(&self) -> Result<bool, StoreError> {
        if self.flaw == MetaFlaw::AlwaysSaysEmpty {
            return Ok(false);
        }
        self.inner.has_records().await
    }
    async fn records_after(&self, after: Option<&UserId>, limit: usize) -> Result<Vec<Record>, StoreError> {
        let limit = if self.flaw == MetaFlaw::IgnoresPageLimit { usize::MAX } else { limit };
        self.inner.records_after(after, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn read_pairing(&self) -> Result<Option<Pairing>, StoreError> {
        self.inner.read_pairing().await
    }
    async fn create_pairing(&self, pairing: &Pairing) -> Result<Pairing, StoreError> {
        if self.flaw == MetaFlaw::ReplacesPairing {
            // Last writer wins instead of first: "update" by creating a fresh store state.
            let current = self.inner.read_pairing().await?;
            if current.is_some() {
                return Ok(pairing.clone());
            }
        }
        self.inner.create_pairing(pairing).await
    }
    async fn update_timings(&self, cluster_id: uuid::Uuid, timings: &Timings) -> Result<(), StoreError> {
        self.inner.update_timings(cluster_id, timings).await
    }
}

impl BrokenMetadata {
    /// The precondition the flawed store acts on.
    fn precondition<'a>(&self, asked: &'a Precondition) -> &'a Precondition {
        if self.flaw == MetaFlaw::IgnoresPrecondition { &Precondition::Any } else { asked }
    }

    /// The deadline the flawed store acts on.
    fn deadline(&self, asked: &Deadline) -> Deadline {
        if self.flaw == MetaFlaw::IgnoresDeadline {
            test_deadline(Timestamp::from_millis(i64::MAX), Duration::from_secs(3600))
        } else {
            asked.clone()
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum BlobFlaw {
    Overwrites,
    CreatedOneSecondEarly,
    OnePageForEverything,
    PanicsOnGet,
}

struct BrokenBlobs {
    inner: MemoryBlobStore,
    clock: Arc<dyn Clock>,
    flaw: BlobFlaw,
}

#[async_trait::async_trait]
impl BlobStore for BrokenBlobs {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        if self.flaw == BlobFlaw::Overwrites {
            self.inner.insert_raw(&key.to_string(), bytes, self.clock.now());
            return Ok(());
        }
        self.inner.put_new(key, bytes).await
    }
    async fn get(&self, key: &BlobKey) -> Result<Option<Bytes>, StoreError> {
        assert!(self.flaw != BlobFlaw::PanicsOnGet, "get exploded");
        self.inner.get(key).await
    }
    async fn exists(&self, key: &BlobKey) -> Result<bool, StoreError> {
        self.inner.exists(key).await
    }
    async fn delete_many(&self, keys: &[BlobKey]) -> Result<(), StoreError> {
        self.inner.delete_many(keys).await
    }
    fn list(&self, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        let page_size = if self.flaw == BlobFlaw::OnePageForEverything { usize::MAX } else { page_size };
        let flaw = self.flaw;
        self.inner
            .list(page_size)
            .map(move |page| {
                page.map(|blobs| {
                    blobs
                        .into_iter()
                        .map(|mut b| {
                            if flaw == BlobFlaw::CreatedOneSecondEarly {
                                b.created = Timestamp::from_millis(b.created.as_millis() - 1000);
                            }
                            b
                        })
                        .collect()
                })
            })
            .boxed()
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

async fn metadata_report(flaw: MetaFlaw) -> Report {
    metadata_store_conformance(|| async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        MetadataUnderTest {
            store: Arc::new(BrokenMetadata { inner: MemoryMetadataStore::new(clock.clone()), flaw }),
            clock,
        }
    })
    .await
}

async fn blob_report(flaw: BlobFlaw) -> Report {
    blob_store_conformance(|| async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let store = BrokenBlobs { inner: MemoryBlobStore::new(clock.clone()), clock: clock.clone(), flaw };
        BlobUnderTest { store: Arc::new(store), clock, timestamp_precision: Duration::ZERO }
    })
    .await
}

#[track_caller]
fn assert_caught(report: &Report, checks: &[&str]) {
    for check in checks {
        assert!(report.failed(check), "{check} did not catch the flaw:\n{report}");
    }
    // The flaw is caught by the checks for its promise, not by everything at once.
    assert!(report.failures().count() < report.outcomes().len() / 2, "{report}");
}

#[tokio::test]
async fn a_store_that_ignores_deadlines_is_caught() {
    let report = metadata_report(MetaFlaw::IgnoresDeadline).await;
    assert_caught(&report, &["past_deadline_writes_nothing", "past_deadline_leaves_the_existing_record"]);
    assert!(!report.failed("future_deadline_commits"));
}

#[tokio::test]
async fn a_store_that_ignores_preconditions_is_caught() {
    let report = metadata_report(MetaFlaw::IgnoresPrecondition).await;
    assert_caught(
        &report,
        &[
            "conditional_put_checks_the_current_record",
            "conditional_delete_checks_the_current_record",
            "concurrent_compare_and_sets_let_exactly_one_win",
            "a_failed_precondition_fails_only_its_own_change",
        ],
    );
}

#[tokio::test]
async fn a_store_that_forgets_idempotency_keys_is_caught() {
    let report = metadata_report(MetaFlaw::ForgetsKeys).await;
    assert_caught(
        &report,
        &["a_keyed_write_is_answered_again_not_written_twice", "concurrent_attempts_with_one_key_write_once"],
    );
}

#[tokio::test]
async fn a_store_that_calls_everything_referenced_is_caught() {
    let report = metadata_report(MetaFlaw::ReferencesEverythingAsked).await;
    assert_caught(
        &report,
        &[
            "referenced_answers_exactly_the_referenced_subset",
            "referenced_follows_replace_and_delete",
            "referenced_answers_large_inputs",
        ],
    );
}

#[tokio::test]
async fn a_store_that_ignores_the_page_limit_is_caught() {
    let report = metadata_report(MetaFlaw::IgnoresPageLimit).await;
    assert_caught(&report, &["records_after_pages_in_byte_order"]);
}

#[tokio::test]
async fn a_store_that_says_it_is_empty_when_it_is_not_is_caught() {
    // The cleaner's empty-database guard and pairing's wiped-store check rest on it.
    let report = metadata_report(MetaFlaw::AlwaysSaysEmpty).await;
    assert_caught(&report, &["delete_removes_only_that_record"]);
}

#[tokio::test]
async fn a_store_whose_pairing_is_last_writer_wins_is_caught() {
    let report = metadata_report(MetaFlaw::ReplacesPairing).await;
    assert_caught(&report, &["pairing_is_create_if_absent", "concurrent_pairings_agree"]);
}

#[tokio::test]
async fn a_blob_store_that_overwrites_is_caught() {
    let report = blob_report(BlobFlaw::Overwrites).await;
    assert_caught(&report, &["put_new_never_overwrites", "concurrent_put_new_of_one_key_has_one_winner"]);
}

#[tokio::test]
async fn a_blob_store_whose_blobs_look_older_than_they_are_is_caught() {
    let report = blob_report(BlobFlaw::CreatedOneSecondEarly).await;
    assert_caught(&report, &["list_reports_creation_times_and_sizes"]);
}

#[tokio::test]
async fn a_blob_store_with_oversized_pages_is_caught() {
    let report = blob_report(BlobFlaw::OnePageForEverything).await;
    assert_caught(&report, &["list_pages_cover_every_object_once"]);
}

#[tokio::test]
async fn a_panicking_store_fails_its_checks_instead_of_aborting_the_suite() {
    let report = blob_report(BlobFlaw::PanicsOnGet).await;
    assert!(report.failed("put_new_then_get_and_exists"), "{report}");
    let failure = report.failures().find(|o| o.check == "put_new_then_get_and_exists").and_then(|o| o.failure.clone());
    assert!(failure.is_some_and(|f| f.contains("panicked: get exploded")), "{report}");
    // Checks that never call get still ran and passed.
    assert!(!report.failed("list_pages_cover_every_object_once"), "{report}");
}
