//! Deterministic simulation of the running service: the real `ProfileService`
//! drivers and the real cleaner daemon, many of each, under one root seed.
//!
//! A run is a single-threaded Tokio runtime with paused time, so the runtime jumps to
//! the next timer whenever every task waits and nothing but the seed decides what
//! happens. The seed drives every process's wall clock (each drifts and is stepped,
//! within the configured skew), the image ids, the clients' requests and pauses, and
//! the faults: store errors (before or after the store acted), latency of
//! milliseconds to minutes, stalls of hours, commits frozen for hours between the
//! database's check and their visibility, and crashes of servers (killing their
//! requests) and cleaners (abandoning their cycle), which come back later. Swarm
//! testing draws from each seed which kinds of fault are on ([`FaultMix`]). The
//! database follows one of the stores' commit protocols ([`StoreProtocol`]), and keeps
//! the superseded-image queue and sweep marks the cleaners' incremental mode uses
//! ([`SimConfig::sweep`]).
//!
//! Checked continuously: consistent reads (every answered profile's metadata and
//! image come from one write), no dangling reference (every record names a stored
//! blob, checked after every record commit and blob delete, and on every read), and no
//! vanished blob (a read within its deadline never finds its record's blob missing).
//! After the clients stop, the run calms down (no more faults or crashes), cleaners
//! keep running, and then no image may be left unreferenced.
//!
//! | module | holds |
//! |---|---|
//! | `rng` | [`SimRng`]: one seeded stream per actor |
//! | `faults` | [`FaultRates`], the fault kinds and each seed's swarm mix |
//! | `clock` | [`SimClock`], [`SimIds`]: per-process wall clocks that drift and step, seeded ids |
//! | `stores` | the shared stores, and the per-machine fault-injecting, logging view of the database |
//! | `blobs` | that view of the blob store |
//! | `protocol` | the database's commit protocols: check, then a commit visible later |
//! | `queue` | the database's superseded-image queue and sweep marks |
//! | `replay` | the `simulate` command line that replays a run |
//! | `checks` | the four promises, each checked where it can first break |
//! | `run` | the machines, clients, chaos and drain of one run |
//! | `log` | [`Event`], [`Counts`], [`Violation`] |
//! | `shrink` | fewer operations, then the events that matter |

#![warn(missing_docs)]

mod blobs;
mod checks;
mod clock;
mod faults;
mod log;
mod protocol;
mod queue;
mod replay;
mod rng;
mod run;
mod shrink;
mod stores;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use profilestore_core::settings::Timings;

pub use profilestore_cleaner::SweepMode;

pub use clock::{ClockModel, EPOCH, Rogue, SimClock, SimIds, fmt_elapsed};
pub use faults::{FaultKind, FaultMix, FaultRates, MixCounts};
pub use log::{Actor, Check, Counts, Event, Violation};
pub use protocol::StoreProtocol;
pub use rng::SimRng;
pub use shrink::{shrink, slice};

/// One simulated run's setup.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The root seed everything random derives from.
    pub seed: u64,
    /// Servers running `ProfileService`.
    pub servers: usize,
    /// Cleaners running the `clean --every` daemon.
    pub cleaners: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Users the clients act for.
    pub users: usize,
    /// Client operations in all (45% writes, 45% reads, 10% deletes; with
    /// [`patches`](Self::patches), 35% writes and 10% metadata-only updates).
    pub ops: usize,
    /// The cluster's timings (not validated here; see [`SimConfig::unsafe_timings`]).
    pub timings: Timings,
    /// Faults to inject (the largest rates, when `swarm` is on).
    pub faults: FaultRates,
    /// Swarm testing: each seed draws which kinds of fault are on, and how often.
    pub swarm: bool,
    /// The database's commit protocol.
    pub protocol: StoreProtocol,
    /// Rest between a cleaner's cycles.
    pub cleaner_interval: Duration,
    /// Objects per listing page (small, so cycles take many pages).
    pub page_size: usize,
    /// The longest pause of a client before each request.
    pub think_time: Duration,
    /// How long cleaners run calmly after the clients stop before orphans are
    /// counted; `None` for long enough by the timings (see [`SimConfig::drain`]).
    pub drain: Option<Duration>,
    /// Whether every server and cleaner runs the production clock check (measuring
    /// its offsets to the database's and the blob store's clocks, refusing to write
    /// or clean beyond the bound). With it on, the wandering clocks keep a margin
    /// below the bound for the measurement's error.
    pub clock_check: bool,
    /// Whether the cleaners list the whole blob store every cycle or, incrementally,
    /// only images minted since the stored listing horizon, with a full sweep every
    /// `full_every` (every cycle, in either mode, reclaims the superseded-image queue).
    pub sweep: SweepMode,
    /// The queue flaw: the simulated database starts a superseded image's delete delay
    /// at its write's statement (deadline check) time instead of when a cleaner first
    /// sees the entry. Flawed on purpose: a commit frozen past the delay enters the
    /// queue already due while reads of the record it replaced go on.
    pub queue_delay_from_statement: bool,
    /// Whether clients also send metadata-only updates (`PATCH`): the production
    /// update, which reads the record and commits new metadata beside the image it
    /// read, compare-and-set against that record.
    pub patches: bool,
    /// The patch flaw: the simulated database ignores a commit's precondition, so an
    /// update commits blindly, re-attaching the image it read even after another
    /// write replaced it and a cleaner judged it unreferenced.
    pub ignore_preconditions: bool,
}

/// The full-sweep interval of an incremental run unless one is given: a few simulated
/// hours, so a run has several full sweeps and many incremental cycles between them.
pub const DEFAULT_FULL_EVERY: Duration = Duration::from_secs(3 * 3600);

/// The name of `mode` on the command line: `full` or `incremental`.
pub fn sweep_name(mode: SweepMode) -> &'static str {
    match mode {
        SweepMode::Full => "full",
        SweepMode::Incremental { .. } => "incremental",
    }
}

/// The sweep mode `name` (`full` or `incremental`) names on the command line, with
/// `full_every` for an incremental one ([`DEFAULT_FULL_EVERY`] when not given).
pub fn sweep_mode(name: &str, full_every: Option<Duration>) -> Option<SweepMode> {
    match name {
        "full" => Some(SweepMode::Full),
        "incremental" => Some(SweepMode::Incremental { full_every: full_every.unwrap_or(DEFAULT_FULL_EVERY) }),
        _ => None,
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            servers: 3,
            cleaners: 2,
            clients: 6,
            users: 8,
            ops: 2000,
            timings: Timings::CASE_STUDY,
            faults: FaultRates::default(),
            swarm: true,
            protocol: StoreProtocol::SqliteLocked,
            cleaner_interval: Duration::from_secs(10 * 60),
            page_size: 5,
            think_time: Duration::from_secs(60 * 60),
            drain: None,
            clock_check: false,
            sweep: SweepMode::Full,
            queue_delay_from_statement: false,
            patches: false,
            ignore_preconditions: false,
        }
    }
}

/// A [`SimConfig`] that cannot run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimConfigError {
    /// A count that must be positive is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// The page size is outside what the cleaner accepts.
    #[error("page size {0} is out of range: it must be 1 to 1000")]
    PageSize(usize),
    /// A fault chance is not a probability.
    #[error("fault rate {0} is not a probability from 0 to 1")]
    Rate(f64),
}

impl SimConfig {
    /// `Ok` when the simulation can run this configuration.
    pub fn validate(&self) -> Result<(), SimConfigError> {
        for (name, n) in [
            ("servers", self.servers),
            ("cleaners", self.cleaners),
            ("clients", self.clients),
            ("users", self.users),
            ("ops", self.ops),
        ] {
            if n == 0 {
                return Err(SimConfigError::Zero(name));
            }
        }
        if !(1..=1000).contains(&self.page_size) {
            return Err(SimConfigError::PageSize(self.page_size));
        }
        for p in [self.faults.slow, self.faults.stall, self.faults.error, self.faults.freeze] {
            if !(0.0..=1.0).contains(&p) {
                return Err(SimConfigError::Rate(p));
            }
        }
        Ok(())
    }

    /// How long the calm phase lasts: as configured, or long enough for an image
    /// that was just written to look old enough to a cleaner whose clock lags the blob
    /// store's by the whole skew, then be found by a cycle that starts after that,
    /// waited on and deleted, twice over; plus the longest a commit drawn before the
    /// calm may stay pending (under SQLite's lock, it holds up the cleaners' queries).
    pub fn drain(&self) -> Duration {
        self.drain.unwrap_or_else(|| {
            let t = &self.timings;
            let call_timeout = profilestore_cleaner::CleanerConfig::default().call_timeout;
            let cycle = t.delete_delay + self.cleaner_interval + call_timeout;
            let pending = self.faults.freeze_max.max(self.faults.slow_max);
            t.cleaner_min_age() + t.clock_skew + cycle * 2 + pending + Duration::from_secs(600)
        })
    }

    /// Whether the timings break a safety rule (the caller must have allowed that).
    pub fn unsafe_timings(&self) -> bool {
        self.timings.validate().is_err()
    }
}

/// What one run did and found.
#[derive(Debug, Clone)]
pub struct SimReport {
    /// The run's seed.
    pub seed: u64,
    /// The faults it ran with.
    pub mix: FaultMix,
    /// Operations, faults and checks.
    pub counts: Counts,
    /// Virtual time the run covered.
    pub virtual_time: Duration,
    /// Records in the database at the end.
    pub records_left: usize,
    /// Objects in the blob store at the end.
    pub blobs_left: usize,
    /// Everything that happened, in order.
    pub events: Vec<Event>,
    /// The first broken promise, if any.
    pub violation: Option<Violation>,
}

/// Runs one simulation to its end on a fresh paused single-threaded runtime, with
/// the service's logging silenced (the event log says what happened). Callable from
/// anywhere, inside an async runtime too: the run has a thread of its own.
pub fn run(config: &SimConfig) -> SimReport {
    std::thread::scope(|scope| {
        let run = scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("a current-thread runtime builds");
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
                runtime.block_on(run::simulate(config))
            })
        });
        run.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A failing seed, shrunk and sliced.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The run as first found.
    pub report: SimReport,
    /// The smallest configuration found that still fails the same way.
    pub shrunk: SimConfig,
    /// Its run.
    pub shrunk_report: SimReport,
}

impl Failure {
    /// Shrinks the failing run of `config` (at most `attempts` re-runs).
    pub fn investigate(config: &SimConfig, report: SimReport, attempts: usize) -> Self {
        let (shrunk, shrunk_report) = shrink(config, report.clone(), attempts);
        Failure { report, shrunk, shrunk_report }
    }

    /// The violation of the shrunk run.
    pub fn violation(&self) -> &Violation {
        self.shrunk_report.violation.as_ref().or(self.report.violation.as_ref()).expect("a failure has a violation")
    }

    /// The events of the shrunk run that matter to its violation: those naming its
    /// images, and its users' from a minute before the first of those on.
    pub fn trace(&self) -> Vec<&Event> {
        slice(&self.shrunk_report.events, self.violation(), Duration::from_secs(60))
    }
}

/// Progress and results of many seeds.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Seeds run to their end.
    pub seeds_run: u64,
    /// Totals over those runs.
    pub counts: Counts,
    /// The fault mixes of those runs.
    pub mixes: MixCounts,
    /// Virtual time covered in all.
    pub virtual_time: Duration,
    /// The failing run with the lowest seed, if any.
    pub failure: Option<(SimConfig, SimReport)>,
}

/// Runs seeds `config.seed`, `config.seed + 1`, … on `threads` threads until `seeds`
/// have run, `keep_going` says stop (the first seed runs regardless), or a seed fails
/// (seeds already running finish, and the lowest failing seed is kept). `progress`
/// sees the summary after each seed.
pub fn run_seeds(
    config: &SimConfig,
    seeds: u64,
    threads: usize,
    keep_going: &(dyn Fn() -> bool + Sync),
    progress: &(dyn Fn(&Summary) + Sync),
) -> Summary {
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let summary = Mutex::new(Summary::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    // The first seed always runs, so every call checks something.
                    if n >= seeds || n > 0 && !keep_going() {
                        return;
                    }
                    let seed_config = SimConfig { seed: config.seed.wrapping_add(n), ..config.clone() };
                    let mut report = run(&seed_config);
                    report.events.shrink_to(0);
                    let mut s = summary.lock().unwrap_or_else(|p| p.into_inner());
                    s.seeds_run += 1;
                    s.counts.add(&report.counts);
                    s.mixes.add(&report.mix);
                    s.virtual_time += report.virtual_time;
                    if report.violation.is_some() {
                        stop.store(true, Ordering::Relaxed);
                        let lower = s.failure.as_ref().is_none_or(|(c, _)| seed_config.seed < c.seed);
                        if lower {
                            // The log was dropped to save memory; the caller re-runs the
                            // seed (same seed, same run) to investigate it.
                            s.failure = Some((seed_config, report));
                        }
                    }
                    progress(&s);
                }
            });
        }
    });
    summary.into_inner().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configurations_are_named() {
        assert_eq!(SimConfig { servers: 0, ..SimConfig::default() }.validate(), Err(SimConfigError::Zero("servers")));
        assert_eq!(SimConfig { page_size: 0, ..SimConfig::default() }.validate(), Err(SimConfigError::PageSize(0)));
        let faults = FaultRates { error: 2.0, ..FaultRates::default() };
        assert_eq!(SimConfig { faults, ..SimConfig::default() }.validate(), Err(SimConfigError::Rate(2.0)));
        assert_eq!(SimConfig::default().validate(), Ok(()));
    }

    #[test]
    fn swarm_mixes_vary_by_seed_and_stay_within_the_configured_rates() {
        let base = FaultRates::default();
        let mixes: Vec<FaultMix> = (0..200).map(|seed| FaultMix::draw(&base, seed, true)).collect();
        let mut counts = MixCounts::default();
        for mix in &mixes {
            counts.add(mix);
            let r = mix.rates;
            assert!(r.slow <= base.slow * 2.0 && r.stall <= base.stall * 2.0 && r.freeze <= base.freeze * 2.0);
            assert!(r.clock_drift_ppm <= base.clock_drift_ppm, "drift beyond the model: {}", r.clock_drift_ppm);
        }
        assert!(counts.with.iter().all(|&n| (60..=140).contains(&n)), "{counts}");
        assert!(
            counts.by_kinds[..=2].iter().sum::<u64>() > 10 && counts.by_kinds[6..].iter().sum::<u64>() > 5,
            "{counts}"
        );
        assert_eq!(FaultMix::draw(&base, 7, false).rates, base, "without swarm every kind is on as configured");
        assert!(FaultMix::draw(&FaultRates::none(), 7, true).kinds().is_empty());
    }
}
