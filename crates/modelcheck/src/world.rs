//! The model world: both stores, the clock, and every actor's production step machine,
//! as one `Clone + Eq + Hash` value.

use std::fmt::Write as _;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use arrayvec::ArrayVec;
use profilestore_core::machine::{CleanerCycle, CycleLimits, PatchMachine, ReadMachine, WriteMachine};

use crate::cleaner::Sweep;
use crate::config::{MAX_ACTORS, MAX_BLOBS, MAX_QUEUE, MAX_USERS, ModelConfig};
use crate::time::Hour;

/// A model image id: a fresh counter value (working design) or a user's fixed key
/// (the flawed designs, where the key is the user's index).
pub type ImageId = u8;

/// A database record: `user -> (metadata, image_id)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Record {
    /// The metadata value the write submitted.
    pub metadata: u8,
    /// The image the record names.
    pub image_id: ImageId,
}

/// A blob in the model blob store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Blob {
    /// Its key.
    pub id: ImageId,
    /// The image value stored.
    pub image: u8,
    /// When the blob store created it.
    pub created: Hour,
}

/// An entry of the superseded-image queue (incremental cleaning): an image whose
/// record a visible write replaced.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Superseded {
    /// The image no longer named.
    pub id: ImageId,
    /// When a cleaner's claim first saw the entry (the delete delay starts there).
    pub first_seen: Option<Hour>,
}

/// What one server is doing.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Server {
    /// Waiting for a request.
    Idle,
    /// Serving a profile write.
    Writing {
        /// The user written.
        user: u8,
        /// The metadata value submitted.
        metadata: u8,
        /// The image value submitted.
        image: u8,
        /// The production write machine.
        machine: WriteMachine<Hour, ImageId>,
    },
    /// A write whose record passed the database's deadline check and is staged,
    /// invisible to everyone else, until its commit lands or is rolled back (store
    /// protocols that split the commit). The server does nothing else meanwhile: it is
    /// the frozen process between `INSERT` and `COMMIT`.
    Committing {
        /// The user written.
        user: u8,
        /// The staged record.
        record: Record,
        /// The production write machine, still waiting for the commit's answer.
        machine: WriteMachine<Hour, ImageId>,
        /// The hour of the deadline check (the statement), kept only where the flaw
        /// [`DelayFromStatement`](crate::config::IncrementalDesign::DelayFromStatement)
        /// needs it; `Hour(0)` otherwise, so that no other model tells states apart by it.
        statement: Hour,
    },
    /// Serving a profile delete: one deadline-guarded statement.
    Deleting {
        /// The user whose profile is deleted.
        user: u8,
        /// The request's deadline.
        deadline: Hour,
    },
    /// Serving a metadata-only update.
    Patching {
        /// The user updated.
        user: u8,
        /// The metadata value the update submits.
        metadata: u8,
        /// The production update machine.
        machine: PatchMachine<Hour, ImageId>,
        /// The record the last `GetRecord` returned: the compare-and-set's expectation.
        read: Option<Record>,
    },
    /// Serving a profile read.
    Reading {
        /// The user read.
        user: u8,
        /// The production read machine.
        machine: ReadMachine<Hour, ImageId>,
        /// The record the last `GetRecord` returned: the metadata the answer will carry.
        seen: Option<Record>,
    },
}

/// One state of the whole system.
///
/// A cleaner with nothing in hand is a fresh [`CleanerCycle`]: a fresh cycle does
/// nothing until it lists, exactly like an idle cleaner that has not started one, so
/// the two are one state (fewer states, same behaviours).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ModelWorld {
    /// The database, indexed by user.
    pub records: ArrayVec<Option<Record>, MAX_USERS>,
    /// The blob store, sorted by id.
    pub blobs: ArrayVec<Blob, MAX_BLOBS>,
    /// The one model clock (skew is the simulator's business).
    pub clock: Hour,
    /// The next fresh image id.
    pub next_id: ImageId,
    /// Client operations started so far.
    pub ops: u8,
    /// The (user, metadata, image) triples writes have submitted, as a bit set.
    pub submitted: u64,
    /// The superseded-image queue, sorted by id (incremental cleaning; else empty).
    pub superseded: ArrayVec<Superseded, MAX_QUEUE>,
    /// The hour each fresh image id was minted, indexed by id (incremental cleaning;
    /// else empty).
    pub minted: ArrayVec<Hour, MAX_QUEUE>,
    /// The listing horizon: incremental listings cover ids minted at or after it.
    /// `Hour(0)`, the initial value, covers every id, exactly as no horizon would.
    pub horizon: Hour,
    /// Every server.
    pub servers: ArrayVec<Server, MAX_ACTORS>,
    /// Every cleaner's current cycle.
    /// Shared until stepped (`Arc::make_mut`): most transitions leave every cleaner
    /// as it was, and cloning a cycle's batches was the search's main cost.
    pub cleaners: ArrayVec<CleanerSlot, MAX_ACTORS>,
}

impl ModelWorld {
    /// The initial state: empty stores, every actor idle, hour 0. Counts beyond the
    /// capacities are cut off; [`ModelConfig::validate`] refuses them first.
    pub fn initial(config: &ModelConfig) -> ModelWorld {
        ModelWorld {
            records: std::iter::repeat_n(None, usize::from(config.users)).take(MAX_USERS).collect(),
            blobs: ArrayVec::new(),
            clock: Hour(0),
            next_id: 0,
            ops: 0,
            submitted: 0,
            superseded: ArrayVec::new(),
            minted: ArrayVec::new(),
            horizon: Hour(0),
            servers: std::iter::repeat_n(Server::Idle, config.servers).take(MAX_ACTORS).collect(),
            cleaners: std::iter::repeat_n(CleanerSlot::new(fresh_cycle(config)), config.cleaners)
                .take(MAX_ACTORS)
                .collect(),
        }
    }

    /// The blob stored under `id`, if any.
    pub fn blob(&self, id: ImageId) -> Option<&Blob> {
        self.blobs.binary_search_by_key(&id, |b| b.id).ok().map(|i| &self.blobs[i])
    }

    /// Stores a blob, replacing any blob under the same id; `false` when the store is
    /// full (the configuration's bounds keep it from filling).
    pub fn put_blob(&mut self, blob: Blob) -> bool {
        match self.blobs.binary_search_by_key(&blob.id, |b| b.id) {
            Ok(i) => {
                self.blobs[i] = blob;
                true
            }
            Err(i) => self.blobs.try_insert(i, blob).is_ok(),
        }
    }

    /// Whether some record names `id`.
    pub fn referenced(&self, id: ImageId) -> bool {
        self.records.iter().flatten().any(|r| r.image_id == id)
    }

    /// A user whose record names a missing blob, if any.
    pub fn dangling(&self) -> Option<u8> {
        self.records
            .iter()
            .enumerate()
            .find(|(_, r)| r.is_some_and(|r| self.blob(r.image_id).is_none()))
            .and_then(|(user, _)| u8::try_from(user).ok())
    }

    /// The hour `id` was minted, if recorded (incremental cleaning).
    pub fn minted_at(&self, id: ImageId) -> Option<Hour> {
        self.minted.get(usize::from(id)).copied()
    }

    /// Queues `id` as superseded (no change if it is queued already); `false` when the
    /// queue is full (the configuration's bounds keep it from filling).
    pub fn enqueue(&mut self, entry: Superseded) -> bool {
        match self.superseded.binary_search_by_key(&entry.id, |e| e.id) {
            Ok(_) => true,
            Err(i) => self.superseded.try_insert(i, entry).is_ok(),
        }
    }

    /// Whether some server holds a pending commit (a staged, invisible record).
    pub fn commit_pending(&self) -> bool {
        self.servers.iter().any(|s| matches!(s, Server::Committing { .. }))
    }

    /// Blobs no record names.
    pub fn orphans(&self) -> Vec<ImageId> {
        self.blobs.iter().filter(|b| !self.referenced(b.id)).map(|b| b.id).collect()
    }

    /// The 64-bit fingerprint of the state up to permutations of servers and of
    /// cleaners: each actor is hashed alone and the hashes sorted, so interchangeable
    /// actors in swapped roles give one fingerprint (symmetry reduction).
    pub fn fingerprint(&self) -> u64 {
        let state = fixed_state();
        let mut h = state.build_hasher();
        self.records.hash(&mut h);
        self.blobs.hash(&mut h);
        self.clock.hash(&mut h);
        self.next_id.hash(&mut h);
        self.ops.hash(&mut h);
        self.submitted.hash(&mut h);
        // Only incremental cleaning fills these: leaving them out otherwise keeps the
        // full sweep's fingerprints exactly as they were.
        if !self.superseded.is_empty() || !self.minted.is_empty() || self.horizon != Hour(0) {
            self.superseded.hash(&mut h);
            self.minted.hash(&mut h);
            self.horizon.hash(&mut h);
        }
        let mut actor_hashes = [0u64; MAX_ACTORS];
        let n = self.servers.len().min(MAX_ACTORS);
        for (slot, s) in actor_hashes.iter_mut().zip(&self.servers) {
            *slot = state.hash_one(s);
        }
        actor_hashes[..n].sort_unstable();
        actor_hashes[..n].hash(&mut h);
        let n = self.cleaners.len().min(MAX_ACTORS);
        for (slot, c) in actor_hashes.iter_mut().zip(&self.cleaners) {
            *slot = c.hash;
        }
        actor_hashes[..n].sort_unstable();
        actor_hashes[..n].hash(&mut h);
        h.finish()
    }

    /// The database as text, e.g. `u0→(m1,#2)`, then any staged, not yet visible
    /// record, e.g. `pending u0→(m0,#3)`.
    pub fn render_records(&self) -> String {
        let mut out = String::new();
        let committed = self.records.iter().enumerate().filter_map(|(user, r)| r.map(|r| (user, r, "")));
        let pending = self.servers.iter().filter_map(|s| match s {
            Server::Committing { user, record, .. } => Some((usize::from(*user), *record, "pending ")),
            _ => None,
        });
        for (user, r, pending) in committed.chain(pending) {
            if !out.is_empty() {
                out.push(' ');
            }
            let _ = write!(out, "{pending}u{user}→(m{},#{})", r.metadata, r.image_id);
        }
        for e in &self.superseded {
            if !out.is_empty() {
                out.push(' ');
            }
            match e.first_seen {
                Some(seen) => _ = write!(out, "queued #{}@{seen}", e.id),
                None => _ = write!(out, "queued #{}", e.id),
            }
        }
        if self.horizon != Hour(0) {
            let _ = write!(out, "{}horizon {}", if out.is_empty() { "" } else { " " }, self.horizon);
        }
        if out.is_empty() { "-".into() } else { out }
    }

    /// The blob store as text, e.g. `#2:(i1,@0h)`.
    pub fn render_blobs(&self) -> String {
        let parts: Vec<String> =
            self.blobs.iter().map(|b| format!("#{}:(i{},@{})", b.id, b.image, b.created)).collect();
        if parts.is_empty() { "-".into() } else { parts.join(" ") }
    }
}

/// The index of `(user, metadata, image)` in the submitted set.
pub fn triple_bit(config: &ModelConfig, user: u8, metadata: u8, image: u8) -> u64 {
    let index = (u32::from(user) * u32::from(config.metadata_values) + u32::from(metadata)) * u32::from(config.images)
        + u32::from(image);
    1u64.checked_shl(index).unwrap_or(0)
}

/// One cleaner's cycle, shared between states until stepped, with its hash cached:
/// most transitions leave every cleaner as it was, and cloning and re-hashing cycles
/// was most of the search's cost.
#[derive(Clone, Debug)]
///
/// Beside the listing cycle, a slot holds the incremental part of the cleaner's cycle
/// ([`Sweep`]), which full cleaning leaves at its default.
pub struct CleanerSlot {
    hash: u64,
    sweep: Sweep,
    cycle: Arc<CleanerCycle<Hour, ImageId>>,
}

impl CleanerSlot {
    /// Holds `cycle`, with the sweep of a cycle not yet started.
    pub fn new(cycle: CleanerCycle<Hour, ImageId>) -> Self {
        Self::with_sweep(Sweep::default(), cycle)
    }

    /// Holds `cycle` and `sweep`.
    pub fn with_sweep(sweep: Sweep, cycle: CleanerCycle<Hour, ImageId>) -> Self {
        CleanerSlot { hash: slot_hash(&sweep, &cycle), sweep, cycle: Arc::new(cycle) }
    }

    /// The cycle.
    pub fn cycle(&self) -> &CleanerCycle<Hour, ImageId> {
        &self.cycle
    }

    /// The incremental part of the cycle.
    pub fn sweep(&self) -> Sweep {
        self.sweep
    }

    /// A copy that shares nothing with `self`: a thread counting references on its own
    /// copies keeps other threads' cache lines still.
    pub(crate) fn detached(&self) -> Self {
        CleanerSlot { hash: self.hash, sweep: self.sweep, cycle: Arc::new((*self.cycle).clone()) }
    }

    /// Whether `self` and `other` are the very same shared cycle with the same sweep
    /// (hence equal).
    pub(crate) fn shares(&self, other: &CleanerSlot) -> bool {
        Arc::ptr_eq(&self.cycle, &other.cycle) && self.sweep == other.sweep
    }

    /// Changes the cycle (copying it first if another state shares it).
    pub fn update<R>(&mut self, change: impl FnOnce(&mut CleanerCycle<Hour, ImageId>) -> R) -> R {
        let result = change(Arc::make_mut(&mut self.cycle));
        self.hash = slot_hash(&self.sweep, &self.cycle);
        result
    }

    /// Replaces the sweep.
    pub fn set_sweep(&mut self, sweep: Sweep) {
        self.sweep = sweep;
        self.hash = slot_hash(&self.sweep, &self.cycle);
    }
}

/// The cycle's hash alone while the sweep is at its default, so full cleaning's
/// fingerprints are exactly what they were before the sweep existed.
fn slot_hash(sweep: &Sweep, cycle: &CleanerCycle<Hour, ImageId>) -> u64 {
    if *sweep == Sweep::default() { fixed_state().hash_one(cycle) } else { fixed_state().hash_one((sweep, cycle)) }
}

impl PartialEq for CleanerSlot {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.sweep == other.sweep
            && (Arc::ptr_eq(&self.cycle, &other.cycle) || self.cycle == other.cycle)
    }
}

impl Eq for CleanerSlot {}

impl Hash for CleanerSlot {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A cleaner cycle that has not started.
pub fn fresh_cycle(config: &ModelConfig) -> CleanerCycle<Hour, ImageId> {
    CleanerCycle::new(config.timings, CycleLimits::default())
}

/// The hasher every fingerprint uses; fixed so search and replay agree.
pub fn fixed_state() -> foldhash::quality::FixedState {
    foldhash::quality::FixedState::with_seed(0x5eed_0f9a_7e00)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use crate::time::Hours;
    use profilestore_core::machine::ReadMachine;

    #[test]
    fn fingerprints_ignore_which_server_holds_which_request_but_nothing_else() {
        let config = ModelConfig::case_study();
        let mut a = ModelWorld::initial(&config);
        let read = Server::Reading { user: 0, machine: ReadMachine::start(Hour(0), Hours(1)), seen: None };
        a.servers[0] = read.clone();
        let mut b = ModelWorld::initial(&config);
        b.servers[1] = read;
        assert_ne!(a, b);
        assert_eq!(a.fingerprint(), b.fingerprint());
        let mut c = a.clone();
        c.clock = Hour(1);
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn a_record_naming_a_missing_blob_is_dangling_and_a_blob_without_record_an_orphan() {
        let config = ModelConfig::case_study();
        let mut w = ModelWorld::initial(&config);
        w.records[0] = Some(Record { metadata: 0, image_id: 3 });
        assert_eq!(w.dangling(), Some(0));
        assert!(w.put_blob(Blob { id: 3, image: 0, created: Hour(0) }));
        assert!(w.put_blob(Blob { id: 1, image: 0, created: Hour(0) }));
        assert_eq!(w.dangling(), None);
        assert_eq!(w.orphans(), vec![1]);
        assert_eq!(w.blobs.iter().map(|b| b.id).collect::<Vec<_>>(), vec![1, 3], "kept sorted");
    }
}
