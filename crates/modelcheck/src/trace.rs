//! Counterexample traces: the shortest path to a violation, replayed and rendered.

use std::fmt;

use profilestore_core::machine::{ReadOutcome, WriteOutcome};

use crate::checker::CheckError;
use crate::config::ModelConfig;
use crate::liveness::drain;
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
                    WriteOutcome::PreconditionFailed => " → write precondition failed",
                    WriteOutcome::Failed => " → write failed",
                });
                None
            }
            Some(Finished::Delete(deleted)) => {
                action.push_str(if deleted { " → delete done" } else { " → delete found nothing" });
                None
            }
            Some(Finished::Patch(outcome)) => {
                action.push_str(&format!(" → update {outcome:?}"));
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
        Action::StartDelete { user } => format!("start delete u{user}"),
        Action::StartPatch { user, metadata } => format!("start metadata update u{user} (m{metadata})"),
        Action::DeleteRecord { found } => format!("delete record{}", if found { "" } else { ": none" }),
        Action::PatchRecord { image_id, refused } => {
            format!("commit update →#{image_id}{}", if refused { " refused" } else { "" })
        }
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
        Action::ListSince { since, listed } => format!("list blobs minted since {since}: {}", ids(listed)),
        Action::Claim { stamped, due, named } => {
            let mut out = format!("claim queue: first seen {}, due {}", ids(stamped), ids(due));
            if named != 0 {
                out.push_str(&format!(", named {}", ids(named)));
            }
            out
        }
        Action::DeleteQueued { ids: deleted } => format!("delete queued {}", ids(deleted)),
        Action::Forget { ids: forgotten } => format!("forget queued {}", ids(forgotten)),
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

/// How each state was first reached: its parent's index and the ordinal of the
/// transition (in [`successors`]' fixed order) from the parent. State 0 is the initial
/// state, its own parent. Six bytes a state; no fingerprint is needed, since a trace
/// is rebuilt by re-running the transitions from the initial state.
#[derive(Default, Debug)]
pub(crate) struct Tree {
    parents: Vec<u32>,
    ordinals: Vec<u16>,
}

impl Tree {
    /// Records the next state: reached from `parent` by transition `ordinal`.
    pub(crate) fn push(&mut self, parent: u32, ordinal: u16) -> Result<(), CheckError> {
        self.len_u32()?;
        self.parents.push(parent);
        self.ordinals.push(ordinal);
        Ok(())
    }

    /// States recorded.
    pub(crate) fn len(&self) -> u64 {
        self.parents.len() as u64
    }

    /// States recorded, which is also the next state's index: refused once indices
    /// no longer fit 32 bits.
    pub(crate) fn len_u32(&self) -> Result<u32, CheckError> {
        u32::try_from(self.parents.len()).map_err(|_| CheckError::TooManyStates)
    }

    /// The transition ordinals from the initial state to `state`; `None` if the
    /// parents do not lead back to state 0.
    fn path(&self, state: u32) -> Option<Vec<u16>> {
        let mut path = Vec::new();
        let mut at = state;
        while at != 0 {
            let i = usize::try_from(at).ok()?;
            path.push(*self.ordinals.get(i)?);
            at = *self.parents.get(i)?;
            if path.len() > self.parents.len() {
                return None;
            }
        }
        path.reverse();
        Some(path)
    }
}

/// Performs transition `ordinal` out of `world`: its label, the state after it and
/// the property it broke, if any.
fn nth_successor(
    config: &ModelConfig,
    world: &ModelWorld,
    ordinal: u16,
) -> Option<(Step, ModelWorld, Option<Property>)> {
    let mut found = None;
    let mut k = 0u16;
    successors(config, world, &mut |step, w, broke| {
        if k == ordinal {
            found = Some((step, w, broke));
        }
        k = k.saturating_add(1);
    });
    found
}

/// The trace to a violation: the shortest path to `state`, replayed from the initial
/// state; then, for a safety violation, the transition `step` out of it (which must
/// break a property), or for a liveness violation the drain schedule that fails from
/// it. `None` if the replay does not reproduce the violation (a checker bug).
pub(crate) fn violation_trace(config: &ModelConfig, tree: &Tree, state: u32, step: Option<u16>) -> Option<Trace> {
    let mut world = ModelWorld::initial(config);
    let mut trace = Trace::start(&world);
    for ordinal in tree.path(state)? {
        let (step, next, _) = nth_successor(config, &world, ordinal)?;
        trace.push(&step, &next);
        world = next;
    }
    match step {
        Some(ordinal) => {
            let (step, next, broke) = nth_successor(config, &world, ordinal)?;
            broke?;
            trace.push(&step, &next);
        }
        None => {
            let steps = drain(config, &world, true).err()?;
            for (step, after) in &steps {
                trace.push(step, after);
            }
        }
    }
    Some(trace)
}
