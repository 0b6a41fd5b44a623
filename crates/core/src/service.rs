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

mod conditional;
mod status;
pub use conditional::{Condition, Written};
pub use status::{ServiceStatus, Tally};

use crate::clocks::ClockCheck;
use crate::error::{ServiceError, StoreError, StoreErrorKind};
use crate::ids::{BlobKey, IdSource, ImageId, UserId};
use crate::machine::{
    ReadAction, ReadEvent, ReadMachine, ReadOutcome, WriteAction, WriteEvent, WriteMachine, WriteOutcome,
};
use crate::metrics::{self, DeadlinePhase};
use crate::settings::Timings;
use crate::store::{BlobStore, DeleteOutcome, IdempotencyKey, KeyedOutcome, MetadataStore, Record};
use crate::time::{Clock, Deadline, Timestamp};

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
    timings: Arc<std::sync::RwLock<Timings>>,
    clock_check: Option<Arc<ClockCheck>>,
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
        metadata.run_under_timings(&timings);
        let timings = Arc::new(std::sync::RwLock::new(timings));
        ProfileService { metadata, blobs, clock, ids, timings, clock_check: None }
    }

    /// Refuses writes and deletes while `check` says a peer clock may be beyond the
    /// bound (or is unmeasured), and makes [`ready`](ProfileService::ready) fail then.
    pub fn with_clock_check(mut self, check: Arc<ClockCheck>) -> Self {
        self.clock_check = Some(check);
        self
    }

    /// The clock check, when one is attached.
    pub fn clock_check(&self) -> Option<&Arc<ClockCheck>> {
        self.clock_check.as_ref()
    }

    fn clocks_agree(&self) -> Result<(), ServiceError> {
        match &self.clock_check {
            Some(check) => check.verdict().map_err(|fault| ServiceError::ClockOutOfBounds(fault.to_string())),
            None => Ok(()),
        }
    }

    /// The timings this service runs with now.
    pub fn timings(&self) -> Timings {
        *self.timings.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Adopts the cluster's stored timings if they changed: called after a store
    /// refused a call under the old ones (that request fails and may be retried), and
    /// periodically by servers, so one that only reads does not keep old timings.
    pub async fn reload_timings(&self) {
        match self.metadata.read_pairing().await {
            Ok(Some(pairing)) => {
                let old = self.timings();
                if old != pairing.timings {
                    self.metadata.run_under_timings(&pairing.timings);
                    *self.timings.write().unwrap_or_else(|p| p.into_inner()) = pairing.timings;
                    if let Some(check) = &self.clock_check {
                        check.set_bound(pairing.timings.clock_skew);
                    }
                    tracing::warn!(old = ?old, new = ?pairing.timings, "the cluster's timings changed: adopted the stored ones");
                }
            }
            Ok(None) => tracing::error!("the database no longer holds a pairing; not reloading timings"),
            Err(e) => {
                tracing::warn!(error = %e, "could not reload the cluster's timings; retrying on the next refusal")
            }
        }
    }

    /// Stores `profile` as `user`'s profile: a fresh image id, a create-only blob put,
    /// then the record, committed only before the request's deadline. Returns the
    /// committed record. On any error the previous profile (if any) is untouched.
    pub async fn write(&self, user: UserId, profile: NewProfile) -> Result<Record, ServiceError> {
        self.write_if(user, profile, &Condition::None).await
    }

    /// [`write`](Self::write), committed only if `user`'s profile meets `condition`
    /// when the record is committed (checked in the commit's own transaction: a
    /// version is compared with the record read before the upload, and that record
    /// must still be there at the commit); else [`ServiceError::PreconditionFailed`]
    /// and the previous profile is untouched. A write refused at its commit has put
    /// its blob already: an orphan for the cleaner, as any failed write leaves.
    pub async fn write_if(
        &self,
        user: UserId,
        profile: NewProfile,
        condition: &Condition,
    ) -> Result<Record, ServiceError> {
        Ok(self.write_keyed(user, profile, condition, None).await?.into_record())
    }

    /// [`write_if`](Self::write_if) under an idempotency key: when a live key of
    /// `user` already names a write, nothing is written (not even the blob, when the
    /// key is found before the upload is stored) and the answer is that write's record
    /// and fingerprint, whatever happened to the profile since. The key is stored with
    /// the record in the commit's transaction, and attempts with one key are
    /// serialised there, so at most one of them writes.
    pub async fn write_keyed(
        &self,
        user: UserId,
        profile: NewProfile,
        condition: &Condition,
        key: Option<&IdempotencyKey>,
    ) -> Result<Written, ServiceError> {
        let result = self.write_steps(user, profile, condition, key).await;
        metrics::write_ended(match &result {
            Ok(Written::New(_)) => "committed",
            Ok(Written::Earlier { .. }) => "replayed",
            Err(ServiceError::DeadlineExceeded) => "deadline_exceeded",
            Err(ServiceError::CommitUnknown(_)) => "commit_unknown",
            Err(
                ServiceError::ClockOutOfBounds(_) | ServiceError::TimingsChanged(_) | ServiceError::PreconditionFailed,
            ) => "refused",
            Err(_) => "failed",
        });
        result
    }

    async fn write_steps(
        &self,
        user: UserId,
        profile: NewProfile,
        condition: &Condition,
        key: Option<&IdempotencyKey>,
    ) -> Result<Written, ServiceError> {
        self.clocks_agree()?;
        let deadline = self.start_request();
        if let Some(earlier) = self.earlier_write(&user, key, &deadline).await? {
            return Ok(earlier);
        }
        let precondition =
            self.precondition_for(&user, condition, &deadline).await?.ok_or(ServiceError::PreconditionFailed)?;
        let timeout = deadline.timeout();
        let start = request_start(&deadline, timeout);
        let mut machine = WriteMachine::<Timestamp, ImageId>::start(start, timeout);
        let mut earlier: Option<Written> = None;
        let mut record: Option<Record> = None;
        let mut last_error: Option<StoreError> = None;
        // Where a deadline would cut the write now.
        let mut cut_phase = DeadlinePhase::BeforeBlob;
        loop {
            let now = request_time(&deadline);
            let event = match machine.next(now) {
                WriteAction::IssueId => WriteEvent::IdIssued(self.ids.next_image_id()),
                WriteAction::PutBlob { image_id, .. } => {
                    let key = BlobKey::original(image_id);
                    let put = self.blobs.put_new(&key, profile.image.clone());
                    match within(&deadline, put).await {
                        Some(Ok(())) => {
                            cut_phase = DeadlinePhase::BetweenBlobAndRecord;
                            WriteEvent::BlobStored
                        }
                        Some(Err(e)) => fail(&mut last_error, e),
                        None => continue,
                    }
                }
                WriteAction::CommitRecord { image_id, .. } => {
                    let r = record.insert(Record {
                        user_id: user.clone(),
                        metadata: profile.metadata.clone(),
                        image_id,
                        content_type: profile.content_type.clone(),
                        image_size: profile.image.len() as u64,
                        updated_at: start,
                    });
                    let commit = async {
                        match key {
                            Some(key) => self.metadata.put_keyed_before(r, &precondition, key, &deadline).await,
                            None => Ok(self.metadata.put_if_before(r, &precondition, &deadline).await?.into()),
                        }
                    };
                    match within(&deadline, commit).await {
                        Some(Ok(KeyedOutcome::Committed)) => WriteEvent::RecordCommitted,
                        Some(Ok(KeyedOutcome::Earlier { record: first, fingerprint })) => {
                            // Another attempt with this key wrote: its record is the answer,
                            // this one's blob an orphan for the cleaner.
                            earlier = Some(Written::Earlier { record: first, fingerprint });
                            WriteEvent::RecordCommitted
                        }
                        Some(Ok(KeyedOutcome::PreconditionFailed)) => WriteEvent::CommitRefusedPrecondition,
                        Some(Ok(KeyedOutcome::DeadlineExceeded)) => {
                            cut_phase = DeadlinePhase::RefusedAtCommit;
                            WriteEvent::CommitRefusedLate
                        }
                        Some(Err(e)) if e.kind() == StoreErrorKind::CommitUnknown => return Err(e.into()),
                        Some(Err(e)) if e.kind() == StoreErrorKind::TimingsChanged => {
                            self.reload_timings().await;
                            return Err(e.into());
                        }
                        Some(Err(e)) => fail(&mut last_error, e),
                        // Abandoned in flight: the store may have passed its check and be
                        // about to commit (its protocol keeps that safe), so the client
                        // must not be told that nothing was written.
                        None => {
                            tracing::warn!(user = %user, image_id = %image_id, "write ran out of time while its record was being committed");
                            return Err(ServiceError::CommitUnknown("ran out of time".into()));
                        }
                    }
                }
                WriteAction::Done(WriteOutcome::Committed(_)) => {
                    if let Some(earlier) = earlier {
                        return Ok(earlier);
                    }
                    let record =
                        record.ok_or_else(|| ServiceError::Internal("write committed without a record".into()))?;
                    return Ok(Written::New(record));
                }
                WriteAction::Done(WriteOutcome::DeadlineExceeded) => {
                    metrics::deadline_cut(cut_phase);
                    return Err(ServiceError::DeadlineExceeded);
                }
                WriteAction::Done(WriteOutcome::PreconditionFailed) => return Err(ServiceError::PreconditionFailed),
                WriteAction::Done(WriteOutcome::Failed) => return Err(failure(last_error)),
            };
            machine.handle(event);
        }
    }

    /// `user`'s profile: the record and the bytes of the image it names, or `None`
    /// when there is no profile. Never one without the other.
    pub async fn read(&self, user: &UserId) -> Result<Option<Profile>, ServiceError> {
        let deadline = self.start_request();
        let timeout = deadline.timeout();
        let mut machine = ReadMachine::<Timestamp, ImageId>::start(request_start(&deadline, timeout), timeout);
        let mut record: Option<Record> = None;
        let mut image: Option<Bytes> = None;
        let mut last_error: Option<StoreError> = None;
        loop {
            let event = match machine.next(request_time(&deadline)) {
                ReadAction::GetRecord => match within(&deadline, self.metadata.get(user)).await {
                    Some(Ok(found)) => {
                        let event = ReadEvent::Record(found.as_ref().map(|r| r.image_id));
                        record = found;
                        event
                    }
                    Some(Err(e)) => fail(&mut last_error, e),
                    None => continue,
                },
                ReadAction::GetBlob { image_id } => {
                    match within(&deadline, self.blobs.get(&BlobKey::original(image_id))).await {
                        Some(Ok(Some(bytes))) => {
                            image = Some(bytes);
                            ReadEvent::BlobFound
                        }
                        Some(Ok(None)) => {
                            // Within the deadline the delete delay should make this impossible
                            // for a record we just read; the re-read hides it from the client,
                            // so say it here.
                            tracing::warn!(user = %user, image_id = %image_id, "blob vanished under a read; re-reading the record");
                            metrics::read_blob_missing();
                            ReadEvent::BlobMissing
                        }
                        Some(Err(e)) => fail(&mut last_error, e),
                        None => continue,
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
                    metrics::dangling_reference();
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
            machine.handle(event, request_time(&deadline));
        }
    }

    /// The original bytes of `image_id` while a profile names it, or `None` (no record
    /// names it, or no such blob exists). So a deleted or replaced photo stops being
    /// served the moment its record moves on, long before the cleaner deletes its
    /// bytes. Bounded by the request timeout like every request.
    pub async fn image(&self, image_id: ImageId) -> Result<Option<Bytes>, ServiceError> {
        let deadline = self.start_request();
        let fetch = async {
            if !self.metadata.names_image(&image_id).await? {
                return Ok(None);
            }
            self.blobs.get(&BlobKey::original(image_id)).await
        };
        match within(&deadline, fetch).await {
            Some(result) => Ok(result?),
            None => Err(ServiceError::DeadlineExceeded),
        }
    }

    /// Deletes `user`'s record; `true` when there was one. The database refuses the
    /// delete once the request's deadline has passed, like a write, so a delete that
    /// answered [`ServiceError::DeadlineExceeded`] never removes a profile written
    /// after it. The image's blob is left for the cleaner (a read in flight may still
    /// be fetching it).
    pub async fn delete(&self, user: &UserId) -> Result<bool, ServiceError> {
        self.delete_if(user, &Condition::None).await
    }

    /// [`delete`](Self::delete), only if `user`'s profile meets `condition` in the
    /// delete's own transaction; else [`ServiceError::PreconditionFailed`] and nothing
    /// is deleted. With no profile the answer is `false` whatever the condition.
    pub async fn delete_if(&self, user: &UserId, condition: &Condition) -> Result<bool, ServiceError> {
        self.clocks_agree()?;
        let deadline = self.start_request();
        // No profile to compare a version with: as HTTP answers a conditional delete
        // of nothing, "not found".
        let Some(precondition) = self.precondition_for(user, condition, &deadline).await? else {
            return Ok(false);
        };
        match within(&deadline, self.metadata.delete_if_before(user, &precondition, &deadline)).await {
            Some(Ok(DeleteOutcome::Deleted)) => Ok(true),
            Some(Ok(DeleteOutcome::NotFound)) => Ok(false),
            Some(Ok(DeleteOutcome::PreconditionFailed)) => Err(ServiceError::PreconditionFailed),
            Some(Ok(DeleteOutcome::DeadlineExceeded)) => Err(ServiceError::DeadlineExceeded),
            Some(Err(e)) if e.kind() == StoreErrorKind::TimingsChanged => {
                self.reload_timings().await;
                Err(e.into())
            }
            Some(Err(e)) => Err(e.into()),
            None => Err(ServiceError::CommitUnknown("ran out of time".into())),
        }
    }

    /// Succeeds when both stores answer within `limit` and, with a clock check
    /// attached, the clocks agree.
    pub async fn ready(&self, limit: Duration) -> Result<(), ServiceError> {
        self.clocks_agree()?;
        let deadline = Deadline::after(self.clock.clone(), limit);
        let both = async { tokio::try_join!(self.metadata.ping(), self.blobs.ping()) };
        match within(&deadline, both).await {
            Some(result) => result.map(|_| ()).map_err(ServiceError::from),
            None => Err(ServiceError::DeadlineExceeded),
        }
    }

    /// A new request's deadline, `request_timeout` from now.
    fn start_request(&self) -> Deadline {
        let timings = self.timings();
        Deadline::after(self.clock.clone(), timings.request_timeout).under(timings)
    }
}

/// When the request started, on the wall clock: its deadline minus the timeout, so a
/// machine started here has exactly the deadline the stores are given.
fn request_start(deadline: &Deadline, timeout: Duration) -> Timestamp {
    let timeout = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_millis(deadline.at().as_millis().saturating_sub(timeout))
}

/// The request's own time for its step machine: its deadline minus the time left on
/// the tick clock, so the machine sees the deadline exactly when the tick clock says
/// it has passed, whatever the wall clock does meanwhile. Rounded up: the machine
/// never sees the request younger than it is.
fn request_time(deadline: &Deadline) -> Timestamp {
    let left = i64::try_from(deadline.remaining().as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_millis(deadline.at().as_millis().saturating_sub(left))
}

/// Runs `op` until the request's time runs out; `None` when it ran out first (the
/// operation is abandoned).
async fn within<F: Future>(deadline: &Deadline, op: F) -> Option<F::Output> {
    if deadline.passed() {
        return None;
    }
    tokio::select! {
        biased;
        out = op => Some(out),
        () = deadline.expired() => None,
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

fn failure(error: Option<StoreError>) -> ServiceError {
    error.map(ServiceError::from).unwrap_or_else(|| ServiceError::Internal("store operation failed".into()))
}
