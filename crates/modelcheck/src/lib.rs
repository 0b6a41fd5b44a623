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
//! | [`config`] | [`ModelConfig`], [`Design`], [`StoreProtocol`], [`Properties`] |
//! | [`world`] | the world value and its symmetric fingerprint |
//! | [`step`] | the transitions and their labels |
//! | [`liveness`] | the drain schedule behind "eventually no orphans" |
//! | [`trace`] | counterexample traces |
//! | [`checker`] | the breadth-first search and its [`Report`] |
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
//! - States are kept as 64-bit fingerprints (foldhash, fixed seed): a collision could
//!   hide a state; at 10^7 states its probability is about 10^-5.
//!
//! Violations are checked on transitions, so the search stops at the first one with
//! a shortest trace (breadth-first), rebuilt by replaying parent fingerprints.

#![warn(missing_docs)]

pub mod checker;
pub mod config;
pub mod liveness;
pub mod step;
pub mod time;
pub mod trace;
pub mod world;

pub use checker::{Coverage, Progress, Report, Verdict, check};
pub use config::{CASE_STUDY_TIMINGS, ConfigError, Design, ModelConfig, Properties, StoreProtocol};
pub use step::Property;
pub use time::{Hour, Hours};
pub use trace::{Trace, TraceRow};
