//! Exhaustive model checking of profilestore's production step machines and store
//! commit protocols. Its sibling `profilestore-simulation` runs the real service and
//! cleaner under seeded faults instead.
//!
//! The checker does not re-model the design: it steps the very `WriteMachine`,
//! `ReadMachine` and `CleanerCycle` the service runs, against a model world of two
//! stores and an hour clock, through every interleaving of servers, cleaners, failures
//! and time within the bounds of a [`ModelConfig`], and checks the design's
//! invariants (docs/design.md, "What must always hold") in every state.
//!
//! | module | holds |
//! |---|---|
//! | [`time`] | [`Hour`]/[`Hours`]: core's `Time` in whole hours |
//! | [`config`] | [`ModelConfig`], [`Design`], [`StoreProtocol`], [`Properties`], [`Cleaning`] |
//! | [`world`] | the world value and its symmetric fingerprint |
//! | [`step`] | the transitions and their labels |
//! | [`cleaner`] | a cleaner's steps: the listing cycle, and incremental cleaning's queue and horizon |
//! | [`liveness`] | the drain schedule behind "eventually no orphans" |
//! | [`trace`] | counterexample traces |
//! | [`checker`] | the entry points ([`check`], [`check_with`]) and the [`Report`] |
//! | `search`, `seen`, `codec` | the parallel breadth-first search, its fingerprint set and its compact frontier |
//! | [`bench`] | [`run_bench`]: one measured run for the benchmark suite |
//!
//! # What one step is
//!
//! An idle server starts a write (any user, metadata, image) or a read while fewer
//! than `max_ops` operations have started; a busy server performs its machine's next
//! store operation atomically on the world and feeds the result back, or (with
//! `fail_steps`) the operation fails without touching the world; a request at its
//! deadline is killed; a finished request frees its server. Under a store protocol
//! that splits the commit ([`StoreProtocol`]), a record write is two steps, the
//! database's deadline check (the record staged, invisible) and the commit landing,
//! with the protocol's exclusions as guards on everything between. A cleaner performs
//! any one operation its cycle has enabled (listing is one page of every blob), or
//! fails it; a finished cycle is replaced by a fresh one. The clock ticks one hour up
//! to `max_hours`.
//!
//! # Reductions, and why they are sound
//!
//! - Fresh image ids come from a counter, and issuing one is merged into the start of
//!   the write: ids are never reused and issuing touches no store, so no interleaving
//!   of another actor between the two is observable.
//! - Servers, and cleaners, are interchangeable: the fingerprint hashes each actor
//!   alone and sorts the hashes, and of several actors in equal states only the first
//!   is expanded. Every property checked is symmetric in actors.
//! - An idle cleaner and a cleaner holding a fresh cycle behave identically and are
//!   one state.
//! - Seen states are kept as 64-bit fingerprints (foldhash, fixed seed), with a parent
//!   index and a transition ordinal each; full states only while on the frontier. Two
//!   distinct states sharing a fingerprint would hide the second and whatever only it
//!   leads to. Among n states the chance of any such pair is about n²/2^65: 2·10^-8
//!   at the case study's 795,670 states, 6·10^-6 at the 14.9 million of `max_ops` 4,
//!   3·10^-4 at 10^8. A collision can only hide behaviour, never invent a violation:
//!   every reported trace is re-run on full states.
//!
//! Violations are checked on transitions, so the search stops at the first one with
//! a shortest trace (breadth-first), rebuilt by re-running the recorded transitions
//! from the initial state. Levels are expanded on several threads with the same
//! result as on one (see [`check_with`]).

#![warn(missing_docs)]

pub mod bench;
pub mod checker;
pub mod cleaner;
mod codec;
mod requests;
pub mod config;
pub mod liveness;
mod search;
mod seen;
pub mod step;
pub mod time;
pub mod trace;
pub mod world;

pub use bench::{ModelRunStats, run_bench};
pub use checker::{CheckError, Coverage, Progress, Report, SearchOptions, Verdict, check, check_with};
pub use codec::EncodeError;
pub use config::{
    CASE_STUDY_TIMINGS, Cleaning, ConfigError, Design, IncrementalDesign, ModelConfig, Operations, Properties,
    StoreProtocol,
};
pub use profilestore_core::machine::PatchDesign;
pub use step::Property;
pub use time::{Hour, Hours};
pub use trace::{Trace, TraceRow};
