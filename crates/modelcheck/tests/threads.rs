//! The search's result must not depend on how many threads expand each level: the
//! same states, transitions and per-level progress, and the same shortest trace.

use std::num::NonZeroUsize;

use profilestore_modelcheck::{Hours, ModelConfig, Progress, Report, SearchOptions, Verdict, check_with};

fn run(config: &ModelConfig, threads: usize) -> (Report, Vec<Progress>) {
    let threads = NonZeroUsize::new(threads).unwrap_or(NonZeroUsize::MIN);
    let mut levels = Vec::new();
    let report = check_with(config, &SearchOptions { threads }, |p| levels.push(*p)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.threads, threads.get());
    (report, levels)
}

/// What must agree between runs: everything but the times.
fn counts(levels: &[Progress]) -> Vec<(u32, u64, u64, usize)> {
    levels.iter().map(|p| (p.depth, p.distinct_states, p.transitions, p.frontier)).collect()
}

#[test]
fn one_two_and_three_threads_explore_the_same_states() {
    // Big enough for levels of many chunks, so threads really share them.
    let config = ModelConfig { cleaners: 1, ..ModelConfig::case_study() };
    let (one, one_levels) = run(&config, 1);
    assert_eq!(one.verdict, Verdict::Pass);
    assert!(one_levels.iter().any(|p| p.frontier > 10_000), "{one_levels:?}");
    for threads in [2, 3] {
        let (many, levels) = run(&config, threads);
        assert_eq!(
            (many.distinct_states, many.transitions, many.depth, many.coverage, &many.verdict),
            (one.distinct_states, one.transitions, one.depth, one.coverage, &one.verdict),
            "{threads} threads"
        );
        assert_eq!(counts(&levels), counts(&one_levels), "{threads} threads");
    }
}

#[test]
fn one_and_two_threads_stop_at_the_same_violation_with_the_same_trace() {
    // Flaw 5 at the case study's size: the violation lies deep inside a level of
    // hundreds of thousands of states, so the threads must agree on where to stop.
    let mut config = ModelConfig::case_study();
    config.timings.delete_delay = Hours(0);
    let (one, _) = run(&config, 1);
    let (two, _) = run(&config, 2);
    let (Verdict::Violation { trace: a, .. }, Verdict::Violation { trace: b, .. }) = (&one.verdict, &two.verdict)
    else {
        panic!("flaw 5 must fail: {one:?} {two:?}");
    };
    assert_eq!(a.steps(), 14, "{a}");
    assert_eq!(a, b, "the same shortest trace on one thread and on two");
    assert_eq!((one.distinct_states, one.transitions), (two.distinct_states, two.transitions));
    assert_eq!(one.distinct_states, 588_488, "as docs/verification.md quotes");
}
