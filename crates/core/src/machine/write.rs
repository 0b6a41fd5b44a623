//! The write path: fresh id, create-only blob put, then the deadline-guarded record.

use crate::time::Time;

/// One profile write in progress.
///
/// Order of steps: [`WriteAction::IssueId`], [`WriteAction::PutBlob`],
/// [`WriteAction::CommitRecord`]. Once the deadline (`start + request_timeout`) is
/// reached, no further step is issued and the write ends
/// [`WriteOutcome::DeadlineExceeded`]. Any failure ends it [`WriteOutcome::Failed`]; a
/// blob already put is then an orphan for the cleaner.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct WriteMachine<T, Id> {
    deadline: T,
    phase: WritePhase<Id>,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum WritePhase<Id> {
    NeedId,
    PutBlob(Id),
    CommitRecord(Id),
    Done(WriteOutcome<Id>),
}

/// How a write ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum WriteOutcome<Id> {
    /// The record naming this image is committed.
    Committed(Id),
    /// The deadline passed first; the record was not written.
    DeadlineExceeded,
    /// A store operation failed; the record was not written.
    Failed,
}

/// The next thing the driver must do for a write.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum WriteAction<T, Id> {
    /// Take a fresh image id from the id source and report it as [`WriteEvent::IdIssued`].
    IssueId,
    /// Put the image's blobs under `image_id`, create-only.
    PutBlob {
        /// The id the blobs go under.
        image_id: Id,
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
    /// The store operation failed (error or timeout).
    Failed,
}

impl<T: Time, Id: Copy + Eq + std::fmt::Debug> WriteMachine<T, Id> {
    /// A write that starts at `now` and may act until `now + request_timeout`.
    pub fn start(now: T, request_timeout: T::Span) -> Self {
        WriteMachine { deadline: now.plus(request_timeout), phase: WritePhase::NeedId }
    }

    /// The instant from which this write may no longer act.
    pub fn deadline(&self) -> T {
        self.deadline
    }

    /// The image id this write put (or is putting), once issued.
    pub fn image_id(&self) -> Option<Id> {
        match &self.phase {
            WritePhase::PutBlob(id) | WritePhase::CommitRecord(id) => Some(*id),
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
        match self.phase {
            WritePhase::NeedId => WriteAction::IssueId,
            WritePhase::PutBlob(image_id) => WriteAction::PutBlob { image_id },
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
            (WritePhase::CommitRecord(id), WriteEvent::RecordCommitted) => {
                WritePhase::Done(WriteOutcome::Committed(*id))
            }
            (WritePhase::CommitRecord(_), WriteEvent::CommitRefusedLate) => {
                WritePhase::Done(WriteOutcome::DeadlineExceeded)
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
        assert_eq!(w.next(at(10)), WriteAction::PutBlob { image_id: 7 });
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
    fn a_failed_put_ends_the_write_without_a_record() {
        let mut w = WriteMachine::<Timestamp, u32>::start(at(0), Duration::from_millis(100));
        w.next(at(0));
        w.handle(WriteEvent::IdIssued(1));
        w.next(at(0));
        w.handle(WriteEvent::Failed);
        assert_eq!(w.next(at(1)), WriteAction::Done(WriteOutcome::Failed));
    }
}
