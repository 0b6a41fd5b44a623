//! Incremental cleaning against the in-memory stores, on a paused Tokio clock: the
//! superseded-image queue and the listing horizon.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{H, MIN, World, config, image, image_minted, user};
use profilestore_cleaner::{CleanerConfig, Outcome, SweepKind, SweepMode};
use profilestore_core::settings::Timings;
use profilestore_core::store::{DeleteOutcome, MetadataStore};
use profilestore_core::time::{Deadline, Time, Timestamp};
use profilestore_runtime::TokioClock;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn incremental() -> CleanerConfig {
    CleanerConfig { sweep: SweepMode::Incremental { full_every: DAY }, ..config(1000) }
}

async fn delete_record(w: &World, u: u32) {
    let now = w.now();
    let deadline = Deadline::new(Arc::new(TokioClock::starting_at(now)), now.plus(H), H);
    assert_eq!(w.metadata_store.delete_before(&user(u), &deadline).await.unwrap(), DeleteOutcome::Deleted);
}

/// `t` moved back by `d`.
fn before(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_millis(t.as_millis() - d.as_millis() as i64)
}

#[tokio::test(start_paused = true)]
async fn a_replaced_image_goes_one_delete_delay_after_a_cleaner_first_saw_its_entry_not_after_the_write() {
    let w = World::new();
    // Young blobs: the listing's age filter keeps them, so only the queue can act.
    let old = w.profile(1, Duration::ZERO).await;
    let new = w.orphan(2, Duration::ZERO);
    w.point(1, new).await;
    assert_eq!(w.metadata_store.count_superseded().await.unwrap(), 1, "the write queued the image it replaced");
    // A cleaner first looks 50 min after the write, so a delay counted from the write
    // would end 50 min before one counted from first sight; the blobs stay too young
    // for the listing throughout (2 h 5 min).
    tokio::time::sleep(50 * MIN).await;
    let cleaner = w.cleaner(config(1000));

    let first = cleaner.run_cycle().await;
    assert_eq!((first.superseded_first_seen, first.superseded_deleted), (1, 0), "{first}");
    assert!(w.has(old), "the delay starts at first sight, not at the write");

    tokio::time::sleep(H - Duration::from_secs(1)).await;
    let early = cleaner.run_cycle().await;
    assert_eq!(early.superseded_deleted, 0, "{early}");
    assert!(w.has(old), "deleted before one delete delay since first sight");

    tokio::time::sleep(Duration::from_secs(1)).await;
    let due = cleaner.run_cycle().await;
    assert_eq!(due.outcome, Outcome::Completed);
    assert_eq!((due.superseded_deleted, due.deleted), (1, 1), "{due}");
    assert!(!w.has(old));
    assert!(w.has(new), "the image the record names now stays");
    assert_eq!(w.metadata_store.count_superseded().await.unwrap(), 0, "the entry is gone with its blob");
}

#[tokio::test(start_paused = true)]
async fn a_deleted_profile_queues_its_image_and_a_dry_run_reports_it_without_deleting_or_forgetting() {
    let w = World::new();
    let id = w.profile(1, Duration::ZERO).await;
    w.profile(2, Duration::ZERO).await;
    delete_record(&w, 1).await;

    let dry = w.cleaner(CleanerConfig { dry_run: true, ..config(1000) }).run_cycle().await;
    assert_eq!(dry.outcome, Outcome::Completed);
    assert_eq!((dry.superseded_deleted, dry.would_delete_count), (1, 1), "{dry}");
    assert_eq!(dry.would_delete, vec![id]);
    assert!(w.has(id));
    assert_eq!(w.metadata_store.count_superseded().await.unwrap(), 1, "a dry run forgets nothing");
    assert_eq!(w.metadata_store.sweep_marks().await.unwrap().listing_horizon, None, "nor stores a horizon");
}

#[tokio::test(start_paused = true)]
async fn a_queued_image_a_record_names_again_is_kept_and_its_entry_dropped() {
    let w = World::new();
    let shared = w.profile(1, Duration::ZERO).await;
    w.point(1, w.orphan(2, Duration::ZERO)).await;
    // A restored backup names the superseded image again.
    w.point(3, shared).await;
    let cleaner = w.cleaner(config(1000));
    cleaner.run_cycle().await;
    tokio::time::sleep(H).await;

    let report = cleaner.run_cycle().await;

    assert_eq!((report.superseded_named, report.superseded_deleted, report.deleted), (1, 0, 0), "{report}");
    assert!(w.has(shared));
    assert_eq!(w.metadata_store.count_superseded().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_incremental_cycle_lists_only_images_minted_since_the_horizon_and_the_full_sweep_catches_the_rest() {
    let w = World::new();
    let lag = Timings::CASE_STUDY.listing_horizon_lag();
    for n in 0..50 {
        w.profile(100 + n, 4 * H).await;
    }
    let cleaner = w.cleaner(incremental());

    // No horizon yet: the first cycle lists everything and stores one.
    let first = cleaner.run_cycle().await;
    assert_eq!((first.sweep, first.listed_objects), (SweepKind::Full, 50), "{first}");
    let horizon = first.horizon_stored.expect("a completed cycle stores a horizon");
    assert_eq!(horizon, before(first.started_at, lag));

    // An orphan minted after the horizon, and one minted before it that a full sweep
    // would have caught (planted behind the cleaner's back, as an outside writer would).
    tokio::time::sleep(H).await;
    let fresh = w.orphan_id(image_minted(1, before(w.now(), 4 * H)), 3 * H);
    let stale = w.orphan_id(image_minted(2, before(horizon, MIN)), 3 * H);

    let second = cleaner.run_cycle().await;
    assert_eq!(second.outcome, Outcome::Completed);
    assert_eq!((second.sweep, second.listed_since), (SweepKind::Incremental, Some(horizon)), "{second}");
    assert!(second.listed_objects < 50, "an incremental cycle listed {} objects", second.listed_objects);
    assert!(!w.has(fresh), "an orphan minted since the horizon is found");
    assert!(w.has(stale), "an orphan minted before the horizon is not listed");
    assert!(second.horizon_stored > Some(horizon), "the horizon moves forward");
    let sweeps = w.hook.sweeps.lock().unwrap().len();
    assert_eq!(sweeps, 1, "staging files are swept by full sweeps only (walking the whole store)");

    // The audit names what incremental cycles left behind, and not a replaced image
    // the queue will take.
    w.point(100, w.orphan(3, Duration::ZERO)).await;
    let audit = profilestore_cleaner::audit(w.metadata.as_ref(), w.blobs.as_ref(), w.clock.as_ref(), &Timings::CASE_STUDY)
        .await
        .unwrap();
    assert_eq!((audit.orphans.collectable, audit.orphans.collectable_queued), (2, 1), "{audit}");
    assert_eq!((audit.orphans.left_behind, audit.orphans.left_behind_samples.clone()), (1, vec![stale]), "{audit}");
    assert_eq!(audit.listing_horizon, second.horizon_stored);
    assert_eq!(audit.superseded_queued, 1);
    assert!(audit.to_string().contains("left behind:      1 collectable orphans"), "{audit}");

    // A day after the last full sweep, the next cycle is a full one.
    tokio::time::sleep(DAY).await;
    let third = cleaner.run_cycle().await;
    assert_eq!(third.sweep, SweepKind::Full, "{third}");
    assert!(!w.has(stale), "the full sweep is the safety net");
    assert_eq!(w.hook.sweeps.lock().unwrap().len(), 2, "the full sweep swept staging files");
    assert_eq!(w.metadata_store.count_records().await.unwrap(), 50);
}

#[tokio::test(start_paused = true)]
async fn a_failed_cycle_leaves_the_horizon_where_it_was() {
    let w = World::new();
    w.profile(1, 4 * H).await;
    w.orphan(2, 4 * H);
    let cleaner = w.cleaner(incremental());
    let first = cleaner.run_cycle().await;
    let marks = w.metadata_store.sweep_marks().await.unwrap();
    assert_eq!(marks.listing_horizon, first.horizon_stored);

    tokio::time::sleep(H).await;
    w.orphan(3, 4 * H);
    *w.hook.fail_delete_call.lock().unwrap() = Some(w.hook.delete_attempts.load(std::sync::atomic::Ordering::SeqCst));
    let failed = w.cleaner(config(1000)).run_cycle().await;

    assert!(matches!(failed.outcome, Outcome::Failed(_)), "{failed}");
    assert_eq!(failed.horizon_stored, None);
    assert_eq!(w.metadata_store.sweep_marks().await.unwrap(), marks, "a failed cycle proves nothing");
    assert!(w.has(image(3)));
}
