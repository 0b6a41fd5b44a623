//! The driver's guards and its behaviour under store failures: each case shows that
//! the guard or failure prevents a deletion that would otherwise happen.

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{H, MIN, World, config};
use profilestore_cleaner::{CleanerConfig, Outcome, Preflight};
use profilestore_core::machine::CycleLimits;
use profilestore_core::store::PAIRING_MARKER_KEY;

const OLD: Duration = Duration::from_secs(3 * 3600);

#[tokio::test(start_paused = true)]
async fn an_empty_database_refuses_to_delete_and_says_how_to_override() {
    let w = World::new();
    let orphans: Vec<_> = (0..3).map(|n| w.orphan(n, OLD)).collect();
    w.plant_raw(PAIRING_MARKER_KEY, OLD);

    let report = w.cleaner(config(2)).run_cycle().await;

    let Outcome::Refused(reason) = &report.outcome else { panic!("not refused: {report}") };
    assert_eq!(
        reason,
        "the database holds no records while the blob store holds 3 images: refusing to delete; \
         pass --allow-empty-database if that is really so"
    );
    assert!(orphans.iter().all(|&id| w.has(id)));
    assert!(w.hook.referenced_calls.lock().unwrap().is_empty(), "not even asked");
    assert_eq!(w.hook.delete_attempts.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn allow_empty_database_lets_the_cycle_delete() {
    let w = World::new();
    let orphans: Vec<_> = (0..3).map(|n| w.orphan(n, OLD)).collect();
    let allowed = CleanerConfig { allow_empty_database: true, ..config(2) };

    let report = w.cleaner(allowed).run_cycle().await;

    assert_eq!(report.outcome, Outcome::Completed);
    assert!(orphans.iter().all(|&id| !w.has(id)));
    assert_eq!(report.deleted, 3);
}

#[tokio::test(start_paused = true)]
async fn an_empty_database_with_no_images_is_simply_a_completed_cycle() {
    let w = World::new();
    w.plant_raw(PAIRING_MARKER_KEY, OLD);
    w.plant_raw("foo/bar", OLD);
    let report = w.cleaner(config(1000)).run_cycle().await;
    assert_eq!(report.outcome, Outcome::Completed);
    assert_eq!(w.keys().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_fraction_guard_stops_the_cycle_before_it_deletes() {
    let w = World::new();
    let orphans: Vec<_> = (0..9).map(|n| w.orphan(n, OLD)).collect();
    w.profile(100, OLD).await;
    let guarded = CleanerConfig { max_unreferenced_fraction: Some(0.5), ..config(1000) };

    let report = w.cleaner(guarded).run_cycle().await;

    let Outcome::Stopped(reason) = &report.outcome else { panic!("not stopped: {report}") };
    assert!(reason.contains("deleting 9 of the 10 old-enough images seen so far (90.0%)"), "{reason}");
    assert!(reason.contains("--max-unreferenced-fraction"), "{reason}");
    assert!(orphans.iter().all(|&id| w.has(id)));
    assert_eq!(w.hook.delete_attempts.load(Ordering::SeqCst), 0);
    assert_eq!(report.deleted, 0);
}

#[tokio::test(start_paused = true)]
async fn the_fraction_guard_lets_a_cycle_within_its_fraction_through() {
    let w = World::new();
    let orphans: Vec<_> = (0..9).map(|n| w.orphan(n, OLD)).collect();
    w.profile(100, OLD).await;
    let guarded = CleanerConfig { max_unreferenced_fraction: Some(0.9), ..config(3) };

    let report = w.cleaner(guarded).run_cycle().await;

    assert_eq!(report.outcome, Outcome::Completed, "9 of 10 is within 0.9");
    assert!(orphans.iter().all(|&id| !w.has(id)));
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_deletes_nothing_waits_for_nothing_and_names_what_it_would_delete() {
    let w = World::new();
    let orphans: HashSet<_> = (0..5).map(|n| w.orphan(n, OLD)).collect();
    let young = w.orphan(50, MIN);
    let kept = w.profile(100, OLD).await;
    let before = w.keys();
    let dry = CleanerConfig { dry_run: true, ..config(2) };

    let start = w.now();
    let report = w.cleaner(dry).run_cycle().await;

    assert_eq!(report.outcome, Outcome::Completed);
    assert_eq!(w.keys(), before, "nothing deleted");
    assert_eq!(w.hook.delete_attempts.load(Ordering::SeqCst), 0);
    assert!(w.hook.sweeps.lock().unwrap().is_empty(), "no staging sweep either");
    assert_eq!(w.now(), start, "no delete delay in a dry run");
    assert_eq!(report.would_delete.iter().copied().collect::<HashSet<_>>(), orphans);
    assert_eq!((report.would_delete_count, report.deleted), (5, 0));
    assert!(!report.would_delete.contains(&young) && !report.would_delete.contains(&kept));
    assert!(report.to_string().contains("would delete:     5"), "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_query_fails_the_cycle_and_drops_the_batches_already_found() {
    let w = World::new();
    let orphans: Vec<_> = (0..10).map(|n| w.orphan(n, OLD)).collect();
    w.profile(100, OLD).await;
    // Page 1's query succeeds (its batch waits for the delay); page 2's fails.
    *w.hook.fail_referenced_call.lock().unwrap() = Some(1);

    let start = w.now();
    let report = w.cleaner(config(5)).run_cycle().await;

    let Outcome::Failed(reason) = &report.outcome else { panic!("not failed: {report}") };
    assert!(reason.contains("which of") && reason.contains("injected failure: referenced"), "{reason}");
    assert!(orphans.iter().all(|&id| w.has(id)), "the waiting batch was dropped");
    assert_eq!(w.hook.delete_attempts.load(Ordering::SeqCst), 0);
    assert!(w.now().saturating_since(start) < H, "the failure ends the cycle at once");
}

#[tokio::test(start_paused = true)]
async fn a_failed_delete_fails_the_cycle_and_nothing_more_is_deleted() {
    let w = World::new();
    let orphans: Vec<_> = (0..15).map(|n| w.orphan(n, OLD)).collect();
    w.profile(100, OLD).await;
    *w.hook.fail_delete_call.lock().unwrap() = Some(1);
    let one_at_a_time =
        CleanerConfig { limits: CycleLimits { max_concurrent_deletes: 1, ..CycleLimits::default() }, ..config(5) };

    let report = w.cleaner(one_at_a_time).run_cycle().await;

    let Outcome::Failed(reason) = &report.outcome else { panic!("not failed: {report}") };
    assert!(reason.contains("injected failure: delete_many"), "{reason}");
    assert_eq!(w.hook.delete_attempts.load(Ordering::SeqCst), 2, "the third batch is never attempted");
    let first_batch = w.hook.deletes.lock().unwrap()[0].1.len();
    assert!(first_batch > 0);
    let remaining = orphans.iter().filter(|&&id| w.has(id)).count();
    assert_eq!(remaining, orphans.len() - first_batch, "only the first batch is gone");
    assert_eq!(report.deleted, first_batch as u64);
}

#[tokio::test(start_paused = true)]
async fn a_failed_listing_fails_the_cycle_before_any_delete() {
    let w = World::new();
    let orphans: Vec<_> = (0..20).map(|n| w.orphan(n, OLD)).collect();
    w.profile(100, OLD).await;
    *w.hook.fail_list_page.lock().unwrap() = Some(2);

    let report = w.cleaner(config(5)).run_cycle().await;

    let Outcome::Failed(reason) = &report.outcome else { panic!("not failed: {report}") };
    assert!(reason.starts_with("listing the blob store failed"), "{reason}");
    assert!(!w.hook.referenced_calls.lock().unwrap().is_empty(), "earlier pages were asked about");
    assert!(orphans.iter().all(|&id| w.has(id)));
    assert_eq!(w.hook.delete_attempts.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failing_preflight_refuses_the_cycle_before_it_touches_a_store() {
    let w = World::new();
    w.profile(1, OLD).await;
    let orphan = w.orphan(2, OLD);
    let check: profilestore_cleaner::Preflight =
        std::sync::Arc::new(|| Box::pin(async { Err("the cluster's timings changed".to_owned()) }));
    let report = w.cleaner(config(1000)).with_preflight(check).run_cycle().await;
    assert_eq!(report.outcome, Outcome::Refused("the cluster's timings changed".into()));
    assert!(w.has(orphan));
    assert_eq!(w.hook.list_calls.load(Ordering::SeqCst), 0, "nothing listed");
}

/// Runs one cycle with a 1-minute call timeout over a profile and an old orphan,
/// after `hang` made some store call take 10 minutes (or with a `preflight` that never
/// answers); asserts the cycle gave up exactly at the timeout and kept the orphan, and
/// returns its outcome.
async fn cycle_with_a_hung_call(hang: impl FnOnce(&World), preflight: Option<Preflight>) -> Outcome {
    let w = World::new();
    w.profile(1, OLD).await;
    let orphan = w.orphan(2, OLD);
    hang(&w);
    let start = w.now();
    let mut cleaner = w.cleaner(CleanerConfig { call_timeout: MIN, ..config(1000) });
    if let Some(check) = preflight {
        cleaner = cleaner.with_preflight(check);
    }
    let report = cleaner.run_cycle().await;
    assert_eq!(w.now().saturating_since(start), MIN, "gave up exactly at the timeout");
    assert!(w.has(orphan));
    report.outcome
}

#[tokio::test(start_paused = true)]
async fn a_store_call_that_hangs_fails_the_cycle_at_the_call_timeout() {
    let outcome = cycle_with_a_hung_call(|w| *w.hook.list_latency.lock().unwrap() = 10 * MIN, None).await;
    let Outcome::Failed(reason) = &outcome else { panic!("not failed: {outcome:?}") };
    assert!(reason.contains("listing a page took longer than 1m"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn a_hung_count_or_pre_cycle_check_fails_the_cycle_at_the_call_timeout_instead_of_hanging_the_daemon() {
    let outcome = cycle_with_a_hung_call(|w| *w.hook.count_latency.lock().unwrap() = 10 * MIN, None).await;
    let Outcome::Failed(reason) = &outcome else { panic!("not failed: {outcome:?}") };
    assert!(reason.contains("asking whether the database holds records took longer than 1m"), "{reason}");

    let hung: Preflight = std::sync::Arc::new(|| Box::pin(std::future::pending()));
    let outcome = cycle_with_a_hung_call(|_| {}, Some(hung)).await;
    let Outcome::Refused(reason) = &outcome else { panic!("not refused: {outcome:?}") };
    assert!(reason.contains("took longer than 1m"), "{reason}");
}
