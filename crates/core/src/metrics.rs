//! The figures the core records: how writes end and where a deadline cut them, what
//! reads found, and the clocks' measured offsets. Recorded through the `metrics`
//! facade, which does nothing until a binary installs a recorder, so the core knows no
//! exporter. `docs/operations.md` says what each means and the alert to set on it.

use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::clocks::{Offset, PeerClock};

/// Profile writes by how they ended (`outcome`: `committed`, `deadline_exceeded`,
/// `commit_unknown`, `failed`, `refused`).
pub const WRITES: &str = "profilestore_writes_total";
/// Writes the request deadline cut, by `phase`: `before_blob` (the id was
/// issued or the blob put was in flight), `between_blob_and_record` (the blob was
/// stored, the commit not started), `refused_at_commit` (the database refused the
/// record because its clock had reached the deadline).
pub const DEADLINE_CUTS: &str = "profilestore_write_deadline_cuts_total";
/// Reads that found the blob their record named missing and read the record again
/// (the delete delay should make this rare; each is logged).
pub const READ_BLOB_MISSING: &str = "profilestore_read_blob_missing_total";
/// Reads whose record named a blob that stayed missing: a broken invariant, each
/// logged at error.
pub const DANGLING_REFERENCES: &str = "profilestore_dangling_references_total";
/// The last measured offset of a peer clock (`clock`: `database`, `blob_store`) to
/// this process's, in seconds (positive: the peer is ahead).
pub const CLOCK_OFFSET: &str = "profilestore_clock_offset_seconds";
/// Half the width of the last measurement's interval: the offset lies within
/// `offset ± error`.
pub const CLOCK_OFFSET_ERROR: &str = "profilestore_clock_offset_error_seconds";
/// The largest `|offset| + error` measured since the process started.
pub const CLOCK_OFFSET_WORST: &str = "profilestore_clock_offset_worst_seconds";
/// The configured bound every offset must stay within (`clock_skew`).
pub const CLOCK_SKEW_BOUND: &str = "profilestore_clock_skew_bound_seconds";
/// Clock measurements by `clock` and `outcome` (`within_bound`, `out_of_bound`,
/// `failed`).
pub const CLOCK_CHECKS: &str = "profilestore_clock_checks_total";

/// Every figure this module records, by name.
pub const NAMES: &[&str] = &[
    WRITES,
    DEADLINE_CUTS,
    READ_BLOB_MISSING,
    DANGLING_REFERENCES,
    CLOCK_OFFSET,
    CLOCK_OFFSET_ERROR,
    CLOCK_OFFSET_WORST,
    CLOCK_SKEW_BOUND,
    CLOCK_CHECKS,
];

/// Registers the help text of every figure above with the installed recorder.
pub fn describe() {
    describe_counter!(WRITES, "Profile writes by how they ended.");
    describe_counter!(DEADLINE_CUTS, "Writes the request deadline cut, by the phase it cut them in.");
    describe_counter!(READ_BLOB_MISSING, "Reads that found their record's blob missing and re-read the record.");
    describe_counter!(DANGLING_REFERENCES, "Reads whose record named a blob that is missing (a broken invariant).");
    describe_gauge!(CLOCK_OFFSET, Unit::Seconds, "Last measured offset of a peer clock to this process's.");
    describe_gauge!(CLOCK_OFFSET_ERROR, Unit::Seconds, "Error bound of the last clock offset measurement.");
    describe_gauge!(CLOCK_OFFSET_WORST, Unit::Seconds, "Largest |offset| + error measured since the start.");
    describe_gauge!(CLOCK_SKEW_BOUND, Unit::Seconds, "The configured clock_skew bound.");
    describe_counter!(CLOCK_CHECKS, "Clock offset measurements by outcome.");
}

/// Where a request deadline cut a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlinePhase {
    /// Before the blob was stored (issuing the id, or the put in flight).
    BeforeBlob,
    /// After the blob was stored, before the commit started.
    BetweenBlobAndRecord,
    /// The database refused the record at commit.
    RefusedAtCommit,
}

impl DeadlinePhase {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            DeadlinePhase::BeforeBlob => "before_blob",
            DeadlinePhase::BetweenBlobAndRecord => "between_blob_and_record",
            DeadlinePhase::RefusedAtCommit => "refused_at_commit",
        }
    }
}

/// Counts one write that ended with `outcome` (one of [`WRITES`]'s label values).
pub(crate) fn write_ended(outcome: &'static str) {
    counter!(WRITES, "outcome" => outcome).increment(1);
}

/// Counts one write cut by its deadline in `phase`.
pub(crate) fn deadline_cut(phase: DeadlinePhase) {
    counter!(DEADLINE_CUTS, "phase" => phase.label()).increment(1);
}

/// Counts one read that found its blob missing.
pub(crate) fn read_blob_missing() {
    counter!(READ_BLOB_MISSING).increment(1);
}

/// Counts one dangling reference.
pub(crate) fn dangling_reference() {
    counter!(DANGLING_REFERENCES).increment(1);
}

fn clock_label(clock: PeerClock) -> &'static str {
    match clock {
        PeerClock::Database => "database",
        PeerClock::BlobStore => "blob_store",
    }
}

/// Records one measurement of `clock` against `bound`: `Ok` with its offset, or
/// `Err` when it could not be measured.
pub(crate) fn clock_measured(clock: PeerClock, reading: Result<&Offset, ()>, bound: Duration) {
    let label = clock_label(clock);
    gauge!(CLOCK_SKEW_BOUND).set(bound.as_secs_f64());
    let Ok(offset) = reading else {
        counter!(CLOCK_CHECKS, "clock" => label, "outcome" => "failed").increment(1);
        return;
    };
    let seconds = |ms: i64| ms as f64 / 1000.0;
    gauge!(CLOCK_OFFSET, "clock" => label).set(seconds(offset.offset_ms));
    gauge!(CLOCK_OFFSET_ERROR, "clock" => label).set(seconds(offset.error_ms));
    let worst = seconds(offset.worst_ms());
    let worst_gauge = gauge!(CLOCK_OFFSET_WORST, "clock" => label);
    // A gauge cannot be read back through the facade: keep the running maximum here.
    let mut seen = WORST_SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let slot = match clock {
        PeerClock::Database => &mut seen.0,
        PeerClock::BlobStore => &mut seen.1,
    };
    if worst > *slot {
        *slot = worst;
    }
    worst_gauge.set(*slot);
    let within = u128::try_from(offset.worst_ms()).unwrap_or(0) <= bound.as_millis();
    let outcome = if within { "within_bound" } else { "out_of_bound" };
    counter!(CLOCK_CHECKS, "clock" => label, "outcome" => outcome).increment(1);
}

/// The worst offsets seen so far (database, blob store), in seconds.
static WORST_SEEN: std::sync::Mutex<(f64, f64)> = std::sync::Mutex::new((0.0, 0.0));
