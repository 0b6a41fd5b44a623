//! The checker must catch every flawed design of docs/design.md with a trace of the expected
//! shape, and pass the working design. Configurations are tiny: tests run unoptimised.

use profilestore_modelcheck::{
    CASE_STUDY_TIMINGS, Cleaning, Design, Hours, ModelConfig, Operations, PatchDesign, Properties, Property, Report,
    StoreProtocol, Trace, Verdict, check,
};

fn small(servers: usize, cleaners: usize, max_ops: u8, max_hours: u8) -> ModelConfig {
    ModelConfig {
        servers,
        cleaners,
        users: 1,
        metadata_values: 2,
        images: 2,
        max_ops,
        image_ids: max_ops,
        max_hours,
        timings: CASE_STUDY_TIMINGS,
        design: Design::Working,
        // The case study's atomic commit: these tests are about the timing rules;
        // store_protocols.rs explores the commit protocols.
        store: StoreProtocol::AtomicCommit,
        fail_steps: false,
        properties: Properties::SAFETY,
        cleaning: Cleaning::Full,
        operations: Operations::default(),
    }
}

fn run(config: &ModelConfig) -> Report {
    match check(config, |_| {}) {
        Ok(report) => report,
        Err(e) => panic!("{e}"),
    }
}

fn violation(config: &ModelConfig) -> (Property, Trace) {
    let report = run(config);
    match report.verdict {
        Verdict::Violation { property, trace } => {
            println!("{property} after {} steps\n{trace}", trace.steps());
            (property, trace)
        }
        Verdict::Pass => panic!("expected a violation, the checker passed {config:?}"),
    }
}

fn last_action(trace: &Trace) -> &str {
    trace.rows.last().map(|r| r.action.as_str()).unwrap_or("")
}

#[test]
fn flaw_1_record_first_leaves_a_record_without_its_blob() {
    let config = ModelConfig { design: Design::RecordFirst, ..small(1, 0, 1, 0) };
    let (property, trace) = violation(&config);
    assert_eq!(property, Property::NoDanglingReference);
    assert_eq!(trace.steps(), 2, "start the write, commit the record: no blob yet");
    assert!(last_action(&trace).starts_with("commit record"), "{trace}");
}

#[test]
fn flaw_1_record_first_pairs_new_metadata_with_the_old_image() {
    let properties = Properties { no_dangling_reference: false, no_vanished_blob: false, ..Properties::SAFETY };
    let config = ModelConfig { design: Design::RecordFirst, properties, ..small(2, 0, 3, 0) };
    let (property, trace) = violation(&config);
    assert_eq!(property, Property::ConsistentReads);
    let answer = trace.rows.last().and_then(|r| r.read_returned.clone()).unwrap_or_default();
    assert!(answer.starts_with("profile"), "the read answered a profile: {trace}");
}

#[test]
fn flaw_2_blob_keyed_by_user_pairs_a_new_image_with_old_metadata() {
    let config = ModelConfig { design: Design::BlobKeyedByUser, ..small(2, 0, 3, 0) };
    let (property, trace) = violation(&config);
    assert_eq!(property, Property::ConsistentReads);
    assert!(trace.rows.iter().any(|r| r.action.contains("(overwrite)")), "{trace}");
    assert!(last_action(&trace).starts_with("get blob"), "{trace}");
}

#[test]
fn flaw_2_a_failed_overwriting_write_also_breaks_reads() {
    // One server is enough once a write can fail between its blob and its record.
    let config = ModelConfig { design: Design::BlobKeyedByUser, fail_steps: true, ..small(1, 0, 3, 0) };
    let (property, trace) = violation(&config);
    assert_eq!(property, Property::ConsistentReads);
    assert!(trace.rows.iter().any(|r| r.action.ends_with("FAILED → write failed")), "{trace}");
}

#[test]
fn flaw_3_a_cleaner_without_age_filter_deletes_an_in_flight_write_blob() {
    let mut config = small(1, 1, 1, 1);
    config.timings.min_blob_age = Hours(0);
    let (property, trace) = violation(&config);
    assert_eq!(property, Property::NoDanglingReference);
    assert_eq!(trace.steps(), 7);
    assert!(last_action(&trace).starts_with("delete"), "{trace}");
}

#[test]
fn flaw_4_without_request_kill_a_stalled_write_loses_its_blob() {
    let mut config = small(1, 1, 1, 3);
    config.timings.request_timeout = Hours(100);
    let (property, trace) = violation(&config);
    assert_eq!(property, Property::NoDanglingReference);
    assert_eq!(trace.steps(), 9);
    // The write stalled across the age filter: its commit lands at hour 2 or later.
    let commit = trace.rows.iter().find(|r| r.action.starts_with("commit record"));
    assert!(commit.is_some_and(|r| r.clock.0 >= 2), "{trace}");

    // The same bounds with the request kill: the write is killed and nothing breaks.
    let killed = ModelConfig { timings: CASE_STUDY_TIMINGS, ..config };
    assert_eq!(run(&killed).verdict, Verdict::Pass);
}

#[test]
fn flaw_5_without_delete_delay_a_stalled_read_finds_its_blob_gone() {
    let mut config = small(2, 1, 3, 2);
    config.timings.delete_delay = Hours(0);
    let (property, trace) = violation(&config);
    assert_eq!(property, Property::NoVanishedBlob);
    assert_eq!(trace.steps(), 14);
    assert!(last_action(&trace).ends_with("MISSING"), "{trace}");
}

#[test]
fn the_working_design_passes_and_counts_its_states() {
    let config = ModelConfig { fail_steps: true, ..small(2, 1, 2, 3) };
    let report = run(&config);
    assert_eq!(report.verdict, Verdict::Pass);
    assert!(report.distinct_states > 1_000, "{report:?}");
    assert!(report.transitions > report.distinct_states, "{report:?}");
    assert!(report.depth > 5, "{report:?}");
}

#[test]
fn the_working_design_satisfies_eventually_no_orphans() {
    let config = ModelConfig { fail_steps: true, properties: Properties::ALL, ..small(1, 1, 2, 3) };
    assert_eq!(run(&config).verdict, Verdict::Pass);
}

#[test]
fn symmetric_servers_are_explored_once() {
    // Two interchangeable servers must not double the states of one-server runs by
    // mere renaming: with one operation the second server can only mirror the first.
    let one = run(&small(1, 0, 1, 1));
    let two = run(&small(2, 0, 1, 1));
    assert_eq!(one.distinct_states, two.distinct_states);
}

#[test]
fn an_impossible_configuration_is_refused() {
    let config = ModelConfig { servers: 0, ..small(1, 0, 1, 1) };
    assert!(check(&config, |_| {}).is_err());
    let config = ModelConfig { users: 5, metadata_values: 4, images: 4, ..small(1, 0, 1, 1) };
    assert!(check(&config, |_| {}).is_err());
}

#[test]
fn traces_are_reproducible_and_replay_from_the_initial_state() {
    let mut config = small(2, 1, 3, 2);
    config.timings.delete_delay = Hours(0);
    let (_, first) = violation(&config);
    let (_, second) = violation(&config);
    assert_eq!(first, second, "the search is deterministic, even with parallel expansion");
    assert_eq!(first.rows[0].action, "initial state");
    assert!(first.rows.iter().enumerate().all(|(i, r)| r.step == i));
    // Time only moves forward along a trace.
    assert!(first.rows.windows(2).all(|w| w[0].clock <= w[1].clock));
}

#[test]
fn the_report_measures_the_run() {
    let report = run(&small(1, 1, 1, 1));
    assert!(report.states_per_second() > 0.0);
    assert!(report.peak_memory_bytes.is_some_and(|b| b > 0), "VmHWM is readable on Linux");
}

/// The case study's own configuration, with its atomic commit: a few seconds (the crate
/// is optimised even in test builds, see the workspace's Cargo.toml). The exact counts
/// are asserted so that any change to what the model explores is noticed.
#[test]
fn the_working_design_passes_at_the_case_study_size() {
    let report = run(&ModelConfig { properties: Properties::ALL, ..ModelConfig::case_study() });
    println!("{report:?}");
    assert_eq!(report.verdict, Verdict::Pass);
    assert_eq!((report.distinct_states, report.transitions), (795_670, 2_916_262), "{report:?}");
}

/// Each flaw at the case study's own size, with failures and two of every actor: with
/// the case study's atomic commit, and with production's SQLite protocol, where the
/// split commit must not hide a flaw (each commit in the trace is one step more).
#[test]
fn every_timing_flaw_fails_at_the_case_study_size() {
    let flaws = [
        (Hours(1), Hours(0), Hours(1), Property::NoDanglingReference, [7, 8]),
        (Hours(100), Hours(2), Hours(1), Property::NoDanglingReference, [9, 10]),
        (Hours(1), Hours(2), Hours(0), Property::NoVanishedBlob, [14, 16]),
    ];
    for (protocol, store) in [StoreProtocol::AtomicCommit, StoreProtocol::SqliteLockedQuery].into_iter().enumerate() {
        let base = ModelConfig { store, ..ModelConfig::case_study() };
        for (request_timeout, min_blob_age, delete_delay, expected, steps) in flaws {
            let mut config = base.clone();
            config.timings.request_timeout = request_timeout;
            config.timings.min_blob_age = min_blob_age;
            config.timings.delete_delay = delete_delay;
            let (property, trace) = violation(&config);
            assert_eq!((property, trace.steps()), (expected, steps[protocol]), "{store:?}");
        }
    }
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

#[test]
fn the_timing_rules_are_tight_in_the_model() {
    // min_blob_age >= request_timeout: the boundary holds, one hour less breaks.
    assert_eq!(run(&with_timings(small(1, 1, 1, 3), 1, 1, 1)).verdict, Verdict::Pass);
    let (property, _) = violation(&with_timings(small(1, 1, 1, 3), 2, 1, 2));
    assert_eq!(property, Property::NoDanglingReference);
    // delete_delay >= request_timeout: the boundary holds, one hour less breaks. A
    // vanished blob needs no distinct values, so one of each keeps this quick.
    let one_value = ModelConfig { metadata_values: 1, images: 1, ..small(2, 1, 3, 4) };
    assert_eq!(run(&with_timings(one_value.clone(), 2, 3, 2)).verdict, Verdict::Pass);
    let (property, _) = violation(&with_timings(one_value, 2, 3, 1));
    assert_eq!(property, Property::NoVanishedBlob);
}

#[test]
fn image_ids_bound_the_writes_without_changing_the_verdict() {
    let ample = run(&small(2, 1, 3, 3));
    let scarce = run(&ModelConfig { image_ids: 1, ..small(2, 1, 3, 3) });
    assert!(matches!(ample.verdict, Verdict::Pass) && matches!(scarce.verdict, Verdict::Pass));
    assert!(
        scarce.distinct_states < ample.distinct_states,
        "one id ({}) must explore fewer states than three ({})",
        scarce.distinct_states,
        ample.distinct_states
    );
    // One id still lets the no-age-filter flaw show: one write and a cleaner suffice.
    let flawed = ModelConfig { image_ids: 1, ..with_timings(small(1, 1, 2, 3), 1, 0, 1) };
    assert!(matches!(run(&flawed).verdict, Verdict::Violation { .. }));
    assert!(ModelConfig { image_ids: 0, ..small(1, 1, 2, 2) }.validate().is_err());
}

/// Deletes and metadata-only updates beside writes and reads: the working design
/// (the update's compare-and-set) keeps every property at the case study's size.
#[test]
fn deletes_and_compare_and_set_updates_keep_every_property() {
    let mut config = small(2, 1, 3, 3);
    config.operations = Operations { deletes: true, patches: Some(PatchDesign::CompareAndSet) };
    let report = run(&config);
    assert_eq!(report.verdict, Verdict::Pass);
    let plain = run(&small(2, 1, 3, 3));
    let (with, without) = (report.distinct_states, plain.distinct_states);
    assert!(with > without, "the new operations add states: {with} vs {without}");
}

/// The update that re-attaches the image it read without a compare-and-set: another
/// write replaces the image, the cleaner finds it unreferenced, the update commits it
/// back, and the cleaner deletes the blob under the record.
#[test]
fn an_update_without_compare_and_set_re_attaches_an_image_the_cleaner_deletes() {
    let mut config = small(2, 1, 3, 3);
    config.operations = Operations { deletes: false, patches: Some(PatchDesign::Blind) };
    let (property, trace) = violation(&config);
    assert_eq!(property, Property::NoDanglingReference);
    let text = trace.to_string();
    assert!(text.contains("start metadata update"), "{trace}");
    assert!(text.contains("commit update"), "{trace}");
    assert!(last_action(&trace).starts_with("delete"), "{trace}");
}

/// A delete is a change like a replacement: without the delete delay, a read that
/// fetched the record before the delete finds its blob gone.
#[test]
fn without_delete_delay_a_read_racing_a_delete_finds_its_blob_gone() {
    let mut config = small(2, 1, 3, 3);
    config.timings.delete_delay = Hours(0);
    // One image id: one write, so no replacement can stand in for the delete.
    config.image_ids = 1;
    config.operations = Operations { deletes: true, patches: None };
    let (property, trace) = violation(&config);
    assert_eq!(property, Property::NoVanishedBlob);
    assert!(trace.to_string().contains("delete record"), "{trace}");
}
