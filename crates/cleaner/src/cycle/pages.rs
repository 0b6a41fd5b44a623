//! What each completed store operation does to the cycle: a listed page becomes the
//! machine's event (keys outside the layout counted and dropped, the empty-database
//! guard applied), and answers to queries and deletes are counted for the report, the
//! fraction guard and the progress.
//!
//! A child of `cycle` so it can reach the [`Cleaner`]'s private fields.

use std::collections::HashSet;

use futures::stream::StreamExt;

use profilestore_core::error::StoreError;
use profilestore_core::ids::ImageId;
use profilestore_core::machine::{BatchId, CleanerEvent};
use profilestore_core::settings::old_enough;
use profilestore_core::store::ListedBlob;
use profilestore_core::time::Timestamp;

use super::{Cleaner, CycleState, PageStream};
use crate::guards::empty_database_refusal;
use crate::listing::PageImages;
use crate::report::{Outcome, SKIP_NOT_IN_LAYOUT, SKIP_REFERENCED, SKIP_TOO_YOUNG};

impl Cleaner {
    /// Turns a listed page into the machine's event: keys outside the layout are
    /// counted and dropped here, so the machine only ever sees image ids. Refuses the
    /// cycle (`Err`) when the empty-database guard trips.
    pub(super) async fn on_page<'a>(
        &'a self,
        state: &mut CycleState<'a>,
        stream: PageStream<'a>,
        next: Option<Result<Vec<ListedBlob>, StoreError>>,
        now: Timestamp,
    ) -> Result<CleanerEvent<Timestamp, ImageId>, Outcome> {
        let (page, last) = match next {
            None => (state.grouper.finish(), true),
            Some(Ok(blobs)) => (state.grouper.page(&blobs), false),
            Some(Err(e)) => {
                state.failure = Some(format!("listing the blob store failed: {e}"));
                return Ok(CleanerEvent::Failed);
            }
        };
        state.count_page(&page);
        if state.refuse_images && (!page.images.is_empty() || state.grouper.holds_image()) {
            return Err(self.refuse_empty_database(state, stream, last).await);
        }
        if !last {
            state.stream = Some(stream);
        }
        // The same rule, clock reading and timings the machine applies to this page
        // in `handle`, counted here for the report and the fraction guard.
        let old = page.images.iter().filter(|i| old_enough(i.created, now, &self.config.timings)).count() as u64;
        state.budget.saw_old_enough(old);
        state.report.old_enough += old;
        state.report.skip(SKIP_TOO_YOUNG, page.images.len() as u64 - old);
        state.progress.kept(page.images.len() as u64 - old);
        Ok(CleanerEvent::Listed { page: page.images.into_iter().map(|i| (i.id, i.created)).collect(), last })
    }

    /// Lists the rest (only to say how many images the refusal protected) and refuses.
    async fn refuse_empty_database<'a>(
        &'a self,
        state: &mut CycleState<'a>,
        mut stream: PageStream<'a>,
        last: bool,
    ) -> Outcome {
        let mut complete = last;
        while !complete {
            match stream.next().await {
                None => {
                    let rest = state.grouper.finish();
                    state.count_page(&rest);
                    complete = true;
                }
                Some(Ok(blobs)) => {
                    let page = state.grouper.page(&blobs);
                    state.count_page(&page);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "listing failed while counting images for the empty-database refusal");
                    break;
                }
            }
        }
        let images = state.report.images_listed + u64::from(state.grouper.holds_image());
        Outcome::Refused(empty_database_refusal(images, complete))
    }

    pub(super) fn on_deleted(
        &self,
        state: &mut CycleState<'_>,
        batch: BatchId,
        ids: Vec<ImageId>,
        result: Result<(), StoreError>,
    ) -> CleanerEvent<Timestamp, ImageId> {
        let n = ids.len() as u64;
        match result {
            Ok(()) if self.config.dry_run => {
                tracing::info!(batch = batch.0, images = n, "dry run: would delete unreferenced images");
                tracing::debug!(batch = batch.0, ids = ?ids, "dry run: would delete these images");
                state.report.would_delete(&ids);
                state.progress.deleted(n);
                CleanerEvent::Deleted { batch }
            }
            Ok(()) => {
                tracing::info!(batch = batch.0, images = n, "deleted unreferenced images");
                state.report.deleted += n;
                state.progress.deleted(n);
                CleanerEvent::Deleted { batch }
            }
            Err(e) => {
                state.failure = Some(format!("deleting a batch of {n} unreferenced images failed: {e}"));
                CleanerEvent::Failed
            }
        }
    }
}

/// Feeds a query's answer back; a failed query fails the cycle, which drops the batch.
pub(super) fn on_queried(
    state: &mut CycleState<'_>,
    batch: BatchId,
    ids: Vec<ImageId>,
    result: Result<HashSet<ImageId>, StoreError>,
) -> CleanerEvent<Timestamp, ImageId> {
    match result {
        Ok(set) => {
            // Only ids of this batch count, whatever else the store answered.
            let referenced: Vec<ImageId> = ids.iter().copied().filter(|id| set.contains(id)).collect();
            let unreferenced = (ids.len() - referenced.len()) as u64;
            state.report.unreferenced += unreferenced;
            state.report.skip(SKIP_REFERENCED, referenced.len() as u64);
            state.progress.checked(ids.len() as u64);
            state.progress.kept(referenced.len() as u64);
            state.progress.waiting(unreferenced);
            CleanerEvent::Queried { batch, referenced }
        }
        Err(e) => {
            state.failure =
                Some(format!("asking the database which of {} images are referenced failed: {e}", ids.len()));
            CleanerEvent::Failed
        }
    }
}

impl CycleState<'_> {
    fn count_page(&mut self, page: &PageImages) {
        self.report.listed_objects += page.objects;
        self.progress.listed(page.objects);
        self.report.images_listed += page.images.len() as u64;
        self.report.skip(SKIP_NOT_IN_LAYOUT, page.foreign.len() as u64);
        if !page.foreign.is_empty() {
            tracing::debug!(keys = ?page.foreign, "listed keys outside the layout; left alone");
        }
    }
}
