//! Client requests in the model: starting them (writes, reads, deletes and
//! metadata-only updates), and the steps of deletes and updates, each store operation
//! one atomic step on the world, the update driven by the production [`PatchMachine`].
//!
//! Both change a record in one statement (modelled as one step, like a write under
//! the atomic-commit protocol); where one write at a time holds the database's lock
//! (SQLite), they wait while another write's commit is pending, as writes do.

use profilestore_core::machine::{
    MAX_PATCH_ATTEMPTS, PatchAction, PatchEvent, PatchMachine, ReadMachine, WriteAction, WriteDesign, WriteEvent,
    WriteMachine,
};
use profilestore_core::time::Time as _;

use crate::cleaner::{make_deleted, make_visible};
use crate::config::{Cleaning, Design, ModelConfig};
use crate::step::{Action, Actor, Finished, Property, Step, index_u8};
use crate::time::Hour;
use crate::world::{ImageId, ModelWorld, Record, Server, triple_bit};

/// Whether a record change must wait for the database's single write lock.
fn waits_for_lock(config: &ModelConfig, w: &ModelWorld) -> bool {
    config.store.one_writer_at_a_time() && w.commit_pending()
}

/// The delete's one step: past its deadline it is killed; else its guarded statement
/// removes the record (queuing its image under incremental cleaning) or fails.
pub(crate) fn delete_step(
    config: &ModelConfig,
    w: &mut ModelWorld,
    user: u8,
    deadline: Hour,
    fail: bool,
) -> Option<(Action, bool, Finished)> {
    let now = w.clock;
    if now >= deadline {
        return (!fail).then_some((Action::Killed, false, Finished::Delete(false)));
    }
    if !fail && waits_for_lock(config, w) {
        return None;
    }
    let found = w.records.get(usize::from(user)).copied().flatten().is_some();
    if fail {
        return Some((Action::DeleteRecord { found }, true, Finished::Delete(false)));
    }
    make_deleted(config, w, user, now);
    Some((Action::DeleteRecord { found }, false, Finished::Delete(found)))
}

/// The update's next step: read the record, or commit the new metadata beside the
/// image read (compare-and-set against the record read, unless the design is blind).
pub(crate) fn patch_step(
    config: &ModelConfig,
    w: &mut ModelWorld,
    (user, metadata): (u8, u8),
    machine: &mut PatchMachine<Hour, ImageId>,
    read: &mut Option<Record>,
    fail: bool,
) -> Option<(Action, bool)> {
    let now = w.clock;
    let current = w.records.get(usize::from(user)).copied().flatten();
    match machine.next(now) {
        PatchAction::Done(_) => (!fail).then_some((Action::Killed, false)),
        PatchAction::GetRecord if fail => {
            machine.handle(PatchEvent::Failed);
            Some((Action::GetRecord { found: None }, true))
        }
        PatchAction::GetRecord => {
            *read = current;
            machine.handle(PatchEvent::Record(current.map(|r| r.image_id)));
            Some((Action::GetRecord { found: current }, false))
        }
        PatchAction::CommitRecord { image_id, compare_and_set, deadline } => {
            if !fail && waits_for_lock(config, w) {
                return None;
            }
            if fail {
                machine.handle(PatchEvent::Failed);
                return Some((Action::PatchRecord { image_id, refused: false }, true));
            }
            if now >= deadline {
                machine.handle(PatchEvent::CommitRefusedLate);
                return Some((Action::PatchRecord { image_id, refused: true }, false));
            }
            if compare_and_set && current != *read {
                machine.handle(PatchEvent::CommitRefusedChanged);
                return Some((Action::PatchRecord { image_id, refused: true }, false));
            }
            // The update submits its metadata with the image it keeps: a read may answer
            // that pair. (A blind update may name a blob already gone: the dangling
            // reference is reported, no pair is submitted.)
            if let Some(blob) = w.blob(image_id) {
                w.submitted |= triple_bit(config, user, metadata, blob.image);
            }
            make_visible(config, w, user, Record { metadata, image_id }, now);
            machine.handle(PatchEvent::Committed);
            Some((Action::PatchRecord { image_id, refused: false }, false))
        }
    }
}

/// Starts every request an idle server `i` may start, each as one successor.
pub(crate) fn start_requests(
    config: &ModelConfig,
    world: &ModelWorld,
    i: usize,
    emit: &mut impl FnMut(Step, ModelWorld, Option<Property>),
) {
    let now = world.clock;
    let actor = Actor::Server(index_u8(i));
    // A write of the working design takes a fresh id at its start: none once they
    // are used up.
    let writes = config.design != Design::Working || world.next_id < config.image_ids;
    for user in 0..config.users {
        for metadata in (0..config.metadata_values).filter(|_| writes) {
            for image in 0..config.images {
                let mut w = world.clone();
                w.ops += 1;
                w.submitted |= triple_bit(config, user, metadata, image);
                let design = match config.design {
                    Design::Working => WriteDesign::BlobFirstFreshId,
                    Design::RecordFirst => WriteDesign::RecordFirstKeyedByUser(user),
                    Design::BlobKeyedByUser => WriteDesign::BlobFirstKeyedByUser(user),
                };
                let mut machine = WriteMachine::start_with(design, now, config.timings.request_timeout);
                // Issuing an id touches no store and no other actor sees it, so it is
                // merged into the start: a sound reduction of interleavings.
                let mut image_id = None;
                if machine.next(now) == WriteAction::IssueId {
                    let id = issue_id(config, &mut w);
                    machine.handle(WriteEvent::IdIssued(id));
                    image_id = Some(id);
                }
                w.servers[i] = Server::Writing { user, metadata, image, machine };
                let action = Action::StartWrite { user, metadata, image, image_id };
                emit(Step { actor, action, failed: false, finished: None }, w, None);
            }
        }
        let mut w = world.clone();
        w.ops += 1;
        w.servers[i] =
            Server::Reading { user, machine: ReadMachine::start(now, config.timings.request_timeout), seen: None };
        emit(Step { actor, action: Action::StartRead { user }, failed: false, finished: None }, w, None);
        if config.operations.deletes {
            let mut w = world.clone();
            w.ops += 1;
            w.servers[i] = Server::Deleting { user, deadline: now.plus(config.timings.request_timeout) };
            emit(Step { actor, action: Action::StartDelete { user }, failed: false, finished: None }, w, None);
        }
        if let Some(design) = config.operations.patches {
            for metadata in 0..config.metadata_values {
                let mut w = world.clone();
                w.ops += 1;
                let machine = PatchMachine::start_with(design, now, config.timings.request_timeout, MAX_PATCH_ATTEMPTS);
                w.servers[i] = Server::Patching { user, metadata, machine, read: None };
                let action = Action::StartPatch { user, metadata };
                emit(Step { actor, action, failed: false, finished: None }, w, None);
            }
        }
    }
}

/// Issues the next fresh image id, recording its mint hour under incremental cleaning.
pub(crate) fn issue_id(config: &ModelConfig, w: &mut ModelWorld) -> ImageId {
    let id = w.next_id;
    w.next_id = w.next_id.saturating_add(1);
    if config.cleaning != Cleaning::Full {
        // At most `MAX_QUEUE` ids are issued (the configuration's check).
        let _ = w.minted.try_push(w.clock);
    }
    id
}
