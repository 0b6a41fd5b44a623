//! The simulated database's superseded-image queue and sweep marks
//! (`docs/incremental-cleaning.md`).
//!
//! An entry is made for every image a record change replaced or removed, in the same
//! atomic step in which that change becomes visible, under every commit protocol: a
//! frozen commit's entry appears when its commit lands, not at its check. A cleaner's
//! claim stamps `first_seen` by the database's clock on the entries it sees first and
//! answers those past their delete delay; it follows the protocol's rule for the
//! cleaner's reference query (under SQLite's lock it waits for every pending commit).
//! The sweep marks live in the in-memory database.
//!
//! The flaw `SimConfig::queue_delay_from_statement` stamps an entry at its write's
//! statement (deadline check) time instead: a commit frozen for longer than the delete
//! delay then enters the queue already due, while reads of the record it replaced may
//! still be fetching the old image.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt;

use profilestore_core::error::StoreError;
use profilestore_core::ids::{BlobKey, ImageId, UserId};
use profilestore_core::store::{MetadataStore, Record, SupersededClaim, SweepMarks};
use profilestore_core::time::{Time, Timestamp};

use super::log::{Actor, Counters, short, shorts};
use super::protocol::StoreProtocol;
use super::stores::{Described, Faulty, SimWorld, fmt_wait, no_check};

/// The queue's entries, and what the checks remember of its claims.
#[derive(Debug, Default)]
pub struct SupersededQueue {
    /// Each superseded image with when a cleaner first saw it (or, with the flaw, its
    /// write's statement time).
    entries: BTreeMap<ImageId, Option<Timestamp>>,
    /// The flaw: stamp an entry at its write's statement time.
    pub(super) delay_from_statement: bool,
    /// Images a claim answered due while their blob was stored: the next delete naming
    /// one removes it on the queue's say-so.
    claimed_live: HashSet<ImageId>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimWorld {
    /// The record of `user` now (the in-memory store answers at once).
    pub(super) fn record_of(&self, user: &UserId) -> Option<Record> {
        self.metadata.get(user).now_or_never().and_then(Result::ok).flatten()
    }

    /// `old`, the image of `user`'s record before a change that becomes visible now,
    /// enters the queue; `statement` is when that change's statement ran (its check),
    /// by the database's clock. Call in the same step that makes the change visible.
    pub(super) fn supersede(&self, actor: Actor, user: &UserId, old: ImageId, statement: Timestamp) {
        Counters::bump(&self.journal.counters.superseded_queued);
        let mut queue = lock(&self.queue);
        let stamp = queue.delay_from_statement.then_some(statement);
        queue.entries.entry(old).or_insert(stamp);
        drop(queue);
        let how = match stamp {
            Some(_) => format!(
                ", its delay started at the statement {} ago (flawed)",
                fmt_wait(self.db_clock_now().saturating_since(statement))
            ),
            None => String::new(),
        };
        self.journal.record(
            actor,
            format!("{}'s change supersedes {}: it enters the queue{how}", user, short(&old)),
            Some(user),
            &[old],
        );
    }

    /// A cleaner's claim (the contract of `MetadataStore::claim_superseded`), under
    /// the run's protocol: with SQLite's lock it waits for every pending commit.
    pub async fn claim_superseded(&self, delete_delay: Duration, limit: usize) -> Result<SupersededClaim, StoreError> {
        let counters = &self.journal.counters;
        if self.pending.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            Counters::bump(&counters.queries_during_commit);
        }
        let _lock = if self.protocol == StoreProtocol::SqliteLocked { Some(self.lock.lock().await) } else { None };
        let now = self.db_clock_now();
        let named: HashSet<ImageId> = self.records().iter().map(|r| r.image_id).collect();
        let stored: HashSet<String> = self.blobs.keys().into_iter().collect();
        let mut queue = lock(&self.queue);
        let mut claim = SupersededClaim::default();
        for first_seen in queue.entries.values_mut().filter(|seen| seen.is_none()) {
            *first_seen = Some(now);
            claim.first_seen += 1;
        }
        let mut due: Vec<(Timestamp, ImageId)> = queue
            .entries
            .iter()
            .filter_map(|(id, seen)| seen.filter(|seen| seen.plus(delete_delay) <= now).map(|seen| (seen, *id)))
            .collect();
        due.sort();
        for (_, id) in due.into_iter().take(limit) {
            if named.contains(&id) { claim.named.push(id) } else { claim.due.push(id) }
        }
        let live = claim.due.iter().filter(|id| stored.contains(&BlobKey::original(**id).to_string()));
        queue.claimed_live.extend(live);
        drop(queue);
        counters.superseded_claimed.fetch_add(claim.due.len() as u64, std::sync::atomic::Ordering::Relaxed);
        lock(&self.condemned).extend(claim.due.iter().copied());
        Ok(claim)
    }

    /// Removes `ids` from the queue; answers how many were in it.
    pub fn forget_superseded(&self, ids: &[ImageId]) -> u64 {
        let mut queue = lock(&self.queue);
        ids.iter().filter(|id| queue.entries.remove(id).is_some()).count() as u64
    }

    /// How many entries the queue holds.
    pub fn count_superseded(&self) -> u64 {
        lock(&self.queue).entries.len() as u64
    }

    /// `keys` were just deleted: counts the images among them whose blob a claim had
    /// answered due while it was stored (so this delete removed it).
    pub(super) fn note_deleted(&self, keys: &[BlobKey]) {
        let mut queue = lock(&self.queue);
        let n = keys.iter().filter(|k| queue.claimed_live.remove(&k.image_id)).count() as u64;
        drop(queue);
        self.journal.counters.superseded_deleted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

fn described<T>(r: &Result<T, StoreError>, ok: impl FnOnce(&T) -> String) -> Described {
    Described::text(match r {
        Ok(v) => ok(v),
        Err(e) => format!("error: {e}"),
    })
}

fn fmt_marks(m: &SweepMarks) -> String {
    let or_none = |t: Option<Timestamp>| t.map_or_else(|| "none".to_owned(), |t| t.to_string());
    format!("horizon {}, last full sweep {}", or_none(m.listing_horizon), or_none(m.last_full_sweep))
}

/// The queue's and the sweep marks' calls through a machine's view: faults, latency
/// and a log line, like every other call.
impl Faulty {
    pub(super) async fn faulty_claim(
        &self,
        delete_delay: Duration,
        limit: usize,
    ) -> Result<SupersededClaim, StoreError> {
        self.call(
            format!("{CLAIM}{} old (up to {limit})", fmt_wait(delete_delay)),
            None,
            &[],
            || self.world.claim_superseded(delete_delay, limit),
            |r| match r {
                Ok(c) => Described(
                    format!(
                        "due [{}], named again [{}], {} first seen now",
                        shorts(&c.due),
                        shorts(&c.named),
                        c.first_seen
                    ),
                    c.due.iter().chain(&c.named).copied().collect(),
                ),
                Err(e) => Described::text(format!("error: {e}")),
            },
            no_check,
        )
        .await
    }

    pub(super) async fn faulty_forget(&self, ids: &[ImageId]) -> Result<u64, StoreError> {
        self.call(
            format!("forget superseded [{}]", shorts(ids)),
            None,
            ids,
            || async { Ok(self.world.forget_superseded(ids)) },
            |r| described(r, |n| format!("{n} removed")),
            no_check,
        )
        .await
    }

    pub(super) async fn faulty_count(&self) -> Result<u64, StoreError> {
        let op = || async { Ok(self.world.count_superseded()) };
        self.call("count superseded".into(), None, &[], op, |r| described(r, u64::to_string), no_check).await
    }

    pub(super) async fn faulty_marks(&self) -> Result<SweepMarks, StoreError> {
        let op = || self.world.metadata.sweep_marks();
        self.call("read the sweep marks".into(), None, &[], op, |r| described(r, fmt_marks), no_check).await
    }

    pub(super) async fn faulty_record_sweep(
        &self,
        horizon: Timestamp,
        full_sweep_started: Option<Timestamp>,
    ) -> Result<SweepMarks, StoreError> {
        let full = full_sweep_started.map_or_else(String::new, |t| format!(", a full sweep started {t}"));
        self.call(
            format!("record a completed cycle: horizon {horizon}{full}"),
            None,
            &[],
            || self.world.metadata.record_sweep(horizon, full_sweep_started),
            |r| described(r, fmt_marks),
            no_check,
        )
        .await
    }
}

/// How a cleaner's claim on the queue starts in the log.
pub const CLAIM: &str = "claim superseded images first seen at least ";

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::FaultRates;
    use crate::clock::{Origin, SimClock};
    use crate::log::Journal;
    use profilestore_core::store::{CommitOutcome, Precondition};
    use profilestore_core::time::{Clock, Deadline};

    const HOUR: Duration = Duration::from_secs(3600);

    fn image(n: u8) -> ImageId {
        ImageId::from_uuid(uuid::Builder::from_unix_timestamp_millis(1, &[n; 10]).into_uuid()).unwrap()
    }

    fn record(n: u8, server: &Arc<dyn Clock>) -> Record {
        Record {
            user_id: UserId::parse("user-1").unwrap(),
            metadata: "{}".into(),
            image_id: image(n),
            content_type: "image/png".into(),
            image_size: 1,
            updated_at: server.now(),
        }
    }

    /// The world after `user-1`'s record naming image 1 was replaced by one naming
    /// image 2, whose commit was checked at once and landed two hours later (its
    /// deadline three hours out, so every protocol lands it). Answers the queue's size
    /// and a claim (delay one hour, asked within ten minutes) at one hour, then a claim
    /// just after the landing and one an hour after that.
    async fn frozen_replacement(protocol: StoreProtocol, from_statement: bool) -> [(u64, Option<Vec<ImageId>>); 3] {
        let origin = Origin::now();
        let world = SimWorld::new(
            SimClock::new(origin, 0),
            SimClock::new(origin, 0),
            Journal::new(origin),
            FaultRates::none(),
            protocol,
        );
        let world = Arc::new(world.with_queue_delay_from_statement(from_statement));
        let server: Arc<dyn Clock> = Arc::new(SimClock::new(origin, 0));
        let deadline = Deadline::after(server.clone(), HOUR);
        let first = world.commit(Actor::Server(0), &record(1, &server), &Precondition::Any, &deadline, HOUR / 60).await;
        assert_eq!(first.unwrap(), CommitOutcome::Committed);
        let writer = {
            let (world, record) = (world.clone(), record(2, &server));
            let deadline = Deadline::after(server.clone(), 3 * HOUR);
            tokio::spawn(async move { world.commit(Actor::Server(0), &record, &Precondition::Any, &deadline, 2 * HOUR).await })
        };
        let claim = |world: Arc<SimWorld>| async move {
            let asked = tokio::time::timeout(Duration::from_secs(600), world.claim_superseded(HOUR, 10)).await;
            (world.count_superseded(), asked.ok().map(|c| c.unwrap().due))
        };
        tokio::time::sleep(HOUR).await;
        let during = claim(world.clone()).await;
        assert_eq!(writer.await.unwrap().unwrap(), CommitOutcome::Committed);
        let landed = claim(world.clone()).await;
        tokio::time::sleep(HOUR).await;
        [during, landed, claim(world).await]
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_appears_when_its_change_lands_and_is_due_a_delay_after_first_sight() {
        for protocol in [StoreProtocol::PostgresBounded, StoreProtocol::Unlocked] {
            let [during, landed, later] = frozen_replacement(protocol, false).await;
            assert_eq!(during, (0, Some(vec![])), "{protocol:?}: nothing queued before the commit is visible");
            assert_eq!(landed, (1, Some(vec![])), "{protocol:?}: first seen now, not yet due");
            assert_eq!(later, (1, Some(vec![image(1)])), "{protocol:?}: due a delete delay after first sight");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn under_sqlite_locked_a_claim_waits_for_the_pending_commit() {
        let [during, landed, later] = frozen_replacement(StoreProtocol::SqliteLocked, false).await;
        assert_eq!(during, (0, None), "the claim must wait for the pending commit");
        assert_eq!((landed.0, later), (1, (1, Some(vec![image(1)]))));
    }

    #[tokio::test(start_paused = true)]
    async fn the_statement_time_flaw_makes_a_frozen_commits_entry_due_on_arrival() {
        for protocol in [StoreProtocol::SqliteLocked, StoreProtocol::PostgresBounded] {
            let [_, landed, _] = frozen_replacement(protocol, true).await;
            assert_eq!(landed, (1, Some(vec![image(1)])), "{protocol:?}: due the moment it is visible");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_delete_enqueues_its_image_and_forgetting_removes_it() {
        let origin = Origin::now();
        let world = SimWorld::new(
            SimClock::new(origin, 0),
            SimClock::new(origin, 0),
            Journal::new(origin),
            FaultRates::none(),
            StoreProtocol::SqliteLocked,
        );
        let world = Arc::new(world);
        let server: Arc<dyn Clock> = Arc::new(SimClock::new(origin, 0));
        let deadline = Deadline::after(server.clone(), HOUR);
        world.commit(Actor::Server(0), &record(1, &server), &Precondition::Any, &deadline, Duration::ZERO).await.unwrap();
        let user = UserId::parse("user-1").unwrap();
        world.delete(Actor::Server(0), &user, &Precondition::Any, &deadline).await.unwrap();
        assert_eq!(world.count_superseded(), 1);
        assert_eq!(world.forget_superseded(&[image(1), image(9)]), 1);
        assert_eq!(world.count_superseded(), 0);
        assert_eq!(world.journal.counters.superseded_queued.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
