//! Breadth-first exhaustive search over the model's states.
//!
//! Seen states are kept only as 64-bit fingerprints with their parent's fingerprint;
//! full states live only on the frontier. Each level is expanded in parallel blocks
//! (successor generation, fingerprinting and the liveness drain are the cost), then
//! merged into the seen map on one thread.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use profilestore_core::machine::CleanerAction;
use rayon::prelude::*;

use crate::config::{ConfigError, ModelConfig};
use crate::liveness::drain;
use crate::step::{Property, Step, successors};
use crate::trace::{Trace, push_violation, rebuild};
use crate::world::{ModelWorld, Server};

/// States expanded between two merges: bounds the successors held at once.
const BLOCK: usize = 1 << 16;
/// States one parallel task expands.
const CHUNK: usize = 512;

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
        c
    }

    fn add(&mut self, other: Coverage) {
        self.pending_commit_with_query_ready += other.pending_commit_with_query_ready;
        self.pending_commit_past_deadline += other.pending_commit_past_deadline;
        self.deadline_at_check += other.deadline_at_check;
    }
}

impl Report {
    /// Distinct states per second of wall time.
    pub fn states_per_second(&self) -> f64 {
        self.distinct_states as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The fingerprints are already uniformly mixed: hashing them again is wasted work.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Parents = HashMap<u64, u64, BuildHasherDefault<PassThrough>>;

enum Found {
    Safety { parent: u64, child: u64, property: Property },
    Liveness { state: u64, world: Box<ModelWorld> },
}

/// A state on the frontier: its fingerprint, its parent's, and the state itself.
type Node = (u64, u64, ModelWorld);

struct Expansion {
    children: Vec<Node>,
    transitions: u64,
    coverage: Coverage,
    found: Option<Found>,
}

fn expand(config: &ModelConfig, chunk: &[Node], seen: &Parents) -> Expansion {
    // Most states have a handful of successors; reserving avoids regrowing a vector
    // of large values.
    let mut out = Expansion {
        children: Vec::with_capacity(chunk.len() * 4),
        transitions: 0,
        coverage: Coverage::default(),
        found: None,
    };
    for (fp, _, world) in chunk {
        out.coverage.add(Coverage::of(world));
        if config.properties.eventually_no_orphans && drain(config, world, false).is_err() {
            out.found = Some(Found::Liveness { state: *fp, world: Box::new(world.clone()) });
            return out;
        }
        let mut violation = None;
        successors(config, world, &mut |_step: Step, child: ModelWorld, broke: Option<Property>| {
            out.transitions += 1;
            let child_fp = child.fingerprint();
            if let (Some(property), None) = (broke, &violation) {
                violation = Some(Found::Safety { parent: *fp, child: child_fp, property });
            }
            if !seen.contains_key(&child_fp) {
                out.children.push((child_fp, *fp, child));
            }
        });
        if violation.is_some() {
            out.found = violation;
            return out;
        }
    }
    out
}

/// Explores every state reachable under `config`, calling `progress` after each BFS
/// level. Stops at the first violation, whose trace is a shortest one.
pub fn check(config: &ModelConfig, mut progress: impl FnMut(&Progress)) -> Result<Report, ConfigError> {
    config.validate()?;
    // Measures the checker's own run time for the report; model time is `Hour`.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let initial = ModelWorld::initial(config);
    let initial_fp = initial.fingerprint();
    let mut seen = Parents::default();
    seen.insert(initial_fp, initial_fp);
    // The frontier is kept as the filtered successor vectors themselves: new states
    // are never moved again after generation.
    let mut frontier: Vec<Vec<Node>> = vec![vec![(initial_fp, initial_fp, initial)]];
    let mut transitions = 0u64;
    let mut coverage = Coverage::default();
    let mut depth = 0u32;
    let report = |seen: &Parents, transitions, coverage, depth, verdict| Report {
        distinct_states: seen.len() as u64,
        transitions,
        depth,
        elapsed: started.elapsed(),
        peak_memory_bytes: peak_memory_bytes(),
        coverage,
        verdict,
    };
    while !frontier.is_empty() {
        let mut next: Vec<Vec<Node>> = Vec::new();
        let mut level = frontier.into_iter().peekable();
        while level.peek().is_some() {
            // Expand about BLOCK states, then merge, to bound the successors held.
            let mut block = Vec::new();
            let mut size = 0;
            while let Some(part) = level.next_if(|_| size < BLOCK) {
                size += part.len();
                block.push(part);
            }
            let expansions: Vec<Expansion> =
                block.par_iter().flat_map_iter(|part| part.chunks(CHUNK)).map(|c| expand(config, c, &seen)).collect();
            drop(block);
            for mut e in expansions {
                transitions += e.transitions;
                coverage.add(e.coverage);
                e.children.retain(|(fp, parent, _)| match seen.entry(*fp) {
                    Entry::Vacant(slot) => {
                        slot.insert(*parent);
                        true
                    }
                    Entry::Occupied(_) => false,
                });
                if let Some(found) = e.found {
                    let verdict = violation_verdict(config, &seen, found);
                    return Ok(report(&seen, transitions, coverage, depth + 1, verdict));
                }
                if !e.children.is_empty() {
                    // The reserve was a guess; the frontier should not carry its slack.
                    e.children.shrink_to_fit();
                    next.push(e.children);
                }
            }
        }
        frontier = next;
        progress(&Progress {
            depth,
            distinct_states: seen.len() as u64,
            transitions,
            frontier: frontier.iter().map(Vec::len).sum(),
            elapsed: started.elapsed(),
        });
        if !frontier.is_empty() {
            depth += 1;
        }
    }
    Ok(report(&seen, transitions, coverage, depth, Verdict::Pass))
}

fn violation_verdict(config: &ModelConfig, seen: &Parents, found: Found) -> Verdict {
    match found {
        Found::Safety { parent, child, property } => {
            let trace = rebuild(config, seen, parent).map(|(mut trace, world)| {
                push_violation(config, &mut trace, &world, child, property);
                trace
            });
            Verdict::Violation { property, trace: trace.unwrap_or(Trace { rows: Vec::new() }) }
        }
        Found::Liveness { state, world } => {
            let mut trace = rebuild(config, seen, state).map(|(t, _)| t).unwrap_or(Trace { rows: Vec::new() });
            if let Err(steps) = drain(config, &world, true) {
                for (step, after) in &steps {
                    trace.push(step, after);
                }
            }
            Verdict::Violation { property: Property::EventuallyNoOrphans, trace }
        }
    }
}

/// The peak resident set size from `/proc/self/status` (`VmHWM`), on Linux.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
