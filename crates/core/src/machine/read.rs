//! The read path: record, then blob; both or "no profile".

use crate::time::Time;

/// How many times a read re-reads the record after finding its blob missing.
pub const MAX_REREADS: u8 = 2;

/// One profile read in progress.
///
/// Steps: [`ReadAction::GetRecord`], then [`ReadAction::GetBlob`] for the image the
/// record names. A missing blob means the record may have changed meanwhile, so the
/// record is read again (at most [`MAX_REREADS`] times); a record that still names the
/// same missing blob is a dangling reference. The deadline covers the whole read,
/// including the blob's bytes: bytes that arrive at or after it are not answered.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ReadMachine<T, Id> {
    deadline: T,
    rereads_left: u8,
    phase: ReadPhase<Id>,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum ReadPhase<Id> {
    /// `missing` is the image found missing by the previous attempt, if any.
    GetRecord {
        missing: Option<Id>,
    },
    GetBlob(Id),
    Done(ReadOutcome<Id>),
}

/// How a read ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ReadOutcome<Id> {
    /// There is no profile: answer "no profile".
    NoProfile,
    /// The record and the blob of this image are both in hand: answer them together.
    Found(Id),
    /// The record names this image and its blob is missing, even after a re-read.
    Dangling(Id),
    /// The record kept changing under the read; nothing consistent to answer.
    Contended,
    /// The deadline passed before everything was in hand.
    DeadlineExceeded,
    /// A store operation failed.
    Failed,
}

/// The next thing the driver must do for a read.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ReadAction<Id> {
    /// Read the user's record.
    GetRecord,
    /// Read the blob of `image_id`.
    GetBlob {
        /// The image the record named.
        image_id: Id,
    },
    /// Nothing more to do.
    Done(ReadOutcome<Id>),
}

/// What came of the last action.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ReadEvent<Id> {
    /// The record names this image, or there is no record (`None`).
    Record(Option<Id>),
    /// The blob's bytes are in hand.
    BlobFound,
    /// There is no blob under the image id the record named.
    BlobMissing,
    /// The store operation failed (error or timeout).
    Failed,
}

impl<T: Time, Id: Copy + Eq + std::fmt::Debug> ReadMachine<T, Id> {
    /// A read that starts at `now` and may act until `now + request_timeout`.
    pub fn start(now: T, request_timeout: T::Span) -> Self {
        ReadMachine {
            deadline: now.plus(request_timeout),
            rereads_left: MAX_REREADS,
            phase: ReadPhase::GetRecord { missing: None },
        }
    }

    /// The instant from which this read may no longer act.
    pub fn deadline(&self) -> T {
        self.deadline
    }

    /// How the read ended, once it has.
    pub fn outcome(&self) -> Option<ReadOutcome<Id>> {
        match self.phase {
            ReadPhase::Done(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// The image whose blob is being fetched, while that is the current step.
    pub fn fetching(&self) -> Option<Id> {
        match self.phase {
            ReadPhase::GetBlob(id) => Some(id),
            _ => None,
        }
    }

    /// The next action at time `now`; at or past the deadline an unfinished read ends
    /// here with [`ReadOutcome::DeadlineExceeded`].
    pub fn next(&mut self, now: T) -> ReadAction<Id> {
        if !matches!(self.phase, ReadPhase::Done(_)) && now >= self.deadline {
            self.phase = ReadPhase::Done(ReadOutcome::DeadlineExceeded);
        }
        match self.phase {
            ReadPhase::GetRecord { .. } => ReadAction::GetRecord,
            ReadPhase::GetBlob(image_id) => ReadAction::GetBlob { image_id },
            ReadPhase::Done(outcome) => ReadAction::Done(outcome),
        }
    }

    /// Feeds the result of the action [`next`](Self::next) returned, at time `now`
    /// (the moment the result is in hand).
    pub fn handle(&mut self, event: ReadEvent<Id>, now: T) {
        self.phase = match (&self.phase, event) {
            (ReadPhase::Done(outcome), _) => ReadPhase::Done(*outcome),
            (_, ReadEvent::Failed) => ReadPhase::Done(ReadOutcome::Failed),
            (ReadPhase::GetRecord { .. }, ReadEvent::Record(None)) => ReadPhase::Done(ReadOutcome::NoProfile),
            (ReadPhase::GetRecord { missing }, ReadEvent::Record(Some(id))) => {
                if *missing == Some(id) {
                    // Image ids are never reused and blobs never re-created: still missing.
                    ReadPhase::Done(ReadOutcome::Dangling(id))
                } else {
                    ReadPhase::GetBlob(id)
                }
            }
            (ReadPhase::GetBlob(id), ReadEvent::BlobFound) => {
                if now >= self.deadline {
                    ReadPhase::Done(ReadOutcome::DeadlineExceeded)
                } else {
                    ReadPhase::Done(ReadOutcome::Found(*id))
                }
            }
            (ReadPhase::GetBlob(id), ReadEvent::BlobMissing) => {
                if self.rereads_left == 0 {
                    ReadPhase::Done(ReadOutcome::Contended)
                } else {
                    self.rereads_left -= 1;
                    ReadPhase::GetRecord { missing: Some(*id) }
                }
            }
            (phase, event) => {
                debug_assert!(false, "read event {event:?} does not answer phase {phase:?}");
                ReadPhase::Done(ReadOutcome::Failed)
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

    fn read() -> ReadMachine<Timestamp, u32> {
        ReadMachine::start(at(0), Duration::from_millis(100))
    }

    #[test]
    fn record_then_blob_answers_both() {
        let mut r = read();
        assert_eq!(r.next(at(0)), ReadAction::GetRecord);
        r.handle(ReadEvent::Record(Some(3)), at(1));
        assert_eq!(r.next(at(1)), ReadAction::GetBlob { image_id: 3 });
        r.handle(ReadEvent::BlobFound, at(99));
        assert_eq!(r.outcome(), Some(ReadOutcome::Found(3)));
    }

    #[test]
    fn no_record_is_no_profile() {
        let mut r = read();
        r.next(at(0));
        r.handle(ReadEvent::Record(None), at(0));
        assert_eq!(r.outcome(), Some(ReadOutcome::NoProfile));
    }

    #[test]
    fn bytes_arriving_at_the_deadline_are_not_answered() {
        let mut r = read();
        r.next(at(0));
        r.handle(ReadEvent::Record(Some(3)), at(1));
        r.next(at(1));
        r.handle(ReadEvent::BlobFound, at(100));
        assert_eq!(r.outcome(), Some(ReadOutcome::DeadlineExceeded));
    }

    #[test]
    fn a_blob_missing_because_the_record_moved_on_is_re_read() {
        let mut r = read();
        r.next(at(0));
        r.handle(ReadEvent::Record(Some(3)), at(1));
        r.next(at(1));
        r.handle(ReadEvent::BlobMissing, at(2));
        assert_eq!(r.next(at(2)), ReadAction::GetRecord);
        r.handle(ReadEvent::Record(Some(4)), at(3));
        assert_eq!(r.next(at(3)), ReadAction::GetBlob { image_id: 4 });
        r.handle(ReadEvent::BlobFound, at(4));
        assert_eq!(r.outcome(), Some(ReadOutcome::Found(4)));
    }

    #[test]
    fn a_record_still_naming_the_missing_blob_is_dangling() {
        let mut r = read();
        r.next(at(0));
        r.handle(ReadEvent::Record(Some(3)), at(1));
        r.next(at(1));
        r.handle(ReadEvent::BlobMissing, at(2));
        r.next(at(2));
        r.handle(ReadEvent::Record(Some(3)), at(3));
        assert_eq!(r.outcome(), Some(ReadOutcome::Dangling(3)));
    }

    #[test]
    fn a_profile_deleted_meanwhile_is_no_profile() {
        let mut r = read();
        r.next(at(0));
        r.handle(ReadEvent::Record(Some(3)), at(1));
        r.next(at(1));
        r.handle(ReadEvent::BlobMissing, at(2));
        r.next(at(2));
        r.handle(ReadEvent::Record(None), at(3));
        assert_eq!(r.outcome(), Some(ReadOutcome::NoProfile));
    }

    #[test]
    fn a_record_that_keeps_changing_gives_up_after_the_rereads() {
        let mut r = read();
        for id in 0..=u32::from(MAX_REREADS) {
            assert_eq!(r.next(at(1)), ReadAction::GetRecord);
            r.handle(ReadEvent::Record(Some(id)), at(1));
            r.next(at(1));
            r.handle(ReadEvent::BlobMissing, at(1));
        }
        assert_eq!(r.outcome(), Some(ReadOutcome::Contended));
    }
}
