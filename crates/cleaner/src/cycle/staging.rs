//! The staging-file sweep of a full cycle, made during its listing: the blob store
//! removes stale staging files as its walk meets them (one walk, where a store can),
//! and the cycle reports what it removed when it ends.
//!
//! Staging files are swept by full sweeps only: finding them means walking the whole
//! store, and they hold no image anyone can reference, so they can wait for the
//! safety net's schedule. Failing to sweep them never fails the cycle.
//!
//! A child of `cycle` so it can reach the [`Cleaner`]'s private fields.

use profilestore_core::error::StoreError;
use profilestore_core::time::{Clock, Timestamp};

use super::{Cleaner, CycleState, PageStream};

impl Cleaner {
    /// The whole store's listing, removing on the way the staging files last modified
    /// before the cycle's cutoff; what the sweep did is left on `state`. A sweep that
    /// outlasts the call timeout before the listing starts (stores that sweep first) is
    /// abandoned and noted, and the store is listed plainly.
    pub(super) async fn list_sweeping_staging<'a>(&'a self, state: &mut CycleState<'a>) -> PageStream<'a> {
        // A put in progress is younger than a request timeout; anything as old as a
        // collectable blob was left by a put that can no longer finish.
        let age = self.config.timings.cleaner_min_age();
        let millis = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = Timestamp::from_millis(self.clock.now().as_millis().saturating_sub(millis));
        let page_size = self.config.page_size;
        let started = async { Ok::<_, StoreError>(self.blobs.list_sweeping_staging(page_size, cutoff).await) };
        match self.bounded("sweeping staging files", started).await {
            Ok(listing) => {
                state.staging = Some(listing.staging);
                listing.pages
            }
            Err(e) => {
                tracing::warn!(error = %e, "sweeping staging files failed; the cycle goes on without it");
                state.report.staging_sweep_error = Some(e.to_string());
                self.blobs.list(page_size)
            }
        }
    }
}

impl CycleState<'_> {
    /// Copies what the staging sweep did into the report (a cycle that ended before its
    /// listing did reports the files removed so far).
    pub(super) fn finish_staging(&mut self) {
        let Some(tally) = self.staging.take() else { return };
        let removed = tally.removed();
        self.report.staging_files_removed = removed;
        if removed > 0 {
            tracing::info!(removed, "removed abandoned staging files");
        }
        // Staging files hold no image anyone references; failing to sweep them must
        // not stop the cycle from reclaiming orphans.
        if let Some(e) = tally.take_error() {
            tracing::warn!(error = %e, "sweeping staging files failed; the cycle went on without it");
            self.report.staging_sweep_error = Some(e.to_string());
        }
    }
}
