//! Counterexample traces: the shortest path to a violation, replayed and rendered.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;

use profilestore_core::machine::{ReadOutcome, WriteOutcome};

use crate::config::ModelConfig;
use crate::step::{Action, Actor, Finished, Property, Step, successors};
use crate::time::Hour;
use crate::world::ModelWorld;

/// One row of a trace: the step and the state after it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TraceRow {
    /// 0 for the initial state, then 1, 2, …
    pub step: usize,
    /// Who acted (`server 0`, `cleaner 1`, `clock`, `-` for the initial state).
    pub actor: String,
    /// What it did, and whether it failed.
    pub action: String,
    /// The clock after the step.
    pub clock: Hour,
    /// The database after the step.
    pub database: String,
    /// The blob store after the step.
    pub blobs: String,
    /// What a read answered, when one ended at this step.
    pub read_returned: Option<String>,
}

/// A counterexample: rows from the initial state to the violating step.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Trace {
    /// The rows, initial state first.
    pub rows: Vec<TraceRow>,
}

impl Trace {
    /// Number of steps (the initial state not counted).
    pub fn steps(&self) -> usize {
        self.rows.len().saturating_sub(1)
    }

    pub(crate) fn start(world: &ModelWorld) -> Trace {
        Trace {
            rows: vec![TraceRow {
                step: 0,
                actor: "-".into(),
                action: "initial state".into(),
                clock: world.clock,
                database: world.render_records(),
                blobs: world.render_blobs(),
                read_returned: None,
            }],
        }
    }

    pub(crate) fn push(&mut self, step: &Step, after: &ModelWorld) {
        let actor = match step.actor {
            Actor::Server(i) => format!("server {i}"),
            Actor::Cleaner(i) => format!("cleaner {i}"),
            Actor::Clock => "clock".into(),
        };
        let mut action = match (step.failed, step.action) {
            (true, Action::CheckRecord { image_id, .. }) => format!("check record →#{image_id} FAILED"),
            (true, Action::CommitVisible { image_id, .. }) => format!("commit →#{image_id} FAILED, rolled back"),
            (true, other) => describe(&other) + " FAILED",
            (false, other) => describe(&other),
        };
        let read_returned = match step.finished {
            Some(Finished::Read(outcome, answer)) => Some(match (outcome, answer) {
                (ReadOutcome::Found(id), Some((m, i))) => format!("profile (m{m}, i{i}) via #{id}"),
                (other, _) => format!("{other:?}"),
            }),
            Some(Finished::Write(outcome)) => {
                action.push_str(match outcome {
                    WriteOutcome::Committed(_) => " → write committed",
                    WriteOutcome::DeadlineExceeded => " → write deadline exceeded",
                    WriteOutcome::Failed => " → write failed",
                });
                None
            }
            Some(Finished::Cycle(outcome)) => {
                action.push_str(&format!(" → cycle {outcome:?}"));
                None
            }
            None => None,
        };
        self.rows.push(TraceRow {
            step: self.rows.len(),
            actor,
            action,
            clock: after.clock,
            database: after.render_records(),
            blobs: after.render_blobs(),
            read_returned,
        });
    }
}

fn ids(mask: u64) -> String {
    let ids: Vec<String> = (0..64).filter(|i| mask & (1u64 << i) != 0).map(|i| format!("#{i}")).collect();
    format!("{{{}}}", ids.join(","))
}

fn describe(action: &Action) -> String {
    match *action {
        Action::StartWrite { user, metadata, image, image_id } => match image_id {
            Some(id) => format!("start write u{user} (m{metadata}, i{image}), id #{id}"),
            None => format!("start write u{user} (m{metadata}, i{image})"),
        },
        Action::StartRead { user } => format!("start read u{user}"),
        Action::PutBlob { image_id, overwrite } => {
            format!("put blob #{image_id}{}", if overwrite { " (overwrite)" } else { "" })
        }
        Action::CommitRecord { image_id, refused } => {
            format!("commit record →#{image_id}{}", if refused { " refused: late" } else { "" })
        }
        Action::CheckRecord { image_id, refused } => {
            format!("check record →#{image_id}{}", if refused { " refused: late" } else { ": staged" })
        }
        Action::CommitVisible { image_id, refused } => {
            format!("commit →#{image_id}{}", if refused { " refused: late, rolled back" } else { " visible" })
        }
        Action::GetRecord { found: Some(r) } => format!("get record: (m{}, #{})", r.metadata, r.image_id),
        Action::GetRecord { found: None } => "get record: none".into(),
        Action::GetBlob { image_id, found } => {
            format!("get blob #{image_id}: {}", if found { "found" } else { "MISSING" })
        }
        Action::Killed => "killed at deadline".into(),
        Action::ListPage { listed } => format!("list blobs: {}", ids(listed)),
        Action::QueryReferenced { ids: asked, referenced } => {
            format!("query referenced {}: {}", ids(asked), ids(referenced))
        }
        Action::Delete { ids: deleted } => format!("delete {}", ids(deleted)),
        Action::Tick => "time passes".into(),
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>4}  {:<10} {:<48} {:>4}  {:<20} {:<32} read returned",
            "step", "actor", "action", "time", "database", "blobs"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:>4}  {:<10} {:<48} {:>4}  {:<20} {:<32} {}",
                r.step,
                r.actor,
                r.action,
                r.clock.to_string(),
                r.database,
                r.blobs,
                r.read_returned.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }
}

/// Rebuilds the shortest path to the state `target` by walking parent fingerprints,
/// then replays it from the initial state, re-deriving each step's label by finding
/// the successor whose fingerprint is the child's. Returns the trace and the last world.
pub(crate) fn rebuild<S: BuildHasher>(
    config: &ModelConfig,
    parents: &HashMap<u64, u64, S>,
    target: u64,
) -> Option<(Trace, ModelWorld)> {
    let mut path = vec![target];
    let mut at = target;
    while let Some(&parent) = parents.get(&at) {
        if parent == at {
            break;
        }
        path.push(parent);
        at = parent;
        if path.len() > parents.len() {
            return None;
        }
    }
    path.reverse();
    let mut world = ModelWorld::initial(config);
    if path.first() != Some(&world.fingerprint()) {
        return None;
    }
    let mut trace = Trace::start(&world);
    for &child in &path[1..] {
        let mut found = None;
        successors(config, &world, &mut |step, w, _| {
            if found.is_none() && w.fingerprint() == child {
                found = Some((step, w));
            }
        });
        let (step, next) = found?;
        trace.push(&step, &next);
        world = next;
    }
    Some((trace, world))
}

/// Appends the violating step out of `world`: the first successor with fingerprint
/// `child` that breaks `property`.
pub(crate) fn push_violation(
    config: &ModelConfig,
    trace: &mut Trace,
    world: &ModelWorld,
    child: u64,
    property: Property,
) -> bool {
    let mut found = None;
    successors(config, world, &mut |step, w, violation| {
        if found.is_none() && violation == Some(property) && w.fingerprint() == child {
            found = Some((step, w));
        }
    });
    match found {
        Some((step, w)) => {
            trace.push(&step, &w);
            true
        }
        None => false,
    }
}
