//! Stores seen through a hook that runs before every call: how tests inject
//! failures, latency and pauses at chosen calls without rewriting a whole store.
//! For tests only, like `profilestore_core::memory`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use profilestore_core::error::StoreError;
use profilestore_core::ids::{BlobKey, ImageId, UserId};
use profilestore_core::settings::Timings;
use profilestore_core::store::{
    BlobStore, ClockProbe, CommitOutcome, DeleteOutcome, IdempotencyKey, KeyedOutcome, ListedBlob, MetadataStore,
    Pairing, Precondition, Record, SupersededClaim, SweepMarks,
};
use profilestore_core::time::{Deadline, Timestamp};

/// A store call, as a [`CallHook`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreCall {
    /// [`MetadataStore::get`] and [`MetadataStore::names_image`].
    GetRecord,
    /// [`MetadataStore::put_before`].
    CommitRecord,
    /// [`MetadataStore::delete_before`].
    DeleteRecord,
    /// [`MetadataStore::referenced`].
    Referenced,
    /// [`MetadataStore::count_records`] and [`MetadataStore::has_records`].
    CountRecords,
    /// [`MetadataStore::claim_superseded`].
    ClaimSuperseded,
    /// [`MetadataStore::forget_superseded`], [`MetadataStore::superseded_among`] and
    /// [`MetadataStore::count_superseded`].
    ForgetSuperseded,
    /// [`MetadataStore::sweep_marks`] and [`MetadataStore::record_sweep`].
    SweepMarks,
    /// [`MetadataStore::records_after`].
    RecordsAfter,
    /// [`MetadataStore::ping`] and [`MetadataStore::clock`].
    PingMetadata,
    /// [`MetadataStore::read_pairing`], [`MetadataStore::create_pairing`] and
    /// [`MetadataStore::update_timings`].
    Pairing,
    /// [`BlobStore::put_new`].
    PutBlob,
    /// [`BlobStore::get`].
    GetBlob,
    /// [`BlobStore::exists`].
    BlobExists,
    /// [`BlobStore::delete_many`].
    DeleteBlobs,
    /// Each page of [`BlobStore::list`].
    ListPage,
    /// [`BlobStore::sweep_staging`].
    SweepStaging,
    /// [`BlobStore::ping`] and [`BlobStore::probe_clock`].
    PingBlobs,
    /// [`BlobStore::read_marker`] and [`BlobStore::create_marker`].
    Marker,
}

/// A call as a hook sees it: its kind, with the arguments tests look at.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    /// [`MetadataStore::referenced`] of these ids.
    Referenced(&'a [ImageId]),
    /// [`BlobStore::delete_many`] of these keys.
    DeleteBlobs(&'a [BlobKey]),
    /// [`BlobStore::sweep_staging`] of files modified at or before this time.
    SweepStaging(Timestamp),
    /// Page `page` (0: the first) of one [`BlobStore::list`].
    ListPage {
        /// The page's index within its listing.
        page: usize,
    },
    /// Any other call, by kind.
    Other(StoreCall),
}

impl Call<'_> {
    /// The kind of call.
    pub fn kind(&self) -> StoreCall {
        match self {
            Call::Referenced(_) => StoreCall::Referenced,
            Call::DeleteBlobs(_) => StoreCall::DeleteBlobs,
            Call::SweepStaging(_) => StoreCall::SweepStaging,
            Call::ListPage { .. } => StoreCall::ListPage,
            Call::Other(kind) => *kind,
        }
    }
}

/// What runs around the calls of a [`Hooked`] store.
#[async_trait::async_trait]
pub trait CallHook: Send + Sync + 'static {
    /// Runs before a call of kind `call` reaches the store (it may wait); an error
    /// fails the call without it reaching the store.
    async fn before(&self, _call: StoreCall) -> Result<(), StoreError> {
        Ok(())
    }

    /// Like [`before`](CallHook::before), seeing the call's arguments; by default it
    /// is `before` of the call's kind.
    async fn before_call(&self, call: &Call<'_>) -> Result<(), StoreError> {
        self.before(call.kind()).await
    }

    /// Runs after the store answered `call` successfully.
    fn after(&self, _call: &Call<'_>) {}

    /// Runs after a blob fetch the store answered, with whether the blob was there.
    fn fetched(&self, _found: bool) {}
}

/// A hook shared between several stores (a metadata and a blob store seen by one
/// test) is a hook too.
#[async_trait::async_trait]
impl<H: CallHook> CallHook for Arc<H> {
    async fn before_call(&self, call: &Call<'_>) -> Result<(), StoreError> {
        self.as_ref().before_call(call).await
    }

    fn after(&self, call: &Call<'_>) {
        self.as_ref().after(call);
    }

    fn fetched(&self, found: bool) {
        self.as_ref().fetched(found);
    }
}

/// A store whose every call passes a [`CallHook`] first. Keeps the inner store's
/// contract, except for what the hook does.
pub struct Hooked<S: ?Sized, H> {
    inner: Arc<S>,
    hook: H,
}

impl<S: ?Sized, H> Hooked<S, H> {
    /// `inner` seen through `hook`.
    pub fn new(inner: Arc<S>, hook: H) -> Arc<Self> {
        Arc::new(Hooked { inner, hook })
    }

    /// The hook, to inspect what it saw.
    pub fn hook(&self) -> &H {
        &self.hook
    }
}

#[async_trait::async_trait]
impl<H: CallHook> MetadataStore for Hooked<dyn MetadataStore, H> {
    async fn get(&self, user: &UserId) -> Result<Option<Record>, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::GetRecord)).await?;
        self.inner.get(user).await
    }

    async fn put_if_before(
        &self,
        record: &Record,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<CommitOutcome, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::CommitRecord)).await?;
        self.inner.put_if_before(record, precondition, deadline).await
    }

    async fn put_keyed_before(
        &self,
        record: &Record,
        precondition: &Precondition,
        key: &IdempotencyKey,
        deadline: &Deadline,
    ) -> Result<KeyedOutcome, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::CommitRecord)).await?;
        self.inner.put_keyed_before(record, precondition, key, deadline).await
    }

    async fn keyed_record(&self, user: &UserId, key: &str) -> Result<Option<(Record, String)>, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::GetRecord)).await?;
        self.inner.keyed_record(user, key).await
    }

    fn run_under_timings(&self, timings: &Timings) {
        self.inner.run_under_timings(timings);
    }

    async fn delete_if_before(
        &self,
        user: &UserId,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<DeleteOutcome, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::DeleteRecord)).await?;
        self.inner.delete_if_before(user, precondition, deadline).await
    }

    async fn names_image(&self, image_id: &ImageId) -> Result<bool, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::GetRecord)).await?;
        self.inner.names_image(image_id).await
    }

    async fn referenced(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        let call = Call::Referenced(ids);
        self.hook.before_call(&call).await?;
        let answer = self.inner.referenced(ids).await?;
        self.hook.after(&call);
        Ok(answer)
    }

    async fn count_records(&self) -> Result<u64, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::CountRecords)).await?;
        self.inner.count_records().await
    }

    async fn has_records(&self) -> Result<bool, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::CountRecords)).await?;
        self.inner.has_records().await
    }

    async fn claim_superseded(&self, delete_delay: Duration, limit: usize) -> Result<SupersededClaim, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::ClaimSuperseded)).await?;
        self.inner.claim_superseded(delete_delay, limit).await
    }

    async fn forget_superseded(&self, ids: &[ImageId]) -> Result<u64, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::ForgetSuperseded)).await?;
        self.inner.forget_superseded(ids).await
    }

    async fn superseded_among(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::ForgetSuperseded)).await?;
        self.inner.superseded_among(ids).await
    }

    async fn count_superseded(&self) -> Result<u64, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::ForgetSuperseded)).await?;
        self.inner.count_superseded().await
    }

    async fn sweep_marks(&self) -> Result<SweepMarks, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::SweepMarks)).await?;
        self.inner.sweep_marks().await
    }

    async fn record_sweep(
        &self,
        horizon: Timestamp,
        full_sweep_started: Option<Timestamp>,
    ) -> Result<SweepMarks, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::SweepMarks)).await?;
        self.inner.record_sweep(horizon, full_sweep_started).await
    }

    async fn records_after(&self, after: Option<&UserId>, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::RecordsAfter)).await?;
        self.inner.records_after(after, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::PingMetadata)).await?;
        self.inner.ping().await
    }

    async fn clock(&self) -> Result<Timestamp, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::PingMetadata)).await?;
        self.inner.clock().await
    }

    async fn read_pairing(&self) -> Result<Option<Pairing>, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::Pairing)).await?;
        self.inner.read_pairing().await
    }

    async fn create_pairing(&self, pairing: &Pairing) -> Result<Pairing, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::Pairing)).await?;
        self.inner.create_pairing(pairing).await
    }

    async fn update_timings(&self, cluster_id: uuid::Uuid, timings: &Timings) -> Result<(), StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::Pairing)).await?;
        self.inner.update_timings(cluster_id, timings).await
    }
}

#[async_trait::async_trait]
impl<H: CallHook> BlobStore for Hooked<dyn BlobStore, H> {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::PutBlob)).await?;
        self.inner.put_new(key, bytes).await
    }

    async fn get(&self, key: &BlobKey) -> Result<Option<Bytes>, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::GetBlob)).await?;
        let found = self.inner.get(key).await?;
        self.hook.fetched(found.is_some());
        Ok(found)
    }

    async fn exists(&self, key: &BlobKey) -> Result<bool, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::BlobExists)).await?;
        self.inner.exists(key).await
    }

    async fn delete_many(&self, keys: &[BlobKey]) -> Result<(), StoreError> {
        let call = Call::DeleteBlobs(keys);
        self.hook.before_call(&call).await?;
        self.inner.delete_many(keys).await?;
        self.hook.after(&call);
        Ok(())
    }

    fn list(&self, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        hook_pages(&self.hook, self.inner.list(page_size))
    }

    fn list_since(&self, horizon: Timestamp, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        hook_pages(&self.hook, self.inner.list_since(horizon, page_size))
    }

    async fn sweep_staging(&self, older_than: Timestamp) -> Result<u64, StoreError> {
        let call = Call::SweepStaging(older_than);
        self.hook.before_call(&call).await?;
        let swept = self.inner.sweep_staging(older_than).await?;
        self.hook.after(&call);
        Ok(swept)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::PingBlobs)).await?;
        self.inner.ping().await
    }

    async fn probe_clock(&self) -> Result<ClockProbe, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::PingBlobs)).await?;
        self.inner.probe_clock().await
    }

    async fn read_marker(&self) -> Result<Option<Bytes>, StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::Marker)).await?;
        self.inner.read_marker().await
    }

    async fn create_marker(&self, contents: Bytes) -> Result<(), StoreError> {
        self.hook.before_call(&Call::Other(StoreCall::Marker)).await?;
        self.inner.create_marker(contents).await
    }
}

/// `pages` with `hook` called before each page; a failed hook ends the listing with
/// its error, as a failing store's would.
fn hook_pages<'a, H: CallHook>(
    hook: &'a H,
    pages: BoxStream<'a, Result<Vec<ListedBlob>, StoreError>>,
) -> BoxStream<'a, Result<Vec<ListedBlob>, StoreError>> {
    stream::unfold(Some((pages, 0)), move |state| async move {
        let (mut pages, page) = state?;
        if let Err(e) = hook.before_call(&Call::ListPage { page }).await {
            // A failed page ends the listing, as a failing store's would.
            return Some((Err(e), None));
        }
        let next = pages.next().await?;
        Some((next, Some((pages, page + 1))))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use profilestore_core::memory::{MemoryBlobStore, MemoryMetadataStore};
    use profilestore_core::time::ManualClock;

    /// Fails the calls it is told to, and notes every call and fetch.
    #[derive(Default)]
    struct Recorder {
        fail: Option<StoreCall>,
        calls: Mutex<Vec<StoreCall>>,
        fetched: Mutex<Vec<bool>>,
    }

    #[async_trait::async_trait]
    impl CallHook for Recorder {
        async fn before(&self, call: StoreCall) -> Result<(), StoreError> {
            self.calls.lock().unwrap().push(call);
            if self.fail == Some(call) { Err(StoreError::unavailable("injected")) } else { Ok(()) }
        }
        fn fetched(&self, found: bool) {
            self.fetched.lock().unwrap().push(found);
        }
    }

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(Timestamp::from_millis(1_000)))
    }

    #[tokio::test]
    async fn a_failing_hook_keeps_the_call_from_the_store() {
        let inner: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new(clock()));
        let hook = Recorder { fail: Some(StoreCall::DeleteRecord), ..Recorder::default() };
        let store = Hooked::new(inner.clone(), hook);
        let user = UserId::parse("ada").unwrap();
        let record = Record {
            user_id: user.clone(),
            metadata: "{}".into(),
            image_id: "01900000-0000-7000-8000-000000000001".parse().unwrap(),
            content_type: "image/png".into(),
            image_size: 1,
            updated_at: Timestamp::from_millis(0),
        };
        let far = Deadline::after(clock(), std::time::Duration::from_secs(1));
        assert_eq!(store.put_before(&record, &far).await.unwrap(), CommitOutcome::Committed);
        assert!(store.delete_before(&user, &far).await.is_err(), "the hook fails deletes");
        assert_eq!(inner.get(&user).await.unwrap(), Some(record), "the failed delete never reached the store");
        assert!(store.has_records().await.unwrap());
        let calls = store.hook().calls.lock().unwrap().clone();
        assert_eq!(calls, [StoreCall::CommitRecord, StoreCall::DeleteRecord, StoreCall::CountRecords]);
    }

    #[tokio::test]
    async fn fetches_are_reported_and_a_failed_page_ends_the_listing() {
        let clock = clock();
        let inner: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new(clock));
        let present: BlobKey = BlobKey::original("01900000-0000-7000-8000-000000000001".parse().unwrap());
        let absent: BlobKey = BlobKey::original("01900000-0000-7000-8000-000000000002".parse().unwrap());
        inner.put_new(&present, Bytes::from_static(b"x")).await.unwrap();

        let store = Hooked::new(inner.clone(), Recorder::default());
        assert!(store.get(&present).await.unwrap().is_some());
        assert!(store.get(&absent).await.unwrap().is_none());
        assert_eq!(*store.hook().fetched.lock().unwrap(), [true, false]);
        let pages: Vec<_> = store.list(10).collect().await;
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].as_ref().unwrap().len(), 1);

        let failing = Hooked::new(inner, Recorder { fail: Some(StoreCall::ListPage), ..Recorder::default() });
        let pages: Vec<_> = failing.list(10).collect().await;
        assert_eq!(pages.len(), 1, "one error, then the end");
        assert!(pages[0].is_err());
    }

    /// Sees arguments before a call and notes which calls the store answered.
    #[derive(Default)]
    struct Arguments {
        seen: Mutex<Vec<String>>,
        answered: Mutex<Vec<StoreCall>>,
    }

    #[async_trait::async_trait]
    impl CallHook for Arguments {
        async fn before_call(&self, call: &Call<'_>) -> Result<(), StoreError> {
            let seen = match call {
                Call::Referenced(ids) => format!("referenced {}", ids.len()),
                Call::DeleteBlobs(keys) => format!("delete {}", keys.len()),
                Call::SweepStaging(t) => format!("sweep {}", t.as_millis()),
                Call::ListPage { page } => format!("page {page}"),
                Call::Other(kind) => format!("{kind:?}"),
            };
            self.seen.lock().unwrap().push(seen);
            if matches!(call, Call::DeleteBlobs(_)) { Err(StoreError::unavailable("injected")) } else { Ok(()) }
        }
        fn after(&self, call: &Call<'_>) {
            self.answered.lock().unwrap().push(call.kind());
        }
    }

    #[tokio::test]
    async fn a_hook_sees_the_arguments_and_what_was_answered() {
        let clock = clock();
        let hook = Arc::new(Arguments::default());
        let metadata =
            Hooked::new(Arc::new(MemoryMetadataStore::new(clock.clone())) as Arc<dyn MetadataStore>, hook.clone());
        let blobs = Hooked::new(Arc::new(MemoryBlobStore::new(clock)) as Arc<dyn BlobStore>, hook.clone());
        let id: ImageId = "01900000-0000-7000-8000-000000000001".parse().unwrap();
        metadata.referenced(&[id, id]).await.unwrap();
        assert!(blobs.delete_many(&[BlobKey::original(id)]).await.is_err(), "the hook fails deletes");
        blobs.sweep_staging(Timestamp::from_millis(7)).await.unwrap();
        let pages: Vec<_> = blobs.list(10).collect().await;
        assert!(pages.is_empty());
        assert_eq!(*hook.seen.lock().unwrap(), ["referenced 2", "delete 1", "sweep 7", "page 0"]);
        assert_eq!(*hook.answered.lock().unwrap(), [StoreCall::Referenced, StoreCall::SweepStaging]);
    }
}
