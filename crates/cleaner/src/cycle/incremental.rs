//! The two halves of incremental cleaning a cycle adds around its listing: reclaiming
//! the superseded-image queue, and the listing horizon (which listing to make, and the
//! horizon a completed cycle stores). See `docs/incremental-cleaning.md`.
//!
//! A child of `cycle` so it can reach the [`Cleaner`]'s private fields.

use std::time::Duration;

use profilestore_core::ids::ImageId;
use profilestore_core::store::SweepMarks;
use profilestore_core::time::{Clock, Time, Timestamp};

use super::{Cleaner, CycleState, PageStream};
use crate::config::SweepMode;
use crate::report::{Outcome, SweepKind};

/// The listing a cycle makes, chosen from the mode and the stored marks.
pub(super) struct ListingPlan {
    pub kind: SweepKind,
    /// For an incremental listing, the horizon it lists from.
    pub since: Option<Timestamp>,
}

impl Cleaner {
    /// Reclaims every superseded image whose delete delay has passed, batch by batch:
    /// blobs first, then queue entries, so a crash in between leaves entries whose next
    /// claim deletes nothing that still exists. `Err` ends the cycle with that outcome.
    pub(super) async fn drain_superseded(&self, state: &mut CycleState<'_>) -> Result<(), Outcome> {
        let config = &self.config;
        // A dry run reports every unreferenced entry at once, as it does for listed
        // images; stamping first sight in it is harmless (it only starts a delay).
        let delay = if config.dry_run { Duration::ZERO } else { config.timings.delete_delay };
        let limit = config.page_size;
        loop {
            let claim = self
                .bounded("claiming due superseded images", self.metadata.claim_superseded(delay, limit))
                .await
                .map_err(|e| Outcome::Failed(format!("claiming due superseded images failed: {e}")))?;
            state.report.superseded_first_seen += claim.first_seen;
            let handled = claim.due.len() + claim.named.len();
            if !claim.named.is_empty() {
                tracing::error!(
                    images = claim.named.len(),
                    ids = ?claim.named,
                    "superseded images are named by a record again (a restored backup, or a bug): \
                     keeping their blobs and dropping their queue entries"
                );
                state.report.superseded_named += claim.named.len() as u64;
                if !config.dry_run {
                    self.forget(&claim.named).await?;
                }
            }
            if !claim.due.is_empty() {
                if state.refuse_images {
                    return Err(Outcome::Refused(format!(
                        "the database holds no records while {} superseded images are due: refusing to delete; \
                         pass --allow-empty-database if that is really so",
                        claim.due.len()
                    )));
                }
                self.reclaim(state, &claim.due).await?;
            }
            // The claim answers oldest first up to the limit: fewer means none is left.
            // A dry run forgets nothing, so one claim shows everything it would.
            if handled < limit || config.dry_run {
                return Ok(());
            }
        }
    }

    async fn reclaim(&self, state: &mut CycleState<'_>, ids: &[ImageId]) -> Result<(), Outcome> {
        let n = ids.len() as u64;
        state.report.superseded_deleted += n;
        if self.config.dry_run {
            state.report.would_delete(ids);
            return Ok(());
        }
        let requests = state.pacer.plan(ids, self.config.delete_batch_size, self.clock.now());
        self.delete_paced(requests)
            .await
            .map_err(|e| Outcome::Failed(format!("deleting {n} superseded images failed: {e}")))?;
        tracing::info!(images = n, "deleted superseded images");
        state.report.deleted += n;
        state.progress.deleted(n);
        self.forget(ids).await
    }

    async fn forget(&self, ids: &[ImageId]) -> Result<(), Outcome> {
        self.bounded("forgetting reclaimed superseded images", self.metadata.forget_superseded(ids))
            .await
            .map(drop)
            .map_err(|e| Outcome::Failed(format!("removing {} superseded-image entries failed: {e}", ids.len())))
    }

    /// Which listing this cycle makes: full in [`SweepMode::Full`], with no horizon
    /// stored, or when the last full sweep started `full_every` or longer ago (or never
    /// completed); otherwise incremental from the stored horizon.
    pub(super) async fn plan_listing(&self, started: Timestamp) -> Result<ListingPlan, Outcome> {
        let full = ListingPlan { kind: SweepKind::Full, since: None };
        let SweepMode::Incremental { full_every } = self.config.sweep else {
            return Ok(full);
        };
        let marks = self
            .bounded("reading the listing horizon", self.metadata.sweep_marks())
            .await
            .map_err(|e| Outcome::Failed(format!("reading the listing horizon failed: {e}")))?;
        Ok(match marks {
            SweepMarks { listing_horizon: Some(h), last_full_sweep: Some(last) } if last.plus(full_every) > started => {
                ListingPlan { kind: SweepKind::Incremental, since: Some(h) }
            }
            _ => full,
        })
    }

    /// The listing stream for `plan`: a full one of a real cycle also sweeps staging
    /// files (see `staging`); a dry run removes nothing.
    pub(super) async fn open_listing<'a>(&'a self, plan: &ListingPlan, state: &mut CycleState<'a>) -> PageStream<'a> {
        match plan.since {
            Some(horizon) => self.blobs.list_since(horizon, self.config.page_size),
            None if self.config.dry_run => self.blobs.list(self.config.page_size),
            None => self.list_sweeping_staging(state).await,
        }
    }

    /// Stores what a completed cycle that started at `started` proved: every blob
    /// minted at or before `started - listing_horizon_lag` was listed old enough by it
    /// or by an earlier completed cycle. Nothing is stored after a dry run, which
    /// deleted nothing, nor in [`SweepMode::Full`], which never reads it.
    pub(super) async fn record_completion(
        &self,
        state: &mut CycleState<'_>,
        plan: &ListingPlan,
        started: Timestamp,
    ) -> Result<(), Outcome> {
        // Only incremental cleaning reads the marks; a full sweep's daemon need not
        // write them (on SQLite, one more wait for the write lock each cycle). The
        // first incremental cycle after a switch finds none and lists everything.
        if self.config.dry_run || self.config.sweep == SweepMode::Full {
            return Ok(());
        }
        let lag = i64::try_from(self.config.timings.listing_horizon_lag().as_millis()).unwrap_or(i64::MAX);
        let horizon = Timestamp::from_millis(started.as_millis().saturating_sub(lag));
        let full_started = (plan.kind == SweepKind::Full).then_some(started);
        let marks = self
            .bounded("storing the listing horizon", self.metadata.record_sweep(horizon, full_started))
            .await
            .map_err(|e| Outcome::Failed(format!("storing the listing horizon failed: {e}")))?;
        state.report.horizon_stored = marks.listing_horizon;
        Ok(())
    }
}
