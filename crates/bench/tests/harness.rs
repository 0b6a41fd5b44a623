//! The harness on the embedded default stores, at a tiny size: not how fast anything
//! is, but that every scenario measured, the sides alternated, and the outputs are
//! whole.

use std::time::Duration;

use profilestore_bench::load::Side;
use profilestore_bench::{BenchConfig, ModelSize, Results, Scenario};

const LOAD: [Scenario; 4] = [Scenario::WriteLibrary, Scenario::WriteHttp, Scenario::ReadLibrary, Scenario::ReadHttp];

fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_run_measures_every_scenario_and_writes_whole_outputs() {
    let out = tempfile::tempdir().unwrap();
    let config = BenchConfig {
        // Memory per held read is measured in child processes, where the resident
        // memory is the server's own: the CLI's test runs it.
        scenarios: Scenario::ALL.into_iter().filter(|s| *s != Scenario::ReadMemory).collect(),
        runs: 2,
        run_time: Duration::from_millis(200),
        clients: vec![1, 2],
        users: 20,
        sweep_sizes: vec![200],
        model_sizes: vec![ModelSize::Small],
        child_exe: None,
        out_dir: out.path().to_path_buf(),
        ..BenchConfig::default()
    };
    let results = profilestore_bench::run(&config).await.expect("the harness runs");

    for scenario in LOAD {
        for clients in [1, 2] {
            let pair = results
                .pairs
                .iter()
                .find(|p| p.scenario == scenario && p.clients == clients)
                .unwrap_or_else(|| panic!("{scenario} at {clients} clients was not measured"));
            let name = format!("{scenario} at {clients} clients");
            assert_eq!(pair.runs.order, [Side::Floor, Side::Product].repeat(2), "{name}: the sides did not alternate");
            assert_eq!((pair.runs.floor.len(), pair.runs.product.len()), (2, 2), "{name}");
            for run in pair.runs.floor.iter().chain(&pair.runs.product) {
                assert!(run.ops > 0, "{name}: a run measured no operation");
                assert_eq!(run.errors, 0, "{name}: operations failed on the embedded stores");
                assert!(
                    positive(run.throughput) && positive(run.p50_us) && run.p99_us >= run.p50_us,
                    "{name}: {run:?}"
                );
                assert!(run.seconds >= 0.2, "{name}: a run ended before its run time: {run:?}");
            }
            for ratio in [pair.latency_ratio, pair.throughput_ratio] {
                let ratio = ratio.unwrap_or_else(|| panic!("{name}: no ratio"));
                assert_eq!(ratio.runs, 2, "{name}");
                assert!(
                    positive(ratio.min) && ratio.min <= ratio.median && ratio.median <= ratio.max,
                    "{name}: {ratio:?}"
                );
            }
        }
    }

    let [sweep] = results.sweeps.as_slice() else { panic!("one sweep size was asked for: {:?}", results.sweeps) };
    assert_eq!((sweep.blobs, sweep.orphans), (200, 20));
    assert_eq!(sweep.runs.order, [Side::Floor, Side::Product].repeat(2));
    for floor in &sweep.runs.floor {
        assert!(floor.listed >= 200 && floor.records == 180, "the floor saw every blob and record: {floor:?}");
    }
    for cycle in &sweep.runs.product {
        assert_eq!(cycle.deleted, 20, "every run's cleaner found the orphans put back after the one before");
        assert!(cycle.peak_rss_bytes.is_some_and(|b| b > 0));
    }
    assert!(sweep.time_ratio.is_some_and(|r| positive(r.median)));

    // Runs: 2 here, each on 1 then 2 threads, all of one size and the same states.
    let threads: Vec<usize> = results.model.iter().map(|m| m.threads).collect();
    assert_eq!(threads, [1, 2, 1, 2], "one and two threads alternate, run by run");
    for model in &results.model {
        assert!(model.states > 0 && positive(model.states_per_second), "{model:?}");
        assert_eq!(model.states, results.model[0].states, "the thread count changes no state count");
    }
    let speedups = profilestore_bench::model::thread_speedups(&results.model);
    assert!(speedups.len() == 1 && positive(speedups[0].1), "{speedups:?}");

    assert!(
        results.goals.iter().any(|g| g.scenario == Scenario::WriteLibrary && g.clients == 1),
        "the one-client write goal is judged: {:?}",
        results.goals
    );
    assert!(results.goals.iter().all(|g| g.ratio.is_some_and(|r| positive(r.median))), "{:?}", results.goals);

    let (json_path, svg_path) = results.write(out.path()).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    for field in ["machine", "settings", "pairs", "sweeps", "model", "goals", "not_yet_measured"] {
        assert!(json.get(field).is_some(), "results.json lacks {field}");
    }
    let back: Results = serde_json::from_value(json).expect("results.json reads back");
    assert_eq!(back.pairs.len(), LOAD.len() * 2);

    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"), "{svg}");
    assert_balanced(&svg);
    let bars = svg.matches("<rect x=").count();
    assert_eq!(bars, LOAD.len() * 2 + 1, "one bar per pair and per sweep size");
}

/// Every element is closed, self-closing, or closed in order: the SVG is well formed
/// as far as nesting goes.
fn assert_balanced(svg: &str) {
    let mut open: Vec<&str> = Vec::new();
    for tag in svg.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap();
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name), "closing {name} closes something else");
        } else if !tag.ends_with('/') {
            open.push(tag.split_whitespace().next().unwrap());
        }
    }
    assert!(open.is_empty(), "unclosed elements: {open:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_incremental_run_measures_both_cycles_and_judges_its_goals() {
    let out = tempfile::tempdir().unwrap();
    let config = BenchConfig {
        scenarios: vec![Scenario::Incremental],
        runs: 2,
        run_time: Duration::from_millis(100),
        sweep_sizes: vec![2000],
        out_dir: out.path().to_path_buf(),
        ..BenchConfig::default()
    };
    let results = profilestore_bench::run(&config).await.expect("the harness runs");

    let [inc] = results.incremental.as_slice() else { panic!("one size was asked for: {:?}", results.incremental) };
    assert_eq!(inc.blobs, 2000);
    let c = inc.changes;
    assert_eq!(c.total(), 20, "1 % of the blobs changed: {c:?}");
    assert_eq!(inc.runs.order, [Side::Floor, Side::Product].repeat(2), "full and incremental alternate");
    for full in &inc.runs.floor {
        assert!(full.listed >= 2000 - c.replaced - c.deleted, "the full sweep lists every blob left: {full:?}");
        assert!(full.queried >= full.listed - 2, "it asks about every image it lists: {full:?}");
        assert!(positive(full.seconds));
    }
    for (i, (full, cycle)) in inc.runs.floor.iter().zip(&inc.runs.product).enumerate() {
        assert!(cycle.listed >= c.new_blobs(), "run {i}: the incremental cycle lists the new blobs: {cycle:?}");
        assert!(cycle.listed < full.listed / 10, "run {i}: it lists little else: {cycle:?} vs {full:?}");
        assert!(cycle.touched < full.touched, "run {i}");
        assert!(positive(cycle.seconds));
        for side in [full, cycle] {
            assert_eq!(side.deleted, c.garbage(), "run {i}: each cycle deletes the orphans and queued images planted");
            assert_eq!(side.claimed, c.replaced + c.deleted, "run {i}: the queue held the replaced and deleted images");
        }
    }
    for ratio in [inc.touched_ratio, inc.time_ratio] {
        assert!(ratio.is_some_and(|r| r.runs == 2 && positive(r.median) && r.median < 1.0), "{ratio:?}");
    }
    let writes = inc.writes.as_ref().expect("the write cost is measured");
    assert!(writes.runs.floor.iter().chain(&writes.runs.product).all(|r| r.ops > 0 && r.errors == 0), "{writes:?}");
    assert!(writes.p50_ratio.is_some_and(|r| positive(r.median)));
    // The embedded default's blob directory keeps a listing journal: its cost too.
    let journal = inc.journal.as_ref().expect("the journal's cost is measured on a local directory");
    assert!(journal.runs.floor.iter().chain(&journal.runs.product).all(|r| r.ops > 0 && r.errors == 0), "{journal:?}");
    assert!(journal.p50_ratio.is_some_and(|r| positive(r.median)));

    let goals: Vec<_> = results.goals.iter().filter(|g| g.scenario == Scenario::Incremental).collect();
    assert_eq!(goals.len(), 2, "touched keys and time are judged: {goals:?}");
    let table = profilestore_bench::table::render(&results);
    assert!(table.contains("| incremental |") && table.contains("| full sweep |"), "{table}");
    assert!(table.contains("without the listing journal"), "{table}");
    let (json_path, _) = results.write(out.path()).unwrap();
    let back: Results = serde_json::from_slice(&std::fs::read(json_path).unwrap()).unwrap();
    let touched = |r: &Results| r.incremental[0].runs.product.iter().map(|c| c.touched).collect::<Vec<_>>();
    assert_eq!(touched(&back), touched(&results), "results.json holds the incremental runs");
}
