//! The profilestore benchmark suite (`profilestore bench`, docs/performance.md).
//!
//! Every figure is measured beside a baseline in the same run and reported as a
//! ratio, because shared machines are noisy: the floor is the same store operations
//! issued directly on the same stores (a write's blob put and record commit, a read's
//! record read and blob get), and each ratio is the median of several runs, the
//! floor's and the product's alternating, with its spread.
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | [`config`] | [`BenchConfig`]: scenarios, runs, run time, client counts, stores, sizes |
//! | [`load`] | the closed-loop load generator and the floor/product [`interleave`](load::interleave)r |
//! | [`stats`] | a run's throughput and percentiles ([`RunStats`]), a ratio's [`Spread`] |
//! | [`fixture`] | opening and pairing the stores, the PNG of the asked size, the bench's users |
//! | `scenarios` | the library and HTTP paths and their floors, at each client count |
//! | [`sweep`] | the cleaner cycle against listing plus one record scan |
//! | `bulk` | populating the embedded default's files directly, for the sweep at a million blobs |
//! | [`incremental`] | an incremental cleaner cycle against a full sweep, 1 % changed |
//! | [`listing`] | the S3 store's parallel listing against one sequential listing |
//! | [`model`] | the model checker's states, states/s and peak memory |
//! | [`child`] | work run in a child process for its own peak memory |
//! | [`goals`] | the goals, judged on the ratios |
//! | [`results`] | [`Results`]: everything a run measured, written as JSON |
//! | [`table`], [`svg`] | the Markdown table and the SVG plot |

mod bulk;
pub mod child;
pub mod config;
pub mod error;
pub mod fixture;
pub mod goals;
pub mod incremental;
pub mod listing;
pub mod load;
pub mod model;
pub mod read_memory;
pub mod results;
mod scenarios;
pub mod stats;
pub mod svg;
pub mod sweep;
pub mod table;

pub use config::{BenchConfig, ModelSize, Scenario, StoreTarget};

/// The most runs of each model configuration and thread count: a search is long and
/// its speed varies little from run to run.
const MODEL_RUNS: usize = 3;
pub use error::BenchError;
pub use results::Results;
pub use scenarios::PairResult;
pub use stats::{RunStats, Spread};

/// Runs every configured scenario in turn and judges the goals. Writes nothing:
/// see [`Results::write`]. Progress goes to standard error.
pub async fn run(config: &BenchConfig) -> Result<Results, BenchError> {
    config.validate()?;
    let mut results = Results {
        machine: results::Machine::this(),
        settings: results::Settings::of(config),
        pairs: Vec::new(),
        sweeps: Vec::new(),
        incremental: Vec::new(),
        listings: Vec::new(),
        read_memory: None,
        model: Vec::new(),
        goals: Vec::new(),
        not_yet_measured: Vec::new(),
    };
    for scenario in Scenario::ALL.into_iter().filter(|s| config.scenarios.contains(s)) {
        match scenario {
            Scenario::ReadMemory => results.read_memory = Some(read_memory::run(config).await?),
            Scenario::Sweep => results.sweeps = sweep::run(config).await?,
            Scenario::Incremental => results.incremental = incremental::run(config).await?,
            Scenario::S3Listing => match listing::run(config).await? {
                Some(listings) => results.listings = listings,
                None => results.not_yet_measured.push(listing::NEEDS_S3.to_owned()),
            },
            Scenario::Model => {
                // One and two threads alternate, run by run, for the parallel
                // search's speed-up measured in the same conditions.
                for &size in &config.model_sizes {
                    for run in 0..config.runs.min(MODEL_RUNS) {
                        for threads in [1, 2] {
                            eprintln!("bench: model checker, {}, {threads} thread(s), run {}", size.name(), run + 1);
                            let task = child::ChildTask::Model { size, threads };
                            let outcome = child::run(config.child_exe.as_deref(), &task, &config.stores.s3).await?;
                            results.model.push(model::ModelResult::new(size, threads, &outcome));
                        }
                    }
                }
            }
            _ => results.pairs.extend(scenarios::run(config, scenario).await?),
        }
    }
    results.goals = goals::judge(&results.pairs);
    results.goals.extend(goals::judge_incremental(&results.incremental));
    results.goals.extend(goals::judge_listings(&results.listings));
    results.goals.extend(results.read_memory.as_ref().map(goals::judge_read_memory));
    Ok(results)
}
