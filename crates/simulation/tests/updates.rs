//! Metadata-only updates (`PATCH`) under the simulation: the production update reads
//! the record and commits new metadata beside the image it read, compare-and-set
//! against that record. With it, the working design keeps every promise under every
//! fault; with the database ignoring the compare-and-set (a blind update), an update
//! re-attaches an image another write replaced, a cleaner deletes it all the same
//! (judged unreferenced, or claimed from the queue where the replacement put it), and
//! the run finds the record naming a deleted blob or a read losing it.

use profilestore_simulation::{Check, Failure, SimConfig, StoreProtocol, run, run_seeds};

/// The suite's usual run with updates among the operations, on `protocol`.
fn updates(seed: u64, protocol: StoreProtocol) -> SimConfig {
    SimConfig { seed, ops: 600, patches: true, protocol, ..SimConfig::default() }
}

/// Two busy users, so that updates often straddle a replacing write and a cleaner's
/// cycle; the database blind to preconditions when `flaw`.
fn straddling(seed: u64, flaw: bool) -> SimConfig {
    SimConfig { users: 2, ops: 2000, ignore_preconditions: flaw, ..updates(seed, StoreProtocol::SqliteLocked) }
}

#[test]
fn updates_keep_every_promise_under_every_fault_on_both_fixed_protocols() {
    for protocol in [StoreProtocol::SqliteLocked, StoreProtocol::PostgresBounded] {
        let summary = run_seeds(&updates(3_000, protocol), 12, 2, &|| true, &|_| {});
        if let Some((config, report)) = &summary.failure {
            let failure = Failure::investigate(config, run(config), 0);
            let trace: Vec<String> = failure.trace().iter().map(|e| e.to_string()).collect();
            panic!("{protocol:?}: seed {} broke {:?}:\n{}", report.seed, report.violation, trace.join("\n"));
        }
        let c = summary.counts;
        assert!(c.updates_ok > 300 && c.writes_ok > 1000 && c.reads_found > 1000, "{protocol:?}: too little: {c}");
        // Reads checked updated profiles too: their metadata names the write whose
        // image they keep.
        assert!(c.consistency_checks > 1000 && c.orphan_checks > 0, "{protocol:?}: {c}");
    }
}

#[test]
fn the_compare_and_set_is_reached_and_refuses_changed_records() {
    let summary = run_seeds(&straddling(4_000, false), 8, 2, &|| true, &|_| {});
    assert!(summary.failure.is_none(), "{:?}", summary.failure.map(|(_, r)| r.violation));
    let c = summary.counts;
    assert!(c.commits_refused_changed > 0, "no update found its record changed under it: {c}");
}

#[test]
fn a_blind_update_is_caught_losing_the_image_it_re_attached() {
    let found = (0..100).find_map(|seed| {
        let config = straddling(seed, true);
        let report = run(&config);
        let violation =
            report.violation.filter(|v| matches!(v.check, Check::NoDanglingReference | Check::NoVanishedBlob))?;
        let lost = violation.images[0];
        // The story: an update committed the lost image into a record, and a cleaner
        // deleted its blob.
        let told = |needle: &str| report.events.iter().any(|e| e.images.contains(&lost) && e.text.contains(needle));
        (told("← update #") && told("delete blobs")).then_some((config, seed + 1))
    });
    let (config, seeds) = found.expect("a blind update lost no image in 100 seeds");
    eprintln!("blind update caught after {seeds} seeds (seed {})", config.seed);
    // The very same seed passes with the compare-and-set.
    let fixed = run(&straddling(config.seed, false));
    assert!(fixed.violation.is_none(), "seed {} with the compare-and-set: {:?}", config.seed, fixed.violation);
}
