//! The two halves of incremental cleaning a cycle adds beside its listing: reclaiming
//! the superseded-image queue, and the listing horizon (which listing to make, and the
//! horizon a completed cycle stores). See `docs/incremental-cleaning.md`.
//!
//! A child of `cycle` so it can reach the [`Cleaner`]'s private fields.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use profilestore_core::error::StoreError;
use profilestore_core::ids::ImageId;
use profilestore_core::store::{SupersededClaim, SweepMarks};
use profilestore_core::time::{Clock, Time, Timestamp};

use super::{Cleaner, Completion, CycleState, PageStream};
use crate::config::SweepMode;
use crate::report::{Outcome, SweepKind};

/// The listing a cycle makes, chosen from the mode and the stored marks.
pub(super) struct ListingPlan {
    pub kind: SweepKind,
    /// For an incremental listing, the horizon it lists from.
    pub since: Option<Timestamp>,
}

impl Cleaner {
    /// The queue drain's first (or next) step: claim the oldest due entries, up to a
    /// page. It runs beside the listing (the queue's images need no listing, and a
    /// long full sweep must not hold them up); [`on_claimed`](Self::on_claimed) and
    /// [`on_reclaimed`](Self::on_reclaimed) take it on, batch by batch.
    pub(super) fn claim_superseded<'a>(&'a self) -> BoxFuture<'a, Completion<'a>> {
        // A dry run reports every unreferenced entry at once, as it does for listed
        // images; stamping first sight in it is harmless (it only starts a delay).
        let delay = if self.config.dry_run { Duration::ZERO } else { self.config.timings.delete_delay };
        let call = self.metadata.claim_superseded(delay, self.config.page_size);
        async move { Completion::Claimed { result: self.bounded("claiming due superseded images", call).await } }
            .boxed()
    }

    /// Takes a claim on: its named entries are forgotten (their blobs kept), its due
    /// images deleted, blobs first and then entries, so a crash in between leaves
    /// entries whose next claim deletes nothing that still exists. Answers the
    /// operation that does it, or `Err` with the outcome that ends the cycle.
    pub(super) fn on_claimed<'a>(
        &'a self,
        state: &mut CycleState<'a>,
        result: Result<SupersededClaim, StoreError>,
    ) -> Result<BoxFuture<'a, Completion<'a>>, Outcome> {
        let config = &self.config;
        let claim = result.map_err(|e| Outcome::Failed(format!("claiming due superseded images failed: {e}")))?;
        state.report.superseded_first_seen += claim.first_seen;
        // The claim answers oldest first up to the limit: fewer means none is left.
        // A dry run forgets nothing, so one claim shows everything it would.
        let more = claim.due.len() + claim.named.len() >= config.page_size && !config.dry_run;
        if !claim.named.is_empty() {
            tracing::error!(
                images = claim.named.len(),
                ids = ?claim.named,
                "superseded images are named by a record again (a restored backup, or a bug): \
                 keeping their blobs and dropping their queue entries"
            );
            state.report.superseded_named += claim.named.len() as u64;
        }
        let due = claim.due;
        if !due.is_empty() && state.refuse_images {
            return Err(Outcome::Refused(format!(
                "the database holds no records while {} superseded images are due: refusing to delete; \
                 pass --allow-empty-database if that is really so",
                due.len()
            )));
        }
        state.report.superseded_deleted += due.len() as u64;
        if config.dry_run {
            state.report.would_delete(&due);
            return Ok(futures::future::ready(Completion::Reclaimed { deleted: 0, more, result: Ok(()) }).boxed());
        }
        // The turns are booked now, so the queue's deletes and the listing's share
        // one rate.
        let requests = state.pacer.plan(&due, config.delete_batch_size, self.clock.now());
        let named = claim.named;
        Ok(async move {
            let result = async {
                if !named.is_empty() {
                    self.forget(&named).await?;
                }
                if !due.is_empty() {
                    let n = due.len();
                    self.delete_paced(requests)
                        .await
                        .map_err(|e| format!("deleting {n} superseded images failed: {e}"))?;
                    tracing::info!(images = n, "deleted superseded images");
                    self.forget(&due).await?;
                }
                Ok(())
            }
            .await;
            Completion::Reclaimed { deleted: due.len() as u64, more, result }
        }
        .boxed())
    }

    /// Counts what a reclaim deleted; answers the next claim while the queue may hold
    /// more, or `Err` with the outcome that ends the cycle.
    pub(super) fn on_reclaimed<'a>(
        &'a self,
        state: &mut CycleState<'a>,
        deleted: u64,
        more: bool,
        result: Result<(), String>,
    ) -> Result<Option<BoxFuture<'a, Completion<'a>>>, Outcome> {
        result.map_err(Outcome::Failed)?;
        state.report.deleted += deleted;
        state.progress.deleted(deleted);
        Ok(more.then(|| self.claim_superseded()))
    }

    async fn forget(&self, ids: &[ImageId]) -> Result<(), String> {
        self.bounded("forgetting reclaimed superseded images", self.metadata.forget_superseded(ids))
            .await
            .map(drop)
            .map_err(|e| format!("removing {} superseded-image entries failed: {e}", ids.len()))
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
