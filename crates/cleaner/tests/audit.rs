//! The read-only audit against the in-memory stores.

mod common;

use std::time::Duration;

use common::{MIN, World, image, user, write_record};
use futures::FutureExt;
use profilestore_cleaner::audit;
use profilestore_core::ids::BlobKey;
use profilestore_core::settings::Timings;
use profilestore_core::store::{BlobStore, MetadataStore, PAIRING_MARKER_KEY};

const OLD: Duration = Duration::from_secs(3 * 3600);

async fn run(w: &World) -> profilestore_cleaner::AuditReport {
    audit(w.metadata.as_ref(), w.blobs.as_ref(), w.clock.as_ref(), &Timings::CASE_STUDY)
        .await
        .expect("memory stores answer")
}

#[tokio::test(start_paused = true)]
async fn a_consistent_pair_of_stores_is_healthy_and_counted_right() {
    let w = World::new();
    // More than one page of records and of blobs.
    for n in 0..1200 {
        w.profile(n, OLD).await;
    }
    let collectable = w.orphan(5000, OLD);
    w.orphan(5001, MIN);
    w.orphan(5002, MIN);
    w.plant_raw("foo/bar", OLD);
    w.plant_raw(PAIRING_MARKER_KEY, OLD);
    let before = w.keys();

    let report = run(&w).await;

    assert!(report.healthy(), "{report}");
    assert_eq!(report.records, 1200);
    assert_eq!((report.blob_objects, report.images, report.foreign_keys), (1205, 1203, 1));
    assert!(report.pairing_marker);
    assert_eq!(report.foreign_key_samples, vec!["foo/bar".to_owned()]);
    assert_eq!((report.orphans.collectable, report.orphans.in_flight), (1, 2));
    assert_eq!(report.orphans.collectable_samples, vec![collectable]);
    assert_eq!(report.orphans.collectable_bytes, 3);
    assert_eq!(w.keys(), before, "the audit wrote nothing");
    assert_eq!(w.metadata_store.count_records().await.unwrap(), 1200);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["orphans"]["in_flight"], 2);
    assert!(report.to_string().contains("healthy"), "{report}");
}

#[tokio::test(start_paused = true)]
async fn old_orphans_are_counted_by_age_so_a_stopped_cleaner_shows() {
    let w = World::new();
    w.profile(1, OLD).await;
    w.orphan(10, OLD);
    w.orphan(11, Duration::from_secs(2 * 24 * 3600));
    w.orphan(12, Duration::from_secs(8 * 24 * 3600));
    let report = run(&w).await;
    assert_eq!(report.orphans.collectable, 3);
    assert_eq!(report.orphans.collectable_older_than_a_day, 2);
    assert_eq!(report.orphans.collectable_older_than_a_week, 1);
    assert!(report.to_string().contains("2 older than a day, 1 older than a week"), "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_record_whose_blob_was_deleted_by_hand_is_a_dangling_reference() {
    let w = World::new();
    let lost = w.profile(1, OLD).await;
    w.profile(2, OLD).await;
    w.blob_store.delete_many(&[BlobKey::original(lost)]).await.unwrap();

    let report = run(&w).await;

    assert!(!report.healthy());
    assert_eq!(report.dangling_count, 1);
    assert_eq!(report.dangling[0].user_id, user(1));
    assert_eq!(report.dangling[0].image_id, lost);
    assert!(report.to_string().contains(&format!("user user-1 names missing image {lost}")), "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_record_replaced_between_the_scan_and_the_confirmation_is_no_false_alarm() {
    let w = World::new();
    let first = w.profile(1, OLD).await;
    // As the audit checks user 1's blob, a write moves the record to a new image and
    // the old image's blob disappears: the scan's view is stale, not dangling.
    let (metadata, blobs, now) = (w.metadata_store.clone(), w.blob_store.clone(), w.now());
    let second = image(2);
    blobs.put_new(&BlobKey::original(second), bytes::Bytes::from_static(b"new")).await.unwrap();
    *w.hook.before_first_exists.lock().unwrap() = Some(Box::new(move || {
        async move {
            write_record(metadata.as_ref(), now, 1, second).await;
            blobs.delete_many(&[BlobKey::original(first)]).await.unwrap();
        }
        .boxed()
    }));

    let report = run(&w).await;

    assert!(report.healthy(), "{report}");
    assert_eq!(report.dangling_count, 0);
}

#[tokio::test(start_paused = true)]
async fn the_progress_counts_records_against_their_total_and_every_listed_object() {
    let w = World::new();
    for n in 0..1100 {
        w.profile(n, OLD).await;
    }
    w.orphan(5000, OLD);
    w.plant_raw("foo/bar", OLD);
    let progress = std::sync::Arc::new(profilestore_cleaner::Progress::new());
    // At the first existence check the records have been counted but none checked.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    *w.hook.before_first_exists.lock().unwrap() = Some(Box::new({
        let (progress, seen) = (progress.clone(), seen.clone());
        move || async move { *seen.lock().unwrap() = Some(progress.snapshot()) }.boxed()
    }));

    let report = profilestore_cleaner::audit_with_progress(
        w.metadata.as_ref(),
        w.blobs.as_ref(),
        w.clock.as_ref(),
        &Timings::CASE_STUDY,
        &progress,
    )
    .await
    .unwrap();

    let first = seen.lock().unwrap().expect("the audit checked a blob");
    assert_eq!((first.total, first.checked, first.listed, first.running), (Some(1100), 0, 0, true));
    let last = progress.snapshot();
    assert_eq!((last.total, last.checked, last.running), (Some(1100), 1100, false));
    assert_eq!(last.listed, report.blob_objects);
    assert_eq!(last.listed, 1102);
    assert_eq!((last.waiting, last.deleted, last.kept), (0, 0, 0), "an audit deletes and keeps nothing");
}
