//! The design's step logic as small state machines.
//!
//! Each machine says what store operation comes next ([`WriteMachine::next`] and
//! friends) and is told what came of it (`handle`). They do no I/O, read no clock and
//! make no ids: time arrives as an argument, ids as events. That makes them plain
//! values (`Clone + Eq + Hash`, no image bytes inside) which the async drivers step
//! against real stores and the model checker steps against a model world, so both
//! run the same logic.
//!
//! Operational guards (timeouts around store calls, the cleaner's refusal to delete
//! on suspicious listings) belong to the drivers, not here.

mod cleaner;
mod patch;
mod read;
mod write;

pub use cleaner::{BatchId, CleanerAction, CleanerCycle, CleanerEvent, CycleLimits, CycleOutcome, CycleStatus};
pub use patch::{MAX_PATCH_ATTEMPTS, PatchAction, PatchDesign, PatchEvent, PatchMachine, PatchOutcome};
pub use read::{MAX_REREADS, ReadAction, ReadEvent, ReadMachine, ReadOutcome};
pub use write::{WriteAction, WriteDesign, WriteEvent, WriteMachine, WriteOutcome};
