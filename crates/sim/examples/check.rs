//! Runs the checker on a named configuration and prints the report.
//!
//! `cargo run --release -p profilestore-sim --example check -- case-study[,option…]`
//! Options: liveness, reads-only, record-first, blob-by-user, no-fail, bigger (4 ops),
//! hours4, age0 (flaw 3), nokill (flaw 4), nodelay (flaw 5).

use profilestore_sim::{Design, ModelConfig, Properties, Verdict, check};

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "case-study".into());
    let mut config = ModelConfig::case_study();
    for part in arg.split(',') {
        match part {
            "case-study" => {}
            "liveness" => config.properties = Properties::ALL,
            "reads-only" => {
                config.properties =
                    Properties { no_dangling_reference: false, no_vanished_blob: false, ..Properties::SAFETY }
            }
            "record-first" => config.design = Design::RecordFirst,
            "blob-by-user" => config.design = Design::BlobKeyedByUser,
            "no-fail" => config.fail_steps = false,
            "bigger" => config.max_ops = 4,
            "hours4" => config.max_hours = 4,
            "age0" => config.timings.min_blob_age = profilestore_sim::Hours(0),
            "nokill" => config.timings.request_timeout = profilestore_sim::Hours(100),
            "nodelay" => config.timings.delete_delay = profilestore_sim::Hours(0),
            other => {
                eprintln!("unknown option {other}");
                std::process::exit(2);
            }
        }
    }
    let report = match check(&config, |p| {
        eprintln!(
            "depth {:>3}  distinct {:>12}  total {:>13}  frontier {:>10}  {:?}",
            p.depth, p.distinct_states, p.transitions, p.frontier, p.elapsed
        );
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "distinct {} total {} depth {} elapsed {:?} states/s {:.0} peak {} MiB",
        report.distinct_states,
        report.transitions,
        report.depth,
        report.elapsed,
        report.states_per_second(),
        report.peak_memory_bytes.unwrap_or(0) / (1 << 20)
    );
    match report.verdict {
        Verdict::Pass => println!("PASS"),
        Verdict::Violation { property, trace } => {
            println!("VIOLATION of {property} after {} steps\n{trace}", trace.steps());
            std::process::exit(1);
        }
    }
}
