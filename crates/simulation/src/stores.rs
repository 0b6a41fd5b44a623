//! The stores as each simulated machine sees them: the shared in-memory stores
//! behind a per-machine wrapper that injects faults from the machine's own seeded
//! stream, logs every call, and checks the invariants where they can first break.
//!
//! Faults: every call waits a few milliseconds (which also shuffles the order of
//! concurrent calls); some wait minutes or stall for hours, before the store acts or
//! after it acted and before the answer arrives; some fail, before acting or after
//! (the caller then cannot tell whether a write landed). In the calm phase at the end
//! of a run only the short waits remain.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;

use profilestore_core::error::StoreError;
use profilestore_core::ids::{ImageId, UserId};
use profilestore_core::memory::{MemoryBlobStore, MemoryMetadataStore};
use profilestore_core::settings::Timings;
use profilestore_core::store::{
    CommitOutcome, DeleteOutcome, MetadataStore, Pairing, Precondition, Record, SupersededClaim, SweepMarks,
};
use profilestore_core::time::{Clock, Deadline, Timestamp};

use super::FaultRates;
use super::clock::SimClock;
use super::log::{Actor, Counters, Journal, short, shorts};
use super::protocol::StoreProtocol;
use super::queue::SupersededQueue;
use super::rng::SimRng;

tokio::task_local! {
    /// The deadline of the request a server task is serving, in true virtual time
    /// since the start of the run (the request's time runs out on its server's ticks,
    /// which are true time): how the blob wrapper tells a vanished blob (within the
    /// deadline) from a late one, whatever the server's wall clock did meanwhile.
    pub static REQUEST_DEADLINE: Duration;
}

/// How a listing call starts in the log (the slicer recognises it).
pub const LIST_PAGE: &str = "list a page of blobs";
/// How a cleaner's reference query starts in the log.
pub const QUERY: &str = "which of [";
/// How the log lines of calls that change a user's record start.
pub const RECORD_CHANGES: [&str; 2] = ["commit ", "delete record of "];

/// The one pair of stores every machine shares, and the run's journal.
pub struct SimWorld {
    /// The database, unwrapped.
    pub metadata: Arc<MemoryMetadataStore>,
    /// The blob store, unwrapped.
    pub blobs: Arc<MemoryBlobStore>,
    /// The run's log, counters and violation.
    pub journal: Journal,
    /// The fault rates of the run (its seed's mix).
    pub faults: FaultRates,
    /// The database's commit protocol.
    pub protocol: StoreProtocol,
    /// The database's own clock.
    pub(super) db_clock: Arc<dyn Clock>,
    /// The database's write lock (taken as the protocol says).
    pub(super) lock: Arc<tokio::sync::Mutex<()>>,
    /// Commits checked and not yet landed or refused.
    pub(super) pending: AtomicUsize,
    /// Images some cleaner's query found unreferenced: each will be deleted.
    pub(super) condemned: Mutex<HashSet<ImageId>>,
    /// The superseded-image queue and its flaw switch (see `queue`).
    pub(super) queue: Mutex<SupersededQueue>,
    /// The patch flaw: commits land whatever their precondition says.
    pub(super) ignore_preconditions: bool,
    calm: AtomicBool,
}

impl SimWorld {
    /// A world over a database whose clock is `db_clock` and a blob store that
    /// stamps creation times with `blob_clock`.
    pub fn new(
        db_clock: SimClock,
        blob_clock: SimClock,
        journal: Journal,
        faults: FaultRates,
        protocol: StoreProtocol,
    ) -> Self {
        let db_clock: Arc<dyn Clock> = Arc::new(db_clock);
        SimWorld {
            metadata: Arc::new(MemoryMetadataStore::new(db_clock.clone())),
            blobs: Arc::new(MemoryBlobStore::new(Arc::new(blob_clock))),
            journal,
            faults,
            protocol,
            db_clock,
            lock: Arc::default(),
            pending: AtomicUsize::new(0),
            condemned: Mutex::default(),
            queue: Mutex::default(),
            ignore_preconditions: false,
            calm: AtomicBool::new(false),
        }
    }

    /// The same world with the queue flaw on: an entry's delete delay starts at its
    /// write's statement time instead of when a cleaner first sees it.
    pub fn with_queue_delay_from_statement(self, on: bool) -> Self {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).delay_from_statement = on;
        self
    }

    /// The same world with the patch flaw on: every commit lands whatever record it
    /// finds, as though its precondition were `Any`.
    pub fn with_ignored_preconditions(self, on: bool) -> Self {
        SimWorld { ignore_preconditions: on, ..self }
    }

    /// From now on inject only short waits.
    pub fn calm_down(&self) {
        self.calm.store(true, Ordering::Relaxed);
    }

    /// Every record, in user order.
    pub fn records(&self) -> Vec<Record> {
        // The in-memory store answers at once; it never waits.
        let records = self.metadata.records_after(None, usize::MAX).now_or_never();
        records.and_then(Result::ok).unwrap_or_default()
    }
}

/// Where an injected delay falls.
#[derive(Debug, Clone, Copy, Default)]
struct Plan {
    /// Wait before the store acts.
    before: Duration,
    /// Wait after it acted, before the answer arrives.
    after: Duration,
    /// Fail without acting.
    fail_before: bool,
    /// Act, then fail anyway.
    fail_after: bool,
}

impl Plan {
    fn note(&self) -> String {
        let mut parts = Vec::new();
        let long = Duration::from_secs(1);
        if self.before >= long {
            parts.push(format!("held {} before acting", fmt_wait(self.before)));
        }
        if self.after >= long {
            parts.push(format!("answer held {}", fmt_wait(self.after)));
        }
        if self.fail_after {
            parts.push("then reported an error (injected)".into());
        }
        if parts.is_empty() { String::new() } else { format!(" [{}]", parts.join("; ")) }
    }
}

pub(super) fn fmt_wait(d: Duration) -> String {
    profilestore_core::settings::fmt_duration(Duration::from_secs(d.as_secs()))
}

/// One machine's view of the shared stores.
pub struct Faulty {
    pub(super) world: Arc<SimWorld>,
    pub(super) actor: Actor,
    clock: SimClock,
    rng: Mutex<SimRng>,
}

impl Faulty {
    /// `actor`'s view, drawing faults from `rng` and reading time from `clock`.
    pub fn new(world: Arc<SimWorld>, actor: Actor, clock: SimClock, rng: SimRng) -> Arc<Self> {
        Arc::new(Faulty { world, actor, clock, rng: Mutex::new(rng) })
    }

    fn plan(&self) -> Plan {
        let rates = &self.world.faults;
        let counters = &self.world.journal.counters;
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let mut plan = Plan { before: rng.millis_up_to(rates.latency), ..Plan::default() };
        if self.world.calm.load(Ordering::Relaxed) {
            return plan;
        }
        let mut delay = |rng: &mut SimRng, d: Duration| {
            if rng.chance(0.5) {
                plan.before += d;
            } else {
                plan.after += d;
            }
        };
        if rng.chance(rates.slow) {
            Counters::bump(&counters.injected_slow);
            let d = rng.millis_up_to(rates.slow_max);
            delay(&mut rng, d);
        }
        if rng.chance(rates.stall) {
            Counters::bump(&counters.injected_stalls);
            let d = rng.millis_between(rates.stall_max / 4, rates.stall_max);
            delay(&mut rng, d);
        }
        if rng.chance(rates.error) {
            Counters::bump(&counters.injected_errors);
            if rng.chance(0.5) {
                plan.fail_before = true;
            } else {
                plan.fail_after = true;
            }
        }
        plan
    }

    /// How long a record write's commit stays pending after its check: a few
    /// milliseconds, or, for a process frozen between its checked statement and
    /// `COMMIT`, `freeze_max / 8` to `freeze_max`.
    fn commit_delay(&self) -> Duration {
        let rates = &self.world.faults;
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let mut delay = rng.millis_up_to(rates.latency);
        if !self.world.calm.load(Ordering::Relaxed) && rng.chance(rates.freeze) {
            Counters::bump(&self.world.journal.counters.frozen_commits);
            delay += rng.millis_between(rates.freeze_max / 8, rates.freeze_max);
        }
        delay
    }

    fn log(&self, text: String, user: Option<&UserId>, images: &[ImageId]) {
        self.world.journal.record(self.actor, text, user, images);
    }

    /// Runs `op` under a freshly drawn plan: waits, acts, waits, maybe fails. `describe`
    /// says what the store answered, for the log line written the moment it acted;
    /// `check` sees the answer at that moment too, before any delay of the answer.
    pub(super) async fn call<T, Op, Fut>(
        &self,
        what: String,
        user: Option<&UserId>,
        images: &[ImageId],
        op: Op,
        describe: impl FnOnce(&Result<T, StoreError>) -> Described,
        check: impl FnOnce(&Result<T, StoreError>),
    ) -> Result<T, StoreError>
    where
        Op: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let plan = self.plan();
        let mut abandoned = Abandoned { faulty: self, what: Some((what.clone(), user.cloned(), images.to_vec())) };
        tokio::time::sleep(plan.before).await;
        abandoned.what = None;
        if plan.fail_before {
            self.log(format!("{what} → error (injected){}", plan.note()), user, images);
            return Err(StoreError::unavailable("injected failure before the store acted"));
        }
        let result = op().await;
        let Described(text, found) = describe(&result);
        let mut images = images.to_vec();
        images.extend(found);
        self.log(format!("{what} → {text}{}", plan.note()), user, &images);
        check(&result);
        tokio::time::sleep(plan.after).await;
        if plan.fail_after {
            return Err(StoreError::unavailable("injected failure after the store acted"));
        }
        result
    }
}

/// Logs a call its caller dropped before the store acted.
struct Abandoned<'a> {
    faulty: &'a Faulty,
    what: Option<(String, Option<UserId>, Vec<ImageId>)>,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some((what, user, images)) = self.what.take() {
            self.faulty.log(format!("{what} → abandoned by the caller before the store acted"), user.as_ref(), &images);
        }
    }
}

/// For calls with nothing to check.
pub(super) fn no_check<T>(_: &Result<T, StoreError>) {}

/// A store's answer for the log, and the images it named.
pub(super) struct Described(pub(super) String, pub(super) Vec<ImageId>);

impl Described {
    pub(super) fn text(text: impl Into<String>) -> Self {
        Described(text.into(), Vec::new())
    }
}

pub(super) fn describe_unit(r: &Result<(), StoreError>) -> Described {
    match r {
        Ok(()) => Described::text("ok"),
        Err(e) => Described::text(format!("error: {e}")),
    }
}

#[async_trait::async_trait]
impl MetadataStore for Faulty {
    async fn get(&self, user: &UserId) -> Result<Option<Record>, StoreError> {
        self.call(
            format!("get record of {user}"),
            Some(user),
            &[],
            || self.world.metadata.get(user),
            |r| match r {
                Ok(Some(r)) => Described(format!("names {}", short(&r.image_id)), vec![r.image_id]),
                Ok(None) => Described::text("no record"),
                Err(e) => Described::text(format!("error: {e}")),
            },
            no_check,
        )
        .await
    }

    async fn put_if_before(
        &self,
        record: &Record,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<CommitOutcome, StoreError> {
        let what = format!(
            "{}{}'s record naming {} (deadline in {})",
            RECORD_CHANGES[0],
            record.user_id,
            short(&record.image_id),
            fmt_wait(deadline.at().saturating_since(self.clock.now()))
        );
        let delay = self.commit_delay();
        self.call(
            what,
            Some(&record.user_id),
            &[record.image_id],
            || self.world.commit(self.actor, record, precondition, deadline, delay),
            |r| {
                Described::text(match r {
                    Ok(CommitOutcome::Committed) => "committed".into(),
                    Ok(CommitOutcome::DeadlineExceeded) => "refused: the database's clock is past the deadline".into(),
                    Ok(CommitOutcome::PreconditionFailed) => "refused: the record is not the one expected".into(),
                    Err(e) => format!("error: {e}"),
                })
            },
            // The commit checks for dangling references itself, when it lands.
            no_check,
        )
        .await
    }

    async fn delete_if_before(
        &self,
        user: &UserId,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<DeleteOutcome, StoreError> {
        self.call(
            format!("{}{user}", RECORD_CHANGES[1]),
            Some(user),
            &[],
            || self.world.delete(self.actor, user, precondition, deadline),
            |r| {
                Described::text(match r {
                    Ok(DeleteOutcome::Deleted) => "deleted".into(),
                    Ok(DeleteOutcome::NotFound) => "no record".into(),
                    Ok(DeleteOutcome::DeadlineExceeded) => "refused: the database's clock is past the deadline".into(),
                    Ok(DeleteOutcome::PreconditionFailed) => "refused: the record is not the one expected".into(),
                    Err(e) => format!("error: {e}"),
                })
            },
            no_check,
        )
        .await
    }

    async fn referenced(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        self.call(
            format!("{QUERY}{}] are referenced", shorts(ids)),
            None,
            ids,
            || self.world.referenced(ids),
            |r| match r {
                Ok(set) => {
                    let named: Vec<ImageId> = ids.iter().filter(|i| set.contains(i)).copied().collect();
                    Described::text(format!("referenced [{}]", shorts(&named)))
                }
                Err(e) => Described::text(format!("error: {e}")),
            },
            no_check,
        )
        .await
    }

    async fn claim_superseded(&self, delete_delay: Duration, limit: usize) -> Result<SupersededClaim, StoreError> {
        self.faulty_claim(delete_delay, limit).await
    }

    async fn forget_superseded(&self, ids: &[ImageId]) -> Result<u64, StoreError> {
        self.faulty_forget(ids).await
    }

    async fn count_superseded(&self) -> Result<u64, StoreError> {
        self.faulty_count().await
    }

    async fn sweep_marks(&self) -> Result<SweepMarks, StoreError> {
        self.faulty_marks().await
    }

    async fn record_sweep(
        &self,
        horizon: Timestamp,
        full_sweep_started: Option<Timestamp>,
    ) -> Result<SweepMarks, StoreError> {
        self.faulty_record_sweep(horizon, full_sweep_started).await
    }

    async fn count_records(&self) -> Result<u64, StoreError> {
        self.call(
            "count records".into(),
            None,
            &[],
            || self.world.metadata.count_records(),
            |r| {
                Described::text(match r {
                    Ok(n) => n.to_string(),
                    Err(e) => format!("error: {e}"),
                })
            },
            no_check,
        )
        .await
    }

    async fn records_after(&self, after: Option<&UserId>, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.world.metadata.records_after(after, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.world.metadata.ping().await
    }

    async fn clock(&self) -> Result<profilestore_core::time::Timestamp, StoreError> {
        self.world.metadata.clock().await
    }

    async fn read_pairing(&self) -> Result<Option<Pairing>, StoreError> {
        self.world.metadata.read_pairing().await
    }

    async fn create_pairing(&self, pairing: &Pairing) -> Result<Pairing, StoreError> {
        self.world.metadata.create_pairing(pairing).await
    }

    async fn update_timings(&self, cluster_id: uuid::Uuid, timings: &Timings) -> Result<(), StoreError> {
        self.world.metadata.update_timings(cluster_id, timings).await
    }
}
