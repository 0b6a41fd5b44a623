//! The incremental scenario's stores: N blobs whose images were minted long before a
//! stored listing horizon, and, before every measured cycle, 1 % of changes minted
//! since the horizon the previous cycle stored.
//!
//! The base (first writes only) goes in through the bulk fixture, files and rows as
//! the stores would write them; every change goes in through the store traits
//! (`put_new`, `put_before`, `delete_before`), so the superseded-image queue is filled
//! by the stores' own statements, as a server's writes fill it. Only the ids' mint times are chosen: the
//! first 48 bits of a UUIDv7 are its mint time, and the bench sets them (the random
//! tail still comes from the id source).

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use profilestore_core::ids::{BlobKey, IdSource, ImageId, UserId};
use profilestore_core::store::{CommitOutcome, DeleteOutcome, Record};
use profilestore_core::time::{Deadline, Timestamp};
use profilestore_runtime::UuidV7Ids;

use crate::bulk::{self, BulkTarget};
use crate::config::StoreTarget;
use crate::error::BenchError;
use crate::fixture::{self, METADATA, Stores};
use crate::sweep::SWEEP_TIMINGS;

/// How many puts, commits and deletes run at once while building.
const CONCURRENCY: usize = 32;

/// How long before the stored horizon the fixture's unchanged images were minted.
const OLD: i64 = 24 * 3600 * 1000;

/// What each plant adds since the last cycle: together 1 % of the blobs (at least 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Changes {
    /// Profiles rewritten with a new image: the old image is queued as superseded.
    pub replaced: u64,
    /// Profiles deleted: their image is queued as superseded.
    pub deleted: u64,
    /// First writes of new users (they keep the store's size from shrinking run by run).
    pub created: u64,
    /// Failed writes: a blob put, no record (an orphan).
    pub orphans: u64,
}

impl Changes {
    /// 1 % of `blobs` (at least 4), a quarter of each kind, orphans taking the rest.
    pub fn for_blobs(blobs: u64) -> Changes {
        let total = (blobs / 100).max(4);
        let q = total / 4;
        Changes { replaced: q, deleted: q, created: q, orphans: total - 3 * q }
    }

    /// Every change.
    pub fn total(&self) -> u64 {
        self.replaced + self.deleted + self.created + self.orphans
    }

    /// Blobs a plant adds: the replacement images, the new users' images, the orphans.
    pub fn new_blobs(&self) -> u64 {
        self.replaced + self.created + self.orphans
    }

    /// Images a cycle after the plant must delete: the queued ones and the orphans.
    pub fn garbage(&self) -> u64 {
        self.replaced + self.deleted + self.orphans
    }
}

/// The stores and what the bench knows of them.
pub(crate) struct Fixture {
    pub stores: Stores,
    pub changes: Changes,
    /// Users written when the fixture was built, `0..base`.
    base: u64,
    tag: String,
    image: Bytes,
    /// Plants made so far: each takes users of its own from both ends of the base.
    plants: u64,
}

/// An image id minted at `at`, its random tail from the id source.
pub(crate) fn minted_at(at: Timestamp) -> ImageId {
    let fresh = UuidV7Ids.next_image_id().as_uuid();
    let tail: [u8; 10] = fresh.as_bytes()[6..].try_into().expect("ten bytes");
    let millis = u64::try_from(at.as_millis()).unwrap_or(0);
    let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid();
    ImageId::from_uuid(uuid).expect("a v7 uuid is an image id")
}

impl Fixture {
    /// Fresh embedded stores (SQLite + a blob directory under the system's temporary
    /// directory) holding `blobs` blobs once the first plant is made, and a stored
    /// horizon as a completed full sweep that started now would leave.
    pub async fn build(blobs: u64, runs: usize) -> Result<Fixture, BenchError> {
        let changes = Changes::for_blobs(blobs);
        // Every plant leaves `blobs` blobs: the base less the images the previous
        // cycle deleted plus the replacements and new users that outlive it.
        let base = blobs.saturating_sub(changes.new_blobs());
        let plants = 2 * runs as u64;
        if blobs < 100 || plants * (changes.replaced + changes.deleted) > base {
            return Err(BenchError::Config(format!(
                "the incremental scenario needs at least 100 blobs and more than {runs} runs' worth of changes \
                 ({blobs} blobs, {} changes per cycle)",
                changes.total()
            )));
        }
        let stores = Stores::open(&StoreTarget::default(), SWEEP_TIMINGS).await?;
        let fixture = Fixture {
            stores,
            changes,
            base,
            tag: format!("{:08x}", fixture::fresh_u128() as u32),
            image: fixture::image(0),
            plants: 0,
        };
        let now = fixture.stores.clock.now();
        let lag = i64::try_from(fixture.stores.timings.listing_horizon_lag().as_millis()).unwrap_or(i64::MAX);
        let horizon = Timestamp::from_millis(now.as_millis() - lag);
        // One millisecond apart, all a day before the horizon: at 1,000,000 images
        // the newest is still 23 h older than it.
        let oldest = horizon.as_millis() - OLD;
        let minted = |i: u64| minted_at(Timestamp::from_millis(oldest + i as i64));
        match BulkTarget::of(&fixture.stores).await? {
            // The base is what a server's first writes would leave, written in bulk:
            // through the store traits it took minutes at 1,000,000 blobs.
            Some(bulk) => {
                let ids: Vec<ImageId> = (0..base).map(minted).collect();
                let prefix = format!("inc-{}", fixture.tag);
                bulk.populate_ids(&fixture.stores, &prefix, &ids, ids.len(), &fixture.image).await?;
            }
            None => {
                futures::stream::iter(0..base)
                    .map(|i| {
                        let fixture = &fixture;
                        async move {
                            let id = minted(i);
                            fixture.put_blob(id).await?;
                            fixture.put_record(fixture.user(i), id).await
                        }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .try_collect::<()>()
                    .await?
            }
        }
        fixture.stores.metadata.record_sweep(horizon, Some(now)).await?;
        Ok(fixture)
    }

    /// The `i`-th user of the base, as the bulk fixture names it.
    fn user(&self, i: u64) -> UserId {
        bulk::user_id(&format!("inc-{}", self.tag), usize::try_from(i).unwrap_or(usize::MAX))
    }

    fn deadline(&self) -> Deadline {
        Deadline::after(self.stores.clock.clone(), self.stores.timings.request_timeout).under(self.stores.timings)
    }

    async fn put_blob(&self, id: ImageId) -> Result<(), BenchError> {
        Ok(self.stores.blobs.put_new(&BlobKey::original(id), self.image.clone()).await?)
    }

    pub(crate) async fn put_record(&self, user_id: UserId, image_id: ImageId) -> Result<(), BenchError> {
        let record = Record {
            user_id,
            metadata: METADATA.to_owned(),
            image_id,
            content_type: "image/png".to_owned(),
            image_size: self.image.len() as u64,
            updated_at: self.stores.clock.now(),
        };
        match self.stores.metadata.put_before(&record, &self.deadline()).await? {
            CommitOutcome::Committed => Ok(()),
            other => Err(BenchError::Config(format!("a fixture record was not committed: {other:?}"))),
        }
    }

    /// The changes since the last cycle: every new image minted at the horizon the
    /// last cycle stored (so the next incremental cycle lists it, and the one after
    /// does not), replacements and deletes of base users no plant touched before.
    pub async fn plant(&mut self) -> Result<(), BenchError> {
        let Some(horizon) = self.stores.metadata.sweep_marks().await?.listing_horizon else {
            return Err(BenchError::Config("no listing horizon is stored".into()));
        };
        let (c, p) = (self.changes, self.plants);
        self.plants += 1;
        let this = &*self;
        let replace = (p * c.replaced..(p + 1) * c.replaced).map(|i| Change::Replace(this.user(i)));
        let delete = (this.base - (p + 1) * c.deleted..this.base - p * c.deleted).map(|i| Change::Delete(this.user(i)));
        let create = (0..c.created).map(|i| {
            Change::Create(UserId::parse(&format!("inc-{}-new-{p}-{i:08}", this.tag)).expect("valid user id"))
        });
        let orphans = (0..c.orphans).map(|_| Change::Orphan);
        futures::stream::iter(replace.chain(delete).chain(create).chain(orphans))
            .map(|change| this.apply(change, horizon))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    async fn apply(&self, change: Change, horizon: Timestamp) -> Result<(), BenchError> {
        let id = minted_at(horizon);
        match change {
            Change::Replace(user) | Change::Create(user) => {
                self.put_blob(id).await?;
                self.put_record(user, id).await
            }
            Change::Orphan => self.put_blob(id).await,
            Change::Delete(user) => match self.stores.metadata.delete_before(&user, &self.deadline()).await? {
                DeleteOutcome::Deleted => Ok(()),
                other => Err(BenchError::Config(format!("deleting a fixture profile answered {other:?}"))),
            },
        }
    }
}

enum Change {
    Replace(UserId),
    Delete(UserId),
    Create(UserId),
    Orphan,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_percent_of_changes_in_four_kinds() {
        let c = Changes::for_blobs(1_000_000);
        assert_eq!((c.replaced, c.deleted, c.created, c.orphans), (2500, 2500, 2500, 2500));
        assert_eq!(Changes::for_blobs(2000).total(), 20);
        assert_eq!(Changes::for_blobs(130).total(), 4, "never fewer than one of each");
    }

    #[test]
    fn an_id_minted_at_a_time_says_so() {
        let t = Timestamp::from_millis(1_700_000_000_123);
        assert_eq!(minted_at(t).minted_at(), t);
        assert_ne!(minted_at(t), minted_at(t), "the tail stays random");
    }
}
