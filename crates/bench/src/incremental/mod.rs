//! Incremental cleaning against the full sweep (docs/incremental-cleaning.md): at N
//! blobs with 1 % of them changed since the last cycle, the keys a cycle touches and
//! its time, an incremental cycle's over a full sweep's.
//!
//! Both sides are real cleaner cycles (not dry runs) on the same stores, alternating.
//! Before each, [`Fixture::plant`] makes the changes since the last cycle: replaced
//! and deleted profiles (their old images queued by the stores' own statements), new
//! profiles, and failed writes (orphans), every new image minted at the horizon the
//! previous cycle stored. The cycle deletes the queued images and the orphans, so
//! every run starts from the same counts: N blobs, 1 % of them changed.
//!
//! The delete delay is left out of both: the stores are paired with
//! [`SWEEP_TIMINGS`](crate::sweep::SWEEP_TIMINGS) (no age filter, no delete delay, a
//! 60 s request timeout), and the cycles run with `allow_unsafe_timing`.

mod fixture;
mod writes;

use std::time::Duration;

use profilestore_cleaner::{Cleaner, CleanerConfig, CycleReport, SweepKind, SweepMode};

pub use fixture::Changes;
use fixture::Fixture;
pub use writes::WriteCost;

use crate::config::BenchConfig;
use crate::error::BenchError;
use crate::load::{Interleaved, interleave};
use crate::stats::{Spread, ratio};

/// What one cleaner cycle did and how long it took.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CycleMeasure {
    /// Wall time of the cycle (`run_cycle`), seconds.
    pub seconds: f64,
    /// Objects the listing returned.
    pub listed: u64,
    /// Image ids asked "is it referenced?": the old-enough listed images.
    pub queried: u64,
    /// Superseded-queue entries claimed (due or named again).
    pub claimed: u64,
    /// Images deleted (listed orphans and superseded images).
    pub deleted: u64,
    /// Keys touched: listed + queried + claimed + deleted.
    pub touched: u64,
}

impl CycleMeasure {
    fn of(report: &CycleReport, seconds: f64) -> CycleMeasure {
        let claimed = report.superseded_deleted + report.superseded_named;
        let (listed, queried, deleted) = (report.listed_objects, report.old_enough, report.deleted);
        CycleMeasure { seconds, listed, queried, claimed, deleted, touched: listed + queried + claimed + deleted }
    }
}

/// The scenario at one size.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IncrementalResult {
    /// Blobs in the store when each cycle starts.
    pub blobs: u64,
    /// The changes made before each cycle.
    pub changes: Changes,
    /// Full sweeps (`floor`) and incremental cycles (`product`), in the order they ran.
    pub runs: Interleaved<CycleMeasure>,
    /// Keys an incremental cycle touched over those the full sweep before it touched.
    pub touched_ratio: Option<Spread>,
    /// An incremental cycle's time over the full sweep's before it.
    pub time_ratio: Option<Spread>,
    /// One staging-file sweep of the blob store, alone, seconds: every non-dry cycle
    /// of either kind starts with one.
    pub staging_sweep_seconds: f64,
    /// A record write that replaces (the queue's statement fires) against a first
    /// write (it does not).
    pub writes: Option<WriteCost>,
    /// On the local directory, a blob put with the listing journal against one
    /// without.
    #[serde(default)]
    pub journal: Option<WriteCost>,
}

/// How often the incremental side would run a full sweep: never, while measured.
const FULL_EVERY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Runs the scenario at every configured blob count.
pub(crate) async fn run(config: &BenchConfig) -> Result<Vec<IncrementalResult>, BenchError> {
    let mut out = Vec::new();
    for &blobs in &config.sweep_sizes {
        eprintln!("bench: incremental at {blobs} blobs: building the fixture");
        let fixture = Fixture::build(blobs, config.runs).await?;
        let changes = fixture.changes;
        eprintln!(
            "bench: incremental at {blobs} blobs, {} changed per cycle: full sweep vs incremental",
            changes.total()
        );
        let fixture = std::sync::Arc::new(tokio::sync::Mutex::new(fixture));
        let (full, incremental) = (fixture.clone(), fixture.clone());
        let runs = interleave(
            config.runs,
            move |_| {
                let fixture = full.clone();
                Box::pin(async move { measured_cycle(&mut *fixture.lock().await, SweepMode::Full).await })
            },
            move |_| {
                let fixture = incremental.clone();
                let mode = SweepMode::Incremental { full_every: FULL_EVERY };
                Box::pin(async move { measured_cycle(&mut *fixture.lock().await, mode).await })
            },
        )
        .await?;
        let fixture = fixture.lock().await;
        let staging_sweep_seconds = staging_sweep(&fixture).await?;
        let writes = writes::measure(&fixture, config).await?;
        let journal = writes::measure_journal(&fixture, config).await?;
        let pairs = || runs.floor.iter().zip(&runs.product);
        let touched_ratio = Spread::of(pairs().map(|(f, p)| ratio(p.touched as f64, f.touched as f64)));
        let time_ratio = Spread::of(pairs().map(|(f, p)| ratio(p.seconds, f.seconds)));
        // Said before the fixture goes: removing a million files takes minutes.
        if let (Some(touched), Some(time)) = (&touched_ratio, &time_ratio) {
            eprintln!(
                "bench: incremental at {blobs} blobs: keys touched {:.2} %, time {:.2} % ({:.2}-{:.2} %) of a full sweep",
                touched.median * 100.0,
                time.median * 100.0,
                time.min * 100.0,
                time.max * 100.0
            );
        }
        out.push(IncrementalResult {
            blobs,
            changes,
            touched_ratio,
            time_ratio,
            runs,
            staging_sweep_seconds,
            writes: Some(writes),
            journal,
        });
    }
    Ok(out)
}

/// Plants the changes since the last cycle, then runs and times one cycle in `mode`,
/// which must complete, make the listing `mode` asks for, and delete exactly the
/// planted garbage.
async fn measured_cycle(fixture: &mut Fixture, mode: SweepMode) -> Result<CycleMeasure, BenchError> {
    fixture.plant().await?;
    let stores = &fixture.stores;
    let config =
        CleanerConfig { timings: stores.timings, allow_unsafe_timing: true, sweep: mode, ..CleanerConfig::default() };
    let cleaner = Cleaner::new(stores.metadata.clone(), stores.blobs.clone(), stores.clock.clone(), config)?;
    let started = stores.clock.ticks();
    let report = cleaner.run_cycle().await;
    let seconds = stores.clock.ticks().saturating_sub(started).as_secs_f64();
    let expected = match mode {
        SweepMode::Full => SweepKind::Full,
        SweepMode::Incremental { .. } => SweepKind::Incremental,
    };
    let garbage = fixture.changes.garbage();
    if !report.completed() || report.sweep != expected || report.deleted != garbage {
        return Err(BenchError::Config(format!(
            "a {expected:?} cycle was to delete the {garbage} planted garbage images: {report}"
        )));
    }
    Ok(CycleMeasure::of(&report, seconds))
}

/// Times one staging-file sweep over the whole blob store, as a cycle starts with.
async fn staging_sweep(fixture: &Fixture) -> Result<f64, BenchError> {
    let stores = &fixture.stores;
    let started = stores.clock.ticks();
    stores.blobs.sweep_staging(stores.clock.now()).await?;
    Ok(stores.clock.ticks().saturating_sub(started).as_secs_f64())
}
