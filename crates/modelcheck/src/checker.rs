//! Breadth-first exhaustive search over the model's states: the public entry points
//! and what they report. The search itself is in `search`; see it for the memory
//! layout (a fingerprint, a parent index and a transition ordinal per seen state;
//! full states only on the frontier) and the parallel levels.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use profilestore_core::machine::CleanerAction;

use crate::codec::EncodeError;
use crate::config::{ConfigError, ModelConfig};
use crate::search::search;
use crate::step::Property;
use crate::trace::Trace;
use crate::world::{ModelWorld, Server};

/// Where the search stands; reported after every level.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Progress {
    /// The BFS depth just finished.
    pub depth: u32,
    /// Distinct states seen so far.
    pub distinct_states: u64,
    /// Transitions generated so far.
    pub transitions: u64,
    /// States waiting on the next level.
    pub frontier: usize,
    /// Time since the search started.
    pub elapsed: Duration,
}

/// What the search found.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// Every reachable state satisfies every checked property.
    Pass,
    /// A property broke; `trace` is a shortest path to the break.
    Violation {
        /// The property broken.
        property: Property,
        /// The steps leading to it.
        trace: Trace,
    },
}

/// The search's numbers and result.
#[derive(Clone, PartialEq, Debug)]
pub struct Report {
    /// Distinct states (up to server and cleaner symmetry).
    pub distinct_states: u64,
    /// Transitions generated, duplicates included.
    pub transitions: u64,
    /// The deepest BFS level reached.
    pub depth: u32,
    /// Wall time of the search.
    pub elapsed: Duration,
    /// Threads the search ran on.
    pub threads: usize,
    /// The process's peak resident memory (`VmHWM`), where the OS reports it.
    pub peak_memory_bytes: Option<u64>,
    /// How often the races the store protocols are about were reached.
    pub coverage: Coverage,
    /// Pass or the violation found.
    pub verdict: Verdict,
}

/// Distinct states, among those expanded, in which a race the store protocols are
/// about was open. A run that reaches one of them zero times proves nothing about it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Coverage {
    /// A commit was pending (staged, invisible) while some cleaner's cycle had a
    /// "which are referenced" query ready: enabled, or held back only by the store's
    /// write lock. The frozen-commit race.
    pub pending_commit_with_query_ready: u64,
    /// A commit was pending at or past its request's deadline: the writer outlived
    /// its request inside the commit.
    pub pending_commit_past_deadline: u64,
    /// A write had put its blob and was due to check its record when its deadline was
    /// reached: the check meets the deadline, and the request is killed instead.
    pub deadline_at_check: u64,
    /// Incremental cleaning: a read in flight had read a record naming an image that
    /// is now in the superseded-image queue. The race the queue's delay is about.
    pub read_holds_superseded: u64,
    /// Incremental cleaning: a blob existed whose id was minted before the stored
    /// listing horizon, so an incremental listing would skip it.
    pub horizon_skips_blob: u64,
}

impl Coverage {
    /// The races open in `world`.
    pub fn of(world: &ModelWorld) -> Coverage {
        let mut c = Coverage::default();
        let now = world.clock;
        for server in &world.servers {
            match server {
                Server::Committing { machine, .. } if now >= machine.deadline() => c.pending_commit_past_deadline = 1,
                Server::Writing { machine, .. }
                    if now >= machine.deadline()
                        && machine.outcome().is_none()
                        && machine.image_id().is_some_and(|id| world.blob(id).is_some()) =>
                {
                    c.deadline_at_check = 1;
                }
                _ => {}
            }
        }
        let query_ready = || {
            world.cleaners.iter().any(|slot| {
                slot.cycle().enabled(now).iter().any(|a| matches!(a, CleanerAction::QueryReferenced { .. }))
            })
        };
        if world.commit_pending() && query_ready() {
            c.pending_commit_with_query_ready = 1;
        }
        let queued = |id| world.superseded.iter().any(|e| e.id == id);
        if world.servers.iter().any(|s| matches!(s, Server::Reading { seen: Some(r), .. } if queued(r.image_id))) {
            c.read_holds_superseded = 1;
        }
        if world.blobs.iter().any(|b| world.minted_at(b.id).is_some_and(|m| m < world.horizon)) {
            c.horizon_skips_blob = 1;
        }
        c
    }

    pub(crate) fn add(&mut self, other: Coverage) {
        self.pending_commit_with_query_ready += other.pending_commit_with_query_ready;
        self.pending_commit_past_deadline += other.pending_commit_past_deadline;
        self.deadline_at_check += other.deadline_at_check;
        self.read_holds_superseded += other.read_holds_superseded;
        self.horizon_skips_blob += other.horizon_skips_blob;
    }
}

impl Report {
    /// Distinct states per second of wall time.
    pub fn states_per_second(&self) -> f64 {
        self.distinct_states as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Report {
    /// Peak resident memory divided by distinct states: an upper bound on what one
    /// state costs, since the peak also holds the program and its fixed tables.
    pub fn bytes_per_state(&self) -> Option<f64> {
        self.peak_memory_bytes.map(|b| b as f64 / self.distinct_states.max(1) as f64)
    }
}

/// How the search runs; not what it explores (that is the [`ModelConfig`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SearchOptions {
    /// Threads expanding each level. The result (states, transitions, verdict and
    /// trace) is the same for every value; only the time changes.
    pub threads: NonZeroUsize,
}

impl Default for SearchOptions {
    /// As many threads as the machine offers this process.
    fn default() -> Self {
        SearchOptions { threads: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN) }
    }
}

/// Why a search could not run or finish.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum CheckError {
    /// The configuration is outside what the checker can encode.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A state did not fit the compact frontier encoding (a checker bug).
    #[error("state encoding: {0}")]
    Encoding(#[from] EncodeError),
    /// More than 2^32 distinct states: state indices are 32 bits.
    #[error("more than 2^32 distinct states; bound the configuration further")]
    TooManyStates,
    /// A state with more than 2^16 successors: transition ordinals are 16 bits.
    #[error("a state has more than 65,536 successors")]
    TooManySuccessors,
    /// Re-running the recorded transitions did not reproduce the violation (a checker
    /// bug: the search and the replay disagree).
    #[error("the counterexample could not be replayed")]
    TraceReplay,
}

/// Explores every state reachable under `config` on as many threads as the machine
/// offers, calling `progress` after each BFS level. Stops at the first violation,
/// whose trace is a shortest one. See [`check_with`].
pub fn check(config: &ModelConfig, progress: impl FnMut(&Progress)) -> Result<Report, CheckError> {
    check_with(config, &SearchOptions::default(), progress)
}

/// Explores every state reachable under `config`, calling `progress` after each BFS
/// level, and stops at the first violation.
///
/// Promises, for any number of threads: the same distinct states and transitions,
/// the same verdict, and on a violation the same trace, a shortest one (breadth
/// first; among shortest, the first in the fixed order of servers, cleaners, clock).
/// A violation is reported with the states counted up to the violating state's
/// successors, as a one-thread search would count them.
pub fn check_with(
    config: &ModelConfig,
    options: &SearchOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<Report, CheckError> {
    config.validate()?;
    // Measures the checker's own run time for the report; model time is `Hour`.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let threads = options.threads.get();
    let outcome = search(config, threads, started, &mut progress)?;
    Ok(Report {
        distinct_states: outcome.distinct_states,
        transitions: outcome.transitions,
        depth: outcome.depth,
        elapsed: started.elapsed(),
        threads,
        peak_memory_bytes: peak_memory_bytes(),
        coverage: outcome.coverage,
        verdict: outcome.verdict,
    })
}

/// The peak resident set size from `/proc/self/status` (`VmHWM`), on Linux.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
