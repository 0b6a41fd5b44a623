//! The deterministic simulation: same seed, same run; the working design passes many
//! seeds under every fault; each flawed timing of the case study is caught within a
//! bounded number of seeds, and its failure shrinks to a short trace.

use std::time::Duration;

use profilestore_core::settings::Timings;
use profilestore_sim::simulation::{Check, Failure, FaultRates, SimConfig, run, run_seeds};

const HOUR: Duration = Duration::from_secs(3600);

/// Smaller than the default run so the suite stays quick; still hundreds of
/// operations and dozens of hours per seed.
fn config(seed: u64, timings: Timings) -> SimConfig {
    SimConfig { seed, timings, ops: 600, ..SimConfig::default() }
}

/// The first seed from 0 whose run breaks `check`, and how many seeds that took.
fn seeds_until(timings: Timings, check: Check, max: u64) -> Option<(SimConfig, u64)> {
    (0..max).find_map(|seed| {
        let config = config(seed, timings);
        let report = run(&config);
        report.violation.filter(|v| v.check == check).map(|_| (config, seed + 1))
    })
}

#[test]
fn the_same_seed_gives_the_same_run_event_for_event() {
    let config = config(42, Timings::CASE_STUDY);
    let first = run(&config);
    let second = run(&config);
    assert!(first.events.len() > 2000, "a run this short proves little: {} events", first.events.len());
    let c = first.counts;
    assert!(c.injected_errors > 0 && c.injected_stalls > 0 && c.server_crashes + c.cleaner_crashes > 0, "{c}");
    assert_eq!(first.counts, second.counts);
    assert_eq!(first.virtual_time, second.virtual_time);
    if let Some(i) = first.events.iter().zip(&second.events).position(|(a, b)| a != b) {
        panic!("the runs diverge at event {i}:\n  {}\n  {}", first.events[i], second.events[i]);
    }
    assert_eq!(first.events.len(), second.events.len());

    let other = run(&SimConfig { seed: 43, ..config });
    assert_ne!(first.events, other.events, "another seed must give another run");
}

#[test]
fn the_working_design_passes_many_seeds_under_every_fault() {
    let summary = run_seeds(&config(1_000, Timings::CASE_STUDY), 24, 2, &|| true, &|_| {});
    if let Some((config, report)) = &summary.failure {
        let failure = Failure::investigate(config, run(config), 0);
        let trace: Vec<String> = failure.trace().iter().map(|e| e.to_string()).collect();
        panic!("seed {} broke {:?}:\n{}", report.seed, report.violation, trace.join("\n"));
    }
    assert_eq!(summary.seeds_run, 24);
    let c = summary.counts;
    assert!(c.writes_ok > 1000 && c.reads_found > 1000, "too little traffic: {c}");
    assert!(c.blobs_deleted > 1000, "the cleaners must have deleted orphans: {c}");
    assert!(c.vanish_checks > 1000 && c.dangling_checks > 1000 && c.orphan_checks > 0, "too few checks: {c}");
    assert!(c.injected_stalls > 0 && c.server_crashes > 0 && c.cleaner_crashes > 0 && c.requests_killed > 0, "{c}");
}

#[test]
fn flaw_3_no_age_filter_is_caught_as_a_dangling_reference() {
    let timings = Timings { min_blob_age: Duration::ZERO, ..Timings::CASE_STUDY };
    let (config, seeds) = seeds_until(timings, Check::NoDanglingReference, 20).expect("flaw 3 not caught in 20 seeds");
    eprintln!("flaw 3 caught after {seeds} seeds (seed {})", config.seed);
}

#[test]
fn flaw_4_no_request_deadline_is_caught_as_a_dangling_reference() {
    let timings = Timings { request_timeout: 1000 * HOUR, ..Timings::CASE_STUDY };
    let (config, seeds) = seeds_until(timings, Check::NoDanglingReference, 40).expect("flaw 4 not caught in 40 seeds");
    eprintln!("flaw 4 caught after {seeds} seeds (seed {})", config.seed);
}

#[test]
fn flaw_5_no_delete_delay_is_caught_as_a_vanished_blob() {
    let timings = Timings { delete_delay: Duration::ZERO, ..Timings::CASE_STUDY };
    let (config, seeds) = seeds_until(timings, Check::NoVanishedBlob, 30).expect("flaw 5 not caught in 30 seeds");
    eprintln!("flaw 5 caught after {seeds} seeds (seed {})", config.seed);
}

#[test]
fn a_failure_replays_from_its_seed_and_shrinks_to_the_events_that_matter() {
    let timings = Timings { min_blob_age: Duration::ZERO, ..Timings::CASE_STUDY };
    let (config, _) = seeds_until(timings, Check::NoDanglingReference, 20).expect("flaw 3 not caught");
    let report = run(&config);
    let violation = report.violation.clone().expect("the same seed fails again");
    assert_eq!(violation.check, Check::NoDanglingReference);
    let image = violation.images[0];

    let failure = Failure::investigate(&config, report, 12);
    assert_eq!(failure.violation().check, Check::NoDanglingReference);
    assert!(failure.shrunk.ops <= config.ops);
    let trace = failure.trace();
    let full = failure.shrunk_report.events.len();
    assert!(trace.len() * 10 < full, "the trace keeps {} of {full} events", trace.len());
    let text: Vec<String> = trace.iter().map(|e| e.to_string()).collect();
    let text = text.join("\n");
    // The story of flaw 3: the blob is put, the cleaner finds it unreferenced and
    // deletes it, and the write's record names it.
    let short = failure.violation().images[0].to_string();
    let short = &short[short.len() - 8..];
    for needle in ["put blob", "referenced [", "delete blobs", "commit", "VIOLATION"] {
        assert!(text.contains(needle), "the trace lacks {needle:?}:\n{text}");
    }
    assert!(text.contains(short), "the trace must name the lost image:\n{text}");
    let _ = image;

    // The shrunk configuration is itself a replayable failure.
    let again = run(&failure.shrunk);
    assert_eq!(again.violation.map(|v| v.check), Some(Check::NoDanglingReference));
}

#[test]
fn a_cleaner_that_never_gets_to_delete_is_caught_leaving_orphans() {
    // A delete delay longer than the drain: cleaners find orphans but never get to
    // delete them before the check.
    let timings = Timings { delete_delay: 10_000 * HOUR, ..Timings::CASE_STUDY };
    let config = SimConfig { faults: FaultRates::none(), ops: 200, drain: Some(6 * HOUR), ..config(7, timings) };
    let report = run(&config);
    let violation = report.violation.expect("orphans must be reported");
    assert_eq!(violation.check, Check::EventuallyNoOrphans, "{violation}");
    assert!(report.counts.blobs_deleted == 0 && report.counts.orphan_checks > 0, "{}", report.counts);
}
