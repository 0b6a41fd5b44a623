//! The write path: fresh id, create-only blob put, then the deadline-guarded record.

use crate::time::Time;

/// Which write path a machine follows. Production runs only
/// [`WriteDesign::BlobFirstFreshId`]; the two others are the case study's flawed
/// designs 1 and 2, kept so the model checker and the simulator can show they fail.
/// Their overwriting put exists only in model and simulated stores, never in the real
/// blob store trait.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum WriteDesign<Id> {
    /// The working design: a fresh image id, the blob first, then the record.
    BlobFirstFreshId,
    /// Flaw 1: the record first, then the blob, both under the user's own key `Id`.
    RecordFirstKeyedByUser(Id),
    /// Flaw 2: the blob first under the user's own key `Id` (overwriting), then the record.
    BlobFirstKeyedByUser(Id),
}

/// One profile write in progress.
///
/// Order of steps (working design): [`WriteAction::IssueId`], [`WriteAction::PutBlob`],
/// [`WriteAction::CommitRecord`]. Once the deadline (`start + request_timeout`) is
/// reached, no further step is issued and the write ends
/// [`WriteOutcome::DeadlineExceeded`]. Any failure ends it [`WriteOutcome::Failed`]; a
/// blob already put is then an orphan for the cleaner.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct WriteMachine<T, Id> {
    deadline: T,
    design: WriteDesign<Id>,
    phase: WritePhase<Id>,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum WritePhase<Id> {
    NeedId,
    PutBlob(Id),
    CommitRecord(Id),
    /// Flaw 1 only: the record is committed, the blob comes second.
    PutBlobAfterRecord(Id),
    Done(WriteOutcome<Id>),
}

/// How a write ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum WriteOutcome<Id> {
    /// The record naming this image is committed.
    Committed(Id),
    /// The deadline passed first; the record was not written.
    DeadlineExceeded,
    /// The current record did not meet the write's precondition; the record was not
    /// written (its blob is an orphan for the cleaner, like any failed write's).
    PreconditionFailed,
    /// A store operation failed; the record was not written.
    Failed,
}

/// The next thing the driver must do for a write.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum WriteAction<T, Id> {
    /// Take a fresh image id from the id source and report it as [`WriteEvent::IdIssued`].
    IssueId,
    /// Put the image's blobs under `image_id`: create-only unless `overwrite` (which
    /// only the flawed designs ask for).
    PutBlob {
        /// The id the blobs go under.
        image_id: Id,
        /// Whether an existing blob is replaced (flawed designs only).
        overwrite: bool,
    },
    /// Insert or replace the user's record naming `image_id`, only if the database's
    /// clock is before `deadline` at commit.
    CommitRecord {
        /// The image the record will name.
        image_id: Id,
        /// The request's deadline, checked by the database.
        deadline: T,
    },
    /// Nothing more to do.
    Done(WriteOutcome<Id>),
}

/// What came of the last action.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum WriteEvent<Id> {
    /// The id source returned this id.
    IdIssued(Id),
    /// Every blob of the image is stored.
    BlobStored,
    /// The database committed the record.
    RecordCommitted,
    /// The database refused the record because its clock had reached the deadline.
    CommitRefusedLate,
    /// The database refused the record because the current one did not meet the
    /// write's precondition.
    CommitRefusedPrecondition,
    /// The store operation failed (error or timeout).
    Failed,
}

impl<T: Time, Id: Copy + Eq + std::fmt::Debug> WriteMachine<T, Id> {
    /// A write of the working design that starts at `now` and may act until
    /// `now + request_timeout`.
    pub fn start(now: T, request_timeout: T::Span) -> Self {
        Self::start_with(WriteDesign::BlobFirstFreshId, now, request_timeout)
    }

    /// A write following `design` (flawed designs: model checking and simulation only).
    pub fn start_with(design: WriteDesign<Id>, now: T, request_timeout: T::Span) -> Self {
        let phase = match design {
            WriteDesign::BlobFirstFreshId => WritePhase::NeedId,
            WriteDesign::RecordFirstKeyedByUser(key) => WritePhase::CommitRecord(key),
            WriteDesign::BlobFirstKeyedByUser(key) => WritePhase::PutBlob(key),
        };
        WriteMachine { deadline: now.plus(request_timeout), design, phase }
    }

    /// The instant from which this write may no longer act.
    pub fn deadline(&self) -> T {
        self.deadline
    }

    /// The image id this write put (or is putting), once issued.
    pub fn image_id(&self) -> Option<Id> {
        match &self.phase {
            WritePhase::PutBlob(id) | WritePhase::CommitRecord(id) | WritePhase::PutBlobAfterRecord(id) => Some(*id),
            WritePhase::Done(WriteOutcome::Committed(id)) => Some(*id),
            _ => None,
        }
    }

    /// How the write ended, once it has.
    pub fn outcome(&self) -> Option<WriteOutcome<Id>> {
        match self.phase {
            WritePhase::Done(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// The next action at time `now`. At or past the deadline an unfinished write ends
    /// here with [`WriteOutcome::DeadlineExceeded`] (the request is killed).
    pub fn next(&mut self, now: T) -> WriteAction<T, Id> {
        if !matches!(self.phase, WritePhase::Done(_)) && now >= self.deadline {
            self.phase = WritePhase::Done(WriteOutcome::DeadlineExceeded);
        }
        let overwrite = self.design != WriteDesign::BlobFirstFreshId;
        match self.phase {
            WritePhase::NeedId => WriteAction::IssueId,
            WritePhase::PutBlob(image_id) | WritePhase::PutBlobAfterRecord(image_id) => {
                WriteAction::PutBlob { image_id, overwrite }
            }
            WritePhase::CommitRecord(image_id) => WriteAction::CommitRecord { image_id, deadline: self.deadline },
            WritePhase::Done(outcome) => WriteAction::Done(outcome),
        }
    }

    /// Feeds the result of the action [`next`](Self::next) returned. An event that
    /// does not answer the current action is a driver bug and fails the write.
    pub fn handle(&mut self, event: WriteEvent<Id>) {
        self.phase = match (&self.phase, event) {
            (WritePhase::NeedId, WriteEvent::IdIssued(id)) => WritePhase::PutBlob(id),
            (WritePhase::PutBlob(id), WriteEvent::BlobStored) => WritePhase::CommitRecord(*id),
            (WritePhase::CommitRecord(id), WriteEvent::RecordCommitted)
                if matches!(self.design, WriteDesign::RecordFirstKeyedByUser(_)) =>
            {
                WritePhase::PutBlobAfterRecord(*id)
            }
            (WritePhase::CommitRecord(id), WriteEvent::RecordCommitted) => {
                WritePhase::Done(WriteOutcome::Committed(*id))
            }
            (WritePhase::PutBlobAfterRecord(id), WriteEvent::BlobStored) => {
                WritePhase::Done(WriteOutcome::Committed(*id))
            }
            (WritePhase::CommitRecord(_), WriteEvent::CommitRefusedLate) => {
                WritePhase::Done(WriteOutcome::DeadlineExceeded)
            }
            (WritePhase::CommitRecord(_), WriteEvent::CommitRefusedPrecondition) => {
                WritePhase::Done(WriteOutcome::PreconditionFailed)
            }
            (WritePhase::Done(outcome), _) => WritePhase::Done(*outcome),
            (_, WriteEvent::Failed) => WritePhase::Done(WriteOutcome::Failed),
            (phase, event) => {
                debug_assert!(false, "write event {event:?} does not answer phase {phase:?}");
                WritePhase::Done(WriteOutcome::Failed)
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
    fn blob_first_then_record_with_the_request_deadline() {
        let mut w = WriteMachine::<Timestamp, u32>::start(at(0), Duration::from_millis(100));
        assert_eq!(w.next(at(0)), WriteAction::IssueId);
        w.handle(WriteEvent::IdIssued(7));
        assert_eq!(w.next(at(10)), WriteAction::PutBlob { image_id: 7, overwrite: false });
        w.handle(WriteEvent::BlobStored);
        assert_eq!(w.next(at(99)), WriteAction::CommitRecord { image_id: 7, deadline: at(100) });
        w.handle(WriteEvent::RecordCommitted);
        assert_eq!(w.next(at(500)), WriteAction::Done(WriteOutcome::Committed(7)), "a committed write stays committed");
    }

    #[test]
    fn a_write_stalled_between_blob_and_record_never_commits_after_its_deadline() {
        let mut w = WriteMachine::<Timestamp, u32>::start(at(0), Duration::from_millis(100));
        w.next(at(0));
        w.handle(WriteEvent::IdIssued(1));
        w.next(at(1));
        w.handle(WriteEvent::BlobStored);
        // The boundary: a request acts only while now < start + request_timeout.
        assert_eq!(w.next(at(100)), WriteAction::Done(WriteOutcome::DeadlineExceeded));
        assert_eq!(w.outcome(), Some(WriteOutcome::DeadlineExceeded));
    }

    #[test]
    fn the_last_instant_before_the_deadline_may_still_commit() {
        let mut w = WriteMachine::<Timestamp, u32>::start(at(0), Duration::from_millis(100));
        w.next(at(0));
        w.handle(WriteEvent::IdIssued(1));
        w.next(at(0));
        w.handle(WriteEvent::BlobStored);
        assert!(matches!(w.next(at(99)), WriteAction::CommitRecord { .. }));
    }

    #[test]
    fn a_commit_the_database_refuses_as_late_ends_the_write() {
        let mut w = WriteMachine::<Timestamp, u32>::start(at(0), Duration::from_millis(100));
        w.next(at(0));
        w.handle(WriteEvent::IdIssued(1));
        w.next(at(0));
        w.handle(WriteEvent::BlobStored);
        w.next(at(50));
        w.handle(WriteEvent::CommitRefusedLate);
        assert_eq!(w.outcome(), Some(WriteOutcome::DeadlineExceeded));
    }

    #[test]
    fn the_flawed_designs_keep_their_order_and_key() {
        let mut record_first = WriteMachine::<Timestamp, u32>::start_with(
            WriteDesign::RecordFirstKeyedByUser(5),
            at(0),
            Duration::from_millis(100),
        );
        assert!(matches!(record_first.next(at(0)), WriteAction::CommitRecord { image_id: 5, .. }));
        record_first.handle(WriteEvent::RecordCommitted);
        assert_eq!(record_first.next(at(1)), WriteAction::PutBlob { image_id: 5, overwrite: true });
        record_first.handle(WriteEvent::BlobStored);
        assert_eq!(record_first.outcome(), Some(WriteOutcome::Committed(5)));

        let mut blob_first = WriteMachine::<Timestamp, u32>::start_with(
            WriteDesign::BlobFirstKeyedByUser(5),
            at(0),
            Duration::from_millis(100),
        );
        assert_eq!(blob_first.next(at(0)), WriteAction::PutBlob { image_id: 5, overwrite: true });
        blob_first.handle(WriteEvent::BlobStored);
        assert!(matches!(blob_first.next(at(1)), WriteAction::CommitRecord { image_id: 5, .. }));
    }

    #[test]
    fn a_failed_put_ends_the_write_without_a_record() {
        let mut w = WriteMachine::<Timestamp, u32>::start(at(0), Duration::from_millis(100));
        w.next(at(0));
        w.handle(WriteEvent::IdIssued(1));
        w.next(at(0));
        w.handle(WriteEvent::Failed);
        assert_eq!(w.next(at(1)), WriteAction::Done(WriteOutcome::Failed));
    }
}
