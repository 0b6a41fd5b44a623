//! Transitions: one actor performs one store operation atomically on the world and
//! its production machine is told the result, or the clock ticks.
//!
//! A record write is one step under
//! [`AtomicCommit`](crate::config::StoreProtocol::AtomicCommit); under the other
//! protocols it is two, the database's deadline check (the row staged, invisible) and
//! the commit becoming visible, and the protocol's exclusion rules are guards on the
//! steps between them.

use profilestore_core::machine::{
    CycleOutcome, PatchOutcome, ReadAction, ReadEvent, ReadMachine, ReadOutcome, WriteAction, WriteEvent, WriteMachine,
    WriteOutcome,
};

pub use crate::cleaner::cleaner_step;
use crate::cleaner::{self, cleaner_op, is_fresh, make_visible};
use crate::config::{IncrementalDesign, ModelConfig};
use crate::requests::{delete_step, issue_id, patch_step, start_requests};
use crate::time::Hour;
use crate::world::{Blob, ImageId, ModelWorld, Record, Server, triple_bit};

/// Who acted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Actor {
    /// The server at this index (in the parent state's order).
    Server(u8),
    /// The cleaner at this index.
    Cleaner(u8),
    /// The clock.
    Clock,
}

/// What the actor did. Id sets are bit masks (ids below 64; the checker's ids are small).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// A client submitted a write.
    StartWrite {
        /// The user written.
        user: u8,
        /// The metadata value.
        metadata: u8,
        /// The image value.
        image: u8,
        /// The fresh id issued at once (working design only).
        image_id: Option<ImageId>,
    },
    /// A client asked to read a profile.
    StartRead {
        /// The user read.
        user: u8,
    },
    /// The write put its blob.
    PutBlob {
        /// The key put.
        image_id: ImageId,
        /// Whether it replaced an existing blob (flawed designs).
        overwrite: bool,
    },
    /// The write committed its record in one step
    /// ([`AtomicCommit`](crate::config::StoreProtocol::AtomicCommit)).
    CommitRecord {
        /// The image the record names.
        image_id: ImageId,
        /// Whether the database refused it as late.
        refused: bool,
    },
    /// The database checked the write's deadline against its clock and staged the
    /// record, invisible until its commit lands (split-commit protocols).
    CheckRecord {
        /// The image the record names.
        image_id: ImageId,
        /// Whether the database refused it as late.
        refused: bool,
    },
    /// A staged record's commit landed: the record is visible. Failed, or refused
    /// because the deadline passed meanwhile (PostgreSQL's commit-time check), the
    /// transaction is rolled back instead.
    CommitVisible {
        /// The image the record names.
        image_id: ImageId,
        /// Whether the database refused the commit as late.
        refused: bool,
    },
    /// A client asked to delete a profile.
    StartDelete {
        /// The user whose profile is deleted.
        user: u8,
    },
    /// A client asked to update a profile's metadata, keeping its image.
    StartPatch {
        /// The user updated.
        user: u8,
        /// The metadata value submitted.
        metadata: u8,
    },
    /// The delete's guarded statement ran.
    DeleteRecord {
        /// Whether there was a record to delete.
        found: bool,
    },
    /// The update committed its record naming the image it read (one step).
    PatchRecord {
        /// The image the record keeps.
        image_id: ImageId,
        /// Whether the database refused it: late, or (compare-and-set) the record was
        /// no longer the one read.
        refused: bool,
    },
    /// The read (or update) fetched the record.
    GetRecord {
        /// The record, if there was one.
        found: Option<Record>,
    },
    /// The read fetched the blob.
    GetBlob {
        /// The key fetched.
        image_id: ImageId,
        /// Whether it existed.
        found: bool,
    },
    /// The request reached its deadline and was killed; the server is idle again.
    Killed,
    /// The cleaner listed every blob.
    ListPage {
        /// The ids listed.
        listed: u64,
    },
    /// The cleaner asked which ids are referenced.
    QueryReferenced {
        /// The ids asked about.
        ids: u64,
        /// The referenced ones.
        referenced: u64,
    },
    /// The cleaner deleted blobs.
    Delete {
        /// The ids deleted.
        ids: u64,
    },
    /// The cleaner listed the blobs of ids minted at or after the listing horizon
    /// (incremental cleaning).
    ListSince {
        /// The horizon.
        since: Hour,
        /// The ids listed.
        listed: u64,
    },
    /// The cleaner claimed due entries of the superseded-image queue (incremental
    /// cleaning): one transaction stamping first sight and selecting.
    Claim {
        /// The entries whose first sight this claim stamped.
        stamped: u64,
        /// Past their delay and named by no record: their blobs may go.
        due: u64,
        /// Past their delay but named by a record: dropped, blob kept.
        named: u64,
    },
    /// The cleaner deleted the blobs of claimed queue entries.
    DeleteQueued {
        /// The ids deleted.
        ids: u64,
    },
    /// The cleaner removed claimed entries from the queue.
    Forget {
        /// The ids removed.
        ids: u64,
    },
    /// One hour passed (or, in a liveness drain, as many as needed).
    Tick,
}

/// How an actor's run ended at this step, if it did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Finished {
    /// A write ended.
    Write(WriteOutcome<ImageId>),
    /// A read ended; with `Found` the answer's (metadata, image) values.
    Read(ReadOutcome<ImageId>, Option<(u8, u8)>),
    /// A cleaner cycle ended.
    Cycle(CycleOutcome),
    /// A delete ended (`true`: a record was deleted).
    Delete(bool),
    /// A metadata-only update ended.
    Patch(PatchOutcome<ImageId>),
}

/// One labelled transition.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Step {
    /// Who acted.
    pub actor: Actor,
    /// What was attempted.
    pub action: Action,
    /// Whether the store operation failed instead of taking effect.
    pub failed: bool,
    /// How the actor's run ended, if it ended here.
    pub finished: Option<Finished>,
}

/// A safety or liveness property of the design.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Property {
    /// A read answered a metadata and image no single write submitted together.
    ConsistentReads,
    /// A record names a blob that does not exist.
    NoDanglingReference,
    /// A read within its deadline found the blob its record named missing.
    NoVanishedBlob,
    /// A drain schedule ended with an unreferenced blob.
    EventuallyNoOrphans,
}

impl std::fmt::Display for Property {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Property::ConsistentReads => "consistent reads",
            Property::NoDanglingReference => "no dangling reference",
            Property::NoVanishedBlob => "no vanished blob",
            Property::EventuallyNoOrphans => "eventually no orphans",
        })
    }
}

/// Calls `emit` with every successor of `world`, its label and the property the step
/// broke, if any. The order is fixed (servers, cleaners, clock) so traces are stable.
pub fn successors(config: &ModelConfig, world: &ModelWorld, emit: &mut impl FnMut(Step, ModelWorld, Option<Property>)) {
    let mut emit_checked = |step: Step, w: ModelWorld, violation: Option<Property>| {
        let violation = violation.or_else(|| {
            (config.properties.no_dangling_reference && w.dangling().is_some()).then_some(Property::NoDanglingReference)
        });
        emit(step, w, violation);
    };
    let now = world.clock;
    for (i, server) in world.servers.iter().enumerate() {
        // Actors in equal states have permuted successors: expanding the first is enough.
        if world.servers[..i].contains(server) {
            continue;
        }
        if matches!(server, Server::Idle) {
            if world.ops < config.max_ops {
                start_requests(config, world, i, &mut emit_checked);
            }
            continue;
        }
        for fail in [false, true] {
            if fail && !config.fail_steps {
                break;
            }
            let mut w = world.clone();
            if let Some((step, violation)) = server_step(config, &mut w, i, fail) {
                emit_checked(step, w, violation);
            }
        }
    }
    let locked = config.store.query_waits_for_writer() && world.commit_pending();
    for (c, slot) in world.cleaners.iter().enumerate() {
        if world.cleaners[..c].contains(slot) {
            continue;
        }
        let fresh = is_fresh(config, slot);
        for op in cleaner::enabled(config, world, c) {
            // Under the write lock a query (or claim) can only wait, and give up (fail).
            let waits = locked && op.reads_records();
            for fail in [false, true] {
                if !fail && waits {
                    continue;
                }
                // A failed step of a cycle that has done nothing changes nothing.
                if fail && (!config.fail_steps || fresh) {
                    break;
                }
                let mut w = world.clone();
                let step = cleaner_op(config, &mut w, c, &op, fail);
                emit_checked(step, w, None);
            }
        }
    }
    if now.0 < config.max_hours {
        let mut w = world.clone();
        w.clock = Hour(now.0 + 1);
        emit_checked(Step { actor: Actor::Clock, action: Action::Tick, failed: false, finished: None }, w, None);
    }
}

/// Performs server `i`'s next step on `w` (failing the store operation when `fail`).
/// `None` when there is nothing to do or nothing that could fail (a kill).
pub fn server_step(config: &ModelConfig, w: &mut ModelWorld, i: usize, fail: bool) -> Option<(Step, Option<Property>)> {
    let actor = Actor::Server(index_u8(i));
    let mut server = std::mem::replace(&mut w.servers[i], Server::Idle);
    let result = match &mut server {
        Server::Idle => None,
        Server::Writing { user, metadata, image, machine } => {
            write_step(config, w, (*user, *metadata, *image), machine, fail).map(|(action, failed)| {
                let finished = machine.outcome().map(Finished::Write);
                (Step { actor, action, failed, finished }, None)
            })
        }
        Server::Committing { user, record, machine, statement } => {
            let (action, failed) = commit_step(config, w, (*user, *record, *statement), machine, fail);
            let finished = machine.outcome().map(Finished::Write);
            Some((Step { actor, action, failed, finished }, None))
        }
        Server::Reading { user, machine, seen } => read_step(config, w, *user, machine, seen, fail)
            .map(|(step, violation)| (Step { actor, ..step }, violation)),
        Server::Deleting { user, deadline } => delete_step(config, w, *user, *deadline, fail)
            .map(|(action, failed, finished)| (Step { actor, action, failed, finished: Some(finished) }, None)),
        Server::Patching { user, metadata, machine, read } => {
            patch_step(config, w, (*user, *metadata), machine, read, fail).map(|(action, failed)| {
                let finished = machine.outcome().map(Finished::Patch);
                (Step { actor, action, failed, finished }, None)
            })
        }
    };
    // A check that passed stages the record: the server now holds a pending commit.
    if let (
        Some((Step { action: Action::CheckRecord { image_id, refused: false }, failed: false, .. }, _)),
        Server::Writing { user, metadata, machine, .. },
    ) = (&result, &server)
    {
        let record = Record { metadata: *metadata, image_id: *image_id };
        // Only the flaw that starts the delay at the statement needs its hour.
        let statement = if config.cleaning.has(IncrementalDesign::DelayFromStatement) { w.clock } else { Hour(0) };
        server = Server::Committing { user: *user, record, machine: machine.clone(), statement };
    }
    let done = match &server {
        Server::Idle => true,
        Server::Writing { machine, .. } | Server::Committing { machine, .. } => machine.outcome().is_some(),
        Server::Reading { machine, .. } => machine.outcome().is_some(),
        Server::Deleting { .. } => true,
        Server::Patching { machine, .. } => machine.outcome().is_some(),
    };
    // A finished request frees its server at once: servers serve again.
    if !(done && result.is_some()) {
        w.servers[i] = server;
    }
    result
}

fn write_step(
    config: &ModelConfig,
    w: &mut ModelWorld,
    (user, metadata, image): (u8, u8, u8),
    machine: &mut WriteMachine<Hour, ImageId>,
    fail: bool,
) -> Option<(Action, bool)> {
    let now = w.clock;
    match machine.next(now) {
        WriteAction::Done(_) => (!fail).then_some((Action::Killed, false)),
        WriteAction::IssueId => {
            // Only reachable if a design issues ids later than at start; no store call.
            if fail {
                return None;
            }
            let id = issue_id(config, w);
            machine.handle(WriteEvent::IdIssued(id));
            Some((Action::StartWrite { user, metadata, image, image_id: Some(id) }, false))
        }
        WriteAction::PutBlob { image_id, overwrite } => {
            let action = Action::PutBlob { image_id, overwrite };
            // A create-only put of an existing id is refused, as the real store does.
            if fail
                || (!overwrite && w.blob(image_id).is_some())
                || !w.put_blob(Blob { id: image_id, image, created: now })
            {
                machine.handle(WriteEvent::Failed);
                return Some((action, true));
            }
            machine.handle(WriteEvent::BlobStored);
            Some((action, false))
        }
        WriteAction::CommitRecord { image_id, deadline } => {
            let split = config.store.splits_commit();
            let label = |refused| {
                if split {
                    Action::CheckRecord { image_id, refused }
                } else {
                    Action::CommitRecord { image_id, refused }
                }
            };
            // SQLite's single write lock: while another write's commit is pending this
            // one waits for the lock (and may give up, failing), but cannot check.
            if split && !fail && config.store.one_writer_at_a_time() && w.commit_pending() {
                return None;
            }
            if fail {
                machine.handle(WriteEvent::Failed);
                return Some((label(false), true));
            }
            // The database's clock is the model clock (no skew here).
            if now >= deadline {
                machine.handle(WriteEvent::CommitRefusedLate);
                return Some((label(true), false));
            }
            if split {
                // Staged: the caller turns the server into `Committing`; the machine
                // hears nothing until the commit lands or is rolled back.
                return Some((label(false), false));
            }
            make_visible(config, w, user, Record { metadata, image_id }, now);
            machine.handle(WriteEvent::RecordCommitted);
            Some((Action::CommitRecord { image_id, refused: false }, false))
        }
    }
}

/// The second half of a split commit: the staged record becomes visible, or the
/// transaction is rolled back (failed, or refused as late under a bounded commit). A
/// frozen writer's commit may land at any later time where the protocol does not bound
/// it, so the machine's deadline is not consulted here: the request is not killed while
/// its process is frozen inside the commit.
fn commit_step(
    config: &ModelConfig,
    w: &mut ModelWorld,
    (user, record, statement): (u8, Record, Hour),
    machine: &mut WriteMachine<Hour, ImageId>,
    fail: bool,
) -> (Action, bool) {
    let image_id = record.image_id;
    if fail {
        machine.handle(WriteEvent::Failed);
        return (Action::CommitVisible { image_id, refused: false }, true);
    }
    if !config.store.lands_after_deadline() && w.clock >= machine.deadline() {
        machine.handle(WriteEvent::CommitRefusedLate);
        return (Action::CommitVisible { image_id, refused: true }, false);
    }
    make_visible(config, w, user, record, statement);
    machine.handle(WriteEvent::RecordCommitted);
    (Action::CommitVisible { image_id, refused: false }, false)
}

fn read_step(
    config: &ModelConfig,
    w: &ModelWorld,
    user: u8,
    machine: &mut ReadMachine<Hour, ImageId>,
    seen: &mut Option<Record>,
    fail: bool,
) -> Option<(Step, Option<Property>)> {
    let now = w.clock;
    // The caller names the server.
    let actor = Actor::Clock;
    let mut violation = None;
    let mut answer = None;
    let (action, failed) = match machine.next(now) {
        ReadAction::Done(_) => {
            if fail {
                return None;
            }
            (Action::Killed, false)
        }
        ReadAction::GetRecord if fail => {
            machine.handle(ReadEvent::Failed, now);
            (Action::GetRecord { found: None }, true)
        }
        ReadAction::GetRecord => {
            let record = w.records.get(usize::from(user)).copied().flatten();
            *seen = record;
            machine.handle(ReadEvent::Record(record.map(|r| r.image_id)), now);
            (Action::GetRecord { found: record }, false)
        }
        ReadAction::GetBlob { image_id } if fail => {
            machine.handle(ReadEvent::Failed, now);
            (Action::GetBlob { image_id, found: false }, true)
        }
        ReadAction::GetBlob { image_id } => match w.blob(image_id) {
            Some(blob) => {
                machine.handle(ReadEvent::BlobFound, now);
                if let Some(ReadOutcome::Found(id)) = machine.outcome() {
                    // The answer pairs the metadata of the record read with the image
                    // bytes in hand now: it must be a pair one write submitted.
                    let metadata = seen.filter(|r| r.image_id == id).map(|r| r.metadata);
                    answer = metadata.map(|m| (m, blob.image));
                    let submitted =
                        metadata.is_some_and(|m| w.submitted & triple_bit(config, user, m, blob.image) != 0);
                    if config.properties.consistent_reads && !submitted {
                        violation = Some(Property::ConsistentReads);
                    }
                }
                (Action::GetBlob { image_id, found: true }, false)
            }
            None => {
                // `next` issued the fetch, so the read is within its deadline.
                if config.properties.no_vanished_blob {
                    violation = Some(Property::NoVanishedBlob);
                }
                machine.handle(ReadEvent::BlobMissing, now);
                (Action::GetBlob { image_id, found: false }, false)
            }
        },
    };
    let finished = machine.outcome().map(|o| Finished::Read(o, answer));
    Some((Step { actor, action, failed, finished }, violation))
}

pub(crate) fn index_u8(i: usize) -> u8 {
    u8::try_from(i).unwrap_or(u8::MAX)
}
