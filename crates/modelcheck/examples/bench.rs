//! Times the checker on one of the sizes docs/verification.md quotes, on a chosen
//! number of threads, and prints one line: the measurements behind its tables.
//!
//! `cargo run -p profilestore-modelcheck --release --example bench -- [SIZE] [THREADS]`
//! where SIZE is `case-study` (default), `max-hours-4` or `max-ops-4`, and THREADS
//! defaults to the machine's parallelism.

use std::num::NonZeroUsize;
use std::process::ExitCode;

use profilestore_modelcheck::{ModelConfig, SearchOptions, run_bench};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size = args.first().map_or("case-study", String::as_str);
    let case_study = ModelConfig::case_study();
    let config = match size {
        "case-study" => case_study,
        "max-hours-4" => ModelConfig { max_hours: 4, ..case_study },
        "max-ops-4" => ModelConfig { max_ops: 4, image_ids: 4, ..case_study },
        other => {
            eprintln!("unknown size {other:?}: case-study, max-hours-4 or max-ops-4");
            return ExitCode::from(2);
        }
    };
    let threads = match args.get(1).map(|t| t.parse::<NonZeroUsize>()) {
        None => SearchOptions::default().threads,
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            eprintln!("THREADS: {e}");
            return ExitCode::from(2);
        }
    };
    match run_bench(&config, threads) {
        Ok(s) => {
            println!(
                "{size} threads {} states {} transitions {} seconds {:.2} states/s {:.0} peak {} MiB bytes/state {:.1} {}",
                s.threads,
                s.distinct_states,
                s.transitions,
                s.seconds,
                s.states_per_second,
                s.peak_rss_bytes.unwrap_or(0) >> 20,
                s.bytes_per_state().unwrap_or(0.0),
                if s.passed { "pass" } else { "VIOLATION" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
