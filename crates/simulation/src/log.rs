//! What happened in a run: the event log, the counters and the violations.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use profilestore_core::ids::{ImageId, UserId};

use super::clock::{Origin, fmt_elapsed};

/// Who did something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A client, issuing requests to servers.
    Client(usize),
    /// A server, running `ProfileService` (its store calls are logged under it).
    Server(usize),
    /// A cleaner, running the `clean --every` loop.
    Cleaner(usize),
    /// The fault injector that crashes and restarts servers and cleaners.
    Chaos,
    /// The simulation's own checks.
    Checker,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Client(i) => write!(f, "client {i}"),
            Actor::Server(i) => write!(f, "server {i}"),
            Actor::Cleaner(i) => write!(f, "cleaner {i}"),
            Actor::Chaos => f.write_str("chaos"),
            Actor::Checker => f.write_str("checker"),
        }
    }
}

/// One line of a run's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Virtual time since the run began.
    pub at: Duration,
    /// Who acted.
    pub actor: Actor,
    /// What happened, for people.
    pub text: String,
    /// The user the event concerns, if one.
    pub user: Option<UserId>,
    /// The images the event concerns.
    pub images: Vec<ImageId>,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>14}  {:<10}  {}", fmt_elapsed(self.at), self.actor.to_string(), self.text)
    }
}

/// A short, run-unique name for an image in traces: the last 8 hex digits.
pub fn short(id: &ImageId) -> String {
    let s = id.to_string();
    format!("img-{}", &s[s.len() - 8..])
}

/// Short names of `ids`, comma-separated.
pub fn shorts(ids: &[ImageId]) -> String {
    ids.iter().map(short).collect::<Vec<_>>().join(",")
}

/// Which promise a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// A read returned metadata and an image from different writes.
    ConsistentRead,
    /// A record named an image whose blob is gone.
    NoDanglingReference,
    /// A read within its deadline found the blob its record named missing.
    NoVanishedBlob,
    /// Unreferenced images were left after writes stopped and cleaners ran.
    EventuallyNoOrphans,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::ConsistentRead => "consistent reads",
            Check::NoDanglingReference => "no dangling reference",
            Check::NoVanishedBlob => "no vanished blob",
            Check::EventuallyNoOrphans => "eventually no orphans",
        })
    }
}

/// The first broken promise of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The promise.
    pub check: Check,
    /// Virtual time it was seen.
    pub at: Duration,
    /// The user concerned, if one.
    pub user: Option<UserId>,
    /// The images concerned.
    pub images: Vec<ImageId>,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} broken at {}: {}", self.check, fmt_elapsed(self.at), self.detail)
    }
}

macro_rules! counters {
    ($(#[$meta:meta])* $name:ident / $snap:ident { $($(#[$fm:meta])* $field:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $name { $($(#[$fm])* pub $field: AtomicU64,)* }

        $(#[$meta])*
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct $snap { $($(#[$fm])* pub $field: u64,)* }

        impl $name {
            /// The current values.
            pub fn snapshot(&self) -> $snap {
                $snap { $($field: self.$field.load(Ordering::Relaxed),)* }
            }
        }

        impl $snap {
            /// Adds `other` field by field.
            pub fn add(&mut self, other: &$snap) {
                $(self.$field += other.$field;)*
            }
        }
    };
}

counters! {
    /// How much a run did, injected and checked.
    Counters / Counts {
        /// Writes acknowledged to their client.
        writes_ok,
        /// Writes that failed (error, deadline, crash).
        writes_failed,
        /// Reads that answered a profile (each one checked).
        reads_found,
        /// Reads that answered "no profile".
        reads_empty,
        /// Reads that failed.
        reads_failed,
        /// Deletes answered.
        deletes,
        /// Metadata-only updates answered with the updated profile (or "no profile").
        updates_ok,
        /// Metadata-only updates that failed (error, deadline, contention, crash).
        updates_failed,
        /// Requests refused because their server was down.
        refused,
        /// Store calls that failed by injection.
        injected_errors,
        /// Store calls slowed by minutes.
        injected_slow,
        /// Store calls stalled for hours.
        injected_stalls,
        /// Server crashes.
        server_crashes,
        /// Cleaner crashes.
        cleaner_crashes,
        /// Requests cut off by their server's crash.
        requests_killed,
        /// Blobs the cleaners deleted.
        blobs_deleted,
        /// Reads checked for consistency.
        consistency_checks,
        /// Full scans of the stores for dangling references (after every change).
        dangling_checks,
        /// Blob fetches of reads checked for a vanished blob.
        vanish_checks,
        /// Images checked for being orphans after the drain.
        orphan_checks,
        /// Record writes frozen between the database's check and their commit.
        frozen_commits,
        /// Race: cleaner queries made while some commit was pending (under SQLite's
        /// lock, the queries that had to wait for it).
        queries_during_commit,
        /// Race: pending commits whose deadline passed (by the database's clock or
        /// the request's ticks) before they landed or were refused.
        commits_past_deadline,
        /// Race: blob fetches of reads for an image some cleaner's query had already
        /// found unreferenced (the delete delay is what keeps it there).
        reads_of_condemned,
        /// Blob fetches of reads that found the blob missing (the read path then
        /// re-reads the record; within the deadline, a violation).
        reads_missing_blob,
        /// Images record changes put in the superseded-image queue.
        superseded_queued,
        /// Images cleaners' claims on the queue answered due (unreferenced, past
        /// their delete delay).
        superseded_claimed,
        /// Blobs deleted after a claim answered their image due while they were
        /// stored: removed on the queue's say-so.
        superseded_deleted,
        /// Cleaner listings of the whole blob store.
        full_listings,
        /// Cleaner listings of only the images minted since the listing horizon.
        incremental_listings,
        /// Race: record commits refused as they landed because the record was no
        /// longer the one their update read (the compare-and-set at work).
        commits_refused_changed,
    }
}

impl Counters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Counts {
    /// Client operations answered or refused.
    pub fn operations(&self) -> u64 {
        self.writes_ok
            + self.writes_failed
            + self.reads_found
            + self.reads_empty
            + self.reads_failed
            + self.deletes
            + self.updates_ok
            + self.updates_failed
            + self.refused
    }

    /// Faults injected of every kind.
    pub fn faults(&self) -> u64 {
        self.injected_errors
            + self.injected_slow
            + self.injected_stalls
            + self.frozen_commits
            + self.server_crashes
            + self.cleaner_crashes
    }

    /// The race counters, named, in the order summaries print them.
    pub fn races(&self) -> [(&'static str, u64); 3] {
        [
            ("cleaner queries while a commit was pending", self.queries_during_commit),
            ("pending commits past their deadline", self.commits_past_deadline),
            ("reads fetching a blob a cleaner had found unreferenced", self.reads_of_condemned),
        ]
    }

    /// Checks made of every kind.
    pub fn checks(&self) -> u64 {
        self.consistency_checks + self.dangling_checks + self.vanish_checks + self.orphan_checks
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "operations {}: writes {} ok / {} failed, reads {} found / {} empty / {} failed, deletes {}, refused by a down server {}",
            self.operations(),
            self.writes_ok,
            self.writes_failed,
            self.reads_found,
            self.reads_empty,
            self.reads_failed,
            self.deletes,
            self.refused
        )?;
        writeln!(
            f,
            "faults {}: store errors {}, slow calls {}, stalls of hours {}, commits frozen between check and commit {}, server crashes {} ({} requests killed), cleaner crashes {}",
            self.faults(),
            self.injected_errors,
            self.injected_slow,
            self.injected_stalls,
            self.frozen_commits,
            self.server_crashes,
            self.requests_killed,
            self.cleaner_crashes
        )?;
        let races: Vec<String> = self.races().iter().map(|(name, n)| format!("{name} {n}")).collect();
        writeln!(
            f,
            "races reached: {}; reads that found their blob missing {}",
            races.join(", "),
            self.reads_missing_blob
        )?;
        write!(
            f,
            "checks {}: consistent reads {}, dangling-reference scans {}, vanished-blob fetches {}, orphan images {}; blobs deleted by cleaners {}",
            self.checks(),
            self.consistency_checks,
            self.dangling_checks,
            self.vanish_checks,
            self.orphan_checks,
            self.blobs_deleted
        )?;
        write!(
            f,
            "\nqueue: {} superseded images queued, {} claimed due, {} blobs deleted on a claim; listings {} full / {} incremental",
            self.superseded_queued,
            self.superseded_claimed,
            self.superseded_deleted,
            self.full_listings,
            self.incremental_listings
        )?;
        if self.updates_ok + self.updates_failed > 0 {
            write!(
                f,
                "\nupdates: {} ok / {} failed; race: commits refused because the record changed under them {}",
                self.updates_ok, self.updates_failed, self.commits_refused_changed
            )?;
        }
        Ok(())
    }
}

/// The run's shared record: log, counters and the first violation.
pub struct Journal {
    origin: Origin,
    events: Mutex<Vec<Event>>,
    violation: Mutex<Option<Violation>>,
    /// What the run did.
    pub counters: Counters,
}

impl Journal {
    /// An empty journal for a run that began at `origin`.
    pub fn new(origin: Origin) -> Self {
        Journal { origin, events: Mutex::default(), violation: Mutex::default(), counters: Counters::default() }
    }

    /// Virtual time since the run began.
    pub fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Appends an event stamped now.
    pub fn record(&self, actor: Actor, text: String, user: Option<&UserId>, images: &[ImageId]) {
        let event = Event { at: self.elapsed(), actor, text, user: user.cloned(), images: images.to_vec() };
        lock(&self.events).push(event);
    }

    /// Records `violation` (and an event for it) unless one was recorded before.
    pub fn violate(&self, actor: Actor, check: Check, user: Option<&UserId>, images: &[ImageId], detail: String) {
        let mut slot = lock(&self.violation);
        if slot.is_some() {
            return;
        }
        self.record(actor, format!("VIOLATION of {check}: {detail}"), user, images);
        *slot = Some(Violation { check, at: self.elapsed(), user: user.cloned(), images: images.to_vec(), detail });
    }

    /// Whether a violation has been recorded.
    pub fn failed(&self) -> bool {
        lock(&self.violation).is_some()
    }

    /// Takes the log and the violation out at the end of the run.
    pub fn finish(&self) -> (Vec<Event>, Option<Violation>) {
        (std::mem::take(&mut *lock(&self.events)), lock(&self.violation).take())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
