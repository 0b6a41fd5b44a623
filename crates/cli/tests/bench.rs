//! `profilestore bench` as a user runs it, at a tiny size: the sweep's, the held
//! reads' and the model checker's sides in child processes of their own, the outputs
//! written, and exit status 0 whatever the goals' verdicts.

mod support;

use support::{S3Env, bin, unique_suffix};

#[test]
fn a_tiny_bench_runs_its_children_and_writes_json_and_a_plot() {
    let out = tempfile::tempdir().unwrap();
    let output = bin()
        .args(["bench", "--runs", "1", "--run-time", "200ms", "--clients", "1,2", "--users", "10"])
        .args(["--scenario", "write-library", "--scenario", "read-http,read-memory,sweep,incremental,model"])
        .args(["--in-flight-image-size", "8MiB", "--in-flight-reads", "2"])
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
    // Each held read keeps about its image (8 MiB) in the server's memory, once: an
    // answer that encoded the whole image at once would keep it 2.3 times.
    let memory = &results["read_memory"];
    for side in ["floor", "product"] {
        let run = &memory["runs"][side][0];
        assert_eq!(run["own_process"], true, "the held reads' {side} ran in a child: {run}");
        let (idle, held) = (run["rss_idle_bytes"].as_u64().unwrap(), run["rss_held_bytes"].as_u64().unwrap());
        let per_image = held.saturating_sub(idle) as f64 / 2.0 / f64::from(8u32 << 20);
        assert!((0.5..=1.5).contains(&per_image), "{side}: {per_image:.2} images held per read: {run}");
    }
    let goals = results["goals"].as_array().unwrap();
    assert!(goals.iter().any(|g| g["scenario"] == "read-memory" && g["met"] == true), "{goals:?}");
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

#[test]
fn the_s3_listing_compares_the_parallel_listing_with_a_sequential_one_on_a_real_gateway() {
    let Some(s3) = S3Env::from_env() else { return };
    let prefix = format!("bench-listing-test-{}", unique_suffix());
    let out = tempfile::tempdir().unwrap();
    let output = bin()
        .args(["bench", "--scenario", "s3-listing", "--runs", "2", "--blobs-count", "2500", "--json"])
        .args(["--s3-list-concurrency", "4"])
        .args(s3.flags(&prefix))
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}");
    let results: serde_json::Value = serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    let listing = &results["listings"][0];
    assert_eq!(listing["keys"], 2500, "{listing}");
    assert_eq!(listing["concurrency"], 4, "{listing}");
    for (side, concurrency) in [("floor", 1), ("product", 4)] {
        let runs = listing["runs"][side].as_array().unwrap();
        assert_eq!(runs.len(), 2, "{listing}");
        for run in runs {
            assert_eq!(run["keys"], 2500, "every run listed every key: {run}");
            assert_eq!(run["concurrency"], concurrency, "{run}");
            assert!(run["keys_per_second"].as_f64().unwrap() > 0.0, "{run}");
            let busy = run["machine_busy"].as_f64().expect("Linux has /proc/stat");
            assert!((0.0..=1.0).contains(&busy), "{run}");
        }
    }
    let peak = listing["runs"]["product"][0]["peak_pages_held"].as_u64().unwrap();
    assert!(peak >= 1 && peak <= listing["max_pages_held"].as_u64().unwrap(), "{listing}");
    assert!(listing["rate_ratio"]["median"].as_f64().unwrap() > 0.0, "{listing}");
    let goals = results["goals"].as_array().unwrap();
    assert!(goals.iter().any(|g| g["scenario"] == "s3-listing" && g["limit"] == 2.0), "{goals:?}");
    assert!(results["not_yet_measured"].as_array().unwrap().is_empty(), "{results}");
}

#[test]
fn the_s3_listing_without_s3_says_it_measured_nothing() {
    let out = tempfile::tempdir().unwrap();
    let output = bin()
        .args(["bench", "--scenario", "s3-listing", "--runs", "1", "--blobs-count", "10", "--out"])
        .arg(out.path())
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("not measured: s3-listing: needs an s3:// --blobs URL"), "{table}");
}
