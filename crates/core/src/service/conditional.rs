//! Conditional changes: what a client's `If-Match` / `If-None-Match: *` require, turned
//! into the precondition a store checks in the change's own transaction, and the
//! metadata-only update (a compare-and-set of the record it read).

use super::{FailedStep, ProfileService, fail, failure, request_start, request_time, within};
use crate::error::{InvalidInput, ServiceError, StoreError, StoreErrorKind};
use crate::ids::UserId;
use crate::machine::{MAX_PATCH_ATTEMPTS, PatchAction, PatchEvent, PatchMachine, PatchOutcome};
use crate::metrics;
use crate::store::{CommitOutcome, IdempotencyKey, Precondition, ProfileVersion, Record};
use crate::time::{Deadline, Timestamp};

/// What a conditional request requires of the profile it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Condition {
    /// Nothing: the plain request.
    #[default]
    None,
    /// There must be no profile (`If-None-Match: *`: create only).
    Absent,
    /// There must be a profile (`If-Match: *`).
    Present,
    /// The profile must be one of these versions (`If-Match` with entity tags).
    OneOf(Vec<ProfileVersion>),
}

impl Condition {
    /// Whether the current record (`None`: no profile) meets it.
    pub fn holds(&self, current: Option<&Record>) -> bool {
        match self {
            Condition::None => true,
            Condition::Absent => current.is_none(),
            Condition::Present => current.is_some(),
            Condition::OneOf(versions) => current.is_some_and(|r| versions.contains(&r.version())),
        }
    }
}

/// What a keyed write came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// This write committed this record.
    New(Record),
    /// An earlier write with the same idempotency key committed `record`, keyed with
    /// `fingerprint`: nothing was written now.
    Earlier {
        /// The record the earlier write committed.
        record: Record,
        /// What identified the earlier write's request.
        fingerprint: String,
    },
}

impl Written {
    /// The record the answer names: this write's, or the earlier one's.
    pub fn into_record(self) -> Record {
        match self {
            Written::New(record) | Written::Earlier { record, .. } => record,
        }
    }
}

impl<Id> From<FailedStep> for PatchEvent<Id> {
    fn from(_: FailedStep) -> Self {
        PatchEvent::Failed
    }
}

impl ProfileService {
    /// The earlier write a live `key` of `user` names, read before anything is put:
    /// a retry then costs one read. (The commit checks again, in its transaction.)
    pub(super) async fn earlier_write(
        &self,
        user: &UserId,
        key: Option<&IdempotencyKey>,
        deadline: &Deadline,
    ) -> Result<Option<Written>, ServiceError> {
        let Some(key) = key else { return Ok(None) };
        match within(deadline, self.metadata.keyed_record(user, &key.key)).await {
            Some(found) => Ok(found?.map(|(record, fingerprint)| Written::Earlier { record, fingerprint })),
            None => Err(ServiceError::DeadlineExceeded),
        }
    }

    /// The precondition the store must check for `condition`: a version becomes a
    /// compare-and-set of the record read now (one read, within the request's time),
    /// after which a change to the profile fails the commit. `None` when a version was
    /// asked for and there is no profile at all.
    pub(super) async fn precondition_for(
        &self,
        user: &UserId,
        condition: &Condition,
        deadline: &Deadline,
    ) -> Result<Option<Precondition>, ServiceError> {
        Ok(Some(match condition {
            Condition::None => Precondition::Any,
            Condition::Absent => Precondition::Absent,
            Condition::Present => Precondition::Present,
            Condition::OneOf(_) => {
                let current = match within(deadline, self.metadata.get(user)).await {
                    Some(found) => found?,
                    None => return Err(ServiceError::DeadlineExceeded),
                };
                match current {
                    None => return Ok(None),
                    Some(r) if condition.holds(Some(&r)) => {
                        Precondition::Is { image_id: r.image_id, metadata: r.metadata }
                    }
                    Some(_) => return Err(ServiceError::PreconditionFailed),
                }
            }
        }))
    }

    /// Replaces `user`'s metadata with what `change` makes of the current metadata,
    /// keeping the image, when the profile meets `condition`; `None` when there is no
    /// profile. The commit is a compare-and-set of the record read (the image id and
    /// the metadata), so the image is never re-attached after a write replaced it,
    /// and no concurrent change is overwritten unseen: a changed profile is read again
    /// (without a client's version) or fails the condition (with one).
    pub async fn update_metadata(
        &self,
        user: &UserId,
        condition: &Condition,
        change: impl Fn(&str) -> Result<String, InvalidInput>,
    ) -> Result<Option<Record>, ServiceError> {
        self.clocks_agree()?;
        let deadline = self.start_request();
        let timeout = deadline.timeout();
        let start = request_start(&deadline, timeout);
        // A client that named a version gets that version or nothing: no second read.
        let reads = if matches!(condition, Condition::OneOf(_)) { 1 } else { MAX_PATCH_ATTEMPTS };
        let mut machine = PatchMachine::<Timestamp, _>::start(start, timeout, reads);
        let mut read: Option<Record> = None;
        let mut written: Option<Record> = None;
        let mut last_error: Option<StoreError> = None;
        loop {
            let event = match machine.next(request_time(&deadline)) {
                PatchAction::GetRecord => match within(&deadline, self.metadata.get(user)).await {
                    Some(Ok(found)) if !condition.holds(found.as_ref()) && found.is_some() => {
                        PatchEvent::ConditionFailed
                    }
                    Some(Ok(found)) => {
                        let event = PatchEvent::Record(found.as_ref().map(|r| r.image_id));
                        read = found;
                        event
                    }
                    Some(Err(e)) => fail(&mut last_error, e),
                    None => continue,
                },
                PatchAction::CommitRecord { image_id, compare_and_set, .. } => {
                    let Some(current) = read.as_ref().filter(|r| r.image_id == image_id) else {
                        return Err(ServiceError::Internal("update committing without the record it read".into()));
                    };
                    let record = written.insert(Record {
                        metadata: change(&current.metadata)?,
                        updated_at: start,
                        ..current.clone()
                    });
                    let precondition = if compare_and_set {
                        Precondition::Is { image_id, metadata: current.metadata.clone() }
                    } else {
                        Precondition::Any
                    };
                    match within(&deadline, self.metadata.put_if_before(record, &precondition, &deadline)).await {
                        Some(Ok(CommitOutcome::Committed)) => PatchEvent::Committed,
                        Some(Ok(CommitOutcome::DeadlineExceeded)) => PatchEvent::CommitRefusedLate,
                        Some(Ok(CommitOutcome::PreconditionFailed)) => PatchEvent::CommitRefusedChanged,
                        Some(Err(e)) if e.kind() == StoreErrorKind::CommitUnknown => return Err(e.into()),
                        Some(Err(e)) if e.kind() == StoreErrorKind::TimingsChanged => {
                            self.reload_timings().await;
                            return Err(e.into());
                        }
                        Some(Err(e)) => fail(&mut last_error, e),
                        None => return Err(ServiceError::CommitUnknown("ran out of time".into())),
                    }
                }
                PatchAction::Done(outcome) => {
                    metrics::write_ended(match outcome {
                        PatchOutcome::Committed(_) => "committed",
                        PatchOutcome::DeadlineExceeded => "deadline_exceeded",
                        PatchOutcome::NoProfile | PatchOutcome::ConditionFailed | PatchOutcome::Contended => "refused",
                        PatchOutcome::Failed => "failed",
                    });
                    return match outcome {
                        PatchOutcome::Committed(_) => Ok(written),
                        PatchOutcome::NoProfile => Ok(None),
                        // With a client's version, a profile that changed under the
                        // update no longer is that version.
                        PatchOutcome::ConditionFailed => Err(ServiceError::PreconditionFailed),
                        PatchOutcome::Contended if reads == 1 => Err(ServiceError::PreconditionFailed),
                        PatchOutcome::Contended => Err(ServiceError::Contended),
                        PatchOutcome::DeadlineExceeded => Err(ServiceError::DeadlineExceeded),
                        PatchOutcome::Failed => Err(failure(last_error)),
                    };
                }
            };
            machine.handle(event);
        }
    }
}
