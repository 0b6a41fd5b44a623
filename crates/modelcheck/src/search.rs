//! The breadth-first search itself: levels expanded in parallel, with results that do
//! not depend on the number of threads.
//!
//! What is kept per state:
//! - its 64-bit fingerprint, in the [`SeenSet`] (11 to 21 bytes);
//! - its parent's index and the ordinal of the transition that reached it, in the
//!   [`Tree`] (6 bytes, more while a vector awaits its next doubling): enough to
//!   rebuild a trace by re-running those transitions from the initial state;
//! - while it waits on the frontier, its encoding ([`Codec`], 35 bytes at the case
//!   study's size), dropped as soon as it has been expanded.
//!
//! Each level is cut into blocks of about [`BLOCK`] states, and each block into chunks
//! of at most [`CHUNK`]. A block goes through three phases:
//! 1. *expand* (parallel over chunks): decode each state, check it, generate its
//!    successors; those not seen at earlier levels become candidates, in generation
//!    order, grouped by shard;
//! 2. *merge* (parallel over shards): each shard takes its candidates chunk by chunk
//!    in order, so within a shard the first candidate of a state wins, exactly as a
//!    one-thread search would have it;
//! 3. *number* (one thread, a copy per new state): winners get the next state indices
//!    in candidate order and join the next frontier.
//!
//! So state numbers, parents and the first violation are those of the sequential
//! search, whatever the threads: a violation found in chunk *k* only counts the chunks
//! up to *k*, and chunk *k* itself stops after the violating state's successors.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use crate::checker::{CheckError, Coverage, Progress, Verdict};
use crate::codec::{Codec, EncodeError, LocalCycles};
use crate::config::ModelConfig;
use crate::liveness::drain;
use crate::seen::{SHARDS, SeenSet, shard_of};
use crate::step::{Property, successors};
use crate::trace::{Tree, violation_trace};
use crate::world::ModelWorld;

/// States expanded between two merges: bounds the candidates held at once.
const BLOCK: usize = 1 << 16;
/// States one thread expands in one go.
const CHUNK: usize = 512;

/// What the search found, before the report adds its measurements.
pub(crate) struct Outcome {
    pub(crate) distinct_states: u64,
    pub(crate) transitions: u64,
    pub(crate) depth: u32,
    pub(crate) coverage: Coverage,
    pub(crate) verdict: Verdict,
}

/// Consecutive frontier states: indices `first..`, `stride` bytes each.
struct Segment {
    first: u32,
    bytes: Vec<u8>,
}

/// Up to [`CHUNK`] states of one segment.
struct ChunkRef<'a> {
    first: u32,
    bytes: &'a [u8],
}

enum Found {
    Safety { parent: u32, ordinal: u16, property: Property },
    Liveness { state: u32 },
    Broken(CheckError),
}

/// The candidates one chunk produced, and what it saw on the way.
#[derive(Default)]
struct ChunkOut {
    fps: Vec<u64>,
    parents: Vec<u32>,
    ordinals: Vec<u16>,
    states: Vec<u8>,
    /// Candidate indices grouped by shard: shard `s` owns positions
    /// `ends[s-1]..ends[s]` of `order`.
    order: Vec<u32>,
    ends: Vec<u32>,
    /// Where each candidate stands in `order`.
    position: Vec<u32>,
    /// Set in the merge, by position in `order`, for candidates that won their state.
    /// By position, so that each shard's thread writes its own stretch of the vector
    /// rather than bytes scattered over cache lines the other threads write too.
    fresh: Vec<AtomicBool>,
    transitions: u64,
    coverage: Coverage,
    found: Option<Found>,
}

impl ChunkOut {
    /// The positions in `order` that shard `s` owns.
    fn in_shard(&self, s: usize) -> std::ops::Range<usize> {
        let start = if s == 0 { 0 } else { self.ends[s - 1] as usize };
        start..self.ends[s] as usize
    }

    /// Whether candidate `i` won its state in the merge.
    fn won(&self, i: usize) -> bool {
        self.fresh[self.position[i] as usize].load(Ordering::Relaxed)
    }

    /// Groups the candidates by shard, keeping generation order within each.
    fn group(&mut self) {
        let mut counts = vec![0u32; SHARDS];
        for &fp in &self.fps {
            counts[shard_of(fp)] += 1;
        }
        let mut next = Vec::with_capacity(SHARDS);
        let mut sum = 0;
        for c in &counts {
            next.push(sum);
            sum += c;
        }
        self.order = vec![0; self.fps.len()];
        self.position = vec![0; self.fps.len()];
        // A chunk's candidates are far fewer than 2^32: the casts cannot truncate.
        for (i, &fp) in self.fps.iter().enumerate() {
            let slot = &mut next[shard_of(fp)];
            self.order[*slot as usize] = i as u32;
            self.position[i] = *slot;
            *slot += 1;
        }
        self.ends = next;
        self.fresh = (0..self.fps.len()).map(|_| AtomicBool::new(false)).collect();
    }
}

/// Shared, read-only during a phase.
struct Ctx<'a> {
    config: &'a ModelConfig,
    codec: &'a Codec,
    seen: &'a SeenSet,
}

/// Runs the search on `threads` threads.
pub(crate) fn search(
    config: &ModelConfig,
    threads: usize,
    started: Instant,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Outcome, CheckError> {
    let threads = threads.max(1);
    let mut codec = Codec::new(config);
    let mut seen = SeenSet::new();
    let mut tree = Tree::default();
    let mut locals: Vec<LocalCycles> = (0..threads).map(|_| LocalCycles::default()).collect();
    let initial = ModelWorld::initial(config);
    seen.insert(initial.fingerprint());
    tree.push(0, 0)?;
    let mut bytes = Vec::new();
    codec.encode(&initial, None, &mut bytes)?;
    codec.freeze();
    let mut frontier = vec![Segment { first: 0, bytes }];
    let (mut transitions, mut coverage, mut depth) = (0u64, Coverage::default(), 0u32);
    let stride = codec.stride();
    while !frontier.is_empty() {
        let mut next = Vec::new();
        let mut level = frontier.into_iter().peekable();
        while level.peek().is_some() {
            let mut block = Vec::new();
            let mut size = 0;
            while let Some(segment) = level.next_if(|_| size < BLOCK) {
                size += segment.bytes.len() / stride;
                block.push(segment);
            }
            let chunks: Vec<ChunkRef> = block
                .iter()
                .flat_map(|s| {
                    s.bytes
                        .chunks(CHUNK * stride)
                        .enumerate()
                        .map(move |(i, bytes)| ChunkRef { first: s.first + (i * CHUNK) as u32, bytes })
                })
                .collect();
            let ctx = Ctx { config, codec: &codec, seen: &seen };
            let mut outs = expand_all(&ctx, &mut locals, &chunks);
            codec.freeze();
            let cut = outs.iter().position(|o| o.found.is_some()).map_or(outs.len(), |k| k + 1);
            outs.truncate(cut);
            merge_all(&mut seen, &outs, threads);
            for out in &mut outs {
                transitions += out.transitions;
                coverage.add(out.coverage);
                number(out, &mut tree, stride, &mut next)?;
            }
            if let Some(found) = outs.last_mut().and_then(|o| o.found.take()) {
                let verdict = verdict(config, &tree, found)?;
                return Ok(Outcome { distinct_states: tree.len(), transitions, depth: depth + 1, coverage, verdict });
            }
        }
        frontier = next;
        progress(&Progress {
            depth,
            distinct_states: tree.len(),
            transitions,
            frontier: frontier.iter().map(|s| s.bytes.len() / stride).sum(),
            elapsed: started.elapsed(),
        });
        if !frontier.is_empty() {
            depth += 1;
        }
    }
    Ok(Outcome { distinct_states: tree.len(), transitions, depth, coverage, verdict: Verdict::Pass })
}

/// Phase 1: expands every chunk; the results in chunk order.
fn expand_all(ctx: &Ctx, locals: &mut [LocalCycles], chunks: &[ChunkRef]) -> Vec<ChunkOut> {
    let next = AtomicUsize::new(0);
    // Chunks past the first violation found so far are not worth expanding.
    let stop = AtomicUsize::new(usize::MAX);
    let mut done: Vec<(usize, ChunkOut)> = on_threads(locals, |local| {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= chunks.len() || i > stop.load(Ordering::Relaxed) {
                return done;
            }
            let out = expand(ctx, local, &chunks[i]);
            if out.found.is_some() {
                stop.fetch_min(i, Ordering::Relaxed);
            }
            done.push((i, out));
        }
    })
    .into_iter()
    .flatten()
    .collect();
    done.sort_unstable_by_key(|(i, _)| *i);
    // Expanded chunks form a prefix up to the first violation, whatever the timing:
    // every chunk below a thread's `i` was handed out before it.
    done.into_iter().map(|(_, out)| out).collect()
}

fn expand(ctx: &Ctx, local: &mut LocalCycles, chunk: &ChunkRef) -> ChunkOut {
    let stride = ctx.codec.stride();
    let mut out = ChunkOut::default();
    for (offset, bytes) in chunk.bytes.chunks_exact(stride).enumerate() {
        let index = chunk.first + offset as u32;
        let Some((world, ids)) = ctx.codec.decode(bytes, local) else {
            out.found = Some(Found::Broken(EncodeError::Undecodable.into()));
            break;
        };
        out.coverage.add(Coverage::of(&world));
        if ctx.config.properties.eventually_no_orphans && drain(ctx.config, &world, false).is_err() {
            out.found = Some(Found::Liveness { state: index });
            break;
        }
        let mut ordinal = 0usize;
        let mut found = None;
        successors(ctx.config, &world, &mut |_, child, broke| {
            let Ok(this) = u16::try_from(ordinal) else {
                found.get_or_insert(Found::Broken(CheckError::TooManySuccessors));
                return;
            };
            ordinal += 1;
            out.transitions += 1;
            if let Some(property) = broke {
                found.get_or_insert(Found::Safety { parent: index, ordinal: this, property });
            }
            let fp = child.fingerprint();
            if ctx.seen.contains(fp) {
                return;
            }
            if let Err(e) = ctx.codec.encode(&child, Some((&world, &ids)), &mut out.states) {
                found.get_or_insert(Found::Broken(e.into()));
                return;
            }
            out.fps.push(fp);
            out.parents.push(index);
            out.ordinals.push(this);
        });
        if found.is_some() {
            out.found = found;
            break;
        }
    }
    out.group();
    out
}

/// Phase 2: each shard admits its candidates in chunk order, marking the winners.
fn merge_all(seen: &mut SeenSet, outs: &[ChunkOut], threads: usize) {
    let shards = Mutex::new(seen.shards.iter_mut().enumerate());
    let mut units = vec![(); threads];
    on_threads(&mut units, |_| {
        loop {
            // A poisoned queue means a sibling panicked; `on_threads` re-raises it.
            let Some((s, shard)) = shards.lock().ok().and_then(|mut q| q.next()) else { return };
            for out in outs {
                for k in out.in_shard(s) {
                    if shard.insert(out.fps[out.order[k] as usize]) {
                        out.fresh[k].store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    });
}

/// Phase 3: numbers one chunk's winners and moves them to the next frontier.
fn number(out: &ChunkOut, tree: &mut Tree, stride: usize, next: &mut Vec<Segment>) -> Result<(), CheckError> {
    let winners = out.fresh.iter().filter(|f| f.load(Ordering::Relaxed)).count();
    if winners == 0 {
        return Ok(());
    }
    let mut segment = Segment { first: tree.len_u32()?, bytes: Vec::with_capacity(winners * stride) };
    for i in 0..out.fps.len() {
        if out.won(i) {
            tree.push(out.parents[i], out.ordinals[i])?;
            segment.bytes.extend_from_slice(&out.states[i * stride..(i + 1) * stride]);
        }
    }
    next.push(segment);
    Ok(())
}

fn verdict(config: &ModelConfig, tree: &Tree, found: Found) -> Result<Verdict, CheckError> {
    let (state, step, property) = match found {
        Found::Broken(e) => return Err(e),
        Found::Safety { parent, ordinal, property } => (parent, Some(ordinal), property),
        Found::Liveness { state } => (state, None, Property::EventuallyNoOrphans),
    };
    let trace = violation_trace(config, tree, state, step).ok_or(CheckError::TraceReplay)?;
    Ok(Verdict::Violation { property, trace })
}

/// Runs `work` once per element of `states`, each on its own thread (on this one when
/// there is one), and returns the results in order. A panic in `work` is re-raised.
fn on_threads<S: Send, T: Send>(states: &mut [S], work: impl Fn(&mut S) -> T + Sync) -> Vec<T> {
    if let [only] = states {
        return vec![work(only)];
    }
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = states.iter_mut().map(|s| scope.spawn(move || work(s))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}
