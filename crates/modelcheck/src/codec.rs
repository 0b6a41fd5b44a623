//! Frontier states in a few dozen bytes each.
//!
//! A [`ModelWorld`] is 256 bytes inline and its cleaners point at shared cycles; the
//! frontier of a large search holds millions of them. Here a state is a fixed-size
//! byte string: the stores, clock and counters as plain bytes, and each actor as the
//! index of its state in an interning table. Distinct actor states are few (hundreds
//! of servers, thousands of cleaner cycles) however many worlds combine them.
//!
//! Interning is phase-aware, to keep threads from contending: during a search phase
//! the tables' frozen part is read-only and shared without locks; values not in it go
//! to a pending part behind a mutex, which the search folds into the frozen part
//! between phases ([`Interner::freeze`]). Encodings made in one phase are decoded in a
//! later one, so decoding only ever reads frozen entries.
//!
//! Cleaner cycles are shared between worlds through reference counts; if every thread
//! counted references on the same cycles, the counts' cache lines would bounce between
//! cores on every clone. Each thread therefore decodes into cycles of its own
//! ([`LocalCycles`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use arrayvec::ArrayVec;

use crate::config::{Cleaning, MAX_ACTORS, MAX_BLOBS, MAX_QUEUE, ModelConfig};
use crate::time::Hour;
use crate::world::{Blob, CleanerSlot, ModelWorld, Record, Server, Superseded, fixed_state};

type Map<T> = HashMap<T, u32, foldhash::quality::FixedState>;

/// Values numbered in the order first seen; see the module doc for the phases.
#[derive(Debug)]
pub(crate) struct Interner<T> {
    frozen: Vec<T>,
    index: Map<T>,
    pending: Mutex<(Vec<T>, Map<T>)>,
}

impl<T: Hash + Eq + Clone> Interner<T> {
    fn new() -> Self {
        Interner {
            frozen: Vec::new(),
            index: Map::with_hasher(fixed_state()),
            pending: Mutex::new((Vec::new(), Map::with_hasher(fixed_state()))),
        }
    }

    /// The number of `value`, numbering it if it is new.
    fn id(&self, value: &T) -> Result<u32, EncodeError> {
        if let Some(&id) = self.index.get(value) {
            return Ok(id);
        }
        // A poisoned lock means another thread panicked mid-insert; the search is
        // lost anyway, so report it rather than panic again.
        let mut pending = self.pending.lock().map_err(|_| EncodeError::Poisoned)?;
        let (values, index) = &mut *pending;
        if let Some(&id) = index.get(value) {
            return Ok(id);
        }
        let id = u32::try_from(self.frozen.len() + values.len()).map_err(|_| EncodeError::TooManyActorStates)?;
        values.push(value.clone());
        index.insert(value.clone(), id);
        Ok(id)
    }

    /// The value numbered `id` before the last [`Interner::freeze`].
    fn get(&self, id: u32) -> Option<&T> {
        self.frozen.get(usize::try_from(id).ok()?)
    }

    /// Makes every value numbered so far readable by [`Interner::get`].
    fn freeze(&mut self) {
        let (values, index) = self.pending.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.frozen.append(values);
        self.index.extend(index.drain());
    }
}

/// Why a state could not be encoded. Each is a bound the configuration's validation
/// keeps far away; hitting one is a checker bug, reported rather than mis-encoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum EncodeError {
    /// More blobs than any write sequence within the bounds can create.
    #[error("a state holds more blobs than the configuration allows")]
    TooManyBlobs,
    /// More than 2^32 distinct server or cleaner states.
    #[error("more than 2^32 distinct actor states")]
    TooManyActorStates,
    /// A thread panicked while numbering an actor state.
    #[error("a search thread panicked")]
    Poisoned,
    /// More superseded-queue entries or mint hours than fresh ids within the bounds.
    #[error("a state holds more queued or minted image ids than the configuration allows")]
    TooManyQueued,
    /// A frontier state's bytes name an actor state the tables do not hold.
    #[error("a frontier state could not be decoded")]
    Undecodable,
}

/// Where each part of a state sits in its bytes, for one configuration.
#[derive(Clone, Copy, Debug)]
struct Layout {
    users: usize,
    max_blobs: usize,
    submitted_bytes: usize,
    servers: usize,
    cleaners: usize,
    /// Entries of the superseded queue, and mint hours, a state may hold: zero under
    /// full cleaning, which then encodes neither them nor the horizon.
    queue: usize,
}

impl Layout {
    fn of(config: &ModelConfig) -> Layout {
        let triples = usize::from(config.users) * usize::from(config.metadata_values) * usize::from(config.images);
        Layout {
            users: usize::from(config.users),
            // Each write creates at most one blob (a fresh id, or its user's key).
            max_blobs: (usize::from(config.users) + usize::from(config.max_ops)).min(MAX_BLOBS),
            submitted_bytes: triples.div_ceil(8).min(8),
            servers: config.servers.min(MAX_ACTORS),
            cleaners: config.cleaners.min(MAX_ACTORS),
            // One entry per fresh id at most (the flawed designs key blobs by user).
            queue: match config.cleaning {
                Cleaning::Full => 0,
                Cleaning::Incremental(_) => {
                    usize::from(config.image_ids.min(config.max_ops).max(config.users)).min(MAX_QUEUE)
                }
            },
        }
    }

    /// Bytes of the incremental part: horizon, queue count and entries, mint count and hours.
    fn incremental(&self) -> usize {
        if self.queue == 0 { 0 } else { 1 + 1 + 2 * self.queue + 1 + self.queue }
    }

    fn stride(&self) -> usize {
        // records, blob count and blobs, clock/next_id/ops, submitted, incremental part,
        // actor ids
        2 * self.users
            + 1
            + 3 * self.max_blobs
            + 3
            + self.submitted_bytes
            + self.incremental()
            + 4 * (self.servers + self.cleaners)
    }
}

/// Encodes and decodes states of one configuration.
#[derive(Debug)]
pub(crate) struct Codec {
    layout: Layout,
    servers: Interner<Server>,
    cleaners: Interner<CleanerSlot>,
}

/// The interned ids of a decoded state's actors: the encoder reuses them for every
/// actor a transition left as it was, which is all but at most one.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct ActorIds {
    servers: [u32; MAX_ACTORS],
    cleaners: [u32; MAX_ACTORS],
}

/// One thread's copies of the cleaner cycles it has decoded, by interned id.
#[derive(Default, Debug)]
pub(crate) struct LocalCycles(Vec<Option<CleanerSlot>>);

impl Codec {
    pub(crate) fn new(config: &ModelConfig) -> Codec {
        Codec { layout: Layout::of(config), servers: Interner::new(), cleaners: Interner::new() }
    }

    /// Bytes per encoded state.
    pub(crate) fn stride(&self) -> usize {
        self.layout.stride()
    }

    /// Makes every actor state numbered so far decodable; between search phases.
    pub(crate) fn freeze(&mut self) {
        self.servers.freeze();
        self.cleaners.freeze();
    }

    /// Appends `world`'s encoding to `out`. `parent` is the world `world` was derived
    /// from, with its ids: actors equal to the parent's keep their ids unlooked-up.
    pub(crate) fn encode(
        &self,
        world: &ModelWorld,
        parent: Option<(&ModelWorld, &ActorIds)>,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let l = &self.layout;
        if world.blobs.len() > l.max_blobs {
            return Err(EncodeError::TooManyBlobs);
        }
        let start = out.len();
        for r in world.records.iter().take(l.users) {
            // Metadata values are below `metadata_values` (a u8), so +1 cannot wrap.
            out.extend(match r {
                Some(r) => [r.metadata.wrapping_add(1), r.image_id],
                None => [0, 0],
            });
        }
        out.resize(start + 2 * l.users, 0);
        out.push(u8::try_from(world.blobs.len()).map_err(|_| EncodeError::TooManyBlobs)?);
        for b in &world.blobs {
            out.extend([b.id, b.image, b.created.0]);
        }
        out.resize(start + 2 * l.users + 1 + 3 * l.max_blobs, 0);
        out.extend([world.clock.0, world.next_id, world.ops]);
        out.extend_from_slice(&world.submitted.to_le_bytes()[..l.submitted_bytes]);
        if l.queue > 0 {
            if world.superseded.len() > l.queue || world.minted.len() > l.queue {
                return Err(EncodeError::TooManyQueued);
            }
            let at = out.len();
            out.extend([world.horizon.0, world.superseded.len() as u8]);
            for e in &world.superseded {
                // Hours are at most 255 but the clock stops at `max_hours` <= 200.
                out.extend([e.id, e.first_seen.map_or(0, |h| h.0.saturating_add(1))]);
            }
            out.resize(at + 2 + 2 * l.queue, 0);
            out.push(world.minted.len() as u8);
            out.extend(world.minted.iter().map(|h| h.0));
            out.resize(at + l.incremental(), 0);
        } else if !world.superseded.is_empty() || !world.minted.is_empty() || world.horizon != Hour(0) {
            return Err(EncodeError::TooManyQueued);
        }
        for (i, s) in world.servers.iter().enumerate().take(l.servers) {
            let id = match parent {
                Some((p, ids)) if p.servers.get(i) == Some(s) => ids.servers[i],
                _ => self.servers.id(s)?,
            };
            out.extend(id.to_le_bytes());
        }
        for (c, slot) in world.cleaners.iter().enumerate().take(l.cleaners) {
            let id = match parent {
                Some((p, ids)) if p.cleaners.get(c).is_some_and(|q| q.shares(slot)) => ids.cleaners[c],
                _ => self.cleaners.id(slot)?,
            };
            out.extend(id.to_le_bytes());
        }
        out.resize(start + l.stride(), 0);
        Ok(())
    }

    /// The world encoded in `bytes` and its actors' ids; `None` if an id is not in
    /// the frozen tables (the bytes were not made by this codec before a freeze).
    pub(crate) fn decode(&self, bytes: &[u8], local: &mut LocalCycles) -> Option<(ModelWorld, ActorIds)> {
        let l = &self.layout;
        let mut at = 0;
        let mut take = |n: usize| {
            let part = bytes.get(at..at + n);
            at += n;
            part
        };
        let records = take(2 * l.users)?
            .chunks_exact(2)
            .map(|r| (r[0] != 0).then(|| Record { metadata: r[0] - 1, image_id: r[1] }))
            .collect();
        let count = usize::from(*take(1)?.first()?);
        let blobs = take(3 * l.max_blobs)?
            .chunks_exact(3)
            .take(count)
            .map(|b| Blob { id: b[0], image: b[1], created: Hour(b[2]) })
            .collect();
        let [clock, next_id, ops] = take(3)?.try_into().ok()?;
        let mut submitted = [0u8; 8];
        submitted[..l.submitted_bytes].copy_from_slice(take(l.submitted_bytes)?);
        let (mut horizon, mut superseded, mut minted) = (Hour(0), ArrayVec::new(), ArrayVec::new());
        if l.queue > 0 {
            let [h, count] = take(2)?.try_into().ok()?;
            horizon = Hour(h);
            let entries = take(2 * l.queue)?.chunks_exact(2).take(usize::from(count));
            superseded = entries.map(|e| Superseded { id: e[0], first_seen: e[1].checked_sub(1).map(Hour) }).collect();
            let count = usize::from(*take(1)?.first()?);
            minted = take(l.queue)?.iter().take(count).map(|h| Hour(*h)).collect();
        }
        let mut ids = ActorIds::default();
        let mut servers = ArrayVec::new();
        for slot in ids.servers.iter_mut().take(l.servers) {
            *slot = u32::from_le_bytes(take(4)?.try_into().ok()?);
            servers.push(self.servers.get(*slot)?.clone());
        }
        let mut cleaners = ArrayVec::new();
        for slot in ids.cleaners.iter_mut().take(l.cleaners) {
            *slot = u32::from_le_bytes(take(4)?.try_into().ok()?);
            cleaners.push(local.get(&self.cleaners, *slot)?);
        }
        let world = ModelWorld {
            records,
            blobs,
            clock: Hour(clock),
            next_id,
            ops,
            submitted: u64::from_le_bytes(submitted),
            superseded,
            minted,
            horizon,
            servers,
            cleaners,
        };
        Some((world, ids))
    }
}

impl LocalCycles {
    fn get(&mut self, table: &Interner<CleanerSlot>, id: u32) -> Option<CleanerSlot> {
        let i = usize::try_from(id).ok()?;
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        if self.0[i].is_none() {
            self.0[i] = Some(table.get(id)?.detached());
        }
        self.0[i].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::successors;

    /// Encodes, decodes and expands `levels` breadth-first levels from the initial
    /// state (at most 3000 distinct states a level), checking every state's round trip;
    /// answers the transitions checked and every state seen.
    fn round_trip(config: &ModelConfig, levels: usize) -> (usize, Vec<ModelWorld>) {
        let mut codec = Codec::new(config);
        let mut local = LocalCycles::default();
        let mut level = vec![ModelWorld::initial(config)];
        let mut seen = std::collections::HashSet::new();
        let mut all = Vec::new();
        let mut checked = 0;
        for _ in 0..levels {
            let mut encoded = Vec::new();
            for w in &level {
                let mut bytes = Vec::new();
                assert_eq!(codec.encode(w, None, &mut bytes), Ok(()));
                assert_eq!(bytes.len(), codec.stride());
                encoded.push(bytes);
            }
            codec.freeze();
            let mut next = Vec::new();
            for (w, bytes) in level.iter().zip(&encoded) {
                let Some((decoded, ids)) = codec.decode(bytes, &mut local) else { panic!("undecodable: {w:?}") };
                assert_eq!(&decoded, w);
                assert_eq!(decoded.fingerprint(), w.fingerprint());
                successors(config, &decoded, &mut |_, child, _| {
                    let (mut with, mut without) = (Vec::new(), Vec::new());
                    assert_eq!(codec.encode(&child, Some((&decoded, &ids)), &mut with), Ok(()));
                    assert_eq!(codec.encode(&child, None, &mut without), Ok(()));
                    assert_eq!(with, without);
                    checked += 1;
                    if next.len() < 3000 && seen.insert(child.fingerprint()) {
                        next.push(child);
                    }
                });
            }
            all.append(&mut level);
            level = next;
        }
        (checked, all)
    }

    /// Every state within a few steps of the start survives encoding unchanged, and
    /// with the parent's ids given the encoding is the same as without them.
    #[test]
    fn states_round_trip_through_their_bytes() {
        let config = ModelConfig { max_ops: 2, image_ids: 2, ..ModelConfig::case_study() };
        let (checked, _) = round_trip(&config, 8);
        assert!(checked > 10_000, "{checked}");
        // The case study's states take 35 bytes.
        assert_eq!(Codec::new(&ModelConfig::case_study()).stride(), 35);
    }

    /// Incremental cleaning's queue, mint hours and horizon round-trip too.
    #[test]
    fn incremental_states_round_trip_through_their_bytes() {
        let config = ModelConfig {
            servers: 1,
            cleaners: 1,
            metadata_values: 1,
            images: 1,
            max_hours: 6,
            cleaning: crate::config::Cleaning::Incremental(crate::config::IncrementalDesign::Working),
            ..ModelConfig::case_study()
        };
        let (checked, all) = round_trip(&config, 16);
        assert!(checked > 10_000, "{checked}");
        assert!(all.iter().any(|w| w.superseded.iter().any(|e| e.first_seen.is_some())), "stamped entries");
        assert!(all.iter().any(|w| w.horizon > Hour(0) && !w.minted.is_empty()), "a horizon and mint hours");
        // The case study's size with incremental cleaning: 3 ids, 12 bytes more.
        let incremental = ModelConfig { cleaning: config.cleaning, ..ModelConfig::case_study() };
        assert_eq!(Codec::new(&incremental).stride(), 47);
    }

    #[test]
    fn a_state_beyond_the_bounds_is_refused_not_truncated() {
        let config = ModelConfig { users: 1, max_ops: 1, ..ModelConfig::case_study() };
        let codec = Codec::new(&config);
        let mut w = ModelWorld::initial(&config);
        for id in 0..3 {
            assert!(w.put_blob(Blob { id, image: 0, created: Hour(0) }));
        }
        assert_eq!(codec.encode(&w, None, &mut Vec::new()), Err(EncodeError::TooManyBlobs));
    }

    #[test]
    fn ids_from_before_a_freeze_only_are_decodable() {
        let config = ModelConfig::case_study();
        let mut codec = Codec::new(&config);
        let mut bytes = Vec::new();
        assert_eq!(codec.encode(&ModelWorld::initial(&config), None, &mut bytes), Ok(()));
        assert!(codec.decode(&bytes, &mut LocalCycles::default()).is_none());
        codec.freeze();
        assert!(codec.decode(&bytes, &mut LocalCycles::default()).is_some());
    }
}
