//! The blob store as each simulated machine sees it: the shared in-memory store
//! behind the machine's fault-injecting, logging [`Faulty`] view. Every listing page is
//! one faulted call; a listing since a horizon skips, as a store that starts each
//! shard's listing after the horizon's bound would, every key minted before it.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};

use profilestore_core::error::StoreError;
use profilestore_core::ids::{BlobKey, ImageId};
use profilestore_core::store::{BlobStore, ListedBlob};
use profilestore_core::time::Timestamp;

use super::log::{Counters, short, shorts};
use super::stores::{Described, Faulty, LIST_PAGE, REQUEST_DEADLINE, describe_unit, no_check};

#[async_trait::async_trait]
impl BlobStore for Faulty {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        self.call(
            format!("put blob {}", short(&key.image_id)),
            None,
            &[key.image_id],
            || self.world.blobs.put_new(key, bytes),
            describe_unit,
            no_check,
        )
        .await
    }

    async fn get(&self, key: &BlobKey) -> Result<Option<Bytes>, StoreError> {
        let id = key.image_id;
        self.call(
            format!("get blob {}", short(&id)),
            None,
            &[id],
            || self.world.blobs.get(key),
            |r| {
                Described::text(match r {
                    Ok(Some(_)) => "found".into(),
                    Ok(None) => "MISSING".into(),
                    Err(e) => format!("error: {e}"),
                })
            },
            |found| {
                // Only the read path fetches blobs inside a request, right after
                // reading the record that names them.
                if let Ok(deadline) = REQUEST_DEADLINE.try_with(|d| *d) {
                    let missing = matches!(found, Ok(None));
                    self.world.check_fetch(self.actor, id, missing, self.world.journal.elapsed(), deadline);
                }
            },
        )
        .await
    }

    async fn exists(&self, key: &BlobKey) -> Result<bool, StoreError> {
        self.world.blobs.exists(key).await
    }

    async fn delete_many(&self, keys: &[BlobKey]) -> Result<(), StoreError> {
        let ids: Vec<ImageId> = keys.iter().map(|k| k.image_id).collect();
        self.call(
            format!("delete blobs [{}]", shorts(&ids)),
            None,
            &ids,
            || self.world.blobs.delete_many(keys),
            describe_unit,
            |r| {
                if r.is_ok() {
                    self.world.journal.counters.blobs_deleted.fetch_add(keys.len() as u64, Ordering::Relaxed);
                    self.world.note_deleted(keys);
                    self.world.check_no_dangling(self.actor);
                }
            },
        )
        .await
    }

    fn list(&self, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        Counters::bump(&self.world.journal.counters.full_listings);
        self.faulty_pages(LIST_PAGE, self.world.blobs.list(page_size))
    }

    fn list_since(&self, horizon: Timestamp, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        Counters::bump(&self.world.journal.counters.incremental_listings);
        self.faulty_pages(LIST_SINCE_PAGE, self.world.blobs.list_since(horizon, page_size))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.world.blobs.ping().await
    }

    async fn probe_clock(&self) -> Result<profilestore_core::store::ClockProbe, StoreError> {
        self.world.blobs.probe_clock().await
    }

    async fn read_marker(&self) -> Result<Option<Bytes>, StoreError> {
        self.world.blobs.read_marker().await
    }

    async fn create_marker(&self, contents: Bytes) -> Result<(), StoreError> {
        self.world.blobs.create_marker(contents).await
    }
}

impl Faulty {
    /// `inner`'s pages, each fetched by one faulted, logged call starting `what`.
    fn faulty_pages<'a>(
        &'a self,
        what: &'static str,
        inner: BoxStream<'a, Result<Vec<ListedBlob>, StoreError>>,
    ) -> BoxStream<'a, Result<Vec<ListedBlob>, StoreError>> {
        futures::stream::unfold(inner, move |mut inner| async move {
            let page = self
                .call(
                    what.into(),
                    None,
                    &[],
                    || next_page(&mut inner),
                    |r| match r {
                        Ok(Some(page)) => {
                            let ids: Vec<ImageId> =
                                page.iter().filter_map(|b| BlobKey::parse(&b.key)).map(|k| k.image_id).collect();
                            Described(format!("[{}]", shorts(&ids)), ids)
                        }
                        Ok(None) => Described::text("end of listing"),
                        Err(e) => Described::text(format!("error: {e}")),
                    },
                    no_check,
                )
                .await;
            match page {
                Ok(Some(page)) => Some((Ok(page), inner)),
                Ok(None) => None,
                Err(e) => Some((Err(e), inner)),
            }
        })
        .boxed()
    }
}

/// The next page of `inner` that lists anything: a listing since a horizon filters
/// the store's pages, and a store that starts each shard after the horizon's bound
/// never reads the keys filtered out, so their pages cost no call.
async fn next_page(
    inner: &mut BoxStream<'_, Result<Vec<ListedBlob>, StoreError>>,
) -> Result<Option<Vec<ListedBlob>>, StoreError> {
    loop {
        match inner.next().await.transpose()? {
            Some(page) if page.is_empty() => continue,
            page => return Ok(page),
        }
    }
}

/// How a listing call since the horizon starts in the log.
pub const LIST_SINCE_PAGE: &str = "list a page of blobs minted since the horizon";
