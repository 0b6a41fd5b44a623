//! The cleaner driver: steps a [`CleanerCycle`] against real stores.
//!
//! The step machine decides *what* may happen and *when* (age filter, delete delay,
//! pipelining limits); this driver only does the I/O it asks for, concurrently, and
//! adds the operational guards of `guards`. It never reasons about time itself
//! beyond asking the machine and sleeping on the injected [`Clock`].
//!
//! Each turn of the loop starts every action [`CleanerCycle::enabled`] names, then
//! waits for the next completion, or, when the machine says
//! [`WaitUntil`](CycleStatus::WaitUntil), for that instant. While an operation is in
//! flight the machine reports `Busy` without naming its next due delete, so a due
//! delete may start up to one store call late: late errs toward keeping.
//!
//! The listing stream is lent to its `ListPage` operation and handed back with the
//! page, so pages are taken one at a time, in order, while queries and waiting
//! deletes of earlier pages proceed; a cycle takes about the listing time plus one
//! `delete_delay` (or, with a `delete_rate`, at least the deleted keys' time at that
//! rate: each delete request waits for the turn `pacing` booked for it). A failure
//! drops every operation in flight with the cycle.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, FuturesUnordered, StreamExt};

use profilestore_core::clocks::ClockCheck;
use profilestore_core::error::StoreError;
use profilestore_core::ids::ImageId;
use profilestore_core::machine::{BatchId, CleanerAction, CleanerCycle, CycleOutcome, CycleStatus};
use profilestore_core::store::{BlobStore, ListedBlob, MetadataStore, StagingTally};
use profilestore_core::time::{Clock, Time, Timestamp};

use crate::clock::CycleClock;
use crate::config::{CleanerConfig, ConfigError};
use crate::guards::DeleteBudget;
use crate::listing::ImageGrouper;
use crate::pacing::DeletePacer;
use crate::progress::Progress;
use crate::report::{CycleReport, Outcome};

mod calls;
mod incremental;
mod pages;
mod staging;

/// The storage cleaner over one metadata store and one blob store.
///
/// Promises: it deletes only blobs whose key parses as `{shard}/{image_id}/{variant}`,
/// of images the step machine found old enough and unreferenced at least
/// `delete_delay` earlier, and never after any store call of the cycle failed. Any
/// number of cleaners may run against the same stores at once.
pub struct Cleaner {
    metadata: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    clock: Arc<CycleClock>,
    config: CleanerConfig,
    preflight: Option<Preflight>,
    clock_check: Option<Arc<ClockCheck>>,
    progress: Arc<Progress>,
    /// Count the superseded-image queue after each cycle, for the figures.
    count_queue: bool,
}

/// A check run before every cycle; `Err(reason)` refuses the cycle.
pub type Preflight = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

type PageStream<'a> = BoxStream<'a, Result<Vec<ListedBlob>, StoreError>>;

/// A finished store operation, carrying what the driver lent it.
enum Completion<'a> {
    Page { stream: PageStream<'a>, next: Option<Result<Vec<ListedBlob>, StoreError>> },
    Queried { batch: BatchId, ids: Vec<ImageId>, result: Result<HashSet<ImageId>, StoreError> },
    Deleted { batch: BatchId, ids: Vec<ImageId>, result: Result<(), StoreError> },
}

/// What the driver keeps for one cycle besides the machine.
struct CycleState<'a> {
    report: CycleReport,
    grouper: ImageGrouper,
    budget: DeleteBudget,
    progress: Arc<Progress>,
    pacer: DeletePacer,
    stream: Option<PageStream<'a>>,
    /// What the full listing's staging sweep did, when it sweeps.
    staging: Option<Arc<StagingTally>>,
    failure: Option<String>,
    /// The database was empty at the start and that is not allowed.
    refuse_images: bool,
}

impl Cleaner {
    /// A cleaner over these stores, or why the configuration is unsafe.
    pub fn new(
        metadata: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
        config: CleanerConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        metadata.run_under_timings(&config.timings);
        Ok(Cleaner {
            metadata,
            blobs,
            clock: Arc::new(CycleClock::new(clock)),
            config,
            preflight: None,
            clock_check: None,
            progress: Arc::default(),
            count_queue: false,
        })
    }

    /// Runs `check` before every cycle and refuses the cycle (deleting nothing) when it
    /// fails. A daemon uses it to re-verify, each cycle, that its stores are still
    /// paired and the cluster's timings are still the ones it runs with.
    pub fn with_preflight(mut self, check: Preflight) -> Self {
        self.preflight = Some(check);
        self
    }

    /// Refuses a cycle, and any delete, while `check` says a peer clock may be beyond
    /// the bound or is unmeasured: a cleaner whose clock runs ahead would see blobs as
    /// older than they are.
    pub fn with_clock_check(mut self, check: Arc<ClockCheck>) -> Self {
        self.clock_check = Some(check);
        self
    }

    /// Has every cycle count what it does on `progress` (see [`Progress`]), for a caller
    /// that shows it; each cycle starts the counters over.
    pub fn with_progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Counts the superseded-image queue after every cycle (one more database call),
    /// so the figures show its depth; see [`metrics`](crate::metrics).
    pub fn with_queue_depth(mut self) -> Self {
        self.count_queue = true;
        self
    }

    fn clocks_agree(&self) -> Result<(), String> {
        match &self.clock_check {
            Some(check) => check.verdict().map_err(|fault| format!("not cleaning: {fault}")),
            None => Ok(()),
        }
    }

    /// The configuration this cleaner runs with.
    pub fn config(&self) -> &CleanerConfig {
        &self.config
    }

    /// Runs one cycle to its end and reports it. Never panics on store data and never
    /// returns early with an error: every failure is the report's outcome, and the
    /// next cycle starts over from the listing.
    pub async fn run_cycle(&self) -> CycleReport {
        self.clock.reanchor();
        self.progress.start();
        let started = self.clock.now();
        let mut state = CycleState {
            report: CycleReport::new(started, self.config.dry_run),
            grouper: ImageGrouper::default(),
            budget: DeleteBudget::new(self.config.max_unreferenced_fraction),
            progress: self.progress.clone(),
            pacer: DeletePacer::new(self.config.delete_rate),
            stream: None,
            staging: None,
            failure: None,
            refuse_images: false,
        };
        let outcome = self.drive(&mut state, started).await;
        self.progress.finish();
        state.finish_staging();
        let mut report = state.report;
        report.outcome = outcome;
        report.duration_ms = u64::try_from(self.clock.now().saturating_since(started).as_millis()).unwrap_or(u64::MAX);
        report.log();
        crate::metrics::cycle_finished(&report);
        if self.count_queue {
            // A store that keeps no queue (or fails to count it) reports nothing.
            if let Some(Ok(depth)) = self.within_call_timeout(self.metadata.count_superseded()).await {
                crate::metrics::queue_depth(depth);
            }
        }
        report
    }

    /// Runs cycles until `shutdown` completes: a cycle, then `interval` of rest (by
    /// the injected clock), and so on. A cycle that did not complete is logged and
    /// simply followed by the next one. Shutdown abandons a cycle in progress, which
    /// is safe: deletes are idempotent and nothing is deleted after the abandonment.
    pub async fn run_every(&self, interval: Duration, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let report = tokio::select! {
                biased;
                () = &mut shutdown => {
                    tracing::info!("cleaner shutting down; abandoning the cycle in progress");
                    return;
                }
                report = self.run_cycle() => report,
            };
            if !report.completed() {
                tracing::warn!(
                    outcome = report.outcome.kind(),
                    retry_in_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
                    "cleaner cycle did not complete; the next cycle starts over"
                );
            }
            let next = self.clock.now().plus(interval);
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    tracing::info!("cleaner shutting down");
                    return;
                }
                () = self.clock.sleep_until(next) => {}
            }
        }
    }

    async fn drive<'a>(&'a self, state: &mut CycleState<'a>, started: Timestamp) -> Outcome {
        let config = &self.config;
        if let Err(reason) = self.clocks_agree() {
            return Outcome::Refused(reason);
        }
        if let Some(check) = &self.preflight {
            match self.within_call_timeout(check()).await {
                Some(Ok(())) => {}
                Some(Err(reason)) => return Outcome::Refused(reason),
                None => {
                    return Outcome::Refused(format!(
                        "checking the pairing and timings took longer than {}",
                        profilestore_core::settings::fmt_duration(config.call_timeout)
                    ));
                }
            }
        }
        match self.bounded("asking whether the database holds records", self.metadata.has_records()).await {
            Ok(any) => state.refuse_images = !any && !config.allow_empty_database,
            Err(e) => {
                return Outcome::Failed(format!("asking whether the database holds records failed: {e}"));
            }
        }
        // The queue first: its images need no listing, so a long full sweep does not
        // hold them up. (On SQLite a claim takes the write lock only when the queue
        // holds an entry to stamp or due.)
        if let Err(outcome) = self.drain_superseded(state).await {
            return outcome;
        }
        let plan = match self.plan_listing(started).await {
            Ok(plan) => plan,
            Err(outcome) => return outcome,
        };
        state.report.sweep = plan.kind;
        state.report.listed_since = plan.since;
        // In a dry run nothing is deleted, so the delay protects nothing; skipping it
        // lets the dry run answer at once.
        let mut machine_timings = config.timings;
        if config.dry_run {
            machine_timings.delete_delay = Duration::ZERO;
        }
        let mut machine = CleanerCycle::<Timestamp, ImageId>::new(machine_timings, config.limits);
        state.stream = Some(self.open_listing(&plan, state).await);
        let mut in_flight: FuturesUnordered<BoxFuture<'a, Completion<'a>>> = FuturesUnordered::new();

        loop {
            let now = self.clock.now();
            for action in machine.enabled(now) {
                if let CleanerAction::Delete { ids, .. } = &action
                    && let Err(reason) = state.budget.admit(ids.len() as u64)
                {
                    return Outcome::Stopped(reason);
                }
                let Some(op) = self.operation(&action, state) else {
                    return Outcome::Failed("internal: the listing was asked for while already in flight".into());
                };
                machine.start(&action);
                in_flight.push(op);
            }
            let completion = match machine.status(now) {
                CycleStatus::Finished(CycleOutcome::Completed) => {
                    return match self.record_completion(state, &plan, started).await {
                        Ok(()) => Outcome::Completed,
                        Err(outcome) => outcome,
                    };
                }
                CycleStatus::Finished(CycleOutcome::Failed) => {
                    return Outcome::Failed(state.failure.take().unwrap_or_else(|| "a store operation failed".into()));
                }
                CycleStatus::Busy => match in_flight.next().await {
                    Some(c) => c,
                    None => {
                        return Outcome::Failed("internal: the cycle stalled with nothing in flight".into());
                    }
                },
                CycleStatus::WaitUntil(t) if t <= now => {
                    return Outcome::Failed("internal: the cycle stalled waiting for a past instant".into());
                }
                CycleStatus::WaitUntil(t) => {
                    if in_flight.is_empty() {
                        self.clock.sleep_until(t).await;
                        continue;
                    }
                    // Biased: the same schedule takes the same branch, so a seeded
                    // simulation replays exactly.
                    tokio::select! {
                        biased;
                        Some(c) = in_flight.next() => c,
                        () = self.clock.sleep_until(t) => continue,
                    }
                }
            };
            let now = self.clock.now();
            let event = match completion {
                Completion::Page { stream, next } => match self.on_page(state, stream, next, now).await {
                    Ok(event) => event,
                    Err(refusal) => return refusal,
                },
                Completion::Queried { batch, ids, result } => pages::on_queried(state, batch, ids, result),
                Completion::Deleted { batch, ids, result } => self.on_deleted(state, batch, ids, result),
            };
            machine.handle(event, now);
        }
    }

    /// The store operation for `action`; `None` when the listing is asked for while
    /// its stream is lent out (the machine never does that).
    fn operation<'a>(
        &'a self,
        action: &CleanerAction<ImageId>,
        state: &mut CycleState<'a>,
    ) -> Option<BoxFuture<'a, Completion<'a>>> {
        Some(match action.clone() {
            CleanerAction::ListPage => {
                let mut stream = state.stream.take()?;
                async move {
                    let next = match self.bounded("listing a page", stream.next().map(Ok)).await {
                        Ok(next) => next,
                        Err(e) => Some(Err(e)),
                    };
                    Completion::Page { stream, next }
                }
                .boxed()
            }
            CleanerAction::QueryReferenced { batch, ids } => async move {
                let result = self.bounded("asking which images are referenced", self.metadata.referenced(&ids)).await;
                Completion::Queried { batch, ids, result }
            }
            .boxed(),
            CleanerAction::Delete { batch, ids } if self.config.dry_run => {
                futures::future::ready(Completion::Deleted { batch, ids, result: Ok(()) }).boxed()
            }
            CleanerAction::Delete { batch, ids } => {
                // Each request's turn is booked now, in the order the machine starts
                // batches, so concurrent batches share one rate.
                let requests = state.pacer.plan(&ids, self.config.delete_batch_size, self.clock.now());
                async move {
                    tracing::debug!(batch = batch.0, ids = ?ids, "deleting unreferenced images");
                    let result = self.delete_paced(requests).await;
                    Completion::Deleted { batch, ids, result }
                }
                .boxed()
            }
        })
    }
}
