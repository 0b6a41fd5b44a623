//! The metadata-only update: read the record, then commit new metadata beside the
//! image it names, compare-and-set against the record read.
//!
//! Why the compare-and-set: only the write that created a blob may put its id into a
//! record first. An update that keeps the image re-attaches an id it read; if the
//! profile moved on meanwhile, the cleaner may already have judged that image
//! unreferenced and be about to delete it, and a blind commit would leave the record
//! naming a deleted blob. Committing only while the record still names the image it
//! read means the image never stopped being named.

use crate::time::Time;

/// How many times an update without a client's condition reads again after another
/// write changed the profile under it.
pub const MAX_PATCH_ATTEMPTS: u8 = 3;

/// Which update a machine follows. Production runs only
/// [`PatchDesign::CompareAndSet`]; [`PatchDesign::Blind`] is the flaw the model
/// checker must catch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PatchDesign {
    /// Commit only while the record is still the one read.
    CompareAndSet,
    /// Flaw: commit whatever the record is now, re-attaching the image read.
    Blind,
}

/// One metadata-only update in progress.
///
/// Steps: [`PatchAction::GetRecord`], then [`PatchAction::CommitRecord`] naming the
/// image the record named. A commit refused because the record changed reads again
/// (at most [`MAX_PATCH_ATTEMPTS`] reads in all, none when the client named the
/// version it expects). Once the deadline is reached no step is issued.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PatchMachine<T, Id> {
    deadline: T,
    design: PatchDesign,
    reads_left: u8,
    phase: PatchPhase<Id>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum PatchPhase<Id> {
    GetRecord,
    CommitRecord(Id),
    Done(PatchOutcome<Id>),
}

/// How an update ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PatchOutcome<Id> {
    /// The record with the new metadata, still naming this image, is committed.
    Committed(Id),
    /// There is no profile to update.
    NoProfile,
    /// The profile is not the version the client's condition named: nothing changed.
    ConditionFailed,
    /// The profile kept changing under the update: nothing changed.
    Contended,
    /// The deadline passed first: nothing changed.
    DeadlineExceeded,
    /// A store operation failed: nothing changed.
    Failed,
}

/// The next thing the driver must do for an update.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PatchAction<T, Id> {
    /// Read the user's record.
    GetRecord,
    /// Commit the new metadata beside `image_id` before `deadline`, only while the
    /// record is the one read when `compare_and_set`.
    CommitRecord {
        /// The image the record read names, kept.
        image_id: Id,
        /// Whether the commit must find the record it read.
        compare_and_set: bool,
        /// The request's deadline, checked by the database.
        deadline: T,
    },
    /// Nothing more to do.
    Done(PatchOutcome<Id>),
}

/// What came of the last action.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PatchEvent<Id> {
    /// The record names this image, or there is no record (`None`).
    Record(Option<Id>),
    /// The record read is not the version the client's condition named.
    ConditionFailed,
    /// The database committed the record.
    Committed,
    /// The database refused the record: its clock had reached the deadline.
    CommitRefusedLate,
    /// The database refused the record: it was no longer the one read.
    CommitRefusedChanged,
    /// The store operation failed (error or timeout).
    Failed,
}

impl<T: Time, Id: Copy + Eq + std::fmt::Debug> PatchMachine<T, Id> {
    /// An update of the working design that starts at `now`, may act until
    /// `now + request_timeout`, and reads at most `reads` times (1 when the client
    /// named the version it expects: a changed profile then fails its condition).
    pub fn start(now: T, request_timeout: T::Span, reads: u8) -> Self {
        Self::start_with(PatchDesign::CompareAndSet, now, request_timeout, reads)
    }

    /// An update following `design` (the flawed one: model checking only).
    pub fn start_with(design: PatchDesign, now: T, request_timeout: T::Span, reads: u8) -> Self {
        PatchMachine {
            deadline: now.plus(request_timeout),
            design,
            reads_left: reads.max(1),
            phase: PatchPhase::GetRecord,
        }
    }

    /// The instant from which this update may no longer act.
    pub fn deadline(&self) -> T {
        self.deadline
    }

    /// How the update ended, once it has.
    pub fn outcome(&self) -> Option<PatchOutcome<Id>> {
        match self.phase {
            PatchPhase::Done(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// The next action at time `now`; at or past the deadline an unfinished update
    /// ends here with [`PatchOutcome::DeadlineExceeded`].
    pub fn next(&mut self, now: T) -> PatchAction<T, Id> {
        if !matches!(self.phase, PatchPhase::Done(_)) && now >= self.deadline {
            self.phase = PatchPhase::Done(PatchOutcome::DeadlineExceeded);
        }
        match self.phase {
            PatchPhase::GetRecord => PatchAction::GetRecord,
            PatchPhase::CommitRecord(image_id) => PatchAction::CommitRecord {
                image_id,
                compare_and_set: self.design == PatchDesign::CompareAndSet,
                deadline: self.deadline,
            },
            PatchPhase::Done(outcome) => PatchAction::Done(outcome),
        }
    }

    /// Feeds the result of the action [`next`](Self::next) returned. An event that
    /// does not answer the current action is a driver bug and fails the update.
    pub fn handle(&mut self, event: PatchEvent<Id>) {
        self.phase = match (self.phase, event) {
            (PatchPhase::GetRecord, PatchEvent::Record(Some(id))) => {
                self.reads_left -= 1;
                PatchPhase::CommitRecord(id)
            }
            (PatchPhase::GetRecord, PatchEvent::Record(None)) => PatchPhase::Done(PatchOutcome::NoProfile),
            (PatchPhase::GetRecord, PatchEvent::ConditionFailed) => PatchPhase::Done(PatchOutcome::ConditionFailed),
            (PatchPhase::CommitRecord(id), PatchEvent::Committed) => PatchPhase::Done(PatchOutcome::Committed(id)),
            (PatchPhase::CommitRecord(_), PatchEvent::CommitRefusedLate) => {
                PatchPhase::Done(PatchOutcome::DeadlineExceeded)
            }
            (PatchPhase::CommitRecord(_), PatchEvent::CommitRefusedChanged) if self.reads_left > 0 => {
                PatchPhase::GetRecord
            }
            (PatchPhase::CommitRecord(_), PatchEvent::CommitRefusedChanged) => {
                PatchPhase::Done(PatchOutcome::Contended)
            }
            (PatchPhase::Done(outcome), _) => PatchPhase::Done(outcome),
            (_, PatchEvent::Failed) => PatchPhase::Done(PatchOutcome::Failed),
            (phase, event) => {
                debug_assert!(false, "update event {event:?} does not answer phase {phase:?}");
                PatchPhase::Done(PatchOutcome::Failed)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;
    use std::time::Duration;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn reads_then_commits_the_image_it_read_compare_and_set() {
        let mut p = PatchMachine::<Timestamp, u32>::start(at(0), Duration::from_millis(100), MAX_PATCH_ATTEMPTS);
        assert_eq!(p.next(at(0)), PatchAction::GetRecord);
        p.handle(PatchEvent::Record(Some(7)));
        assert_eq!(p.next(at(5)), PatchAction::CommitRecord { image_id: 7, compare_and_set: true, deadline: at(100) });
        p.handle(PatchEvent::Committed);
        assert_eq!(p.outcome(), Some(PatchOutcome::Committed(7)));
    }

    #[test]
    fn a_changed_record_is_read_again_then_given_up_on() {
        let mut p = PatchMachine::<Timestamp, u32>::start(at(0), Duration::from_millis(100), 2);
        p.next(at(0));
        p.handle(PatchEvent::Record(Some(1)));
        p.next(at(1));
        p.handle(PatchEvent::CommitRefusedChanged);
        assert_eq!(p.next(at(2)), PatchAction::GetRecord, "read again");
        p.handle(PatchEvent::Record(Some(2)));
        assert!(matches!(p.next(at(3)), PatchAction::CommitRecord { image_id: 2, .. }));
        p.handle(PatchEvent::CommitRefusedChanged);
        assert_eq!(p.next(at(4)), PatchAction::Done(PatchOutcome::Contended));
    }

    #[test]
    fn with_the_clients_version_a_changed_record_is_not_read_again() {
        let mut p = PatchMachine::<Timestamp, u32>::start(at(0), Duration::from_millis(100), 1);
        p.next(at(0));
        p.handle(PatchEvent::Record(Some(1)));
        p.next(at(1));
        p.handle(PatchEvent::CommitRefusedChanged);
        assert_eq!(p.outcome(), Some(PatchOutcome::Contended));
    }

    #[test]
    fn no_profile_no_condition_and_the_deadline_end_the_update() {
        let mut none = PatchMachine::<Timestamp, u32>::start(at(0), Duration::from_millis(100), 1);
        none.next(at(0));
        none.handle(PatchEvent::Record(None));
        assert_eq!(none.outcome(), Some(PatchOutcome::NoProfile));

        let mut refused = PatchMachine::<Timestamp, u32>::start(at(0), Duration::from_millis(100), 1);
        refused.next(at(0));
        refused.handle(PatchEvent::ConditionFailed);
        assert_eq!(refused.outcome(), Some(PatchOutcome::ConditionFailed));

        let mut late = PatchMachine::<Timestamp, u32>::start(at(0), Duration::from_millis(100), 1);
        late.next(at(0));
        late.handle(PatchEvent::Record(Some(1)));
        assert_eq!(late.next(at(100)), PatchAction::Done(PatchOutcome::DeadlineExceeded));
    }

    #[test]
    fn the_blind_flaw_commits_without_compare_and_set() {
        let mut p =
            PatchMachine::<Timestamp, u32>::start_with(PatchDesign::Blind, at(0), Duration::from_millis(100), 1);
        p.next(at(0));
        p.handle(PatchEvent::Record(Some(3)));
        assert!(matches!(p.next(at(1)), PatchAction::CommitRecord { image_id: 3, compare_and_set: false, .. }));
    }
}
