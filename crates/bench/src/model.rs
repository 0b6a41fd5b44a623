//! The model checker's figures: states, states per second, peak memory.
//!
//! Kept to one function over the checker's public entry point, so it follows the
//! checker as that changes.

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

/// Explores the `size` configuration once, off the async threads; the outcome's
/// `states` and `seconds` are the checker's own.
pub async fn explore(size: ModelSize) -> Result<ChildOutcome, BenchError> {
    let config = config(size);
    let report = tokio::task::spawn_blocking(move || profilestore_modelcheck::check(&config, |_| {}))
        .await
        .map_err(|e| BenchError::Child(format!("the model checker panicked: {e}")))??;
    Ok(ChildOutcome {
        seconds: report.elapsed.as_secs_f64(),
        peak_rss_bytes: report.peak_memory_bytes.or_else(peak_rss_bytes),
        states: report.distinct_states,
        ..ChildOutcome::default()
    })
}

/// The model scenario's figures for one configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelResult {
    /// Which configuration.
    pub size: ModelSize,
    /// Its name.
    pub name: String,
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
    pub fn new(size: ModelSize, outcome: &ChildOutcome) -> ModelResult {
        ModelResult {
            size,
            name: size.name().to_owned(),
            states: outcome.states,
            seconds: outcome.seconds,
            states_per_second: outcome.states as f64 / outcome.seconds.max(1e-9),
            peak_rss_bytes: outcome.peak_rss_bytes,
            own_process: outcome.own_process,
        }
    }
}
