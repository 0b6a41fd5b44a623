//! "Eventually no orphans": from a state, one fair drain schedule must end with every
//! blob referenced.
//!
//! The schedule, with no new client operations: each busy server steps without
//! failures until its request ends (commits, ends, or is killed at its deadline; a
//! pending commit lands, or is refused where the store bounds it by the deadline);
//! time then jumps until every blob is old enough for the cleaner; cleaner 0 abandons
//! whatever cycle it was in (as a failure would) and runs one whole cycle without
//! failures, waiting out its delete delay. Fairness assumed: failures eventually stop,
//! and some cleaner eventually gets to run a whole cycle uninterrupted. Other cleaners
//! simply do not act, which is allowed (they may stall). Time may run past the
//! exploration's hour bound here, as the property requires.
//!
//! Under incremental cleaning the drain runs two incremental cycles (each listing only
//! since the stored horizon, never a full sweep), with `delete_delay` between them so
//! the second claims every entry the first saw: a horizon that skips an orphan leaves
//! it behind for good, and the check fails.

use profilestore_core::machine::{CycleOutcome, CycleStatus};
use profilestore_core::time::Time;

use crate::cleaner::{self, cleaner_op};
use crate::config::ModelConfig;
use crate::step::{Action, Actor, Finished, Step, server_step};
use crate::world::{CleanerSlot, ModelWorld, fresh_cycle};

/// Bound on any one loop of the drain; the machines end far sooner, so hitting it
/// means a machine that never ends, reported as a liveness failure.
const MAX_DRAIN_STEPS: usize = 256;

/// Runs the drain schedule from `world`. `Ok` when it ends with no orphan; otherwise
/// every step taken, with the state after it, for the trace. With no cleaner nothing
/// can reclaim an orphan, so the property is not checked (`Ok`).
pub fn drain(config: &ModelConfig, world: &ModelWorld, record: bool) -> Result<(), Vec<(Step, ModelWorld)>> {
    if world.cleaners.is_empty() {
        return Ok(());
    }
    let mut w = world.clone();
    let mut steps = Vec::new();
    let log = |steps: &mut Vec<(Step, ModelWorld)>, step: Step, w: &ModelWorld| {
        if record {
            steps.push((step, w.clone()));
        }
    };
    // Round by round, so a write waiting for another's write lock goes on once the
    // pending commit holding it has landed.
    for _ in 0..MAX_DRAIN_STEPS {
        let mut stepped = false;
        for i in 0..w.servers.len() {
            if let Some((step, _)) = server_step(config, &mut w, i, false) {
                log(&mut steps, step, &w);
                stepped = true;
            }
        }
        if !stepped {
            break;
        }
    }
    let ripe = w.clock.plus(config.timings.cleaner_min_age());
    if ripe > w.clock {
        w.clock = ripe;
        log(&mut steps, tick(), &w);
    }
    let mut completed = run_cycle(config, &mut w, &mut steps, record);
    if completed && config.cleaning.incremental().is_some() {
        let later = w.clock.plus(config.timings.delete_delay);
        if later > w.clock {
            w.clock = later;
            log(&mut steps, tick(), &w);
        }
        completed = run_cycle(config, &mut w, &mut steps, record);
    }
    if completed && w.orphans().is_empty() { Ok(()) } else { Err(steps) }
}

/// Cleaner 0 abandons its cycle and runs a fresh one to its end without failures,
/// waiting out its delays; whether it completed.
fn run_cycle(config: &ModelConfig, w: &mut ModelWorld, steps: &mut Vec<(Step, ModelWorld)>, record: bool) -> bool {
    w.cleaners[0] = CleanerSlot::new(fresh_cycle(config));
    for _ in 0..MAX_DRAIN_STEPS {
        if let Some(op) = cleaner::enabled(config, w, 0).into_iter().next() {
            let step = cleaner_op(config, w, 0, &op, false);
            if record {
                steps.push((step, w.clone()));
            }
            if let Some(Finished::Cycle(outcome)) = step.finished {
                return outcome == CycleOutcome::Completed;
            }
            continue;
        }
        match w.cleaners[0].cycle().status(w.clock) {
            CycleStatus::WaitUntil(due) => {
                w.clock = due.max(w.clock);
                if record {
                    steps.push((tick(), w.clone()));
                }
            }
            CycleStatus::Finished(_) | CycleStatus::Busy => return false,
        }
    }
    false
}

fn tick() -> Step {
    Step { actor: Actor::Clock, action: Action::Tick, failed: false, finished: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use crate::time::Hour;
    use crate::world::{Blob, Record};

    fn config() -> ModelConfig {
        ModelConfig { cleaners: 1, ..ModelConfig::case_study() }
    }

    #[test]
    fn the_drain_reclaims_an_orphan_and_keeps_referenced_blobs() {
        let config = config();
        let mut w = ModelWorld::initial(&config);
        assert!(w.put_blob(Blob { id: 0, image: 0, created: Hour(0) }));
        assert!(w.put_blob(Blob { id: 1, image: 1, created: Hour(1) }));
        w.records[0] = Some(Record { metadata: 0, image_id: 1 });
        w.clock = Hour(1);
        assert_eq!(w.orphans(), vec![0]);
        assert_eq!(drain(&config, &w, false), Ok(()));
    }

    #[test]
    fn the_drain_reports_an_orphan_it_cannot_reclaim_with_its_steps() {
        // A blob stamped far in the future never looks old enough to the cleaner: the
        // check must fail rather than pass vacuously.
        let config = config();
        let mut w = ModelWorld::initial(&config);
        assert!(w.put_blob(Blob { id: 0, image: 0, created: Hour(250) }));
        let steps = drain(&config, &w, true).err().unwrap_or_default();
        assert!(!steps.is_empty(), "the failing drain shows what it did");
        assert!(steps.last().is_some_and(|(_, after)| after.orphans() == vec![0]));
    }

    #[test]
    fn with_no_cleaner_the_property_is_not_checked() {
        let config = ModelConfig { cleaners: 0, ..config() };
        let mut w = ModelWorld::initial(&config);
        assert!(w.put_blob(Blob { id: 0, image: 0, created: Hour(0) }));
        assert_eq!(drain(&config, &w, false), Ok(()));
    }
}
