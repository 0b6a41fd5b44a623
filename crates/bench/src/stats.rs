//! The numbers of one timed run, and the spread of a ratio across runs.

use std::time::Duration;

/// What one timed run of one side (floor or product) measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunStats {
    /// Operations that succeeded.
    pub ops: u64,
    /// Operations that failed (not counted in `ops` or the latencies).
    pub errors: u64,
    /// Wall time from the first client's start to the last client's end, seconds.
    pub seconds: f64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Median latency of a successful operation, microseconds.
    pub p50_us: f64,
    /// 99th-percentile latency, microseconds.
    pub p99_us: f64,
    /// Mean latency, microseconds.
    pub mean_us: f64,
}

impl RunStats {
    /// The statistics of `latencies` (one per successful operation, any order) taken
    /// over `elapsed`, with `errors` failures besides.
    pub fn from_latencies(mut latencies: Vec<Duration>, errors: u64, elapsed: Duration) -> RunStats {
        latencies.sort_unstable();
        let ops = latencies.len() as u64;
        let seconds = elapsed.as_secs_f64();
        let total: Duration = latencies.iter().sum();
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        RunStats {
            ops,
            errors,
            seconds,
            throughput: if seconds > 0.0 { ops as f64 / seconds } else { 0.0 },
            p50_us: percentile(&latencies, 0.50).map_or(0.0, micros),
            p99_us: percentile(&latencies, 0.99).map_or(0.0, micros),
            mean_us: if ops == 0 { 0.0 } else { micros(total) / ops as f64 },
        }
    }
}

/// The `q`-quantile (0 to 1) of `sorted` by the nearest-rank method: the smallest
/// sample with at least `q` of all samples at or below it. `None` when empty.
pub fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A ratio's median across runs, with its smallest and largest value: the spread
/// says how far one run's noise can move it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Spread {
    /// The median (for an even count, the mean of the two middle values).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// How many runs it summarises.
    pub runs: usize,
}

impl Spread {
    /// The spread of `values`, ignoring any that are not finite (a run that measured
    /// nothing); `None` when no finite value is left.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Spread { median, min: v[0], max: v[n - 1], runs: n })
    }
}

impl std::fmt::Display for Spread {
    /// `1.07× (1.02–1.15)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2}× ({:.2}–{:.2})", self.median, self.min, self.max)
    }
}

/// `a / b`, or NaN when `b` is not positive (the spread then ignores it).
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let sorted = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&sorted, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&sorted, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&sorted, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&ms(&[7]), 0.99), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn run_stats_count_throughput_over_the_elapsed_time() {
        let s = RunStats::from_latencies(ms(&[4, 2, 3, 1]), 1, Duration::from_secs(2));
        assert_eq!((s.ops, s.errors), (4, 1));
        assert_eq!(s.throughput, 2.0);
        assert_eq!(s.p50_us, 2000.0);
        assert_eq!(s.p99_us, 4000.0);
        assert_eq!(s.mean_us, 2500.0);
    }

    #[test]
    fn a_spread_has_the_median_and_the_extremes_and_skips_nan() {
        let s = Spread::of([3.0, 1.0, f64::NAN, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.runs), (2.5, 1.0, 10.0, 4));
        assert_eq!(Spread::of([f64::NAN]), None);
        assert!(ratio(1.0, 0.0).is_nan());
    }
}
