//! The goals, each a ratio within one run, judged from the results.

use crate::config::Scenario;
use crate::incremental::IncrementalResult;
use crate::listing::ListingResult;
use crate::read_memory::ReadMemoryResult;
use crate::scenarios::PairResult;
use crate::stats::{Spread, ratio};

/// Which way a goal's ratio must lie from its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Bound {
    /// The ratio's median must be at most the limit.
    #[serde(rename = "<=")]
    AtMost,
    /// The ratio's median must be at least the limit.
    #[serde(rename = ">=")]
    AtLeast,
}

/// What a goal's ratio compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Measure {
    /// The pair's own ratio: product p50 over floor p50.
    P50Ratio,
    /// Product throughput at N clients over the floor's at one client.
    Scaling,
    /// The product's p99 over its p50.
    Tail,
    /// Product throughput at N clients over its throughput at the next lower count.
    NoFall,
    /// Keys an incremental cycle touched over those a full sweep touched.
    TouchedRatio,
    /// An incremental cycle's time over a full sweep's.
    TimeRatio,
    /// Keys per second of the parallel S3 listing over the sequential one's.
    ListingRate,
    /// Resident memory per in-flight read over the image's size.
    MemoryPerRead,
}

/// One goal, judged on the median of its ratio across runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Goal {
    /// What the goal says, in words.
    pub goal: String,
    /// The scenario it is about.
    pub scenario: Scenario,
    /// The client count it is about (for the incremental scenario, its blob count).
    pub clients: usize,
    /// What the ratio compares.
    pub measure: Measure,
    /// The ratio measured.
    pub ratio: Option<Spread>,
    /// Which way it must lie.
    pub bound: Bound,
    /// The limit.
    pub limit: f64,
    /// Whether the median lies within the limit (false when nothing was measured).
    pub met: bool,
}

impl Goal {
    fn judge(
        goal: String,
        pair: &PairResult,
        measure: Measure,
        ratio: Option<Spread>,
        bound: Bound,
        limit: f64,
    ) -> Goal {
        Goal::new(goal, pair.scenario, pair.clients, measure, ratio, bound, limit)
    }

    fn new(
        goal: String,
        scenario: Scenario,
        clients: usize,
        measure: Measure,
        ratio: Option<Spread>,
        bound: Bound,
        limit: f64,
    ) -> Goal {
        let met = ratio.is_some_and(|r| match bound {
            Bound::AtMost => r.median <= limit,
            Bound::AtLeast => r.median >= limit,
        });
        Goal { goal, scenario, clients, measure, ratio, bound, limit, met }
    }
}

/// Throughput "does not fall" from one client count to a higher one: a median ratio
/// of at least this, as closer than 5 % is within the noise of a shared machine.
pub const NO_FALL: f64 = 0.95;

/// Every goal the measured pairs allow judging. Goals about client counts that were
/// not measured are left out.
pub fn judge(pairs: &[PairResult]) -> Vec<Goal> {
    let mut goals = Vec::new();
    let find = |s: Scenario, c: usize| pairs.iter().find(|p| p.scenario == s && p.clients == c);
    for pair in pairs {
        let (s, c) = (pair.scenario, pair.clients);
        match (s, c) {
            (Scenario::WriteLibrary, 1) => goals.push(Goal::judge(
                "library write p50 ≤ 1.1× the floor (put + commit) at 1 client".into(),
                pair,
                Measure::P50Ratio,
                pair.latency_ratio,
                Bound::AtMost,
                1.1,
            )),
            (Scenario::WriteHttp, 1) => goals.push(Goal::judge(
                "HTTP write p50 ≤ 1.3× the library write at 1 client".into(),
                pair,
                Measure::P50Ratio,
                pair.latency_ratio,
                Bound::AtMost,
                1.3,
            )),
            (Scenario::ReadHttp, 1) => goals.push(Goal::judge(
                "profile GET p50 ≤ 1.5× the image GET at 1 client".into(),
                pair,
                Measure::P50Ratio,
                pair.latency_ratio,
                Bound::AtMost,
                1.5,
            )),
            _ => {}
        }
        if c > 1 {
            if let Some(one) = find(s, 1) {
                let per_run =
                    pair.runs.product.iter().zip(&one.runs.floor).map(|(p, f)| ratio(p.throughput, f.throughput));
                goals.push(Goal::judge(
                    format!("{s} throughput ≥ 2× the one-client floor ({}) at {c} clients", s.floor_name()),
                    pair,
                    Measure::Scaling,
                    Spread::of(per_run),
                    Bound::AtLeast,
                    2.0,
                ));
            }
            let tail = Spread::of(pair.runs.product.iter().map(|r| ratio(r.p99_us, r.p50_us)));
            goals.push(Goal::judge(
                format!("{s} p99 ≤ 5× p50 at {c} clients"),
                pair,
                Measure::Tail,
                tail,
                Bound::AtMost,
                5.0,
            ));
        }
        if matches!(s, Scenario::ReadLibrary | Scenario::ReadHttp) && c > 1 {
            // The next lower client count above one, if measured: 8 for 64.
            let lower =
                pairs.iter().filter(|p| p.scenario == s && p.clients > 1 && p.clients < c).max_by_key(|p| p.clients);
            if let Some(lower) = lower {
                let per_run =
                    pair.runs.product.iter().zip(&lower.runs.product).map(|(h, l)| ratio(h.throughput, l.throughput));
                goals.push(Goal::judge(
                    format!("{s} throughput does not fall from {} to {c} clients (≥ {NO_FALL}×)", lower.clients),
                    pair,
                    Measure::NoFall,
                    Spread::of(per_run),
                    Bound::AtLeast,
                    NO_FALL,
                ));
            }
        }
    }
    goals
}

/// The incremental scenario's goals at each size measured: an incremental cycle
/// touches at most 2 % of the keys a full sweep touches and takes at most 5 % of its
/// time.
pub fn judge_incremental(results: &[IncrementalResult]) -> Vec<Goal> {
    let mut goals = Vec::new();
    for r in results {
        let n = usize::try_from(r.blobs).unwrap_or(usize::MAX);
        goals.push(Goal::new(
            format!("incremental cycle touches ≤ 2 % of a full sweep's keys at {} blobs, 1 % changed", r.blobs),
            Scenario::Incremental,
            n,
            Measure::TouchedRatio,
            r.touched_ratio,
            Bound::AtMost,
            0.02,
        ));
        goals.push(Goal::new(
            format!("incremental cycle takes ≤ 5 % of a full sweep's time at {} blobs, 1 % changed", r.blobs),
            Scenario::Incremental,
            n,
            Measure::TimeRatio,
            r.time_ratio,
            Bound::AtMost,
            0.05,
        ));
    }
    goals
}

/// The S3 listing's goal at each size measured: at concurrency 8 (or the configured
/// one) it lists at least twice the keys per second of one sequential listing.
pub fn judge_listings(results: &[ListingResult]) -> Vec<Goal> {
    results
        .iter()
        .map(|r| {
            Goal::new(
                format!(
                    "S3 listing of {} keys at concurrency {} ≥ 2× the key rate of one sequential listing",
                    r.keys, r.concurrency
                ),
                Scenario::S3Listing,
                usize::try_from(r.keys).unwrap_or(usize::MAX),
                Measure::ListingRate,
                r.rate_ratio,
                Bound::AtLeast,
                2.0,
            )
        })
        .collect()
}

/// The most a profile GET held open may keep in memory, in image sizes: the image
/// once, plus encoding pieces and buffers well under half of it.
pub const MEMORY_PER_READ_LIMIT: f64 = 1.5;

/// Memory per in-flight read: a profile GET held open keeps at most
/// [`MEMORY_PER_READ_LIMIT`] times its image's size.
pub fn judge_read_memory(result: &ReadMemoryResult) -> Goal {
    Goal::new(
        format!(
            "memory per in-flight profile GET ≤ {MEMORY_PER_READ_LIMIT}× its image's size ({} reads of {} bytes held)",
            result.reads, result.image_bytes
        ),
        Scenario::ReadMemory,
        result.reads,
        Measure::MemoryPerRead,
        result.product_per_image,
        Bound::AtMost,
        MEMORY_PER_READ_LIMIT,
    )
}
