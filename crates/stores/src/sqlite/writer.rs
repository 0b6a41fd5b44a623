//! Group commit: every record write and delete of one [`SqliteMetadataStore`] goes
//! through one writer thread that owns a connection of its own.
//!
//! Why: SQLite has one write lock per file, and a commit in `synchronous=FULL` costs
//! an fsync. Writers that each take the lock wait for each other by sleeping on
//! `SQLITE_BUSY` (its busy handler polls), so under load they queue badly and every
//! commit pays its own fsync. Here they queue in the process instead: the writer
//! takes whatever jobs are waiting (up to [`MAX_BATCH`]), applies them in one
//! `BEGIN IMMEDIATE` transaction and commits them with one fsync.
//!
//! The writer is a thread of its own running rusqlite, not a task driving sqlx: sqlx
//! runs each statement on its connection's worker thread, so a batch's lock, timings
//! read, statements and commit would each cost a trip there and back. Here a job costs
//! one hand-off to the writer and one answer back, as one statement through sqlx would.
//!
//! The store protocol (see the parent module) holds for every job of a batch:
//! - each job's checks (its request's time on the tick clock, the stored timings, and
//!   SQLite's clock against its deadline, in its statement) run under the write lock,
//!   which is held until the batch's commit lands, so a checked, uncommitted record
//!   still keeps the cleaner's question from being asked;
//! - a job past its deadline is refused alone: its statement writes nothing and the
//!   others of its batch go on.
//!
//! The tick clock of each job's deadline is read on the writer thread, outside the
//! runtime: the production clock (`CLOCK_BOOTTIME`) reads the same from any thread.
//!
//! A caller whose request time runs out while its job waits in the queue withdraws
//! it, and nothing of it is written; once the writer has claimed the job, the caller
//! can no longer know, and says the outcome is unknown.
//!
//! [`SqliteMetadataStore`]: super::SqliteMetadataStore

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use profilestore_core::error::{StoreError, StoreErrorKind};
use profilestore_core::ids::UserId;
use profilestore_core::settings::Timings;
use profilestore_core::store::{CommitOutcome, DeleteOutcome, IdempotencyKey, KeyedOutcome, Precondition, Record};
use profilestore_core::time::Deadline;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::changes::{Applied, Change, Done, apply};
use super::errors::{rusqlite_error, rusqlite_failed as failed};
use super::{DECODE, PAIRING};
use crate::decode::timings_changed;

/// The most jobs one transaction carries: enough to share an fsync among every
/// client of a busy server, few enough that the lock is held for a short while.
pub(super) const MAX_BATCH: usize = 128;
/// Jobs waiting for the writer before callers wait to enqueue.
const QUEUE: usize = 1024;

/// Where a job is; only the caller moves it out of `QUEUED` (to `WITHDRAWN`), only the
/// writer moves it on from there (to `CLAIMED`, then `COMMIT_SENT`).
const QUEUED: u8 = 0;
const CLAIMED: u8 = 1;
const COMMIT_SENT: u8 = 2;
const WITHDRAWN: u8 = 3;

struct Job {
    change: Change,
    deadline: Deadline,
    state: Arc<AtomicU8>,
    reply: oneshot::Sender<Result<Done, StoreError>>,
}

impl Job {
    fn answer(self, outcome: Result<Done, StoreError>) {
        // The caller may have stopped waiting; its answer then goes nowhere.
        let _ = self.reply.send(outcome);
    }
}

enum Message {
    Job(Box<Job>),
    /// Stop after the jobs before this one, close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// The handle of a store's writer thread; clones share the thread.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    queue: mpsc::Sender<Message>,
    /// Transactions committed so far: fewer than the changes when batches share commits.
    commits: Arc<AtomicU64>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Job(_) => "Job",
            Message::Close(_) => "Close",
        })
    }
}

impl Writer {
    /// Starts the writer thread on a connection of its own to the existing database
    /// file at `path`; it checks each job against the timings `bound` holds (when bound).
    pub(super) async fn start(
        path: PathBuf,
        busy_timeout: Duration,
        bound: Arc<RwLock<Option<Timings>>>,
    ) -> Result<Writer, StoreError> {
        let opener = Opener { path, busy_timeout };
        let connection = {
            let opener = opener.clone();
            tokio::task::spawn_blocking(move || opener.open())
                .await
                .map_err(|e| StoreError::unavailable(format!("SQLite, connecting the writer: {e}")))??
        };
        let (queue, jobs) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let thread = WriterThread { connection: Some(connection), opener, bound, commits: Arc::clone(&commits) };
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || thread.run(jobs))
            .map_err(|e| StoreError::unavailable(format!("SQLite, starting the writer thread: {e}")))?;
        Ok(Writer { queue, commits })
    }

    /// Inserts or replaces `record` (whose image size fits SQLite) if the current record
    /// meets `precondition`, unless `deadline` has passed, as [`apply`](Self::apply) does.
    pub(super) async fn put(
        &self,
        record: Record,
        image_size: i64,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<CommitOutcome, StoreError> {
        match self.apply(Change::Put(record, image_size, precondition.clone()), deadline).await? {
            Done::Put(outcome) => Ok(outcome),
            Done::Delete(_) | Done::Keyed(_) => Err(mixed_up()),
        }
    }

    /// Deletes `user`'s record if it meets `precondition`, unless `deadline` has passed,
    /// as [`apply`](Self::apply) does.
    pub(super) async fn delete(
        &self,
        user: UserId,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<DeleteOutcome, StoreError> {
        match self.apply(Change::Delete(user, precondition.clone()), deadline).await? {
            Done::Delete(outcome) => Ok(outcome),
            Done::Put(_) | Done::Keyed(_) => Err(mixed_up()),
        }
    }

    /// Stores `record` and `key` as [`put`](Self::put) stores the record, unless a live
    /// key of the user names an earlier write (then nothing is written).
    pub(super) async fn put_keyed(
        &self,
        record: Record,
        image_size: i64,
        precondition: &Precondition,
        key: &IdempotencyKey,
        deadline: &Deadline,
    ) -> Result<KeyedOutcome, StoreError> {
        match self.apply(Change::PutKeyed(record, image_size, precondition.clone(), key.clone()), deadline).await? {
            Done::Keyed(outcome) => Ok(outcome),
            Done::Put(_) | Done::Delete(_) => Err(mixed_up()),
        }
    }

    /// Applies `change` under `deadline`, in a batch with whatever other changes are
    /// waiting, and answers once its batch has committed or the request's time has run
    /// out (then: nothing written while the job was still queued, unknown after).
    async fn apply(&self, change: Change, deadline: &Deadline) -> Result<Done, StoreError> {
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (reply, answer) = oneshot::channel();
        let job = Job { change, deadline: deadline.clone(), state: state.clone(), reply };
        let time_left = deadline.remaining();
        let waited = tokio::time::timeout(time_left, async {
            if self.queue.send(Message::Job(Box::new(job))).await.is_err() {
                return Err(closed());
            }
            answer.await.unwrap_or_else(|_| Err(lost(&state)))
        })
        .await;
        match waited {
            Ok(outcome) => outcome,
            Err(_) => match state.compare_exchange(QUEUED, WITHDRAWN, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) | Err(WITHDRAWN) => Err(DECODE.write_timed_out(time_left, false)),
                Err(_) => Err(DECODE.write_timed_out(time_left, true)),
            },
        }
    }

    /// How many transactions the writer has committed.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Stops the writer once the jobs queued before this call are done, and closes its
    /// connection; later changes fail as unavailable.
    pub(super) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.queue.send(Message::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }
}

/// A change answered with another kind's outcome: a bug of this module, never a guess.
fn mixed_up() -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, "SQLite writer: a change was answered with another kind's outcome")
}

fn closed() -> StoreError {
    StoreError::unavailable("SQLite: the store is closed; nothing was written")
}

/// The answer when the writer dropped a job without answering (its thread ended): a job
/// it had not sent to commit was rolled back with its transaction.
fn lost(state: &AtomicU8) -> StoreError {
    match state.load(Ordering::SeqCst) {
        COMMIT_SENT => StoreError::new(
            StoreErrorKind::CommitUnknown,
            "SQLite: the writer stopped while the record's commit was under way; it may or may not have been made",
        ),
        _ => StoreError::unavailable("SQLite: the writer stopped before the change was committed; nothing was written"),
    }
}

/// How the writer opens (and after a failure reopens) its connection.
#[derive(Debug, Clone)]
struct Opener {
    path: PathBuf,
    busy_timeout: Duration,
}

impl Opener {
    /// A read-write connection to the existing file (never a new, empty database in
    /// its place), each commit fsynced, waiting for the lock up to the busy timeout.
    fn open(&self) -> Result<Connection, StoreError> {
        let connect = || {
            let connection = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            connection.busy_timeout(self.busy_timeout)?;
            connection.pragma_update(None, "synchronous", "FULL")?;
            connection.pragma_update(None, "foreign_keys", true)?;
            Ok(connection)
        };
        connect().map_err(|e| rusqlite_error("connecting the writer", &e))
    }
}

/// What the writer thread owns: its connection (or how to reopen it) and its counters.
struct WriterThread {
    /// `None` after a failure left it unusable, until the next batch reconnects.
    connection: Option<Connection>,
    opener: Opener,
    bound: Arc<RwLock<Option<Timings>>>,
    commits: Arc<AtomicU64>,
}

impl WriterThread {
    fn run(mut self, mut queue: mpsc::Receiver<Message>) {
        let mut carried: Vec<Job> = Vec::new();
        loop {
            let mut batch = std::mem::take(&mut carried);
            let mut closing = None;
            if batch.is_empty() {
                match queue.blocking_recv() {
                    Some(Message::Job(job)) => batch.push(*job),
                    Some(Message::Close(done)) => closing = Some(done),
                    None => break,
                }
            }
            while closing.is_none() && batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(Message::Job(job)) => batch.push(*job),
                    Ok(Message::Close(done)) => closing = Some(done),
                    Err(_) => break,
                }
            }
            batch.retain(|job| job.state.load(Ordering::SeqCst) == QUEUED);
            if !batch.is_empty() {
                carried = self.commit_batch(batch);
            }
            if let Some(done) = closing {
                // Jobs carried past a failed statement are answered before closing.
                for job in carried.drain(..) {
                    job.answer(Err(closed()));
                }
                queue.close();
                while let Some(message) = queue.blocking_recv() {
                    match message {
                        Message::Job(job) => job.answer(Err(closed())),
                        Message::Close(other) => drop(other.send(())),
                    }
                }
                self.disconnect();
                let _ = done.send(());
                return;
            }
        }
        self.disconnect();
    }

    fn disconnect(&mut self) {
        if let Some(connection) = self.connection.take() {
            close(connection);
        }
    }

    /// Applies and commits `batch`; returns the jobs it did not reach because a
    /// statement failed (the writer runs them in the next batch).
    fn commit_batch(&mut self, batch: Vec<Job>) -> Vec<Job> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => match self.opener.open() {
                Ok(connection) => connection,
                Err(error) => {
                    batch.into_iter().for_each(|job| job.answer(Err(error.shared())));
                    return Vec::new();
                }
            },
        };
        let bound = *self.bound.read().unwrap_or_else(|p| p.into_inner());
        let Ran { carried, clean, committed } = run_batch(&connection, batch, bound);
        if committed {
            self.commits.fetch_add(1, Ordering::Relaxed);
        }
        if clean || is_usable(&connection) {
            self.connection = Some(connection);
        } else {
            close(connection);
        }
        carried
    }
}

fn close(connection: Connection) {
    if let Err((_, e)) = connection.close() {
        tracing::warn!(error = %e, "closing the SQLite writer's connection failed");
    }
}

/// Whether a connection a failure struck can serve the next batch: it must answer, and
/// outside any transaction (a failed statement or `COMMIT` can leave one open;
/// `ROLLBACK` fails harmlessly when there is none).
fn is_usable(connection: &Connection) -> bool {
    let _ = connection.execute_batch("ROLLBACK");
    connection.is_autocommit() && connection.query_row("SELECT 1", [], |_| Ok(())).is_ok()
}

/// What one batch came to.
struct Ran {
    /// Jobs not reached because a statement failed: they go into the next batch.
    carried: Vec<Job>,
    /// Everything went cleanly: the connection is outside any transaction.
    clean: bool,
    /// A `COMMIT` succeeded.
    committed: bool,
}

/// Runs `batch` in one transaction on `connection` and answers its jobs.
fn run_batch(connection: &Connection, batch: Vec<Job>, bound: Option<Timings>) -> Ran {
    let fail_all = |batch: Vec<Job>, error: StoreError| {
        batch.into_iter().for_each(|job| job.answer(Err(error.shared())));
        Ran { carried: Vec::new(), clean: false, committed: false }
    };
    if let Err(e) = connection.execute_batch("BEGIN IMMEDIATE") {
        return fail_all(batch, failed("taking the write lock")(e));
    }
    let stored = match bound {
        Some(_) => match stored_timings(connection) {
            Ok(stored) => stored,
            Err(e) => return fail_all(batch, e),
        },
        None => None,
    };

    let mut written: Vec<(Job, Done)> = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    while let Some(job) = jobs.next() {
        if job.state.compare_exchange(QUEUED, CLAIMED, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            continue; // withdrawn while the lock was being taken
        }
        // Under the lock: the request's time on the tick clock (a wall clock stepped
        // back cannot stretch it), then the timings it started under.
        if job.deadline.passed() {
            let refused = Done::deadline_exceeded(&job.change);
            job.answer(Ok(refused));
            continue;
        }
        if let (Some(bound), Some(stored)) = (bound, stored) {
            let ours = job.deadline.timings().copied().unwrap_or(bound);
            if ours != stored {
                job.answer(Err(timings_changed(&ours, &stored)));
                continue;
            }
        }
        match apply(connection, &job.change, &job.deadline) {
            Ok(Applied::Wrote(done)) => written.push((job, done)),
            Ok(Applied::Refused(done)) => job.answer(Ok(done)),
            Err(e) => {
                // A failed statement may have ended the transaction: the batch is
                // rolled back (by the caller's check of the connection), its jobs are
                // answered (nothing of theirs was written), and the jobs not yet
                // reached wait for the next batch.
                let rolled_back = StoreError::new(
                    e.kind(),
                    format!(
                        "SQLite: another change in the same transaction failed ({}); nothing was written",
                        e.message()
                    ),
                );
                job.answer(Err(e));
                written.into_iter().for_each(|(job, _)| job.answer(Err(rolled_back.shared())));
                return Ran { carried: jobs.collect(), clean: false, committed: false };
            }
        }
    }
    if written.is_empty() {
        let rolled_back = connection.execute_batch("ROLLBACK");
        return Ran { carried: Vec::new(), clean: rolled_back.is_ok(), committed: false };
    }
    for (job, _) in &written {
        job.state.store(COMMIT_SENT, Ordering::SeqCst);
    }
    #[cfg(feature = "failpoints")]
    if crate::failpoint::take_park_before_commit() {
        // A frozen process: the whole writer stalls holding the lock, as a real freeze
        // would stall it; the callers' timeouts still fire.
        crate::failpoint::park_blocking();
        let committed = connection.execute_batch("COMMIT");
        tracing::warn!(outcome = ?committed.as_ref().map(drop), "failpoint: the parked commit finished");
        let committed = answer_commit(written, committed);
        return Ran { carried: Vec::new(), clean: committed, committed };
    }
    let committed = connection.execute_batch("COMMIT");
    let committed = answer_commit(written, committed);
    Ran { carried: Vec::new(), clean: committed, committed }
}

/// The timings the database holds; `None` before the store is paired (opening refuses
/// unpaired stores, so there is nothing to compare with).
fn stored_timings(connection: &Connection) -> Result<Option<Timings>, StoreError> {
    let read = failed("reading the cluster's timings");
    let texts = connection
        .prepare_cached(PAIRING)
        .and_then(|mut s| s.query_row([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))).optional())
        .map_err(read)?;
    Ok(texts.map(|(cluster_id, timings)| DECODE.pairing_text(&cluster_id, &timings)).transpose()?.map(|p| p.timings))
}

/// A failed `COMMIT`: an I/O error can strike after the commit frames reached the
/// WAL, so the outcome is unknown (a later recovery may or may not keep them).
fn commit_failed(e: rusqlite::Error) -> StoreError {
    StoreError::new(
        StoreErrorKind::CommitUnknown,
        format!("SQLite, committing: {e}; the change may or may not have been made"),
    )
    .with_source(e)
}

/// Answers the jobs of a batch whose `COMMIT` returned `committed`; `true` if it
/// succeeded.
fn answer_commit(written: Vec<(Job, Done)>, committed: rusqlite::Result<()>) -> bool {
    match committed {
        Ok(()) => {
            written.into_iter().for_each(|(job, done)| job.answer(Ok(done)));
            true
        }
        Err(e) => {
            let error = commit_failed(e);
            written.into_iter().for_each(|(job, _)| job.answer(Err(error.shared())));
            false
        }
    }
}
