//! Incremental cleaning (docs/incremental-cleaning.md) under the same invariants as the
//! full sweep: the superseded-image queue the writes fill, the cleaner's claim, and the
//! listing horizon. The working design passes; each flaw is caught with a trace of the
//! expected shape, and the working design passes at the very same bounds.

use profilestore_modelcheck::{
    CASE_STUDY_TIMINGS, Cleaning, Design, Hours, IncrementalDesign, ModelConfig, Operations, Properties, Property,
    Report, StoreProtocol, Trace, Verdict, check,
};

const WORKING: Cleaning = Cleaning::Incremental(IncrementalDesign::Working);

fn small(servers: usize, max_ops: u8, max_hours: u8, store: StoreProtocol) -> ModelConfig {
    ModelConfig {
        servers,
        cleaners: 1,
        users: 1,
        metadata_values: 1,
        images: 1,
        max_ops,
        image_ids: max_ops,
        max_hours,
        timings: CASE_STUDY_TIMINGS,
        design: Design::Working,
        store,
        fail_steps: false,
        properties: Properties::SAFETY,
        cleaning: WORKING,
        operations: Operations::default(),
    }
}

fn run(config: &ModelConfig) -> Report {
    let report = check(config, |_| {}).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{:?} {:?} {:?}: {} states, {} transitions, depth {}, {:?}",
        config.cleaning,
        config.store,
        config.timings,
        report.distinct_states,
        report.transitions,
        report.depth,
        report.elapsed
    );
    report
}

fn passes(config: &ModelConfig) -> Report {
    let report = run(config);
    if let Verdict::Violation { property, trace } = &report.verdict {
        panic!("expected a pass, {property} after {} steps\n{trace}", trace.steps());
    }
    report
}

fn violation(config: &ModelConfig) -> (Property, Trace) {
    match run(config).verdict {
        Verdict::Violation { property, trace } => {
            println!("{property} after {} steps\n{trace}", trace.steps());
            (property, trace)
        }
        Verdict::Pass => panic!("expected a violation, the checker passed {config:?}"),
    }
}

fn flawed(config: &ModelConfig, flaw: IncrementalDesign) -> ModelConfig {
    ModelConfig { cleaning: Cleaning::Incremental(flaw), ..config.clone() }
}

/// The index of the first row at or after `from` whose action starts with `action`.
fn find(trace: &Trace, from: usize, action: &str) -> Option<usize> {
    trace.rows.iter().skip(from).position(|r| r.action.starts_with(action)).map(|i| i + from)
}

fn with_timings(config: ModelConfig, request_timeout: u8, min_blob_age: u8, delete_delay: u8) -> ModelConfig {
    let timings = profilestore_core::settings::Timings {
        request_timeout: Hours(request_timeout),
        min_blob_age: Hours(min_blob_age),
        delete_delay: Hours(delete_delay),
        clock_skew: Hours(0),
    };
    ModelConfig { timings, ..config }
}

/// Five hours, so that completed cycles set horizons past hour 0 (the lag is 3 h) and
/// later writes are listed since them; liveness with failures, under each protocol.
#[test]
fn the_working_incremental_design_passes_every_property_under_each_protocol() {
    let expected = [
        (StoreProtocol::AtomicCommit, (212_019, 596_553)),
        (StoreProtocol::SqliteLockedQuery, (231_146, 669_061)),
        (StoreProtocol::PostgresBoundedCommit, (244_625, 727_395)),
    ];
    for (store, counts) in expected {
        let config = ModelConfig { fail_steps: true, properties: Properties::ALL, ..small(1, 3, 5, store) };
        let report = passes(&config);
        let c = report.coverage;
        println!("{store:?}: {c:?}");
        assert!(c.horizon_skips_blob > 0, "a horizon past a blob's mint hour is reached: {c:?}");
        if store.splits_commit() {
            assert!(c.pending_commit_with_query_ready > 0, "{c:?}");
        }
        assert_eq!((report.distinct_states, report.transitions), counts, "{store:?}");
    }
}

/// A read holding the replaced record races the queue: two servers, production's
/// SQLite protocol, failures.
#[test]
fn the_working_incremental_design_keeps_a_superseded_blob_for_reads_in_flight() {
    let config = ModelConfig { fail_steps: true, ..small(2, 3, 3, StoreProtocol::SqliteLockedQuery) };
    let report = passes(&config);
    assert!(report.coverage.read_holds_superseded > 0, "{:?}", report.coverage);
}

/// Full cleaning is the default and explores exactly what the model explored before
/// incremental cleaning (flaws.rs and store_protocols.rs assert the case study's exact
/// counts): the queue, mint hours and horizon stay empty, and are neither hashed nor
/// encoded.
#[test]
fn full_cleaning_is_untouched_and_incremental_cleaning_adds_states() {
    let full = run(&ModelConfig { cleaning: Cleaning::Full, ..small(2, 3, 3, StoreProtocol::AtomicCommit) });
    let incremental = run(&small(2, 3, 3, StoreProtocol::AtomicCommit));
    assert_eq!(full.verdict, Verdict::Pass);
    assert_eq!((full.distinct_states, full.transitions), (7_971, 20_721));
    assert!(incremental.distinct_states > full.distinct_states, "the queue and the horizon add states");
    assert_eq!(full.coverage.read_holds_superseded + full.coverage.horizon_skips_blob, 0);
}

/// The shape both "no delay" flaws share: the replacing write becomes visible after a
/// read got the old record, the cleaner claims the old image at once and deletes it,
/// and the read, still within its deadline, finds it gone.
fn assert_vanished_through_the_queue(trace: &Trace) {
    let read = find(trace, 0, "get record").expect("a read of the old record");
    let claim = find(trace, read, "claim queue").expect("a claim after it");
    assert!(trace.rows[claim].action.contains("due {#0}"), "{trace}");
    let delete = find(trace, claim, "delete queued {#0}").expect("the queued blob deleted");
    assert_eq!(delete + 1, trace.steps(), "{trace}");
    assert!(trace.rows[trace.steps()].action.ends_with("get blob #0: MISSING"), "{trace}");
}

#[test]
fn no_delay_on_the_queue_lets_a_read_in_flight_lose_its_blob() {
    let working = small(2, 3, 1, StoreProtocol::AtomicCommit);
    // The timing flaw of the full sweep (flaw 5): in incremental mode it shows through
    // the queue, three steps sooner than through a listing.
    let (property, trace) = violation(&with_timings(working.clone(), 1, 2, 0));
    assert_eq!((property, trace.steps()), (Property::NoVanishedBlob, 11));
    assert_vanished_through_the_queue(&trace);
    // The claim not waiting, with the listing's delay kept: the same trace.
    let (property, trace) = violation(&flawed(&working, IncrementalDesign::QueueWithoutDelay));
    assert_eq!((property, trace.steps()), (Property::NoVanishedBlob, 11));
    assert_vanished_through_the_queue(&trace);
    // The working design at the same bounds, and with an hour more.
    passes(&working);
    passes(&ModelConfig { max_hours: 2, ..working });
}

#[test]
fn a_delay_started_at_the_statement_loses_a_blob_behind_a_frozen_commit() {
    let working = small(2, 3, 2, StoreProtocol::SqliteLockedQuery);
    let (property, trace) = violation(&flawed(&working, IncrementalDesign::DelayFromStatement));
    assert_eq!((property, trace.steps()), (Property::NoVanishedBlob, 14));
    assert_vanished_through_the_queue(&trace);
    // The replacing write checked at 0 h and its commit landed at 1 h, after the read
    // got the old record: the entry arrived already "seen" at 0 h, so due at once.
    let check = find(&trace, 0, "check record →#1").expect("the replacing write's check");
    let visible = find(&trace, check, "commit →#1 visible").expect("its commit");
    let read = find(&trace, 0, "get record").expect("the read");
    assert!(check < read && read < visible, "{trace}");
    assert!(trace.rows[check].clock < trace.rows[visible].clock, "{trace}");
    passes(&working);
    // Where check and visibility are one step, or (at hour granularity) the commit
    // lands within the hour of its check, the flaw does no harm in the model.
    for store in [StoreProtocol::AtomicCommit, StoreProtocol::PostgresBoundedCommit] {
        passes(&flawed(&ModelConfig { store, ..working.clone() }, IncrementalDesign::DelayFromStatement));
    }
}

#[test]
fn no_age_filter_deletes_an_in_flight_write_blob() {
    // The timing flaw of the full sweep (flaw 3): the first cycle has no horizon yet.
    let working = small(1, 1, 1, StoreProtocol::AtomicCommit);
    let (property, trace) = violation(&with_timings(working.clone(), 1, 0, 1));
    assert_eq!((property, trace.steps()), (Property::NoDanglingReference, 8));
    assert!(trace.rows[trace.steps()].action.starts_with("delete {#0}"), "{trace}");
    passes(&working);

    // No age filter on horizon-listed blobs only: a first cycle completes at 4 h and
    // stores the horizon 1 h; the next lists since it, takes the in-flight write's
    // blob as a candidate, and deletes it after the write commits.
    let later = small(1, 1, 5, StoreProtocol::AtomicCommit);
    let (property, trace) = violation(&flawed(&later, IncrementalDesign::HorizonWithoutAgeFilter));
    assert_eq!((property, trace.steps()), (Property::NoDanglingReference, 14));
    let list = find(&trace, 0, "list blobs minted since 1h: {#0}").expect("a horizon listing");
    let query = find(&trace, list, "query referenced {#0}: {}").expect("its query");
    let commit = find(&trace, query, "commit record →#0").expect("the commit after the query");
    assert_eq!(find(&trace, commit, "delete {#0}"), Some(trace.steps()), "{trace}");
    passes(&later);
}

#[test]
fn a_horizon_without_lag_leaves_an_orphan_behind_for_good() {
    // A write puts its blob at 0 h and is killed; a cycle starting at 1 h finds the
    // blob too young and stores the horizon 1 h: incremental cycles never list it again.
    let working = ModelConfig { properties: Properties::ALL, ..small(1, 1, 1, StoreProtocol::AtomicCommit) };
    let (property, trace) = violation(&flawed(&working, IncrementalDesign::HorizonWithoutLag));
    assert_eq!((property, trace.steps()), (Property::EventuallyNoOrphans, 12));
    assert!(trace.rows.iter().any(|r| r.action.starts_with("list blobs minted since 1h: {}")), "{trace}");
    assert!(trace.rows[trace.steps()].blobs.starts_with("#0:"), "{trace}");
    passes(&working);
    passes(&ModelConfig { fail_steps: true, max_ops: 2, max_hours: 3, ..working });
}

#[test]
fn incremental_cleaning_needs_few_enough_ids_for_its_queue() {
    let config = ModelConfig { max_ops: 20, image_ids: 20, ..small(1, 1, 1, StoreProtocol::AtomicCommit) };
    assert!(config.validate().is_err());
    assert!(ModelConfig { cleaning: Cleaning::Full, ..config }.validate().is_ok());
}
