//! Stores seen through a hook that runs before every call: how tests inject
//! failures, latency and pauses at chosen calls without rewriting a whole store.
//! For tests only, like `profilestore_core::memory`.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use profilestore_core::error::StoreError;
use profilestore_core::ids::{BlobKey, ImageId, UserId};
use profilestore_core::settings::Timings;
use profilestore_core::store::{
    BlobStore, ClockProbe, CommitOutcome, DeleteOutcome, ListedBlob, MetadataStore, Pairing, Record,
};
use profilestore_core::time::{Deadline, Timestamp};

/// A store call, as a [`CallHook`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreCall {
    /// [`MetadataStore::get`].
    GetRecord,
    /// [`MetadataStore::put_before`].
    CommitRecord,
    /// [`MetadataStore::delete_before`].
    DeleteRecord,
    /// [`MetadataStore::referenced`].
    Referenced,
    /// [`MetadataStore::count_records`] and [`MetadataStore::has_records`].
    CountRecords,
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

/// What runs around the calls of a [`Hooked`] store.
#[async_trait::async_trait]
pub trait CallHook: Send + Sync + 'static {
    /// Runs before `call` reaches the store (it may wait); an error fails the call
    /// without it reaching the store.
    async fn before(&self, call: StoreCall) -> Result<(), StoreError>;

    /// Runs after a blob fetch the store answered, with whether the blob was there.
    fn fetched(&self, _found: bool) {}
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
        self.hook.before(StoreCall::GetRecord).await?;
        self.inner.get(user).await
    }

    async fn put_before(&self, record: &Record, deadline: &Deadline) -> Result<CommitOutcome, StoreError> {
        self.hook.before(StoreCall::CommitRecord).await?;
        self.inner.put_before(record, deadline).await
    }

    fn run_under_timings(&self, timings: &Timings) {
        self.inner.run_under_timings(timings);
    }

    async fn delete_before(&self, user: &UserId, deadline: &Deadline) -> Result<DeleteOutcome, StoreError> {
        self.hook.before(StoreCall::DeleteRecord).await?;
        self.inner.delete_before(user, deadline).await
    }

    async fn referenced(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        self.hook.before(StoreCall::Referenced).await?;
        self.inner.referenced(ids).await
    }

    async fn count_records(&self) -> Result<u64, StoreError> {
        self.hook.before(StoreCall::CountRecords).await?;
        self.inner.count_records().await
    }

    async fn has_records(&self) -> Result<bool, StoreError> {
        self.hook.before(StoreCall::CountRecords).await?;
        self.inner.has_records().await
    }

    async fn records_after(&self, after: Option<&UserId>, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.hook.before(StoreCall::RecordsAfter).await?;
        self.inner.records_after(after, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.hook.before(StoreCall::PingMetadata).await?;
        self.inner.ping().await
    }

    async fn clock(&self) -> Result<Timestamp, StoreError> {
        self.hook.before(StoreCall::PingMetadata).await?;
        self.inner.clock().await
    }

    async fn read_pairing(&self) -> Result<Option<Pairing>, StoreError> {
        self.hook.before(StoreCall::Pairing).await?;
        self.inner.read_pairing().await
    }

    async fn create_pairing(&self, pairing: &Pairing) -> Result<Pairing, StoreError> {
        self.hook.before(StoreCall::Pairing).await?;
        self.inner.create_pairing(pairing).await
    }

    async fn update_timings(&self, cluster_id: uuid::Uuid, timings: &Timings) -> Result<(), StoreError> {
        self.hook.before(StoreCall::Pairing).await?;
        self.inner.update_timings(cluster_id, timings).await
    }
}

#[async_trait::async_trait]
impl<H: CallHook> BlobStore for Hooked<dyn BlobStore, H> {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        self.hook.before(StoreCall::PutBlob).await?;
        self.inner.put_new(key, bytes).await
    }

    async fn get(&self, key: &BlobKey) -> Result<Option<Bytes>, StoreError> {
        self.hook.before(StoreCall::GetBlob).await?;
        let found = self.inner.get(key).await?;
        self.hook.fetched(found.is_some());
        Ok(found)
    }

    async fn exists(&self, key: &BlobKey) -> Result<bool, StoreError> {
        self.hook.before(StoreCall::BlobExists).await?;
        self.inner.exists(key).await
    }

    async fn delete_many(&self, keys: &[BlobKey]) -> Result<(), StoreError> {
        self.hook.before(StoreCall::DeleteBlobs).await?;
        self.inner.delete_many(keys).await
    }

    fn list(&self, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        let pages = self.inner.list(page_size);
        stream::unfold(Some(pages), move |pages| async move {
            let mut pages = pages?;
            if let Err(e) = self.hook.before(StoreCall::ListPage).await {
                // A failed page ends the listing, as a failing store's would.
                return Some((Err(e), None));
            }
            let page = pages.next().await?;
            Some((page, Some(pages)))
        })
        .boxed()
    }

    async fn sweep_staging(&self, older_than: Timestamp) -> Result<u64, StoreError> {
        self.hook.before(StoreCall::SweepStaging).await?;
        self.inner.sweep_staging(older_than).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.hook.before(StoreCall::PingBlobs).await?;
        self.inner.ping().await
    }

    async fn probe_clock(&self) -> Result<ClockProbe, StoreError> {
        self.hook.before(StoreCall::PingBlobs).await?;
        self.inner.probe_clock().await
    }

    async fn read_marker(&self) -> Result<Option<Bytes>, StoreError> {
        self.hook.before(StoreCall::Marker).await?;
        self.inner.read_marker().await
    }

    async fn create_marker(&self, contents: Bytes) -> Result<(), StoreError> {
        self.hook.before(StoreCall::Marker).await?;
        self.inner.create_marker(contents).await
    }
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
}
