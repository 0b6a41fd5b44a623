//! The async drivers of the write and read machines against real stores.
//!
//! This is what every server runs. The drivers add the operational guards the step
//! logic leaves out: each store call is bounded by the request's remaining time (on
//! the monotonic clock), and what the machines conclude is logged and mapped to
//! [`ServiceError`]s.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{ServiceError, StoreError};
use crate::ids::{BlobKey, IdSource, ImageId, UserId};
use crate::machine::{
    ReadAction, ReadEvent, ReadMachine, ReadOutcome, WriteAction, WriteEvent, WriteMachine, WriteOutcome,
};
use crate::settings::Timings;
use crate::store::{BlobStore, CommitOutcome, MetadataStore, Record};
use crate::time::{Clock, Time, Timestamp};

/// A profile as a client submits it, already validated.
#[derive(Debug, Clone)]
pub struct NewProfile {
    /// The text of a JSON object.
    pub metadata: String,
    /// The image's bytes.
    pub image: Bytes,
    /// The image's media type, recognised from its bytes.
    pub content_type: String,
}

/// A profile as a read answers it: the record and the bytes of the image it names,
/// always together.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The stored record.
    pub record: Record,
    /// The bytes of `record.image_id`.
    pub image: Bytes,
}

/// The profile operations every server offers, over one metadata store and one blob
/// store. Cheap to clone; clones share the stores.
#[derive(Clone)]
pub struct ProfileService {
    metadata: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    timings: Timings,
}

impl ProfileService {
    /// A service over these stores, taking time and ids from the given seams.
    pub fn new(
        metadata: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdSource>,
        timings: Timings,
    ) -> Self {
        ProfileService { metadata, blobs, clock, ids, timings }
    }

    /// The timings this service runs with.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// Stores `profile` as `user`'s profile: a fresh image id, a create-only blob put,
    /// then the record, committed only before the request's deadline. Returns the
    /// committed record. On any error the previous profile (if any) is untouched.
    pub async fn write(&self, user: UserId, profile: NewProfile) -> Result<Record, ServiceError> {
        let start = self.clock.now();
        let mut machine = WriteMachine::<Timestamp, ImageId>::start(start, self.timings.request_timeout);
        let mut record: Option<Record> = None;
        let mut last_error: Option<StoreError> = None;
        loop {
            let now = self.clock.now();
            let event = match machine.next(now) {
                WriteAction::IssueId => WriteEvent::IdIssued(self.ids.next_image_id()),
                WriteAction::PutBlob { image_id, .. } => {
                    let key = BlobKey::original(image_id);
                    let put = self.blobs.put_new(&key, profile.image.clone());
                    match self.within(machine.deadline(), put).await {
                        Some(Ok(())) => WriteEvent::BlobStored,
                        Some(Err(e)) => fail(&mut last_error, e),
                        None if self.past(machine.deadline()) => continue,
                        None => fail(&mut last_error, timed_out()),
                    }
                }
                WriteAction::CommitRecord { image_id, deadline } => {
                    let r = record.insert(Record {
                        user_id: user.clone(),
                        metadata: profile.metadata.clone(),
                        image_id,
                        content_type: profile.content_type.clone(),
                        image_size: profile.image.len() as u64,
                        updated_at: start,
                    });
                    let remaining = deadline.saturating_since(self.clock.now());
                    match self.within(deadline, self.metadata.put_before(r, deadline, remaining)).await {
                        Some(Ok(CommitOutcome::Committed)) => WriteEvent::RecordCommitted,
                        Some(Ok(CommitOutcome::DeadlineExceeded)) => WriteEvent::CommitRefusedLate,
                        Some(Err(e)) => fail(&mut last_error, e),
                        None if self.past(machine.deadline()) => continue,
                        None => fail(&mut last_error, timed_out()),
                    }
                }
                WriteAction::Done(WriteOutcome::Committed(_)) => {
                    return record.ok_or_else(|| ServiceError::Internal("write committed without a record".into()));
                }
                WriteAction::Done(WriteOutcome::DeadlineExceeded) => return Err(ServiceError::DeadlineExceeded),
                WriteAction::Done(WriteOutcome::Failed) => return Err(failure(last_error)),
            };
            machine.handle(event);
        }
    }

    /// `user`'s profile: the record and the bytes of the image it names, or `None`
    /// when there is no profile. Never one without the other.
    pub async fn read(&self, user: &UserId) -> Result<Option<Profile>, ServiceError> {
        let mut machine = ReadMachine::<Timestamp, ImageId>::start(self.clock.now(), self.timings.request_timeout);
        let mut record: Option<Record> = None;
        let mut image: Option<Bytes> = None;
        let mut last_error: Option<StoreError> = None;
        loop {
            let event = match machine.next(self.clock.now()) {
                ReadAction::GetRecord => match self.within(machine.deadline(), self.metadata.get(user)).await {
                    Some(Ok(found)) => {
                        let event = ReadEvent::Record(found.as_ref().map(|r| r.image_id));
                        record = found;
                        event
                    }
                    Some(Err(e)) => fail(&mut last_error, e),
                    None if self.past(machine.deadline()) => continue,
                    None => fail(&mut last_error, timed_out()),
                },
                ReadAction::GetBlob { image_id } => {
                    match self.within(machine.deadline(), self.blobs.get(&BlobKey::original(image_id))).await {
                        Some(Ok(Some(bytes))) => {
                            image = Some(bytes);
                            ReadEvent::BlobFound
                        }
                        Some(Ok(None)) => {
                            // Within the deadline the delete delay should make this impossible
                            // for a record we just read; the re-read hides it from the client,
                            // so say it here.
                            tracing::warn!(user = %user, image_id = %image_id, "blob vanished under a read; re-reading the record");
                            ReadEvent::BlobMissing
                        }
                        Some(Err(e)) => fail(&mut last_error, e),
                        None if self.past(machine.deadline()) => continue,
                        None => fail(&mut last_error, timed_out()),
                    }
                }
                ReadAction::Done(ReadOutcome::NoProfile) => return Ok(None),
                ReadAction::Done(ReadOutcome::Found(image_id)) => {
                    return match (record, image) {
                        (Some(record), Some(image)) if record.image_id == image_id => {
                            Ok(Some(Profile { record, image }))
                        }
                        _ => Err(ServiceError::Internal("read found an image without its record".into())),
                    };
                }
                ReadAction::Done(ReadOutcome::Dangling(image_id)) => {
                    tracing::error!(
                        user = %user,
                        image_id = %image_id,
                        "dangling reference: the record names an image whose blob is missing"
                    );
                    return Err(ServiceError::DanglingReference { user: user.clone(), image_id });
                }
                ReadAction::Done(ReadOutcome::Contended) => return Err(ServiceError::Contended),
                ReadAction::Done(ReadOutcome::DeadlineExceeded) => return Err(ServiceError::DeadlineExceeded),
                ReadAction::Done(ReadOutcome::Failed) => return Err(failure(last_error)),
            };
            machine.handle(event, self.clock.now());
        }
    }

    /// The original bytes of `image_id`, or `None` when no such blob exists. Bounded
    /// by the request timeout like every request.
    pub async fn image(&self, image_id: ImageId) -> Result<Option<Bytes>, ServiceError> {
        let deadline = self.clock.now().plus(self.timings.request_timeout);
        match self.within(deadline, self.blobs.get(&BlobKey::original(image_id))).await {
            Some(result) => Ok(result?),
            None => Err(ServiceError::DeadlineExceeded),
        }
    }

    /// Deletes `user`'s record; `true` when there was one. The image's blob is left
    /// for the cleaner (a read in flight may still be fetching it).
    pub async fn delete(&self, user: &UserId) -> Result<bool, ServiceError> {
        let deadline = self.clock.now().plus(self.timings.request_timeout);
        match self.within(deadline, self.metadata.delete(user)).await {
            Some(result) => Ok(result?),
            None => Err(ServiceError::DeadlineExceeded),
        }
    }

    /// Succeeds when both stores answer within `limit`.
    pub async fn ready(&self, limit: Duration) -> Result<(), ServiceError> {
        let deadline = self.clock.now().plus(limit);
        let both = async { tokio::try_join!(self.metadata.ping(), self.blobs.ping()) };
        match self.within(deadline, both).await {
            Some(result) => result.map(|_| ()).map_err(ServiceError::from),
            None => Err(ServiceError::DeadlineExceeded),
        }
    }

    fn past(&self, deadline: Timestamp) -> bool {
        self.clock.now() >= deadline
    }

    /// Runs `op` until `deadline` by the injected clock; `None` when the deadline came
    /// first (the operation is abandoned).
    async fn within<F: Future>(&self, deadline: Timestamp, op: F) -> Option<F::Output> {
        if self.past(deadline) {
            return None;
        }
        tokio::select! {
            biased;
            out = op => Some(out),
            () = self.clock.sleep_until(deadline) => None,
        }
    }
}

fn fail<E>(slot: &mut Option<StoreError>, error: StoreError) -> E
where
    E: From<FailedStep>,
{
    *slot = Some(error);
    E::from(FailedStep)
}

/// Marker for "the store call failed"; the error itself is kept by the driver.
struct FailedStep;

impl<Id> From<FailedStep> for WriteEvent<Id> {
    fn from(_: FailedStep) -> Self {
        WriteEvent::Failed
    }
}

impl<Id> From<FailedStep> for ReadEvent<Id> {
    fn from(_: FailedStep) -> Self {
        ReadEvent::Failed
    }
}

fn timed_out() -> StoreError {
    StoreError::unavailable("store call timed out")
}

fn failure(error: Option<StoreError>) -> ServiceError {
    error.map(ServiceError::from).unwrap_or_else(|| ServiceError::Internal("store operation failed".into()))
}
