//! A cleaner's steps: the production listing cycle ([`CleanerCycle`]) and, under
//! incremental cleaning ([`Cleaning::Incremental`]), the queue phase before it and the
//! listing horizon (docs/incremental-cleaning.md).
//!
//! An incremental cycle is, in order:
//! 1. **claim**, one atomic database transaction: stamp `first_seen = now` on queued
//!    entries that have none, then select those with `first_seen + delete_delay <= now`,
//!    split into the ones no visible record names (due) and the others (named). Under
//!    [`SqliteLockedQuery`](crate::config::StoreProtocol::SqliteLockedQuery) it takes the
//!    write lock, so, like the "which are referenced" query, it waits while a commit is
//!    pending (and can only give up);
//! 2. **delete** the due ids' blobs (skipped when none are due);
//! 3. **forget** the claimed entries, due and named (skipped when none were claimed);
//! 4. the **listing cycle**, unchanged: one page of every blob (a full sweep) or only of
//!    the ids minted at or after the stored horizon (chosen freely at each listing, so
//!    the full sweep "every so often" is every schedule of full and incremental
//!    listings), then the age filter, query, delay and delete of [`CleanerCycle`].
//!
//! A cycle's start is its claim. When a cycle completes, the horizon moves to
//! `max(horizon, start - listing_horizon_lag)`. Any failed step ends the cycle (a failed
//! forget leaves entries whose blobs are gone: the next claim takes them again). The
//! cleaner may stall between any two steps, as every actor may.

use profilestore_core::machine::{CleanerAction, CleanerCycle, CleanerEvent, CycleLimits, CycleOutcome, CycleStatus};
use profilestore_core::time::Time;

use crate::config::{IncrementalDesign, ModelConfig};
use crate::step::{Action, Actor, Finished, Step, index_u8};
use crate::time::{Hour, Hours};
use crate::world::{CleanerSlot, ImageId, ModelWorld, Record, Superseded, fresh_cycle};

/// The incremental part of a cleaner's cycle; at its default under full cleaning.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Sweep {
    /// The hour of the cycle's claim, its start; `None` before it.
    pub started: Option<Hour>,
    /// Where the queue phase stands.
    pub queue: QueuePhase,
}

/// The queue phase of an incremental cycle. Id sets are bit masks (ids below 32).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum QueuePhase {
    /// The claim is next: the cycle has not started.
    #[default]
    Claim,
    /// Claimed: the due ids' blobs are to be deleted, then every claimed entry forgotten.
    Delete {
        /// Entries past their delay that no record names.
        due: u32,
        /// Entries past their delay that a record names: dropped, blob kept.
        named: u32,
    },
    /// The claimed entries are to be forgotten.
    Forget {
        /// The entries.
        ids: u32,
    },
    /// The queue phase is over: the listing cycle runs.
    Listing,
}

/// An operation a cleaner may start.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum CleanerOp {
    /// Claim due entries of the superseded-image queue.
    Claim,
    /// Delete the blobs of claimed entries.
    DeleteQueued {
        /// The ids, as a bit mask.
        ids: u32,
    },
    /// Remove claimed entries from the queue.
    Forget {
        /// The ids, as a bit mask.
        ids: u32,
    },
    /// List the blob store: every blob when `since` is `Hour(0)`, else only the ids
    /// minted at or after `since`.
    List {
        /// The listing's horizon.
        since: Hour,
    },
    /// A query or delete of the listing cycle.
    Cycle(CleanerAction<ImageId>),
}

impl CleanerOp {
    /// The operation that performs the listing cycle's `action` (a listing of every blob
    /// for [`CleanerAction::ListPage`]).
    pub fn of(action: &CleanerAction<ImageId>) -> CleanerOp {
        match action {
            CleanerAction::ListPage => CleanerOp::List { since: Hour(0) },
            other => CleanerOp::Cycle(other.clone()),
        }
    }

    /// Whether the operation asks the database about records, so that SQLite's write
    /// lock holds it back while a commit is pending.
    pub fn reads_records(&self) -> bool {
        matches!(self, CleanerOp::Claim | CleanerOp::Cycle(CleanerAction::QueryReferenced { .. }))
    }
}

/// Whether `slot` holds a cycle that has done nothing yet.
pub fn is_fresh(config: &ModelConfig, slot: &CleanerSlot) -> bool {
    slot.sweep() == Sweep::default() && *slot.cycle() == fresh_cycle(config)
}

/// Every operation cleaner `c` may start now, in a fixed order: an incremental listing
/// comes before the full one, so a drain taking the first lists incrementally.
pub fn enabled(config: &ModelConfig, w: &ModelWorld, c: usize) -> Vec<CleanerOp> {
    let Some(slot) = w.cleaners.get(c) else { return Vec::new() };
    let incremental = config.cleaning.incremental().is_some();
    if incremental {
        match slot.sweep().queue {
            QueuePhase::Claim => return vec![CleanerOp::Claim],
            QueuePhase::Delete { due, .. } => return vec![CleanerOp::DeleteQueued { ids: due }],
            QueuePhase::Forget { ids } => return vec![CleanerOp::Forget { ids }],
            QueuePhase::Listing => {}
        }
    }
    let mut ops = Vec::new();
    for action in slot.cycle().enabled(w.clock) {
        if action == CleanerAction::ListPage && incremental && w.horizon > Hour(0) {
            ops.push(CleanerOp::List { since: w.horizon });
        }
        ops.push(CleanerOp::of(&action));
    }
    ops
}

/// Performs one listing-cycle operation on `w` (failing it when `fail`): a listing is
/// of every blob. See [`cleaner_op`].
pub fn cleaner_step(
    config: &ModelConfig,
    w: &mut ModelWorld,
    c: usize,
    action: &CleanerAction<ImageId>,
    fail: bool,
) -> Step {
    cleaner_op(config, w, c, &CleanerOp::of(action), fail)
}

/// Performs cleaner `c`'s operation `op` on `w` (failing it when `fail`), then tells
/// its cycle; a finished cycle is replaced by a fresh one (the cleaner runs again),
/// after a completed one has moved the listing horizon.
pub fn cleaner_op(config: &ModelConfig, w: &mut ModelWorld, c: usize, op: &CleanerOp, fail: bool) -> Step {
    let actor = Actor::Cleaner(index_u8(c));
    let Some(mut sweep) = w.cleaners.get(c).map(CleanerSlot::sweep) else {
        return Step { actor, action: Action::Tick, failed: fail, finished: None };
    };
    let now = w.clock;
    let (action, phase) = match op {
        CleanerOp::Claim if fail => (Action::Claim { stamped: 0, due: 0, named: 0 }, None),
        CleanerOp::Claim => {
            let (stamped, due, named) = claim(config, w);
            sweep.started = Some(now);
            let next = match (due, named) {
                (0, 0) => QueuePhase::Listing,
                (0, named) => QueuePhase::Forget { ids: named },
                (due, named) => QueuePhase::Delete { due, named },
            };
            let label = Action::Claim { stamped: u64::from(stamped), due: u64::from(due), named: u64::from(named) };
            (label, Some(next))
        }
        CleanerOp::DeleteQueued { ids } => {
            if !fail {
                w.blobs.retain(|b| !has(*ids, b.id));
            }
            let named = match sweep.queue {
                QueuePhase::Delete { named, .. } => named,
                _ => 0,
            };
            (Action::DeleteQueued { ids: u64::from(*ids) }, Some(QueuePhase::Forget { ids: *ids | named }))
        }
        CleanerOp::Forget { ids } => {
            if !fail {
                w.superseded.retain(|e| !has(*ids, e.id));
            }
            (Action::Forget { ids: u64::from(*ids) }, Some(QueuePhase::Listing))
        }
        CleanerOp::List { since } => return cycle_op(config, w, c, CleanerAction::ListPage, *since, sweep, fail),
        CleanerOp::Cycle(action) => return cycle_op(config, w, c, action.clone(), Hour(0), sweep, fail),
    };
    let mut finished = None;
    if let Some(slot) = w.cleaners.get_mut(c) {
        if fail {
            finished = Some(Finished::Cycle(CycleOutcome::Failed));
            *slot = CleanerSlot::new(fresh_cycle(config));
        } else if let Some(queue) = phase {
            slot.set_sweep(Sweep { queue, ..sweep });
        }
    }
    Step { actor, action, failed: fail, finished }
}

/// The claim transaction: stamps unseen entries, then selects the entries past their
/// delay, split by whether a visible record names them. Answers (stamped, due, named).
fn claim(config: &ModelConfig, w: &mut ModelWorld) -> (u32, u32, u32) {
    let now = w.clock;
    let wait = !config.cleaning.has(IncrementalDesign::QueueWithoutDelay);
    let (mut stamped, mut due, mut named) = (0, 0, 0);
    for e in w.superseded.iter_mut().filter(|e| e.first_seen.is_none()) {
        e.first_seen = Some(now);
        stamped |= bit(e.id);
    }
    for e in &w.superseded {
        if wait && e.first_seen.is_none_or(|seen| seen.plus(config.timings.delete_delay) > now) {
            continue;
        }
        if w.records.iter().flatten().any(|r| r.image_id == e.id) {
            named |= bit(e.id);
        } else {
            due |= bit(e.id);
        }
    }
    (stamped, due, named)
}

/// A listing (of the ids minted at or after `since`; every id for `Hour(0)`), query or
/// delete of the listing cycle.
fn cycle_op(
    config: &ModelConfig,
    w: &mut ModelWorld,
    c: usize,
    action: CleanerAction<ImageId>,
    since: Hour,
    sweep: Sweep,
    fail: bool,
) -> Step {
    let now = w.clock;
    let list_label = |listed| match since {
        Hour(0) => Action::ListPage { listed },
        since => Action::ListSince { since, listed },
    };
    let (label, event) = match &action {
        CleanerAction::ListPage if fail => (list_label(0), CleanerEvent::Failed),
        CleanerAction::QueryReferenced { ids, .. } if fail => {
            (Action::QueryReferenced { ids: mask(ids), referenced: 0 }, CleanerEvent::Failed)
        }
        CleanerAction::Delete { ids, .. } if fail => (Action::Delete { ids: mask(ids) }, CleanerEvent::Failed),
        CleanerAction::ListPage => {
            let page = listing(w, since);
            let listed = mask(&page.iter().map(|p| p.0).collect::<Vec<_>>());
            (list_label(listed), CleanerEvent::Listed { page, last: true })
        }
        CleanerAction::QueryReferenced { batch, ids } => {
            let referenced: Vec<ImageId> = ids.iter().copied().filter(|id| w.referenced(*id)).collect();
            let label = Action::QueryReferenced { ids: mask(ids), referenced: mask(&referenced) };
            (label, CleanerEvent::Queried { batch: *batch, referenced })
        }
        CleanerAction::Delete { batch, ids } => {
            w.blobs.retain(|b| !ids.contains(&b.id));
            (Action::Delete { ids: mask(ids) }, CleanerEvent::Deleted { batch: *batch })
        }
    };
    let skip_age_filter = since > Hour(0) && config.cleaning.has(IncrementalDesign::HorizonWithoutAgeFilter);
    let mut finished = None;
    if let Some(slot) = w.cleaners.get_mut(c) {
        slot.update(|cycle| {
            if skip_age_filter {
                // The flaw: the cycle filters this listing by no age at all.
                let timings = profilestore_core::settings::Timings {
                    min_blob_age: Hours(0),
                    clock_skew: Hours(0),
                    ..config.timings
                };
                *cycle = CleanerCycle::new(timings, CycleLimits::default());
            }
            cycle.start(&action);
            cycle.handle(event, now);
            if let CycleStatus::Finished(outcome) = cycle.status(now) {
                finished = Some(outcome);
                *cycle = fresh_cycle(config);
            }
        });
        if finished.is_some() && sweep != Sweep::default() {
            slot.set_sweep(Sweep::default());
        }
    }
    if let (Some(CycleOutcome::Completed), Some(design)) = (finished, config.cleaning.incremental()) {
        let lag = match design {
            IncrementalDesign::HorizonWithoutLag => Hours(0),
            _ => config.timings.listing_horizon_lag(),
        };
        let start = sweep.started.unwrap_or(now);
        w.horizon = w.horizon.max(Hour(start.0.saturating_sub(lag.0)));
    }
    Step { actor: Actor::Cleaner(index_u8(c)), action: label, failed: fail, finished: finished.map(Finished::Cycle) }
}

/// Every blob whose id was minted at or after `since` (every blob for `Hour(0)`, and
/// every blob whose mint hour is not recorded), with its creation hour.
fn listing(w: &ModelWorld, since: Hour) -> Vec<(ImageId, Hour)> {
    w.blobs
        .iter()
        .filter(|b| since == Hour(0) || w.minted_at(b.id).is_none_or(|m| m >= since))
        .map(|b| (b.id, b.created))
        .collect()
}

/// Makes `record` user `user`'s visible record. Under incremental cleaning, a record
/// naming a different image is replaced, and its image queued, in the same step: the
/// entry unseen, or (the flaw [`IncrementalDesign::DelayFromStatement`]) stamped with
/// the hour of the write's statement.
pub(crate) fn make_visible(config: &ModelConfig, w: &mut ModelWorld, user: u8, record: Record, statement: Hour) {
    let Some(slot) = w.records.get_mut(usize::from(user)) else { return };
    let old = slot.replace(record);
    let Some(design) = config.cleaning.incremental() else { return };
    if let Some(old) = old.filter(|old| old.image_id != record.image_id) {
        let first_seen = (design == IncrementalDesign::DelayFromStatement).then_some(statement);
        // Entries are distinct fresh ids, at most `MAX_QUEUE` (the configuration's check).
        let _ = w.enqueue(Superseded { id: old.image_id, first_seen });
    }
}

/// Removes `user`'s record at `now`, queuing the image it named under incremental
/// cleaning (the real store's trigger does it in the deleting statement).
pub(crate) fn make_deleted(config: &ModelConfig, w: &mut ModelWorld, user: u8, now: Hour) {
    let Some(old) = w.records.get_mut(usize::from(user)).and_then(Option::take) else { return };
    let Some(design) = config.cleaning.incremental() else { return };
    let first_seen = (design == IncrementalDesign::DelayFromStatement).then_some(now);
    let _ = w.enqueue(Superseded { id: old.image_id, first_seen });
}

pub(crate) fn mask(ids: &[ImageId]) -> u64 {
    ids.iter().fold(0, |m, id| m | 1u64.checked_shl(u32::from(*id)).unwrap_or(0))
}

fn bit(id: ImageId) -> u32 {
    1u32.checked_shl(u32::from(id)).unwrap_or(0)
}

fn has(ids: u32, id: ImageId) -> bool {
    ids & bit(id) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cleaning;
    use crate::world::Blob;

    fn config() -> ModelConfig {
        ModelConfig {
            cleaners: 1,
            cleaning: Cleaning::Incremental(IncrementalDesign::Working),
            ..ModelConfig::case_study()
        }
    }

    #[test]
    fn a_claim_stamps_first_then_takes_only_entries_a_delay_old_and_named_by_no_record() {
        let config = config();
        let mut w = ModelWorld::initial(&config);
        for id in 0..3 {
            assert!(w.put_blob(Blob { id, image: 0, created: Hour(0) }));
        }
        w.records[0] = Some(Record { metadata: 0, image_id: 2 });
        assert!(w.enqueue(Superseded { id: 0, first_seen: None }));
        assert!(w.enqueue(Superseded { id: 1, first_seen: Some(Hour(0)) }));
        assert!(w.enqueue(Superseded { id: 2, first_seen: Some(Hour(0)) }));
        w.clock = Hour(1);
        assert_eq!(enabled(&config, &w, 0), vec![CleanerOp::Claim]);
        let step = cleaner_op(&config, &mut w, 0, &CleanerOp::Claim, false);
        // #0 seen only now; #1 a delay old and unnamed; #2 a delay old but named.
        assert_eq!(step.action, Action::Claim { stamped: 0b001, due: 0b010, named: 0b100 });
        assert_eq!(w.superseded[0].first_seen, Some(Hour(1)));
        assert_eq!(enabled(&config, &w, 0), vec![CleanerOp::DeleteQueued { ids: 0b010 }]);
        cleaner_op(&config, &mut w, 0, &CleanerOp::DeleteQueued { ids: 0b010 }, false);
        assert_eq!(w.blobs.iter().map(|b| b.id).collect::<Vec<_>>(), vec![0, 2], "the named blob is kept");
        assert_eq!(enabled(&config, &w, 0), vec![CleanerOp::Forget { ids: 0b110 }]);
        cleaner_op(&config, &mut w, 0, &CleanerOp::Forget { ids: 0b110 }, false);
        assert_eq!(w.superseded.iter().map(|e| e.id).collect::<Vec<_>>(), vec![0]);
        assert_eq!(enabled(&config, &w, 0), vec![CleanerOp::List { since: Hour(0) }]);
    }

    #[test]
    fn a_completed_cycle_moves_the_horizon_to_its_start_less_the_lag_and_never_back() {
        let config = config();
        let mut w = ModelWorld::initial(&config);
        w.clock = Hour(5);
        cleaner_op(&config, &mut w, 0, &CleanerOp::Claim, false);
        w.clock = Hour(9);
        let step = cleaner_op(&config, &mut w, 0, &CleanerOp::List { since: Hour(0) }, false);
        assert_eq!(step.finished, Some(Finished::Cycle(CycleOutcome::Completed)));
        // Started at 5 h, lag 1 h + 2 h: every id minted at or before 2 h was listed.
        assert_eq!(w.horizon, Hour(2));
        assert!(is_fresh(&config, &w.cleaners[0]));
        assert_eq!(
            enabled(&config, &w, 0),
            vec![CleanerOp::Claim],
            "a fresh cycle claims first, and lists since 2 h or everything afterwards"
        );
        w.horizon = Hour(7);
        cleaner_op(&config, &mut w, 0, &CleanerOp::Claim, false);
        assert_eq!(
            enabled(&config, &w, 0),
            vec![CleanerOp::List { since: Hour(7) }, CleanerOp::List { since: Hour(0) }]
        );
        cleaner_op(&config, &mut w, 0, &CleanerOp::List { since: Hour(7) }, false);
        assert_eq!(w.horizon, Hour(7), "a later stored horizon stays");
    }
}
