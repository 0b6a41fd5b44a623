//! The steps of profile deletes and metadata-only updates: each store operation one
//! atomic step on the world, the update driven by the production [`PatchMachine`].
//!
//! Both change a record in one statement (modelled as one step, like a write under
//! the atomic-commit protocol); where one write at a time holds the database's lock
//! (SQLite), they wait while another write's commit is pending, as writes do.

use profilestore_core::machine::{PatchAction, PatchEvent, PatchMachine};

use crate::cleaner::{make_deleted, make_visible};
use crate::config::ModelConfig;
use crate::step::{Action, Finished};
use crate::time::Hour;
use crate::world::{ImageId, ModelWorld, Record, triple_bit};

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
