//! One measured run of the checker, for the benchmark suite.

use std::num::NonZeroUsize;

use crate::checker::{CheckError, SearchOptions, Verdict, check_with, peak_memory_bytes};
use crate::config::ModelConfig;

/// What one run of the checker measured.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct ModelRunStats {
    /// Distinct states explored (up to actor symmetry). The same for every thread
    /// count; a run stopped by a violation counts the states up to it.
    pub distinct_states: u64,
    /// Transitions generated, duplicates included.
    pub transitions: u64,
    /// Wall-clock seconds of the search alone (not the configuration's validation or
    /// the caller's setup).
    pub seconds: f64,
    /// `distinct_states / seconds`.
    pub states_per_second: f64,
    /// The process's peak resident memory during the run (`VmHWM`, Linux), or `None`
    /// where the OS does not report it. See [`run_bench`] for what it includes.
    pub peak_rss_bytes: Option<u64>,
    /// Threads the search ran on.
    pub threads: usize,
    /// Whether every property held (no violation found).
    pub passed: bool,
}

impl ModelRunStats {
    /// Peak resident memory per distinct state, where the peak is known.
    pub fn bytes_per_state(&self) -> Option<f64> {
        self.peak_rss_bytes.map(|b| b as f64 / self.distinct_states.max(1) as f64)
    }
}

/// Runs the checker on `config` with `threads` threads, printing nothing, and
/// returns its measurements.
///
/// Promises:
/// - the counts and the verdict are the checker's own ([`check_with`]), independent
///   of `threads`; only `seconds` and `peak_rss_bytes` vary from run to run;
/// - on Linux the process's peak-RSS mark is reset first (writing `5` to
///   `/proc/self/clear_refs`), so `peak_rss_bytes` is this run's peak plus whatever
///   the process already held, not an earlier, larger run's. Other threads of the
///   process reading `VmHWM` meanwhile see the reset too. Where the reset is refused
///   the figure is the process's peak so far.
pub fn run_bench(config: &ModelConfig, threads: NonZeroUsize) -> Result<ModelRunStats, CheckError> {
    // Best effort: without the reset the figure is still an upper bound.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let report = check_with(config, &SearchOptions { threads }, |_| {})?;
    let seconds = report.elapsed.as_secs_f64();
    Ok(ModelRunStats {
        distinct_states: report.distinct_states,
        transitions: report.transitions,
        seconds,
        states_per_second: report.states_per_second(),
        peak_rss_bytes: peak_memory_bytes().or(report.peak_memory_bytes),
        threads: report.threads,
        passed: report.verdict == Verdict::Pass,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bench_run_reports_the_checkers_counts_and_a_peak() {
        let config = ModelConfig { servers: 1, cleaners: 1, max_ops: 2, image_ids: 2, ..ModelConfig::case_study() };
        let two = NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN);
        let stats = run_bench(&config, two).unwrap_or_else(|e| panic!("{e}"));
        let report = check_with(&config, &SearchOptions { threads: NonZeroUsize::MIN }, |_| {})
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((stats.distinct_states, stats.transitions), (report.distinct_states, report.transitions));
        assert!(stats.passed && stats.threads == 2 && stats.seconds > 0.0);
        assert!(stats.bytes_per_state().is_some_and(|b| b > 0.0), "{stats:?}");
        let flawed = ModelConfig { design: crate::config::Design::RecordFirst, ..config };
        assert!(!run_bench(&flawed, two).unwrap_or_else(|e| panic!("{e}")).passed);
    }
}
