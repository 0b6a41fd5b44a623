//! `profilestore simulate`: many seeded runs of the real service and cleaner code on
//! virtual time, each checked throughout; a failing seed is replayable and shrunk.

use std::hash::{BuildHasher, Hasher};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use profilestore_core::settings::{Timings, fmt_duration};
use profilestore_simulation::{self as simulation, Failure, FaultRates, SimConfig, StoreProtocol, Summary, run_seeds};

use crate::args::SimulateArgs;
use crate::progress::{self, ActiveBar};
use crate::stores::checked;

/// Re-runs spent shrinking a failure.
const SHRINK_RUNS: usize = 16;

/// Runs the seeds; exit status 1 when one breaks a promise.
pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let config = config(&args)?;
    let threads = match args.threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let t = &config.timings;
    println!(
        "simulating {} seeds from {} on {threads} threads: {} servers, {} cleaners, {} clients, {} users, {} operations per seed; \
         request-timeout {}, min-blob-age {}, delete-delay {}, clock-skew {}; store protocol {}{}",
        args.seeds,
        config.seed,
        config.servers,
        config.cleaners,
        config.clients,
        config.users,
        config.ops,
        fmt_duration(t.request_timeout),
        fmt_duration(t.min_blob_age),
        fmt_duration(t.delete_delay),
        fmt_duration(t.clock_skew),
        config.protocol.name(),
        if args.no_faults { "; no faults" } else { "" }
    );
    let started = WallClock::start();
    let keep_going = || args.time_budget.is_none_or(|budget| started.elapsed() < budget);
    let bar = ProgressBar::new(args.seeds);
    let summary = run_seeds(&config, args.seeds, threads, &keep_going, &|s| bar.show(s, started.elapsed()));
    // A bar is cleared: the summary below says where the run ended.
    drop(bar);
    let elapsed = started.elapsed();
    println!(
        "{} seeds run in {:.1?} ({:.1} seeds/s), {} h of virtual time",
        summary.seeds_run,
        elapsed,
        summary.seeds_run as f64 / elapsed.as_secs_f64().max(1e-9),
        summary.virtual_time.as_secs() / 3600
    );
    println!("{}", summary.counts);
    println!("{}", summary.mixes);
    let Some((failing, _)) = summary.failure else {
        if summary.seeds_run < args.seeds {
            println!("pass: every check held on every seed run (the time budget stopped the run early)");
        } else {
            println!("pass: every check held on every seed");
        }
        return Ok(ExitCode::SUCCESS);
    };
    report_failure(&failing);
    Ok(super::CHECK_FAILED)
}

/// Re-runs the failing seed (same seed, same run) with its full log, shrinks it and
/// prints the replay commands and the trace.
fn report_failure(failing: &SimConfig) {
    let report = simulation::run(failing);
    let Some(violation) = report.violation.clone() else {
        println!("FAILED on seed {}, but the re-run passed: the simulation is not deterministic (a bug)", failing.seed);
        return;
    };
    println!("\nFAILED: seed {} broke {violation}", failing.seed);
    println!("replay: profilestore {}", failing.replay_args().join(" "));
    eprintln!("shrinking (up to {SHRINK_RUNS} re-runs with fewer operations)…");
    let failure = Failure::investigate(failing, report, SHRINK_RUNS);
    if failure.shrunk.ops < failing.ops {
        println!(
            "shrunk to {} operations (from {}); it breaks {} too: profilestore {}",
            failure.shrunk.ops,
            failing.ops,
            failure.violation().check,
            failure.shrunk.replay_args().join(" ")
        );
    }
    let trace = failure.trace();
    println!(
        "\ntrace: {} of the run's {} events (those naming the images concerned, and the changes to their \
         users' records meanwhile)",
        trace.len(),
        failure.shrunk_report.events.len()
    );
    for event in trace {
        println!("  {event}");
    }
}

/// The simulation the flags describe.
fn config(args: &SimulateArgs) -> anyhow::Result<SimConfig> {
    let case = Timings::CASE_STUDY;
    let timings = Timings {
        request_timeout: args.timings.request_timeout.unwrap_or(case.request_timeout),
        min_blob_age: args.timings.min_blob_age.unwrap_or(case.min_blob_age),
        delete_delay: args.timings.delete_delay.unwrap_or(case.delete_delay),
        clock_skew: args.clock_skew.unwrap_or(case.clock_skew),
    };
    checked(timings, args.timings.allow_unsafe_timing)?;
    if args.seeds == 0 {
        anyhow::bail!("--seeds must be at least 1");
    }
    let config = SimConfig {
        seed: args.seed.unwrap_or_else(random_seed),
        servers: args.servers,
        cleaners: args.cleaners,
        clients: args.clients,
        users: args.users,
        ops: args.ops,
        timings,
        faults: FaultRates {
            clock_beyond_bound: args.clock_beyond_bound.unwrap_or_default(),
            ..if args.no_faults { FaultRates::none() } else { FaultRates::default() }
        },
        drain: args.drain,
        clock_check: args.clock_check,
        protocol: StoreProtocol::from_name(&args.store_protocol)
            .ok_or_else(|| anyhow::anyhow!("unknown --store-protocol {}", args.store_protocol))?,
        sweep: profilestore_simulation::sweep_mode(&args.sweep, args.full_every)
            .ok_or_else(|| anyhow::anyhow!("unknown --sweep {}", args.sweep))?,
        queue_delay_from_statement: args.queue_delay_from_statement,
        patches: args.patches,
        ignore_preconditions: args.ignore_preconditions,
        ..SimConfig::default()
    };
    config.validate().map_err(|e| anyhow::anyhow!("--{e}"))?;
    Ok(config)
}

/// A fresh seed each time the flag is left out, so repeated runs cover new ground;
/// it is printed, so any run can be replayed. (The standard library's hasher keys
/// come from the operating system's randomness.)
fn random_seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish() % 1_000_000_000
}

/// Wall-clock time, for the budget and the rate only; the simulation itself never
/// reads it.
struct WallClock(std::time::Instant);

impl WallClock {
    #[allow(clippy::disallowed_methods)] // wall time for the budget, outside the simulation
    fn start() -> Self {
        WallClock(std::time::Instant::now())
    }

    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Progress on standard error: a bar at a terminal, a line per tenth of the seeds
/// otherwise (the same counters: seeds, operations, faults, checks, seconds).
enum ProgressBar {
    Bar(ActiveBar),
    Lines { total: u64, shown: Mutex<u64> },
}

impl ProgressBar {
    fn new(total: u64) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total)
                .with_style(progress::style("[{bar:30}] {pos}/{len} seeds ({rate}) · {msg} · {elapsed} · ETA {eta}"));
            ProgressBar::Bar(ActiveBar::start(bar))
        } else {
            ProgressBar::Lines { total, shown: Mutex::new(0) }
        }
    }

    fn show(&self, s: &Summary, elapsed: Duration) {
        let done = s.seeds_run;
        let counts = format!(
            "{} operations · {} faults · {} checks",
            s.counts.operations(),
            s.counts.faults(),
            s.counts.checks()
        );
        match self {
            // The bar limits its own redraws; updates from every thread are cheap.
            ProgressBar::Bar(shown) => {
                shown.bar().set_position(done);
                shown.bar().set_message(counts);
            }
            ProgressBar::Lines { total, shown } => {
                let mut shown = shown.lock().unwrap_or_else(|p| p.into_inner());
                let tenth = |n: u64| n * 10 / (*total).max(1);
                if tenth(done) > tenth(*shown) || done == *total {
                    eprintln!("{done}/{total} seeds · {counts} · {}s", elapsed.as_secs());
                }
                *shown = done;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_seeds_differ() {
        assert_ne!(random_seed(), random_seed());
    }

    #[test]
    fn flaws_need_the_unsafe_flag() {
        use clap::Parser;
        let parse = |extra: &[&str]| {
            let mut argv = vec!["profilestore", "simulate", "--seed", "3"];
            argv.extend_from_slice(extra);
            match crate::args::Cli::parse_from(argv).command {
                crate::args::Command::Simulate(args) => config(&args),
                _ => unreachable!("parsed a simulate command"),
            }
        };
        let refused = parse(&["--delete-delay", "0s"]).unwrap_err().to_string();
        assert!(refused.contains("delete-delay"), "{refused}");
        let allowed = parse(&["--delete-delay", "0s", "--allow-unsafe-timing"]).unwrap();
        assert_eq!(allowed.timings.delete_delay, Duration::ZERO);
        assert_eq!(allowed.seed, 3);
        assert_eq!(allowed.protocol, StoreProtocol::SqliteLocked, "the default protocol");
        let unlocked = parse(&["--store-protocol", "unlocked", "--clock-beyond-bound", "3h"]).unwrap();
        assert_eq!(unlocked.protocol, StoreProtocol::Unlocked);
        assert_eq!(unlocked.faults.clock_beyond_bound, Duration::from_secs(3 * 3600));
        let zero = parse(&["--servers", "0"]).unwrap_err().to_string();
        assert!(zero.contains("servers must be at least 1"), "{zero}");
    }
}
