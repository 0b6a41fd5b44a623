//! The cleaner's figures, taken from each cycle's [`CycleReport`]: cycles by outcome,
//! keys by stage and kept by reason, cycle duration, the superseded-image queue's
//! depth, and when a cycle last completed. Recorded through the `metrics` facade
//! (nothing happens until the binary installs a recorder).

use std::sync::atomic::{AtomicI64, Ordering};

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use profilestore_core::time::Timestamp;

use crate::report::{CycleReport, SKIP_NOT_IN_LAYOUT, SKIP_REFERENCED, SKIP_TOO_YOUNG, SweepKind};

/// Cycles by `outcome` (`completed`, `failed`, `refused`, `stopped`) and `sweep`
/// (`full`, `incremental`).
pub const CYCLES: &str = "profilestore_cleaner_cycles_total";
/// Keys by `stage`: `listed` (objects the listing returned), `old_enough` (images
/// asked about), `unreferenced`, `deleted` (listed orphans and superseded images),
/// `superseded_deleted`.
pub const KEYS: &str = "profilestore_cleaner_keys_total";
/// Listed objects or images kept, by `reason`: `not_in_layout`, `too_young`,
/// `referenced`, `named_again` (a superseded image a record names again), `error`
/// (images of a cycle that failed after finding them unreferenced).
pub const KEPT: &str = "profilestore_cleaner_kept_total";
/// Cycle duration in seconds, by `sweep`.
pub const CYCLE_DURATION: &str = "profilestore_cleaner_cycle_duration_seconds";
/// Superseded images queued for deletion after the last cycle.
pub const QUEUE_DEPTH: &str = "profilestore_cleaner_superseded_queue_depth";
/// When the last completed cycle started, Unix seconds.
pub const LAST_COMPLETED: &str = "profilestore_cleaner_last_completed_cycle_timestamp_seconds";
/// Seconds since the last completed cycle started, as of the scrape (since the
/// process started, before any completed).
pub const SINCE_LAST_COMPLETED: &str = "profilestore_cleaner_seconds_since_last_completed_cycle";

/// Every figure this module records, by name.
pub const NAMES: &[&str] = &[CYCLES, KEYS, KEPT, CYCLE_DURATION, QUEUE_DEPTH, LAST_COMPLETED, SINCE_LAST_COMPLETED];

/// The buckets of [`CYCLE_DURATION`], in seconds: an incremental cycle of a small
/// store to a full sweep of a billion keys.
pub const CYCLE_BUCKETS: &[f64] =
    &[0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 3.0 * 3600.0, 12.0 * 3600.0, 86400.0];

/// Registers the help text of the cleaner's figures with the installed recorder.
pub fn describe() {
    describe_counter!(CYCLES, "Cleaner cycles by outcome and sweep kind.");
    describe_counter!(KEYS, "Keys the cleaner listed, asked about, found unreferenced and deleted.");
    describe_counter!(KEPT, "Listed objects or images the cleaner kept, by reason.");
    describe_histogram!(CYCLE_DURATION, Unit::Seconds, "Cleaner cycle duration by sweep kind.");
    describe_gauge!(QUEUE_DEPTH, "Superseded images queued for deletion after the last cycle.");
    describe_gauge!(LAST_COMPLETED, Unit::Seconds, "Start of the last completed cleaner cycle, Unix time.");
    describe_gauge!(SINCE_LAST_COMPLETED, Unit::Seconds, "Seconds since the last completed cleaner cycle started.");
}

/// When the last completed cycle started (or the process, before one has), in Unix
/// milliseconds; `i64::MIN` until either is known.
static LAST_COMPLETED_MS: AtomicI64 = AtomicI64::new(i64::MIN);

/// Notes that the process started at `now`: "since the last completed cycle" counts
/// from here until a cycle completes.
pub fn process_started(now: Timestamp) {
    let _ = LAST_COMPLETED_MS.compare_exchange(i64::MIN, now.as_millis(), Ordering::SeqCst, Ordering::SeqCst);
}

/// Updates [`SINCE_LAST_COMPLETED`] to `now`; call it just before rendering a scrape.
pub fn refresh(now: Timestamp) {
    let last = LAST_COMPLETED_MS.load(Ordering::SeqCst);
    if last != i64::MIN {
        gauge!(SINCE_LAST_COMPLETED).set(now.as_millis().saturating_sub(last).max(0) as f64 / 1000.0);
    }
}

/// Records what one cycle did.
pub(crate) fn cycle_finished(report: &CycleReport) {
    let sweep = match report.sweep {
        SweepKind::Full => "full",
        SweepKind::Incremental => "incremental",
    };
    counter!(CYCLES, "outcome" => report.outcome.kind(), "sweep" => sweep).increment(1);
    histogram!(CYCLE_DURATION, "sweep" => sweep).record(report.duration_ms as f64 / 1000.0);
    for (stage, n) in [
        ("listed", report.listed_objects),
        ("old_enough", report.old_enough),
        ("unreferenced", report.unreferenced),
        ("deleted", report.deleted),
        ("superseded_deleted", report.superseded_deleted),
    ] {
        counter!(KEYS, "stage" => stage).increment(n);
    }
    for (reason, n) in [
        ("not_in_layout", report.skipped_for(SKIP_NOT_IN_LAYOUT)),
        ("too_young", report.skipped_for(SKIP_TOO_YOUNG)),
        ("referenced", report.skipped_for(SKIP_REFERENCED)),
        ("named_again", report.superseded_named),
    ] {
        counter!(KEPT, "reason" => reason).increment(n);
    }
    if !report.completed() && !report.dry_run {
        // Found unreferenced but not deleted: the cycle ended first.
        let kept = (report.unreferenced + report.superseded_deleted).saturating_sub(report.deleted);
        counter!(KEPT, "reason" => "error").increment(kept);
    }
    if report.completed() {
        LAST_COMPLETED_MS.store(report.started_at.as_millis(), Ordering::SeqCst);
        gauge!(LAST_COMPLETED).set(report.started_at.as_millis() as f64 / 1000.0);
    }
}

/// Records the superseded-image queue's depth.
pub(crate) fn queue_depth(depth: u64) {
    gauge!(QUEUE_DEPTH).set(depth as f64);
}
