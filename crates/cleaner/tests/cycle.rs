//! The cleaner cycle against the in-memory stores, on a paused Tokio clock so the
//! case study's hours pass instantly.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{H, MIN, T0, World, config, image, user, write_record};
use futures::FutureExt;
use profilestore_cleaner::report::{SKIP_NOT_IN_LAYOUT, SKIP_REFERENCED, SKIP_TOO_YOUNG};
use profilestore_cleaner::{CleanerConfig, ConfigError, Outcome};
use profilestore_core::ids::BlobKey;
use profilestore_core::machine::CycleLimits;
use profilestore_core::settings::Timings;
use profilestore_core::store::{BlobStore, MetadataStore, PAIRING_MARKER_KEY};
use profilestore_core::time::Timestamp;

const OLD: Duration = Duration::from_secs(3 * 3600);

#[tokio::test(start_paused = true)]
async fn an_old_unreferenced_blob_is_deleted_exactly_one_delete_delay_after_the_query() {
    let w = World::new();
    let orphan = w.orphan(1, OLD);
    let kept = w.profile(2, OLD).await;
    // 2 h 5 min is the boundary (min_blob_age + clock_skew); one second short of it.
    let young = w.orphan(3, 2 * H + 5 * MIN - Duration::from_secs(1));
    let cleaner = Arc::new(w.cleaner(config(1000)));

    let cycle = tokio::spawn({
        let cleaner = cleaner.clone();
        async move { cleaner.run_cycle().await }
    });
    tokio::time::sleep(H - Duration::from_secs(1)).await;
    assert!(w.has(orphan), "deleted before the delete delay had passed");
    let report = cycle.await.unwrap();

    assert_eq!(report.outcome, Outcome::Completed);
    assert!(!w.has(orphan), "the old unreferenced blob is deleted");
    assert!(w.has(kept), "a referenced blob is never deleted");
    assert!(w.has(young), "a blob younger than min_blob_age + clock_skew is not deleted");

    let queries = w.hook.referenced_calls.lock().unwrap().clone();
    let deletes = w.hook.deletes.lock().unwrap().clone();
    assert_eq!(queries.len(), 1);
    assert_eq!(queries[0].1.len(), 2, "only the two old-enough images are asked about: {queries:?}");
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].1, vec![BlobKey::original(orphan).to_string()]);
    let waited = deletes[0].0.saturating_since(queries[0].0);
    assert!(waited >= H && waited < H + Duration::from_secs(1), "waited {waited:?} between query and delete");

    assert_eq!((report.images_listed, report.old_enough, report.unreferenced, report.deleted), (3, 2, 1, 1));
    assert_eq!(report.skipped_for(SKIP_TOO_YOUNG), 1);
    assert_eq!(report.skipped_for(SKIP_REFERENCED), 1);
}

#[tokio::test(start_paused = true)]
async fn a_blob_whose_record_is_written_after_the_listing_but_before_the_query_is_kept() {
    let w = World::new();
    let id = w.orphan(1, OLD);
    let other = w.profile(2, OLD).await;
    // The listing sees `id` unreferenced and old enough; a record naming it lands
    // before the query asks. The query, not the listing, decides.
    let metadata = w.metadata_store.clone();
    let now = w.now();
    *w.hook.before_first_referenced.lock().unwrap() =
        Some(Box::new(move || async move { write_record(metadata.as_ref(), now, 1, id).await }.boxed()));

    let report = w.cleaner(config(1000)).run_cycle().await;

    assert_eq!(report.outcome, Outcome::Completed);
    assert!(w.has(id) && w.has(other));
    assert_eq!(report.deleted, 0);
    assert!(w.hook.deletes.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_cycle_of_many_pages_takes_one_delete_delay_not_one_per_page() {
    let w = World::new();
    let orphans: Vec<_> = (0..50).map(|n| w.orphan(n, OLD)).collect();
    w.profile(100, OLD).await;
    *w.hook.list_latency.lock().unwrap() = MIN;

    let start = w.now();
    let report = w.cleaner(config(5)).run_cycle().await;
    let took = w.now().saturating_since(start);

    assert_eq!(report.outcome, Outcome::Completed);
    assert!(orphans.iter().all(|&id| !w.has(id)), "every orphan is deleted");
    assert_eq!(report.deleted, 50);
    assert!(w.hook.deletes.lock().unwrap().len() >= 10, "one delete per page's batch");
    // 11 pages of one minute each, then the last batch's delay: listing + one delay,
    // where a page-by-page cycle would take 11 delays.
    assert!(took >= H + 10 * MIN, "took {took:?}");
    assert!(took <= H + 12 * MIN, "took {took:?}: the pages' delays did not overlap");
    assert_eq!(Duration::from_millis(report.duration_ms), took);
}

#[tokio::test(start_paused = true)]
async fn keys_outside_the_layout_are_never_deleted() {
    let w = World::new();
    w.profile(1, OLD).await;
    let x = w.orphan(2, OLD);
    let y = image(3);
    let z = image(0xab); // has hex letters, so an uppercase spelling differs
    let foreign = [
        "foo/bar".to_owned(),
        format!("{}#1", BlobKey::original(x)),
        format!("ff/{y}/original"),
        format!("ab/{}/original", z.to_string().to_uppercase()),
        format!("{}/extra", BlobKey::original(y)),
        format!("03/{y}/thumbnail"),
        format!("03/{y}"),
    ];
    for key in &foreign {
        w.plant_raw(key, OLD);
    }
    w.plant_raw(PAIRING_MARKER_KEY, OLD);

    let report = w.cleaner(config(3)).run_cycle().await;

    assert_eq!(report.outcome, Outcome::Completed);
    assert!(!w.has(x), "the image's own key is deleted");
    let keys = w.keys();
    for key in foreign.iter().map(String::as_str).chain([PAIRING_MARKER_KEY]) {
        assert!(keys.iter().any(|k| k == key), "{key} was deleted");
    }
    assert_eq!(report.skipped_for(SKIP_NOT_IN_LAYOUT), foreign.len() as u64, "the marker is expected, not skipped");
    assert_eq!(report.listed_objects, foreign.len() as u64 + 3);
    assert_eq!(report.deleted, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_staging_sweep_is_reported_and_the_cycle_still_deletes_orphans() {
    let w = World::new();
    let orphan = w.orphan(1, OLD);
    let kept = w.profile(2, OLD).await;
    w.blob_store.insert_staging(Timestamp::from_millis(0));
    w.hook.fail_sweeps.store(true, std::sync::atomic::Ordering::SeqCst);
    let report = w.cleaner(config(1000)).run_cycle().await;
    assert_eq!(report.outcome, Outcome::Completed, "{report}");
    assert!(report.staging_sweep_error.as_deref().is_some_and(|e| e.contains("sweep_staging")), "{report}");
    assert_eq!(report.staging_files_removed, 0);
    assert!(!w.has(orphan) && w.has(kept), "the orphan is still reclaimed");
}

#[tokio::test(start_paused = true)]
async fn staging_files_as_old_as_a_collectable_blob_are_swept_at_the_start() {
    let w = World::new();
    // Four staging files as old as a collectable blob (2 h + 5 min), and one a
    // minute younger, which must stay.
    let cutoff = Timestamp::from_millis(T0.as_millis() - (2 * 3600 + 5 * 60) * 1000);
    for age_ms in [0, 1, 60_000, 3_600_000] {
        w.blob_store.insert_staging(Timestamp::from_millis(cutoff.as_millis() - age_ms));
    }
    w.blob_store.insert_staging(Timestamp::from_millis(cutoff.as_millis() + 60_000));
    let report = w.cleaner(config(1000)).run_cycle().await;
    assert_eq!(report.staging_files_removed, 4);
    assert_eq!(w.blob_store.sweep_staging(Timestamp::from_millis(i64::MAX)).await.unwrap(), 1, "the young one stayed");
    assert_eq!(
        *w.hook.sweeps.lock().unwrap(),
        vec![Timestamp::from_millis(T0.as_millis() - (2 * 3600 + 5 * 60) * 1000)]
    );
}

#[tokio::test(start_paused = true)]
async fn two_cleaners_at_once_both_finish_and_delete_only_unreferenced_blobs() {
    let w = World::new();
    let orphans: Vec<_> = (0..20).map(|n| w.orphan(n, OLD)).collect();
    let mut profiles = Vec::new();
    for n in 100..110 {
        profiles.push(w.profile(n, OLD).await);
    }
    let (a, b) = (w.cleaner(config(4)), w.cleaner(config(3)));

    let (ra, rb) = tokio::join!(a.run_cycle(), b.run_cycle());

    assert_eq!((ra.outcome.clone(), rb.outcome.clone()), (Outcome::Completed, Outcome::Completed));
    assert!(orphans.iter().all(|&id| !w.has(id)));
    assert!(profiles.iter().all(|&id| w.has(id)));
    assert_eq!((ra.unreferenced, rb.unreferenced), (20, 20), "both saw every orphan before either deleted");
}

#[tokio::test(start_paused = true)]
async fn a_record_moved_to_a_new_image_frees_the_old_one_for_the_next_cycle_only() {
    let w = World::new();
    let old_image = w.profile(1, OLD).await;
    let cleaner = w.cleaner(config(1000));
    assert_eq!(cleaner.run_cycle().await.deleted, 0);
    // The user uploads a new picture: a new image id, the record moves to it.
    let new_image = w.orphan(2, Duration::ZERO);
    w.point(1, new_image).await;

    let report = cleaner.run_cycle().await;

    assert_eq!(report.deleted, 1);
    assert!(!w.has(old_image));
    assert!(w.has(new_image), "the new image is young and referenced");
    assert_eq!(w.metadata_store.get(&user(1)).await.unwrap().unwrap().image_id, new_image);
}

#[tokio::test(start_paused = true)]
async fn the_daemon_retries_a_failed_cycle_at_the_next_interval_and_stops_on_shutdown() {
    let w = World::new();
    let orphan = w.orphan(1, OLD);
    w.profile(2, OLD).await;
    w.hook.failing_listings.store(1, std::sync::atomic::Ordering::SeqCst);
    let cleaner = w.cleaner(config(1000));

    let start = w.now();
    cleaner.run_every(10 * MIN, tokio::time::sleep(3 * H)).await;

    assert_eq!(w.now().saturating_since(start), 3 * H, "returns when shutdown completes");
    assert!(!w.has(orphan), "the second cycle deleted it");
    let deleted_at = w.hook.deletes.lock().unwrap()[0].0;
    assert_eq!(deleted_at.saturating_since(start), 10 * MIN + H, "one interval after the failure, plus the delay");
    assert!(w.hook.list_calls.load(std::sync::atomic::Ordering::SeqCst) >= 3, "cycles went on after the success");
}

#[tokio::test(start_paused = true)]
async fn shutdown_abandons_a_waiting_cycle_without_deleting() {
    let w = World::new();
    let orphan = w.orphan(1, OLD);
    w.profile(2, OLD).await;
    let start = w.now();
    w.cleaner(config(1000)).run_every(H, tokio::time::sleep(10 * MIN)).await;
    assert_eq!(w.now().saturating_since(start), 10 * MIN, "shutdown does not wait out the delete delay");
    assert!(w.has(orphan));
    assert!(w.hook.deletes.lock().unwrap().is_empty());
}

#[test]
fn unsafe_configurations_are_refused_by_name() {
    let bad_timings = CleanerConfig { timings: Timings { delete_delay: MIN, ..Timings::CASE_STUDY }, ..config(1000) };
    assert!(matches!(bad_timings.validate(), Err(ConfigError::Timings(_))));
    let demonstration = CleanerConfig { allow_unsafe_timing: true, ..bad_timings };
    assert!(demonstration.validate().is_ok(), "explicitly allowed for simulation and demonstration");
    assert!(matches!(config(0).validate(), Err(ConfigError::PageSize(0))));
    assert!(matches!(config(1001).validate(), Err(ConfigError::PageSize(1001))));
    let fraction = CleanerConfig { max_unreferenced_fraction: Some(f64::NAN), ..config(1000) };
    assert!(matches!(fraction.validate(), Err(ConfigError::Fraction(_))));
    let limits =
        CleanerConfig { limits: CycleLimits { max_concurrent_deletes: 0, ..CycleLimits::default() }, ..config(1000) };
    assert!(matches!(limits.validate(), Err(ConfigError::Limits(_))));
    for size in [0, 1001] {
        let batch = CleanerConfig { delete_batch_size: size, ..config(1000) };
        assert!(matches!(batch.validate(), Err(ConfigError::DeleteBatchSize(n)) if n == size));
    }
    assert!(CleanerConfig::default().validate().is_ok());
}

#[tokio::test(start_paused = true)]
async fn the_progress_shows_an_image_waiting_for_the_delay_then_deleted_and_starts_over_each_cycle() {
    let w = World::new();
    let orphan = w.orphan(1, OLD);
    w.profile(2, OLD).await;
    w.orphan(3, MIN);
    w.plant_raw("foo/bar", OLD);
    let progress = Arc::new(profilestore_cleaner::Progress::new());
    let cleaner = Arc::new(w.cleaner(config(1000)).with_progress(progress.clone()));

    let cycle = tokio::spawn({
        let cleaner = cleaner.clone();
        async move { cleaner.run_cycle().await }
    });
    tokio::time::sleep(H / 2).await;
    let mid = progress.snapshot();
    assert!(mid.running);
    // Four objects; two old-enough images asked about; the young one and the
    // referenced one kept; the orphan waits out the delete delay.
    assert_eq!((mid.listed, mid.checked, mid.kept, mid.waiting, mid.deleted), (4, 2, 2, 1, 0));
    assert_eq!(mid.total, None, "a listing's length is never known");

    let report = cycle.await.unwrap();
    assert_eq!(report.outcome, Outcome::Completed);
    assert!(!w.has(orphan));
    let end = progress.snapshot();
    assert!(!end.running);
    assert_eq!((end.listed, end.checked, end.kept, end.waiting, end.deleted), (4, 2, 2, 0, 1));
    assert_eq!(end.deleted, report.deleted);

    // A cycle whose delete fails waits for nothing once it has ended.
    w.orphan(4, OLD);
    *w.hook.fail_delete_call.lock().unwrap() = Some(1);
    let failed = cleaner.run_cycle().await;
    assert!(matches!(failed.outcome, Outcome::Failed(_)), "{:?}", failed.outcome);
    let end = progress.snapshot();
    assert_eq!((end.listed, end.checked, end.kept, end.waiting, end.deleted), (4, 2, 2, 0, 0), "counted anew");
}
