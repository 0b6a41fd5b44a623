//! The deterministic simulation: same seed, same run; the working design passes many
//! seeds under every fault, on both fixed commit protocols, and reaches the races
//! that matter; each flawed timing of the case study, the unlocked commit protocol
//! and a clock beyond the skew bound are caught within a bounded number of seeds, and
//! a failure shrinks to a short trace.

use std::time::Duration;

use profilestore_core::settings::Timings;
use profilestore_simulation::{Check, Failure, FaultRates, SimConfig, StoreProtocol, run, run_seeds};

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
    // Every kind of fault on (no swarm), so the run has the most to diverge on.
    let config = SimConfig { swarm: false, ..config(42, Timings::CASE_STUDY) };
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
    let lost = violation.images[0];

    let failure = Failure::investigate(&config, report, 12);
    assert_eq!(failure.violation().check, Check::NoDanglingReference);
    // Cutting operations keeps each server's id stream and the early story, so the
    // shrunk run loses the very image the full run lost.
    assert_eq!(failure.violation().images, [lost], "the shrunk failure must name the image first lost");
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
    // Every line of the story is about that image, or a change to its user's record.
    let about = |e: &&profilestore_simulation::Event| {
        e.images.contains(&lost) || e.text.starts_with("commit ") || e.text.starts_with("delete record of ")
    };
    assert!(trace.iter().all(about), "the trace strays from the lost image:\n{text}");

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

/// A run with frozen commits (every fault on, no swarm, a commit in fifty frozen
/// between the database's check and its visibility) under `protocol`.
fn frozen(seed: u64, protocol: StoreProtocol) -> SimConfig {
    let faults = FaultRates { freeze: 0.02, ..FaultRates::default() };
    SimConfig { protocol, faults, swarm: false, ..config(seed, Timings::CASE_STUDY) }
}

#[test]
fn an_unlocked_commit_protocol_loses_the_image_of_a_frozen_commit() {
    let found = (0..10).find_map(|seed| {
        let config = frozen(seed, StoreProtocol::Unlocked);
        let report = run(&config);
        let dangling = report.violation.as_ref().is_some_and(|v| v.check == Check::NoDanglingReference);
        dangling.then_some((config, report))
    });
    let (config, report) = found.expect("the unlocked protocol lost no image in 10 seeds");
    eprintln!("unlocked protocol caught on seed {}", config.seed);
    let failure = Failure::investigate(&config, report, 8);
    let violation = failure.violation();
    assert_eq!(violation.check, Check::NoDanglingReference, "{violation}");
    let lost = violation.images[0];
    let trace = failure.trace();
    let text: Vec<String> = trace.iter().map(|e| e.to_string()).collect();
    let text = text.join("\n");
    let short = lost.to_string();
    let short = &short[short.len() - 8..];
    // The story: the write's check passes and its commit freezes; a cleaner finds the
    // image unreferenced and deletes it; the frozen commit lands.
    let names = |needle: &str| trace.iter().any(|e| e.images.contains(&lost) && e.text.contains(needle));
    for needle in ["check passed", "referenced [", "delete blobs", "lands: the record is visible"] {
        assert!(names(needle), "the trace lacks {needle:?} naming the lost image {short}:\n{text}");
    }
    assert!(text.contains(short), "the trace must name the lost image:\n{text}");

    // The very same seed passes under either fixed protocol: the protocol is what lost it.
    for protocol in [StoreProtocol::SqliteLocked, StoreProtocol::PostgresBounded] {
        let fixed = run(&SimConfig { protocol, ..config.clone() });
        assert!(fixed.violation.is_none(), "{protocol:?} on seed {}: {:?}", config.seed, fixed.violation);
    }
}

#[test]
fn the_fixed_commit_protocols_pass_frozen_commits() {
    for protocol in [StoreProtocol::SqliteLocked, StoreProtocol::PostgresBounded] {
        let summary = run_seeds(&frozen(2_000, protocol), 12, 2, &|| true, &|_| {});
        if let Some((config, report)) = &summary.failure {
            let failure = Failure::investigate(config, run(config), 0);
            let trace: Vec<String> = failure.trace().iter().map(|e| e.to_string()).collect();
            panic!("{protocol:?}: seed {} broke {:?}:\n{}", report.seed, report.violation, trace.join("\n"));
        }
        let c = summary.counts;
        assert!(
            c.frozen_commits > 10 && c.commits_past_deadline > 0 && c.queries_during_commit > 0,
            "{protocol:?}: {c}"
        );
    }
}

#[test]
fn a_budgeted_run_reaches_every_race_that_matters() {
    // Swarm testing on, as `profilestore simulate` runs.
    let summary = run_seeds(&config(3_000, Timings::CASE_STUDY), 48, 2, &|| true, &|_| {});
    assert!(summary.failure.is_none(), "{:?}", summary.failure.map(|(_, r)| r.violation));
    let c = summary.counts;
    for (race, n) in c.races() {
        assert!(n > 0, "no seed reached the race \"{race}\":\n{c}\n{}", summary.mixes);
    }
    // Swarm testing: some seeds ran with few kinds of fault, some with many.
    let m = summary.mixes;
    assert!(m.by_kinds[..=3].iter().sum::<u64>() > 0 && m.by_kinds[4..].iter().sum::<u64>() > 0, "{m}");
}

#[test]
fn a_clock_beyond_the_skew_bound_loses_an_image() {
    // One process's clock leaves the bound by three hours; every timing rule holds
    // otherwise. With the simulated processes' clock checks off, the simulation finds
    // the loss the check exists for (the next test turns them on).
    let faults = FaultRates { clock_beyond_bound: 3 * HOUR, ..FaultRates::default() };
    let found = (0..60).find_map(|seed| {
        let config = SimConfig { faults, ..config(seed, Timings::CASE_STUDY) };
        let report = run(&config);
        let dangling = report.violation.as_ref().is_some_and(|v| v.check == Check::NoDanglingReference);
        dangling.then_some((config, report))
    });
    let (config, report) = found.expect("no image lost in 60 seeds with a clock 3 h beyond the bound");
    let failure = Failure::investigate(&config, report, 4);
    let trace: Vec<String> = failure.trace().iter().map(|e| e.to_string()).collect();
    let trace = trace.join("\n");
    eprintln!("clock beyond the bound caught on seed {}:\n{trace}", config.seed);
    // The story names the clock that left the bound, and how far.
    assert!(trace.contains("clock beyond the bound: ") && trace.contains("3h 2m 30s"), "{trace}");
    assert!(trace.contains("delete blobs") && trace.contains("VIOLATION"), "{trace}");
}

#[test]
fn with_the_clock_check_on_a_clock_beyond_the_bound_loses_nothing() {
    // The same fault, and the same seeds, with every server and cleaner running the
    // production clock check. A store's clock beyond the bound stops all cleaning for
    // good (safety first), so orphans may be left: only the safety checks must hold.
    let faults = FaultRates { clock_beyond_bound: 3 * HOUR, ..FaultRates::default() };
    let mut lost_without = Vec::new();
    for seed in 0..24 {
        let off = SimConfig { faults, ..config(seed, Timings::CASE_STUDY) };
        if run(&off).violation.is_some_and(|v| v.check == Check::NoDanglingReference) {
            lost_without.push(seed);
        }
        let on = SimConfig { clock_check: true, ..off };
        if let Some(v) = run(&on).violation {
            assert_eq!(v.check, Check::EventuallyNoOrphans, "seed {seed} with the clock check on: {v:?}");
        }
    }
    assert!(!lost_without.is_empty(), "no seed of 24 lost an image without the check: the test shows nothing");
    eprintln!("seeds that lost an image without the clock check, and none with it: {lost_without:?}");
}

#[test]
fn the_clock_check_stops_nothing_while_clocks_stay_within_the_bound() {
    // Drifting, stepped clocks within the bound: the check never refuses for good, so
    // every promise holds, "eventually no orphans" included.
    for seed in 0..8 {
        let report = run(&SimConfig { clock_check: true, ..config(seed, Timings::CASE_STUDY) });
        assert!(report.violation.is_none(), "seed {seed}: {:?}", report.violation);
    }
}
