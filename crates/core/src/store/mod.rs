//! The two stores the design splits a profile across, and their contracts.
//!
//! Every implementation (in-memory, SQLite, PostgreSQL, local directory, S3) must keep
//! the promises written on these traits; the conformance suites in
//! `profilestore-stores` check them against each backend.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::StoreError;
use crate::ids::{BlobKey, ImageId, UserId};
use crate::settings::Timings;
use crate::time::{Deadline, Timestamp};

mod versions;
pub use versions::{IdempotencyKey, KeyedOutcome, Precondition, ProfileVersion};

/// One user's profile record as the metadata store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Whose profile this is.
    pub user_id: UserId,
    /// The client's metadata: the text of a JSON object.
    pub metadata: String,
    /// The image the profile shows; its blob was written before this record.
    pub image_id: ImageId,
    /// The image's media type, as recognised from its bytes.
    pub content_type: String,
    /// The image's size in bytes.
    pub image_size: u64,
    /// When the write that made this record started, by the server's clock.
    pub updated_at: Timestamp,
}

/// What a deadline-guarded record write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommitOutcome {
    /// The record is stored (inserted or replaced).
    Committed,
    /// The database's clock had reached the deadline: nothing was written.
    DeadlineExceeded,
    /// The current record did not meet the write's [`Precondition`]: nothing was written.
    PreconditionFailed,
}

/// What a deadline-guarded record delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeleteOutcome {
    /// The record existed and is gone.
    Deleted,
    /// There was no record.
    NotFound,
    /// The deadline had passed: nothing was deleted.
    DeadlineExceeded,
    /// A record was there but did not meet the delete's [`Precondition`]: nothing was
    /// deleted.
    PreconditionFailed,
}

/// What one [`MetadataStore::claim_superseded`] call found in the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SupersededClaim {
    /// Entries past their delete delay that no record names: their blobs may go.
    pub due: Vec<ImageId>,
    /// Entries past their delete delay that a record names again (a restored backup,
    /// or a bug): their blobs must stay, their entries may go.
    pub named: Vec<ImageId>,
    /// Entries this call saw first: their delete delay started now.
    pub first_seen: u64,
}

/// What completed cleaner cycles recorded in the database (see
/// [`MetadataStore::sweep_marks`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepMarks {
    /// Every blob of an image minted at or before it was listed, old enough, by a
    /// cleaner cycle that completed; an incremental cycle lists only what came later.
    pub listing_horizon: Option<Timestamp>,
    /// When the last completed full sweep started, by its cleaner's clock.
    pub last_full_sweep: Option<Timestamp>,
}

impl SweepMarks {
    /// These marks with `horizon` and `full_sweep_started` folded in, each only forward.
    pub fn advanced(self, horizon: Timestamp, full_sweep_started: Option<Timestamp>) -> SweepMarks {
        SweepMarks {
            listing_horizon: Some(self.listing_horizon.map_or(horizon, |h| h.max(horizon))),
            last_full_sweep: match (self.last_full_sweep, full_sweep_started) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// The identity two stores share once paired, with the cluster-wide timings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pairing {
    /// Made once when the stores are first paired; both stores hold the same value.
    pub cluster_id: uuid::Uuid,
    /// The timings every server and cleaner of this cluster must run with.
    pub timings: Timings,
}

/// The transactional store of profile records, `user_id -> Record`.
///
/// Every method is one short transaction of its own: none reads from a snapshot older
/// than the call, and none is served by a replica.
#[async_trait::async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// The record of `user`, if any.
    async fn get(&self, user: &UserId) -> Result<Option<Record>, StoreError>;

    /// [`put_if_before`](MetadataStore::put_if_before) with no precondition.
    async fn put_before(&self, record: &Record, deadline: &Deadline) -> Result<CommitOutcome, StoreError> {
        self.put_if_before(record, &Precondition::Any, deadline).await
    }

    /// Inserts or replaces `record` **only if the request's deadline has not passed**
    /// by both of its clocks: the database's own clock is before `deadline.at()` at
    /// the moment the statement executes, and the request's time on the writing
    /// process's tick clock has not run out ([`Deadline::passed`]). Otherwise writes
    /// nothing and returns [`CommitOutcome::DeadlineExceeded`]. Both checks are made
    /// after any lock wait, so a pause of the calling process cannot slip a late write
    /// through.
    ///
    /// **Check, then commit.** A record whose check passed must become visible to
    /// [`referenced`](MetadataStore::referenced) either before that query runs or no
    /// later than `deadline.at()` by the database's clock, whatever stalls the writing
    /// process between its check and its commit; each store states how it guarantees
    /// this. The call is abandoned when it has not finished within the request's
    /// remaining time. An error means the record was not written, except when its kind
    /// is [`CommitUnknown`](crate::error::StoreErrorKind::CommitUnknown): the commit
    /// was under way and may have landed.
    ///
    /// **Conditional.** The user's current record must meet `precondition` in the same
    /// transaction as the change, else nothing is written and the answer is
    /// [`CommitOutcome::PreconditionFailed`] (or `DeadlineExceeded` when the deadline
    /// had passed too). This is the compare-and-set a write that keeps an image id
    /// (metadata only) must use: [`Precondition::Is`] the record it read.
    async fn put_if_before(
        &self,
        record: &Record,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<CommitOutcome, StoreError>;

    /// [`put_if_before`](MetadataStore::put_if_before) that also stores `key` with a
    /// copy of the record, in the same transaction, for `key.keep_for`: when a live
    /// key of the same user is already stored, nothing is written and the answer is
    /// [`KeyedOutcome::Earlier`] with the record stored under it. Attempts with one
    /// key are serialised by the database: a second attempt checks for the key only
    /// once the first has committed or rolled back, so at most one of them writes. A
    /// write refused (deadline, precondition) stores no key, so a retry may still
    /// write. Stores without keys answer `Misconfigured`.
    async fn put_keyed_before(
        &self,
        _record: &Record,
        _precondition: &Precondition,
        _key: &IdempotencyKey,
        _deadline: &Deadline,
    ) -> Result<KeyedOutcome, StoreError> {
        Err(StoreError::new(
            crate::error::StoreErrorKind::Misconfigured,
            "this metadata store keeps no idempotency keys",
        ))
    }

    /// The record a live idempotency key `key` of `user` names, with the key's
    /// fingerprint: a plain read, so that a retry is answered without putting a blob
    /// first. Only [`put_keyed_before`](MetadataStore::put_keyed_before) decides
    /// whether a write happens. Stores without keys answer `None`.
    async fn keyed_record(&self, _user: &UserId, _key: &str) -> Result<Option<(Record, String)>, StoreError> {
        Ok(None)
    }

    /// Binds this store to the timings its process runs under. From then on every
    /// guarded write ([`put_before`](MetadataStore::put_before),
    /// [`delete_before`](MetadataStore::delete_before)) and every
    /// [`referenced`](MetadataStore::referenced) query checks, in its own transaction,
    /// that the cluster's stored timings are still these (for a write whose deadline
    /// names the timings its request started under, those), and fails with
    /// [`TimingsChanged`](crate::error::StoreErrorKind::TimingsChanged) (doing nothing)
    /// otherwise; changing the stored timings waits for the guarded writes in flight.
    /// So no process commits or asks under timings the cluster no longer has. Stores
    /// whose timings never change (in-memory ones) may ignore it.
    fn run_under_timings(&self, _timings: &Timings) {}

    /// Deletes the record of `user` under the same deadline rule as
    /// [`put_before`](MetadataStore::put_before): once the deadline has passed by the
    /// database's clock or the tick clock, nothing is deleted and the answer is
    /// [`DeleteOutcome::DeadlineExceeded`]. So a delete that timed out can never remove
    /// a profile written after its deadline.
    async fn delete_before(&self, user: &UserId, deadline: &Deadline) -> Result<DeleteOutcome, StoreError> {
        self.delete_if_before(user, &Precondition::Any, deadline).await
    }

    /// [`delete_before`](MetadataStore::delete_before), only if the user's current
    /// record meets `precondition` in the same transaction; else nothing is deleted
    /// and the answer is [`DeleteOutcome::PreconditionFailed`]. When there is no record
    /// the answer is `NotFound` whatever the precondition (as HTTP answers a
    /// conditional `DELETE` of nothing: 404).
    async fn delete_if_before(
        &self,
        user: &UserId,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<DeleteOutcome, StoreError>;

    /// Whether some record names `image_id` at the moment of the call: a plain read of
    /// the latest committed state, for serving an image only while a profile shows it.
    /// It carries none of [`referenced`](MetadataStore::referenced)'s guarantees to
    /// the cleaner and must never decide a delete. The default asks `referenced`;
    /// stores whose `referenced` writes a fence answer with a plain read instead.
    async fn names_image(&self, image_id: &ImageId) -> Result<bool, StoreError> {
        Ok(self.referenced(std::slice::from_ref(image_id)).await?.contains(image_id))
    }

    /// Which of `ids` some record names, by one query in a fresh transaction on the
    /// primary. Ids not in the answer were unreferenced at some moment during the
    /// call, and no record naming one of them can become visible later unless its
    /// write's deadline check came after this query (see
    /// [`put_before`](MetadataStore::put_before)).
    async fn referenced(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError>;

    /// The superseded-image queue: images whose record a write replaced or a delete
    /// removed. Every [`put_before`](MetadataStore::put_before) that replaces a record
    /// naming another image, and every [`delete_before`](MetadataStore::delete_before)
    /// that removes one, enqueues the old image id **in the same transaction**, so an
    /// entry is visible exactly when the change that made it is.
    ///
    /// In one transaction, by the database's clock `now`: stamps `first_seen = now` on
    /// every entry that has none (the delete delay starts when a cleaner first sees the
    /// entry, never earlier), then answers up to `limit` entries, oldest first, whose
    /// `first_seen <= now - delete_delay`, split into those no record names (`due`) and
    /// those some record names (`named`). Ids in `due` obey the promise of
    /// [`referenced`](MetadataStore::referenced): unreferenced at some moment during
    /// the call, and no record naming one can become visible later unless its write's
    /// deadline check came after this call. Checks the bound timings like `referenced`
    /// whenever it stamps or answers an entry (a claim that finds nothing to do may
    /// answer an empty claim without asking).
    async fn claim_superseded(&self, _delete_delay: Duration, _limit: usize) -> Result<SupersededClaim, StoreError> {
        Err(no_cleaner_state())
    }

    /// Removes these ids from the superseded-image queue (ids not in it are ignored);
    /// answers how many were removed.
    async fn forget_superseded(&self, _ids: &[ImageId]) -> Result<u64, StoreError> {
        Err(no_cleaner_state())
    }

    /// Which of `ids` the superseded-image queue holds (for the audit: a queued orphan
    /// is on its way out, not left behind).
    async fn superseded_among(&self, _ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        Err(no_cleaner_state())
    }

    /// How many entries the superseded-image queue holds.
    async fn count_superseded(&self) -> Result<u64, StoreError> {
        Err(no_cleaner_state())
    }

    /// What completed cleaner cycles have left behind for the next ones: the listing
    /// horizon and when the last full sweep started. Both `None` until set.
    async fn sweep_marks(&self) -> Result<SweepMarks, StoreError> {
        Err(no_cleaner_state())
    }

    /// Records a completed cycle: moves the listing horizon forward to `horizon`, and,
    /// for a full sweep (`full_sweep_started` given), the last full sweep's start to it;
    /// neither ever moves back (a later stored value stays). Answers the marks stored
    /// after the call.
    async fn record_sweep(
        &self,
        _horizon: Timestamp,
        _full_sweep_started: Option<Timestamp>,
    ) -> Result<SweepMarks, StoreError> {
        Err(no_cleaner_state())
    }

    /// How many records exist.
    async fn count_records(&self) -> Result<u64, StoreError>;

    /// Whether any record exists: the same answer as `count_records() > 0`, which
    /// stores with a cheaper query than a full count (PostgreSQL counts by scanning)
    /// should give instead.
    async fn has_records(&self) -> Result<bool, StoreError> {
        Ok(self.count_records().await? > 0)
    }

    /// Up to `limit` records in ascending user-id order, starting after `after`.
    async fn records_after(&self, after: Option<&UserId>, limit: usize) -> Result<Vec<Record>, StoreError>;

    /// Succeeds when the store answers a trivial query.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The database's own clock (the one it judges deadlines by), read by the
    /// database, truncated to whole milliseconds. For measuring this process's offset
    /// to it.
    async fn clock(&self) -> Result<Timestamp, StoreError> {
        Err(StoreError::new(crate::error::StoreErrorKind::Misconfigured, "this metadata store cannot read its clock"))
    }

    /// The pairing stored in this database, if it was ever paired.
    async fn read_pairing(&self) -> Result<Option<Pairing>, StoreError>;

    /// Stores `pairing` unless one is stored already; returns the one stored after the
    /// call (the existing one when it was there first), so concurrent starts agree.
    async fn create_pairing(&self, pairing: &Pairing) -> Result<Pairing, StoreError>;

    /// Replaces the stored timings of the pairing with `cluster_id`.
    async fn update_timings(&self, cluster_id: uuid::Uuid, timings: &Timings) -> Result<(), StoreError>;
}

/// The answer of a store that keeps no superseded-image queue or sweep marks: the
/// cleaner then fails its cycle, deleting nothing.
fn no_cleaner_state() -> StoreError {
    StoreError::new(
        crate::error::StoreErrorKind::Misconfigured,
        "this metadata store keeps no superseded-image queue or sweep marks",
    )
}

/// Whether `key` is in the blob-key layout and names an image minted at or after
/// `horizon`: the keys [`BlobStore::list_since`] must list.
pub fn minted_since(key: &str, horizon: Timestamp) -> bool {
    BlobKey::parse(key).is_some_and(|k| k.image_id.minted_at() >= horizon)
}

/// One object as a blob listing reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBlob {
    /// The object's key relative to the store's root, exactly as stored; it may lie
    /// outside the blob-key layout.
    pub key: String,
    /// The object's creation time by the blob store's clock, rounded **up** to the
    /// store's precision so that a blob never looks older than it is.
    pub created: Timestamp,
    /// The object's size in bytes.
    pub size: u64,
}

/// The store of image bytes, keyed by [`BlobKey`].
///
/// Promises: puts are atomic (a reader sees the whole object or none) and never
/// overwrite; reads see every completed put; deleting a missing key succeeds.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` under `key` unless the key exists, in which case nothing changes
    /// and the error kind is [`AlreadyExists`](crate::error::StoreErrorKind::AlreadyExists).
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError>;

    /// The bytes under `key`, or `None` when there is no such blob.
    async fn get(&self, key: &BlobKey) -> Result<Option<Bytes>, StoreError>;

    /// Whether a blob exists under `key`, without fetching its bytes.
    async fn exists(&self, key: &BlobKey) -> Result<bool, StoreError>;

    /// Deletes every key in `keys`; keys already gone count as deleted. On error some
    /// of the keys may have been deleted (deleting is idempotent, so retry the lot).
    async fn delete_many(&self, keys: &[BlobKey]) -> Result<(), StoreError>;

    /// Every object in the store (including keys outside the layout), in pages of at
    /// most `page_size`. For every `d` ending in `/`, the keys starting with `d` come
    /// one after another (a sorted listing and a depth-first walk both do this): the
    /// cleaner relies on an image's keys being adjacent. The stream holds a bounded
    /// number of pages in memory whatever the store's size: one page, or for a store
    /// that lists ahead in parallel, a few per listing task (each store says how many).
    /// After an error the stream ends; dropping it stops any work it started.
    fn list(&self, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>>;

    /// Like [`list`](BlobStore::list), but only as much of the store as holds images
    /// minted at or after `horizon` (by [`ImageId::minted_at`]): every key of the
    /// layout whose image was minted then or later and put by
    /// [`put_new`](BlobStore::put_new) is listed, no key of the layout whose image was
    /// minted before; keys outside the layout may be listed or not. An image's keys
    /// come one after another (keys of one shard need not). A store may miss what it
    /// keeps no record of, and says so (the local directory: files placed there by
    /// other means, or a put whose record a power loss took): nothing is ever deleted
    /// because it was not listed, and the full sweep lists everything. Stores whose
    /// keys sort by shard and then id start each shard's listing after
    /// [`mint_time_bound`](crate::ids::mint_time_bound); the default lists everything
    /// and filters, which costs a full listing.
    fn list_since(&self, horizon: Timestamp, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        use futures::StreamExt;
        self.list(page_size)
            .map(move |page| page.map(|blobs| blobs.into_iter().filter(|b| minted_since(&b.key, horizon)).collect()))
            .boxed()
    }

    /// Removes staging files an interrupted put left behind, when they were last
    /// modified at or before `older_than`; returns how many were removed. Stores with
    /// atomic puts and no staging files (the default) have nothing to do.
    async fn sweep_staging(&self, _older_than: Timestamp) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Every object, as [`list`](BlobStore::list) answers them, while removing the
    /// staging files [`sweep_staging`](BlobStore::sweep_staging) would remove for
    /// `older_than`: what a full sweep needs, in as few walks of the store as the store
    /// can manage. What was removed, and the first failure to remove, are counted on
    /// the answer's [`StagingTally`], complete once the pages have ended; a failure to
    /// remove a staging file never ends the listing.
    ///
    /// The default sweeps first (the returned future completes after it), then lists:
    /// two walks, right for stores whose sweep has nothing to walk. A store that finds
    /// its staging files while listing (a local directory) does both in one walk and
    /// answers at once.
    async fn list_sweeping_staging(&self, page_size: usize, older_than: Timestamp) -> SweepingListing<'_> {
        let staging = Arc::new(StagingTally::default());
        match self.sweep_staging(older_than).await {
            Ok(n) => staging.removed_some(n),
            Err(e) => staging.failed(e),
        }
        SweepingListing { pages: self.list(page_size), staging }
    }

    /// Succeeds when the store answers a trivial request.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Writes (replacing) the clock probe object, [`CLOCK_PROBE_KEY`], and answers the
    /// creation time the store reports for it, truncated to the store's precision
    /// (not rounded up, unlike a listing), with that precision. For measuring this
    /// process's offset to the clock that stamps blobs.
    async fn probe_clock(&self) -> Result<ClockProbe, StoreError> {
        Err(StoreError::new(crate::error::StoreErrorKind::Misconfigured, "this blob store cannot probe its clock"))
    }

    /// The pairing marker's contents, if the store was ever paired.
    async fn read_marker(&self) -> Result<Option<Bytes>, StoreError>;

    /// Writes the pairing marker unless one exists
    /// ([`AlreadyExists`](crate::error::StoreErrorKind::AlreadyExists) then).
    async fn create_marker(&self, contents: Bytes) -> Result<(), StoreError>;
}

/// A listing that removes stale staging files as it goes; see
/// [`BlobStore::list_sweeping_staging`].
pub struct SweepingListing<'a> {
    /// The pages, exactly as [`BlobStore::list`] would answer them.
    pub pages: BoxStream<'a, Result<Vec<ListedBlob>, StoreError>>,
    /// What the sweep did so far; final once `pages` has ended.
    pub staging: Arc<StagingTally>,
}

/// Staging files removed by a sweep, and its first failure. Shared between the walk
/// that removes them and the caller that reports them.
#[derive(Debug, Default)]
pub struct StagingTally {
    removed: AtomicU64,
    error: Mutex<Option<StoreError>>,
}

impl StagingTally {
    /// Counts `n` more staging files removed.
    pub fn removed_some(&self, n: u64) {
        self.removed.fetch_add(n, Ordering::Relaxed);
    }

    /// Notes a failure to find or remove a staging file; only the first is kept.
    pub fn failed(&self, error: StoreError) {
        let mut first = self.error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(error);
    }

    /// How many staging files were removed so far.
    pub fn removed(&self) -> u64 {
        self.removed.load(Ordering::Relaxed)
    }

    /// The first failure, taken out (a second call answers `None`).
    pub fn take_error(&self) -> Option<StoreError> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// What a blob store reported for its clock probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockProbe {
    /// The probe's creation time by the store's clock, truncated to `precision`.
    pub created: Timestamp,
    /// The granularity of the store's creation times (1 s for S3's `Last-Modified`).
    pub precision: std::time::Duration,
}

/// The key of the clock probe object, outside the blob-key layout like the marker.
pub const CLOCK_PROBE_KEY: &str = "_profilestore/clock-probe";

/// The key of the pairing marker object. It is outside the blob-key layout, so no
/// cleaner ever deletes it.
pub const PAIRING_MARKER_KEY: &str = "_profilestore/pairing.json";
