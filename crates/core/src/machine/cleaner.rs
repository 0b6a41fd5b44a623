//! The storage cleaner's cycle: list old blobs, ask which are unreferenced, wait the
//! delete delay, delete.
//!
//! The cycle is pipelined: listing goes on while earlier pages are queried and while
//! their deletes wait for their due time, so a cycle takes about the listing time plus
//! one `delete_delay`, not one delay per page. [`CleanerCycle::enabled`] names every
//! operation that may start now; a production driver starts them concurrently, a model
//! checker explores them in every order.

use std::collections::HashSet;
use std::hash::Hash;

use crate::settings::{Timings, old_enough};
use crate::time::Time;

/// Identifies one batch (one listed page's candidates) within a cycle.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct BatchId(pub u32);

/// Bounds on how far a cycle runs ahead of itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CycleLimits {
    /// Listing pauses while the cycle holds this many ids (listed candidates, ids
    /// being queried, ids waiting for or undergoing their delete), so the cycle's
    /// memory is bounded whatever the number of blobs and however slow the database.
    pub max_pending_ids: usize,
    /// At most this many "which are referenced" queries at once.
    pub max_concurrent_queries: usize,
    /// At most this many delete batches at once.
    pub max_concurrent_deletes: usize,
}

impl Default for CycleLimits {
    fn default() -> Self {
        CycleLimits { max_pending_ids: 1_000_000, max_concurrent_queries: 2, max_concurrent_deletes: 2 }
    }
}

/// One cleaner cycle in progress.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct CleanerCycle<T: Time, Id> {
    timings: Timings<T::Span>,
    limits: CycleLimits,
    listing: Listing,
    batches: Vec<Batch<T, Id>>,
    next_batch: u32,
    failed: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Listing {
    Ready,
    InFlight,
    Exhausted,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Batch<T, Id> {
    id: BatchId,
    ids: Vec<Id>,
    state: BatchState<T>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum BatchState<T> {
    /// Old enough; not yet asked about.
    Candidates,
    Querying,
    /// Unreferenced at the end of the query; deletable from `due`.
    Waiting {
        due: T,
    },
    Deleting,
}

/// An operation the cycle wants started.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum CleanerAction<Id> {
    /// Fetch the next page of the blob listing; answer [`CleanerEvent::Listed`].
    ListPage,
    /// Ask which of `ids` are referenced, in one fresh query; answer [`CleanerEvent::Queried`].
    QueryReferenced {
        /// The batch the ids belong to.
        batch: BatchId,
        /// The old-enough ids of one page.
        ids: Vec<Id>,
    },
    /// Delete every blob of `ids`; answer [`CleanerEvent::Deleted`].
    Delete {
        /// The batch the ids belong to.
        batch: BatchId,
        /// Ids found unreferenced at least `delete_delay` ago.
        ids: Vec<Id>,
    },
}

/// What came of an operation.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum CleanerEvent<T, Id> {
    /// One page of the listing: each image with its blob creation time (by the blob
    /// store's clock); `last` when the listing has no more pages.
    Listed {
        /// The listed images and their creation times.
        page: Vec<(Id, T)>,
        /// Whether this was the final page.
        last: bool,
    },
    /// The ids of the batch that some record references.
    Queried {
        /// The batch asked about.
        batch: BatchId,
        /// The referenced ones among its ids.
        referenced: Vec<Id>,
    },
    /// The batch's blobs are deleted.
    Deleted {
        /// The batch deleted.
        batch: BatchId,
    },
    /// An operation failed; the cycle ends and must start over from the listing.
    Failed,
}

/// Where a cycle stands.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum CycleStatus<T> {
    /// Operations are in flight or startable; wait for a completion.
    Busy,
    /// Nothing can start before this instant and nothing is in flight.
    WaitUntil(T),
    /// The cycle is over.
    Finished(CycleOutcome),
}

/// How a cycle ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum CycleOutcome {
    /// Every page was listed and every unreferenced batch deleted.
    Completed,
    /// An operation failed; start over.
    Failed,
}

impl<T: Time, Id: Copy + Eq + Hash + std::fmt::Debug> CleanerCycle<T, Id> {
    /// A fresh cycle that will start by listing.
    pub fn new(timings: Timings<T::Span>, limits: CycleLimits) -> Self {
        CleanerCycle { timings, limits, listing: Listing::Ready, batches: Vec::new(), next_batch: 0, failed: false }
    }

    /// Every id the cycle holds: listed but not yet asked about, being asked about,
    /// or found unreferenced and waiting for (or undergoing) its delete.
    pub fn pending_ids(&self) -> usize {
        self.batches.iter().map(|b| b.ids.len()).sum()
    }

    /// Every operation that may start at `now`, not yet started. Deletes come before
    /// queries and queries before listing, so the pipeline drains before it fills.
    pub fn enabled(&self, now: T) -> Vec<CleanerAction<Id>> {
        if self.failed {
            return Vec::new();
        }
        let in_state = |pred: fn(&BatchState<T>) -> bool| self.batches.iter().filter(move |b| pred(&b.state));
        let mut actions = Vec::new();
        let deleting = in_state(|s| matches!(s, BatchState::Deleting)).count();
        actions.extend(
            self.batches
                .iter()
                .filter(|b| matches!(b.state, BatchState::Waiting { due } if due <= now))
                .take(self.limits.max_concurrent_deletes.saturating_sub(deleting))
                .map(|b| CleanerAction::Delete { batch: b.id, ids: b.ids.clone() }),
        );
        let querying = in_state(|s| matches!(s, BatchState::Querying)).count();
        actions.extend(
            in_state(|s| matches!(s, BatchState::Candidates))
                .take(self.limits.max_concurrent_queries.saturating_sub(querying))
                .map(|b| CleanerAction::QueryReferenced { batch: b.id, ids: b.ids.clone() }),
        );
        if self.listing == Listing::Ready && self.pending_ids() < self.limits.max_pending_ids {
            actions.push(CleanerAction::ListPage);
        }
        actions
    }

    /// Marks `action` (one returned by [`enabled`](Self::enabled)) as in flight.
    pub fn start(&mut self, action: &CleanerAction<Id>) {
        match action {
            CleanerAction::ListPage => self.listing = Listing::InFlight,
            CleanerAction::QueryReferenced { batch, .. } => self.set_state(*batch, BatchState::Querying),
            CleanerAction::Delete { batch, .. } => self.set_state(*batch, BatchState::Deleting),
        }
    }

    /// Feeds the result of a started operation, at time `now` (when it finished).
    pub fn handle(&mut self, event: CleanerEvent<T, Id>, now: T) {
        if self.failed {
            return;
        }
        match event {
            CleanerEvent::Failed => {
                self.failed = true;
                self.batches.clear();
            }
            CleanerEvent::Listed { page, last } => {
                self.listing = if last { Listing::Exhausted } else { Listing::Ready };
                let ids: Vec<Id> = page
                    .into_iter()
                    .filter(|(_, created)| old_enough(*created, now, &self.timings))
                    .map(|(id, _)| id)
                    .collect();
                if !ids.is_empty() {
                    let id = BatchId(self.next_batch);
                    self.next_batch += 1;
                    self.batches.push(Batch { id, ids, state: BatchState::Candidates });
                }
            }
            CleanerEvent::Queried { batch, referenced } => {
                // The delay counts from the end of the query that saw the ids unreferenced.
                let due = now.plus(self.timings.delete_delay);
                let referenced: HashSet<Id> = referenced.into_iter().collect();
                if let Some(b) = self.batch_mut(batch) {
                    b.ids.retain(|id| !referenced.contains(id));
                    b.state = BatchState::Waiting { due };
                }
                self.batches.retain(|b| !b.ids.is_empty());
            }
            CleanerEvent::Deleted { batch } => self.batches.retain(|b| b.id != batch),
        }
    }

    /// Where the cycle stands at `now`.
    pub fn status(&self, now: T) -> CycleStatus<T> {
        if self.failed {
            return CycleStatus::Finished(CycleOutcome::Failed);
        }
        if self.listing == Listing::Exhausted && self.batches.is_empty() {
            return CycleStatus::Finished(CycleOutcome::Completed);
        }
        let in_flight = self.listing == Listing::InFlight
            || self.batches.iter().any(|b| matches!(b.state, BatchState::Querying | BatchState::Deleting));
        if in_flight || !self.enabled(now).is_empty() {
            return CycleStatus::Busy;
        }
        match self
            .batches
            .iter()
            .filter_map(|b| match b.state {
                BatchState::Waiting { due } => Some(due),
                _ => None,
            })
            .min()
        {
            Some(due) => CycleStatus::WaitUntil(due),
            // Unreachable with positive limits; treat as in flight rather than finished.
            None => CycleStatus::Busy,
        }
    }

    fn batch_mut(&mut self, batch: BatchId) -> Option<&mut Batch<T, Id>> {
        self.batches.iter_mut().find(|b| b.id == batch)
    }

    fn set_state(&mut self, batch: BatchId, state: BatchState<T>) {
        if let Some(b) = self.batch_mut(batch) {
            b.state = state;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;
    use std::time::Duration;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn timings() -> Timings {
        Timings { request_timeout: MS(100), min_blob_age: MS(200), delete_delay: MS(100), clock_skew: MS(10) }
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn cycle() -> CleanerCycle<Timestamp, u32> {
        CleanerCycle::new(timings(), CycleLimits::default())
    }

    fn run(
        c: &mut CleanerCycle<Timestamp, u32>,
        action: CleanerAction<u32>,
        event: CleanerEvent<Timestamp, u32>,
        now: i64,
    ) {
        assert!(c.enabled(at(now)).contains(&action), "{action:?} not enabled at {now}: {:?}", c.enabled(at(now)));
        c.start(&action);
        c.handle(event, at(now));
    }

    #[test]
    fn a_blob_exactly_min_blob_age_plus_skew_old_is_considered_and_one_ms_younger_is_not() {
        let mut c = cycle();
        // Listed at 1000: created 790 is exactly 210 ms old; 791 is one ms short.
        run(
            &mut c,
            CleanerAction::ListPage,
            CleanerEvent::Listed { page: vec![(1, at(790)), (2, at(791))], last: true },
            1000,
        );
        let queries = c.enabled(at(1000));
        assert_eq!(queries, vec![CleanerAction::QueryReferenced { batch: BatchId(0), ids: vec![1] }]);
    }

    #[test]
    fn a_delete_is_enabled_exactly_delete_delay_after_the_query_ended() {
        let mut c = cycle();
        run(
            &mut c,
            CleanerAction::ListPage,
            CleanerEvent::Listed { page: vec![(1, at(0)), (2, at(0))], last: true },
            1000,
        );
        run(
            &mut c,
            CleanerAction::QueryReferenced { batch: BatchId(0), ids: vec![1, 2] },
            CleanerEvent::Queried { batch: BatchId(0), referenced: vec![2] },
            1050,
        );
        assert!(c.enabled(at(1149)).is_empty(), "one ms early");
        assert_eq!(c.status(at(1149)), CycleStatus::WaitUntil(at(1150)));
        run(
            &mut c,
            CleanerAction::Delete { batch: BatchId(0), ids: vec![1] },
            CleanerEvent::Deleted { batch: BatchId(0) },
            1150,
        );
        assert_eq!(c.status(at(1150)), CycleStatus::Finished(CycleOutcome::Completed));
    }

    #[test]
    fn listing_goes_on_while_a_batch_waits_so_the_cycle_takes_one_delay() {
        let mut c = cycle();
        run(&mut c, CleanerAction::ListPage, CleanerEvent::Listed { page: vec![(1, at(0))], last: false }, 1000);
        run(
            &mut c,
            CleanerAction::QueryReferenced { batch: BatchId(0), ids: vec![1] },
            CleanerEvent::Queried { batch: BatchId(0), referenced: vec![] },
            1001,
        );
        // Batch 0 waits until 1101; listing the next page is enabled at once.
        run(&mut c, CleanerAction::ListPage, CleanerEvent::Listed { page: vec![(2, at(0))], last: true }, 1002);
        run(
            &mut c,
            CleanerAction::QueryReferenced { batch: BatchId(1), ids: vec![2] },
            CleanerEvent::Queried { batch: BatchId(1), referenced: vec![] },
            1003,
        );
        let due = c.enabled(at(1103));
        assert_eq!(due.len(), 2, "both batches are due one delay after their own query: {due:?}");
    }

    #[test]
    fn a_fully_referenced_page_leaves_nothing_to_delete() {
        let mut c = cycle();
        run(&mut c, CleanerAction::ListPage, CleanerEvent::Listed { page: vec![(1, at(0))], last: true }, 1000);
        run(
            &mut c,
            CleanerAction::QueryReferenced { batch: BatchId(0), ids: vec![1] },
            CleanerEvent::Queried { batch: BatchId(0), referenced: vec![1] },
            1000,
        );
        assert_eq!(c.status(at(1000)), CycleStatus::Finished(CycleOutcome::Completed));
    }

    #[test]
    fn any_failure_ends_the_cycle_and_drops_every_pending_delete() {
        let mut c = cycle();
        run(&mut c, CleanerAction::ListPage, CleanerEvent::Listed { page: vec![(1, at(0))], last: false }, 1000);
        run(
            &mut c,
            CleanerAction::QueryReferenced { batch: BatchId(0), ids: vec![1] },
            CleanerEvent::Queried { batch: BatchId(0), referenced: vec![] },
            1000,
        );
        run(&mut c, CleanerAction::ListPage, CleanerEvent::Failed, 1001);
        assert_eq!(c.status(at(5000)), CycleStatus::Finished(CycleOutcome::Failed));
        assert!(c.enabled(at(5000)).is_empty());
    }

    #[test]
    fn listing_pauses_while_queries_lag_so_memory_stays_bounded() {
        let limits = CycleLimits { max_pending_ids: 3, max_concurrent_queries: 1, ..CycleLimits::default() };
        let mut c = CleanerCycle::<Timestamp, u32>::new(timings(), limits);
        let mut listed = 0;
        // The database never answers: queries stay in flight, pages keep coming.
        for page in 0..10u32 {
            if !c.enabled(at(1000)).contains(&CleanerAction::ListPage) {
                break;
            }
            c.start(&CleanerAction::ListPage);
            c.handle(
                CleanerEvent::Listed { page: vec![(2 * page, at(0)), (2 * page + 1, at(0))], last: false },
                at(1000),
            );
            listed += 1;
            for action in c.enabled(at(1000)) {
                if matches!(action, CleanerAction::QueryReferenced { .. }) {
                    c.start(&action);
                }
            }
        }
        assert_eq!(listed, 2, "listing stops once the cycle holds max_pending_ids ids");
        assert_eq!(c.pending_ids(), 4);
    }

    #[test]
    fn listing_pauses_while_too_many_ids_wait() {
        let limits = CycleLimits { max_pending_ids: 1, ..CycleLimits::default() };
        let mut c = CleanerCycle::<Timestamp, u32>::new(timings(), limits);
        run(&mut c, CleanerAction::ListPage, CleanerEvent::Listed { page: vec![(1, at(0))], last: false }, 1000);
        run(
            &mut c,
            CleanerAction::QueryReferenced { batch: BatchId(0), ids: vec![1] },
            CleanerEvent::Queried { batch: BatchId(0), referenced: vec![] },
            1000,
        );
        assert!(!c.enabled(at(1000)).contains(&CleanerAction::ListPage));
        run(
            &mut c,
            CleanerAction::Delete { batch: BatchId(0), ids: vec![1] },
            CleanerEvent::Deleted { batch: BatchId(0) },
            1100,
        );
        assert!(c.enabled(at(1100)).contains(&CleanerAction::ListPage));
    }
}
