//! The database's commit protocol, explored as the stores really run it: the deadline
//! check and the moment the record becomes visible are two steps, with other actors
//! and time free to move between them unless the store's contract excludes it.
//!
//! Today's SQLite protocol (the cleaner's query not excluded by an open write) gives
//! back the frozen-commit counterexample real processes showed; the fixed SQLite
//! protocol and PostgreSQL's bounded commit pass at the case study's size. The exact
//! numbers are asserted so that any change to what the model explores is noticed.

use profilestore_core::machine::{CleanerAction, WriteAction, WriteEvent, WriteMachine};
use profilestore_modelcheck::step::{Action, cleaner_step, successors};
use profilestore_modelcheck::world::{Blob, ModelWorld, Record, Server};
use profilestore_modelcheck::{
    Hour, Hours, ModelConfig, Properties, Property, Report, StoreProtocol, Trace, Verdict, check,
};

fn at_case_study_size(store: StoreProtocol) -> ModelConfig {
    ModelConfig { store, ..ModelConfig::case_study() }
}

fn run(config: &ModelConfig) -> Report {
    match check(config, |_| {}) {
        Ok(report) => report,
        Err(e) => panic!("{e}"),
    }
}

fn passes(config: &ModelConfig) -> Report {
    let report = run(config);
    println!("{:?}: {report:?}", config.store);
    assert_eq!(report.verdict, Verdict::Pass, "{:?}", config.store);
    report
}

/// The index of the first row at or after `from` whose actor starts with `actor` and
/// whose action starts with `action`.
fn find(trace: &Trace, from: usize, actor: &str, action: &str) -> Option<usize> {
    trace
        .rows
        .iter()
        .skip(from)
        .position(|r| r.actor.starts_with(actor) && r.action.starts_with(action))
        .map(|i| i + from)
}

#[test]
fn sqlite_without_the_query_lock_loses_a_frozen_commits_blob() {
    let report = run(&at_case_study_size(StoreProtocol::SqliteUnlockedQuery));
    let Verdict::Violation { property, trace } = &report.verdict else {
        panic!("today's SQLite protocol must fail: {report:?}");
    };
    println!("{property} after {} steps\n{trace}", trace.steps());
    assert_eq!(*property, Property::NoDanglingReference);
    // start, put, check, two hours, list, query, commit visible, an hour, delete.
    assert_eq!(trace.steps(), 10, "{trace}");
    let check = find(trace, 0, "server", "check record").expect("the check");
    assert!(trace.rows[check].action.ends_with("staged"), "{trace}");
    let query = find(trace, check, "cleaner", "query referenced").expect("a query after the check");
    assert!(trace.rows[query].action.ends_with(": {}"), "the staged record is not seen: {trace}");
    // The commit may land anywhere after the query; before the delete is as short as
    // after it, and breadth-first order (servers before cleaners) finds this one. The
    // delete then takes the blob of a visible record.
    let visible = find(trace, query, "server", "commit").expect("the commit after the query");
    assert!(trace.rows[visible].action.contains("visible"), "{trace}");
    let delete = find(trace, visible, "cleaner", "delete").expect("a delete after the commit");
    assert_eq!(delete, trace.steps(), "the delete is the violating step: {trace}");
    // The server checked before its deadline (1 h) and its record became visible after it.
    assert!(trace.rows[check].clock.0 < 1 && trace.rows[visible].clock.0 >= 2, "{trace}");
    assert_eq!((report.distinct_states, report.depth), (116_619, 10), "{} {}", report.distinct_states, report.depth);
}

#[test]
fn sqlite_with_the_query_lock_passes_at_the_case_study_size() {
    let report = passes(&at_case_study_size(StoreProtocol::SqliteLockedQuery));
    assert_eq!((report.distinct_states, report.transitions), (1_026_570, 3_943_782), "{report:?}");
}

#[test]
fn postgres_bounded_commit_passes_at_the_case_study_size() {
    let report = passes(&at_case_study_size(StoreProtocol::PostgresBoundedCommit));
    assert_eq!((report.distinct_states, report.transitions), (1_437_036, 6_136_360), "{report:?}");
}

#[test]
fn the_races_the_protocols_are_about_are_reached() {
    let of = |store| passes(&ModelConfig { cleaners: 1, max_ops: 2, ..at_case_study_size(store) }).coverage;
    let locked = of(StoreProtocol::SqliteLockedQuery);
    let bounded = of(StoreProtocol::PostgresBoundedCommit);
    println!("sqlite locked {locked:?}\npostgres bounded {bounded:?}");
    for coverage in [locked, bounded] {
        assert!(coverage.pending_commit_with_query_ready > 0, "{coverage:?}");
        assert!(coverage.pending_commit_past_deadline > 0, "{coverage:?}");
        assert!(coverage.deadline_at_check > 0, "{coverage:?}");
    }
    // The atomic commit has no pending commit to race with.
    let atomic = of(StoreProtocol::AtomicCommit);
    assert_eq!((atomic.pending_commit_with_query_ready, atomic.pending_commit_past_deadline), (0, 0));
    assert!(atomic.deadline_at_check > 0, "{atomic:?}");
}

#[test]
fn the_fixed_protocols_keep_eventually_no_orphans() {
    for store in [StoreProtocol::SqliteLockedQuery, StoreProtocol::PostgresBoundedCommit] {
        let config = ModelConfig { cleaners: 1, max_ops: 2, properties: Properties::ALL, ..at_case_study_size(store) };
        passes(&config);
    }
}

#[test]
fn without_failures_a_frozen_sqlite_commit_still_lands_and_a_postgres_one_is_refused_late() {
    // One write, no cleaner: the staged record either lands or, where the store bounds
    // the commit, is refused once the deadline has passed.
    let one_write = |store| ModelConfig {
        servers: 1,
        cleaners: 0,
        max_ops: 1,
        image_ids: 1,
        fail_steps: false,
        ..at_case_study_size(store)
    };
    let sqlite = passes(&one_write(StoreProtocol::SqliteLockedQuery)).coverage;
    let postgres = passes(&one_write(StoreProtocol::PostgresBoundedCommit)).coverage;
    assert!(sqlite.pending_commit_past_deadline > 0 && postgres.pending_commit_past_deadline > 0);
}

/// The guards themselves, from one state: a write of image #0 checked at 0 h holds a
/// pending commit, and at 2 h a cleaner has listed #0 and is ready to ask about it.
#[test]
fn each_protocol_guards_the_steps_around_a_pending_commit() {
    let mut machine = WriteMachine::start(Hour(0), Hours(1));
    machine.next(Hour(0));
    machine.handle(WriteEvent::IdIssued(0));
    machine.next(Hour(0));
    machine.handle(WriteEvent::BlobStored);
    assert!(matches!(machine.next(Hour(0)), WriteAction::CommitRecord { .. }));
    for store in
        [StoreProtocol::SqliteUnlockedQuery, StoreProtocol::SqliteLockedQuery, StoreProtocol::PostgresBoundedCommit]
    {
        let config = ModelConfig { servers: 1, cleaners: 1, ..at_case_study_size(store) };
        let mut w = ModelWorld::initial(&config);
        assert!(w.put_blob(Blob { id: 0, image: 0, created: Hour(0) }));
        (w.next_id, w.ops, w.clock) = (1, 1, Hour(2));
        let record = Record { metadata: 0, image_id: 0 };
        w.servers[0] = Server::Committing { user: 0, record, machine: machine.clone(), statement: Hour(0) };
        cleaner_step(&config, &mut w, 0, &CleanerAction::ListPage, false);
        let mut steps = Vec::new();
        successors(&config, &w, &mut |step, _, _| steps.push((step.action, step.failed)));
        let query_runs = steps.iter().any(|(a, failed)| matches!(a, Action::QueryReferenced { .. }) && !failed);
        let query_gives_up = steps.iter().any(|(a, failed)| matches!(a, Action::QueryReferenced { .. }) && *failed);
        let lands = steps.contains(&(Action::CommitVisible { image_id: 0, refused: false }, false));
        let refused = steps.contains(&(Action::CommitVisible { image_id: 0, refused: true }, false));
        let rolled_back = steps.contains(&(Action::CommitVisible { image_id: 0, refused: false }, true));
        let expected = match store {
            // The frozen writer lands past its deadline, and nothing holds the query back.
            StoreProtocol::SqliteUnlockedQuery => (true, true, true, false),
            // The query waits for the lock (or gives up); the commit may still land.
            StoreProtocol::SqliteLockedQuery => (false, true, true, false),
            // Past the deadline the commit can only be refused; the query runs.
            _ => (true, true, false, true),
        };
        assert_eq!((query_runs, query_gives_up, lands, refused), expected, "{store:?}: {steps:?}");
        assert!(rolled_back, "a pending commit may always be rolled back: {store:?}");
    }
}
