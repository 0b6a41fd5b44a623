//! The simulated database's commit protocols: a record write is checked, then
//! becomes visible later, and each protocol says what is excluded meanwhile.
//!
//! A real database separates the deadline check from the moment the row becomes
//! visible: a process may freeze between its checked statement and `COMMIT`, or the
//! commit itself may wait (`docs/design.md`, "Check, then commit").
//! Here `put_before` checks the deadline against the database's own clock and the
//! request's ticks, and then, if the check passed, leaves a pending commit that lands
//! after a delay the writer's machine drew (milliseconds, or hours for a frozen
//! process). The pending commit lives on by itself: a writer that gives up waiting, or
//! whose request is cut, does not stop it. What lands when:
//!
//! | protocol | while a commit is pending | when it lands |
//! |---|---|---|
//! | [`StoreProtocol::SqliteLocked`] | it holds the write lock: other writes and the cleaner's `referenced` wait | at the end of the delay, whatever the time |
//! | [`StoreProtocol::PostgresBounded`] | nothing waits (row locks aside) | only if the database's clock is still before the deadline and the request's ticks have not run out; else it is refused |
//! | [`StoreProtocol::Unlocked`] | other writes wait, the cleaner's `referenced` does not: SQLite before the fix, its query in a deferred transaction | at the end of the delay, whatever the time (flawed) |
//!
//! In every protocol the superseded-image queue's entry for the image a write replaced
//! (or a delete removed) is made in the very step the change becomes visible, and a
//! cleaner's claim on the queue waits, or does not, exactly as its `referenced` does
//! (see `queue`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use profilestore_core::error::StoreError;
use profilestore_core::ids::{ImageId, UserId};
use profilestore_core::store::{CommitOutcome, DeleteOutcome, MetadataStore, Precondition, Record};
use profilestore_core::time::{Deadline, Timestamp};

use super::log::{Actor, Counters, short};
use super::stores::{RECORD_CHANGES, SimWorld, fmt_wait};

/// How the simulated database orders a record's commit against everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StoreProtocol {
    /// SQLite as built: a write holds the one write lock from before its check until
    /// its commit has landed, and the cleaner's query takes the lock too.
    #[default]
    SqliteLocked,
    /// PostgreSQL as built: the deadline is checked again at commit, so a pending
    /// commit lands only before its deadline by the database's clock.
    PostgresBounded,
    /// SQLite before the fix: writes serialise on the lock, but the cleaner's query
    /// takes none, and a frozen commit may land any time later. Flawed on purpose.
    Unlocked,
}

impl StoreProtocol {
    /// The name the command line uses.
    pub fn name(self) -> &'static str {
        match self {
            StoreProtocol::SqliteLocked => "sqlite-locked",
            StoreProtocol::PostgresBounded => "postgres-bounded",
            StoreProtocol::Unlocked => "unlocked",
        }
    }

    /// The protocol named `name` on the command line.
    pub fn from_name(name: &str) -> Option<Self> {
        [StoreProtocol::SqliteLocked, StoreProtocol::PostgresBounded, StoreProtocol::Unlocked]
            .into_iter()
            .find(|p| p.name() == name)
    }

    fn writes_serialise(self) -> bool {
        matches!(self, StoreProtocol::SqliteLocked | StoreProtocol::Unlocked)
    }
}

/// A pending commit longer than this is logged when checked and when it lands.
const NOTABLE: Duration = Duration::from_secs(1);

impl SimWorld {
    /// A record write under the run's protocol: the check, then a commit that lands
    /// `delay` later (see the module's documentation). Answers when it has landed or
    /// was refused; the commit goes on if the caller stops waiting.
    pub async fn commit(
        self: &Arc<Self>,
        actor: Actor,
        record: &Record,
        precondition: &Precondition,
        deadline: &Deadline,
        delay: Duration,
    ) -> Result<CommitOutcome, StoreError> {
        let lock = if self.protocol.writes_serialise() { Some(self.lock.clone().lock_owned().await) } else { None };
        let checked_at = self.db_clock_now();
        if checked_at >= deadline.at() || deadline.passed() {
            return Ok(CommitOutcome::DeadlineExceeded);
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        let (user, image) = (record.user_id.clone(), record.image_id);
        if delay >= NOTABLE {
            self.journal.record(
                actor,
                format!(
                    "{}{user}'s record naming {}: the database's check passed; the commit becomes visible in {}",
                    RECORD_CHANGES[0],
                    short(&image),
                    fmt_wait(delay)
                ),
                Some(&user),
                &[image],
            );
        }
        // Where writes serialise, the writer holds the lock until its commit landed.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let world = self.clone();
        let (record, precondition, deadline) = (record.clone(), precondition.clone(), deadline.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let outcome = world.land(actor, &record, &precondition, &deadline, (checked_at, delay)).await;
            drop(lock);
            let _ = tx.send(outcome);
        });
        rx.await.map_err(|_| StoreError::unavailable("the run ended before the commit landed"))
    }

    /// The pending commit of `record`, checked at `checked_at` by the database's clock
    /// and pending for `delay`, lands now (enqueuing the image it replaces in the same
    /// step), or is refused.
    async fn land(
        &self,
        actor: Actor,
        record: &Record,
        precondition: &Precondition,
        deadline: &Deadline,
        (checked_at, delay): (Timestamp, Duration),
    ) -> CommitOutcome {
        let counters = &self.journal.counters;
        let before = self.record_of(&record.user_id);
        self.pending.fetch_sub(1, Ordering::Relaxed);
        let precondition = if self.ignore_preconditions { &Precondition::Any } else { precondition };
        if self.db_clock_now() >= deadline.at() || deadline.passed() {
            Counters::bump(&counters.commits_past_deadline);
        }
        let outcome = match self.protocol {
            // The precondition is checked as the commit lands: the one moment the
            // change becomes visible.
            StoreProtocol::PostgresBounded => self.metadata.put_if_before(record, precondition, deadline).await,
            StoreProtocol::SqliteLocked | StoreProtocol::Unlocked => {
                let never = Deadline::new(self.db_clock.clone(), Timestamp::from_millis(i64::MAX), Duration::MAX);
                self.metadata.put_if_before(record, precondition, &never).await
            }
        };
        let outcome = outcome.unwrap_or(CommitOutcome::DeadlineExceeded);
        if outcome == CommitOutcome::PreconditionFailed {
            Counters::bump(&counters.commits_refused_changed);
        }
        if delay >= NOTABLE {
            let text = match outcome {
                CommitOutcome::Committed => "lands: the record is visible",
                CommitOutcome::DeadlineExceeded => "refused at commit: the database's clock is past the deadline",
                CommitOutcome::PreconditionFailed => "refused at commit: the record is not the one expected",
            };
            self.journal.record(
                actor,
                format!("{}{}'s record naming {} {text}", RECORD_CHANGES[0], record.user_id, short(&record.image_id)),
                Some(&record.user_id),
                &[record.image_id],
            );
        }
        if outcome == CommitOutcome::Committed {
            if let Some(old) = before.filter(|old| old.image_id != record.image_id) {
                self.supersede(actor, &record.user_id, old.image_id, checked_at);
            }
            self.check_no_dangling(actor);
        }
        outcome
    }

    /// A deadline-guarded record delete: atomic (its check, its visibility and the
    /// queue entry for the image it removes are one step), but behind the write lock
    /// where writes serialise.
    pub async fn delete(
        &self,
        actor: Actor,
        user: &UserId,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<DeleteOutcome, StoreError> {
        let _lock = if self.protocol.writes_serialise() { Some(self.lock.lock().await) } else { None };
        let before = self.record_of(user);
        let outcome = self.metadata.delete_if_before(user, precondition, deadline).await?;
        if let (DeleteOutcome::Deleted, Some(old)) = (outcome, before) {
            self.supersede(actor, user, old.image_id, self.db_clock_now());
        }
        Ok(outcome)
    }

    /// The cleaner's question, under the run's protocol: with SQLite's lock it waits
    /// for every pending commit.
    pub async fn referenced(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        if self.pending.load(Ordering::Relaxed) > 0 {
            Counters::bump(&self.journal.counters.queries_during_commit);
        }
        let _lock = if self.protocol == StoreProtocol::SqliteLocked { Some(self.lock.lock().await) } else { None };
        let found = self.metadata.referenced(ids).await?;
        let mut condemned = self.condemned.lock().unwrap_or_else(|p| p.into_inner());
        condemned.extend(ids.iter().filter(|id| !found.contains(id)));
        Ok(found)
    }

    pub(super) fn db_clock_now(&self) -> Timestamp {
        self.db_clock.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FaultRates;
    use crate::clock::{Origin, SimClock};
    use crate::log::Journal;
    use profilestore_core::time::Clock;

    const HOUR: Duration = Duration::from_secs(3600);

    fn image() -> ImageId {
        ImageId::from_uuid(uuid::Builder::from_unix_timestamp_millis(1, &[3; 10]).into_uuid()).unwrap()
    }

    /// A write checked at once, one hour before its deadline, whose commit lands two
    /// hours later; a cleaner asks about its image at one and a half hours. What the
    /// question answers and when, and how the commit ends.
    async fn frozen_commit_against_a_query(protocol: StoreProtocol) -> (Option<bool>, CommitOutcome, u64) {
        let origin = Origin::now();
        let world = Arc::new(SimWorld::new(
            SimClock::new(origin, 0),
            SimClock::new(origin, 0),
            Journal::new(origin),
            FaultRates::none(),
            protocol,
        ));
        let server: Arc<dyn Clock> = Arc::new(SimClock::new(origin, 0));
        let record = Record {
            user_id: UserId::parse("user-1").unwrap(),
            metadata: "{}".into(),
            image_id: image(),
            content_type: "image/png".into(),
            image_size: 1,
            updated_at: server.now(),
        };
        let deadline = Deadline::after(server, HOUR);
        let writer = {
            let world = world.clone();
            tokio::spawn(async move { world.commit(Actor::Server(0), &record, &Precondition::Any, &deadline, 2 * HOUR).await })
        };
        tokio::time::sleep(HOUR + HOUR / 2).await;
        // Within ten minutes: the question is answered before the commit lands, or not.
        let asked = tokio::time::timeout(Duration::from_secs(600), world.referenced(&[image()])).await;
        let outcome = writer.await.unwrap().unwrap();
        let answer = asked.ok().map(|found| found.unwrap().contains(&image()));
        (answer, outcome, world.journal.counters.commits_past_deadline.load(Ordering::Relaxed))
    }

    #[tokio::test(start_paused = true)]
    async fn sqlite_locked_holds_the_query_until_the_frozen_commit_lands() {
        let (answer, outcome, late) = frozen_commit_against_a_query(StoreProtocol::SqliteLocked).await;
        assert_eq!(answer, None, "the query must wait for the pending commit");
        assert_eq!((outcome, late), (CommitOutcome::Committed, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn postgres_bounded_refuses_a_commit_past_its_deadline() {
        let (answer, outcome, late) = frozen_commit_against_a_query(StoreProtocol::PostgresBounded).await;
        assert_eq!(answer, Some(false), "the query does not wait, and sees no record");
        assert_eq!((outcome, late), (CommitOutcome::DeadlineExceeded, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn unlocked_answers_unreferenced_and_then_lands_the_commit() {
        let (answer, outcome, late) = frozen_commit_against_a_query(StoreProtocol::Unlocked).await;
        assert_eq!(answer, Some(false));
        assert_eq!((outcome, late), (CommitOutcome::Committed, 1), "the flaw: it lands after the query");
    }
}
