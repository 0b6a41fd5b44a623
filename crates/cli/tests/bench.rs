//! `profilestore bench` as a user runs it, at a tiny size: the sweep's and the model
//! checker's sides in child processes of their own, the outputs written, and exit
//! status 0 whatever the goals' verdicts.

mod support;

use support::bin;

#[test]
fn a_tiny_bench_runs_its_children_and_writes_json_and_a_plot() {
    let out = tempfile::tempdir().unwrap();
    let output = bin()
        .args(["bench", "--runs", "1", "--run-time", "200ms", "--clients", "1,2", "--users", "10"])
        .args(["--scenario", "write-library", "--scenario", "read-http,sweep,incremental,model"])
        .args(["--blobs-count", "100,300", "--model-size", "small", "--json", "--out"])
        .arg(out.path())
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}");
    let results: serde_json::Value = serde_json::from_slice(&output.stdout).expect("--json prints JSON");

    let pairs = results["pairs"].as_array().unwrap();
    let names: Vec<(&str, u64)> =
        pairs.iter().map(|p| (p["scenario"].as_str().unwrap(), p["clients"].as_u64().unwrap())).collect();
    assert_eq!(names, [("write-library", 1), ("write-library", 2), ("read-http", 1), ("read-http", 2)]);

    let sweeps = results["sweeps"].as_array().unwrap();
    assert_eq!(sweeps.len(), 2, "one sweep per size");
    for sweep in sweeps {
        for side in ["floor", "product"] {
            let run = &sweep["runs"][side][0];
            assert_eq!(run["own_process"], true, "the sweep's {side} ran in a child: {run}");
            assert!(run["peak_rss_bytes"].as_u64().unwrap() > 0, "{run}");
        }
        assert_eq!(sweep["runs"]["product"][0]["deleted"], sweep["orphans"]);
    }
    let incremental = results["incremental"].as_array().unwrap();
    assert_eq!(incremental.len(), 2, "the incremental scenario at each size");
    for inc in incremental {
        let (full, cycle) = (&inc["runs"]["floor"][0], &inc["runs"]["product"][0]);
        assert!(cycle["touched"].as_u64().unwrap() < full["touched"].as_u64().unwrap(), "{inc}");
        assert_eq!(cycle["deleted"], full["deleted"], "both cycles delete the planted garbage: {inc}");
    }
    let goals = results["goals"].as_array().unwrap();
    assert_eq!(goals.iter().filter(|g| g["scenario"] == "incremental").count(), 4, "two goals per size");
    let model = &results["model"][0];
    assert_eq!(model["own_process"], true, "{model}");
    assert!(model["states"].as_u64().unwrap() > 0, "{model}");

    assert!(out.path().join("results.json").is_file());
    let svg = std::fs::read_to_string(out.path().join("latest.svg")).unwrap();
    assert!(svg.starts_with("<svg ") && svg.contains("write-library"), "{svg}");
}

#[test]
fn an_unknown_scenario_is_refused_before_anything_runs() {
    let output = bin().args(["bench", "--scenario", "everything"]).output().expect("the binary runs");
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown scenario") && stderr.contains("write-library"), "{stderr}");
}
