//! Incremental cleaning under the simulation (`docs/incremental-cleaning.md`): the
//! cleaners reclaim the superseded-image queue every cycle and list only images minted
//! since the stored horizon, with a full sweep every few hours. The working design
//! passes the same promises as the full sweep on both fixed commit protocols, and the
//! queue is what deletes superseded images; the flaws the full sweep's tests catch (no
//! age filter, no delete delay) are caught in it too, and so is starting the queue's
//! delete delay at the write's statement time instead of at first sight.

use std::time::Duration;

use profilestore_core::settings::Timings;
use profilestore_simulation::{
    Check, DEFAULT_FULL_EVERY, Failure, FaultRates, SimConfig, StoreProtocol, Summary, SweepMode, run, run_seeds,
};

const HOUR: Duration = Duration::from_secs(3600);

/// The suite's usual run (as in `simulate.rs`), with incremental cleaners.
fn incremental(seed: u64, timings: Timings) -> SimConfig {
    let sweep = SweepMode::Incremental { full_every: DEFAULT_FULL_EVERY };
    SimConfig { seed, timings, ops: 600, sweep, ..SimConfig::default() }
}

/// With frozen commits (every fault on, no swarm, a commit in fifty frozen between
/// the database's check and its visibility) under `protocol`.
fn frozen(seed: u64, protocol: StoreProtocol) -> SimConfig {
    let faults = FaultRates { freeze: 0.02, ..FaultRates::default() };
    SimConfig { protocol, faults, swarm: false, ..incremental(seed, Timings::CASE_STUDY) }
}

/// The first of `max` seeds from 0 whose run of `config(seed)` breaks `check` on an
/// image that events containing each of `story` name (the path that lost it); with
/// the seeds that took.
fn seeds_until(config: impl Fn(u64) -> SimConfig, check: Check, story: &[&str], max: u64) -> Option<(SimConfig, u64)> {
    (0..max).find_map(|seed| {
        let config = config(seed);
        let report = run(&config);
        let violation = report.violation.filter(|v| v.check == check)?;
        let lost = violation.images[0];
        let told = |needle: &&str| report.events.iter().any(|e| e.images.contains(&lost) && e.text.contains(*needle));
        story.iter().all(told).then_some((config, seed + 1))
    })
}

/// Panics with the shrunk trace of the summary's failure, if it has one.
fn no_failure(what: &str, summary: &Summary) {
    if let Some((config, report)) = &summary.failure {
        let failure = Failure::investigate(config, run(config), 0);
        let trace: Vec<String> = failure.trace().iter().map(|e| e.to_string()).collect();
        panic!("{what}: seed {} broke {:?}:\n{}", report.seed, report.violation, trace.join("\n"));
    }
}

#[test]
fn incremental_cleaning_passes_many_seeds_under_every_fault() {
    let summary = run_seeds(&incremental(1_000, Timings::CASE_STUDY), 24, 2, &|| true, &|_| {});
    no_failure("incremental", &summary);
    assert_eq!(summary.seeds_run, 24);
    let c = summary.counts;
    assert!(c.writes_ok > 1000 && c.reads_found > 1000, "too little traffic: {c}");
    assert!(c.vanish_checks > 1000 && c.dangling_checks > 1000 && c.orphan_checks > 0, "too few checks: {c}");
    assert!(c.injected_stalls > 0 && c.server_crashes > 0 && c.cleaner_crashes > 0 && c.requests_killed > 0, "{c}");
    // Mostly incremental listings, with a full sweep every few hours among them.
    assert!(c.full_listings > 24 && c.incremental_listings > 4 * c.full_listings, "{c}");
    // The queue, not only the listings, deleted superseded images.
    assert!(c.superseded_queued > 1000 && c.superseded_deleted > 500, "{c}");
}

#[test]
fn incremental_cleaning_passes_frozen_commits_on_both_fixed_protocols() {
    for protocol in [StoreProtocol::SqliteLocked, StoreProtocol::PostgresBounded] {
        let summary = run_seeds(&frozen(2_000, protocol), 12, 2, &|| true, &|_| {});
        no_failure(&format!("{protocol:?}"), &summary);
        let c = summary.counts;
        assert!(
            c.frozen_commits > 10 && c.commits_past_deadline > 0 && c.queries_during_commit > 0,
            "{protocol:?}: {c}"
        );
        assert!(c.superseded_deleted > 100 && c.incremental_listings > c.full_listings, "{protocol:?}: {c}");
    }
}

#[test]
fn without_full_sweeps_the_queue_and_the_horizon_leave_no_orphan() {
    // A full sweep only until one completes (no horizon stored before): from then on,
    // superseded images minted before the horizon can go only by the queue, and every
    // orphan of a failed write only by an incremental listing. None may be left.
    let sweep = SweepMode::Incremental { full_every: 1000 * HOUR };
    for protocol in [StoreProtocol::SqliteLocked, StoreProtocol::PostgresBounded] {
        let config = SimConfig { sweep, protocol, ..incremental(500, Timings::CASE_STUDY) };
        let summary = run_seeds(&config, 12, 2, &|| true, &|_| {});
        no_failure(&format!("{protocol:?}, no full sweeps"), &summary);
        let c = summary.counts;
        assert!(c.orphan_checks > 0 && c.incremental_listings > 50 * c.full_listings, "{protocol:?}: {c}");
        // The queue was consulted and its claims deleted images: a cleaner that never
        // claimed would leave this at zero (and orphans behind).
        assert!(c.superseded_claimed > 1000 && c.superseded_deleted > 1000, "{protocol:?}: {c}");
    }
}

#[test]
fn incremental_flaw_3_no_age_filter_on_horizon_listed_blobs_is_caught_as_a_dangling_reference() {
    let timings = Timings { min_blob_age: Duration::ZERO, ..Timings::CASE_STUDY };
    let story = ["minted since the horizon", "delete blobs"];
    let (config, seeds) = seeds_until(|s| incremental(s, timings), Check::NoDanglingReference, &story, 20)
        .expect("flaw 3 not caught through an incremental listing in 20 seeds");
    eprintln!("incremental flaw 3 caught after {seeds} seeds (seed {})", config.seed);
}

#[test]
fn incremental_flaw_5_no_delete_delay_on_queued_ids_is_caught_as_a_vanished_blob() {
    let timings = Timings { delete_delay: Duration::ZERO, ..Timings::CASE_STUDY };
    let story = ["enters the queue", "claim superseded images", "delete blobs"];
    let (config, seeds) = seeds_until(|s| incremental(s, timings), Check::NoVanishedBlob, &story, 20)
        .expect("flaw 5 not caught through the queue in 20 seeds");
    eprintln!("incremental flaw 5 caught after {seeds} seeds (seed {})", config.seed);
}

/// Frozen commits under SQLite's lock, with two users and many slow calls, so that
/// reads of a record whose replacement is frozen for hours often straddle its landing.
fn statement_flaw(seed: u64, flaw: bool) -> SimConfig {
    let base = frozen(seed, StoreProtocol::SqliteLocked);
    let faults = FaultRates { slow: 0.1, freeze: 0.06, ..base.faults };
    SimConfig { users: 2, faults, queue_delay_from_statement: flaw, ..base }
}

#[test]
fn a_queue_delay_from_the_statement_time_loses_the_image_a_frozen_commit_replaced() {
    let story = ["its delay started at the statement", "claim superseded images", "delete blobs", "MISSING"];
    let (config, seeds) = seeds_until(|s| statement_flaw(s, true), Check::NoVanishedBlob, &story, 10)
        .expect("the statement-time queue delay lost no image in 10 seeds");
    eprintln!("statement-time queue delay caught after {seeds} seeds (seed {})", config.seed);
    let failure = Failure::investigate(&config, run(&config), 8);
    let violation = failure.violation();
    assert_eq!(violation.check, Check::NoVanishedBlob, "{violation}");
    let lost = violation.images[0];
    let trace = failure.trace();
    let text: Vec<String> = trace.iter().map(|e| e.to_string()).collect();
    let text = text.join("\n");
    // The story: a read gets the record; the replacing write's check passes and its
    // commit freezes for hours; it lands, and the old image enters the queue already
    // past its delay; a cleaner claims it and deletes its blob; the read's fetch finds
    // it missing.
    let names = |needle: &str| trace.iter().any(|e| e.images.contains(&lost) && e.text.contains(needle));
    for needle in ["get record of", "lands: the record is visible", story[0], story[1], story[2], story[3]] {
        let named = names(needle) || needle.starts_with("lands") && text.contains(needle);
        assert!(named, "the trace lacks {needle:?} naming the lost image:\n{text}");
    }
    // The very same seed passes with the delay started at first sight.
    let fixed = run(&statement_flaw(config.seed, false));
    assert!(fixed.violation.is_none(), "seed {} without the flaw: {:?}", config.seed, fixed.violation);
}
