//! The model checker's figures: states, states per second, peak memory.
//!
//! Kept to one function over the checker's public entry point, so it follows the
//! checker as that changes.

use std::num::NonZeroUsize;

use profilestore_modelcheck::ModelConfig;

use crate::child::{ChildOutcome, peak_rss_bytes};
use crate::config::ModelSize;
use crate::error::BenchError;

/// The model configuration `size` names.
pub fn config(size: ModelSize) -> ModelConfig {
    let case_study = ModelConfig::case_study();
    match size {
        ModelSize::Small => ModelConfig { max_ops: 2, image_ids: 2, ..case_study },
        ModelSize::CaseStudy => case_study,
        ModelSize::Larger => ModelConfig { max_hours: 4, ..case_study },
    }
}

/// Explores the `size` configuration once on `threads` threads, off the async
/// threads; the outcome's `states` and `seconds` are the checker's own.
pub async fn explore(size: ModelSize, threads: usize) -> Result<ChildOutcome, BenchError> {
    let config = config(size);
    let threads = NonZeroUsize::new(threads).unwrap_or(NonZeroUsize::MIN);
    let stats = tokio::task::spawn_blocking(move || profilestore_modelcheck::run_bench(&config, threads))
        .await
        .map_err(|e| BenchError::Child(format!("the model checker panicked: {e}")))?
        .map_err(|e| BenchError::Child(format!("the model checker failed: {e}")))?;
    Ok(ChildOutcome {
        seconds: stats.seconds,
        peak_rss_bytes: stats.peak_rss_bytes.or_else(peak_rss_bytes),
        states: stats.distinct_states,
        ..ChildOutcome::default()
    })
}

/// For each configuration measured on both 1 and 2 threads: its name and the median,
/// over the runs, of states per second on 2 threads ÷ on 1 (the goal: ≥ 1.8).
pub fn thread_speedups(results: &[ModelResult]) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut sizes: Vec<ModelSize> = results.iter().map(|r| r.size).collect();
    sizes.dedup();
    for size in sizes {
        let rate = |threads| {
            results.iter().filter(move |r| r.size == size && r.threads == threads).map(|r| r.states_per_second)
        };
        let mut ratios: Vec<f64> = rate(2).zip(rate(1)).map(|(two, one)| two / one.max(1e-9)).collect();
        if ratios.is_empty() {
            continue;
        }
        ratios.sort_by(f64::total_cmp);
        out.push((size.name().to_owned(), ratios[ratios.len() / 2]));
    }
    out
}

/// The model scenario's figures for one configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelResult {
    /// Which configuration.
    pub size: ModelSize,
    /// Its name.
    pub name: String,
    /// Threads the search ran on.
    pub threads: usize,
    /// Distinct states.
    pub states: u64,
    /// Wall time of the search.
    pub seconds: f64,
    /// Distinct states per second.
    pub states_per_second: f64,
    /// Peak resident memory of the process that ran it.
    pub peak_rss_bytes: Option<u64>,
    /// Whether that process ran nothing else.
    pub own_process: bool,
}

impl ModelResult {
    /// The result of `size` from its child's outcome.
    pub fn new(size: ModelSize, threads: usize, outcome: &ChildOutcome) -> ModelResult {
        ModelResult {
            size,
            name: size.name().to_owned(),
            threads,
            states: outcome.states,
            seconds: outcome.seconds,
            states_per_second: outcome.states as f64 / outcome.seconds.max(1e-9),
            peak_rss_bytes: outcome.peak_rss_bytes,
            own_process: outcome.own_process,
        }
    }
}
