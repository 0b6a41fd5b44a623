//! The storage cleaner: reclaims images no profile record references, and the
//! read-only audit that reports orphans and dangling references.
//!
//! The cleaner's timing rules (age filter, delete delay) live in the core's
//! [`CleanerCycle`](profilestore_core::machine::CleanerCycle) step machine, the same
//! one the model checker explores. This crate drives it against real stores and adds
//! the operational guards a deployment needs: when in doubt, do not delete.
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | [`cycle`] | [`Cleaner`]: one cycle, or a daemon on an interval |
//! | [`config`] | [`CleanerConfig`] and the [`ConfigError`]s that refuse an unsafe one |
//! | [`report`] | [`CycleReport`]: what a cycle saw and did, for people and for scripts |
//! | [`mod@audit`] | [`audit()`]: record and blob counts, orphans by age, confirmed dangling references |
//! | `guards` | the empty-database refusal and the unreferenced-fraction budget |
//! | [`pacing`] | [`DeleteRate`] and the pacer that spaces delete requests to keep to it |
//! | [`progress`] | [`Progress`]: live counters a cycle or an audit updates, for a caller to show |
//! | `listing` | listed keys parsed into the layout and merged per image, page by page |
//! | [`metrics`] | the figures each cycle records: cycles, keys by stage, kept by reason, duration, queue depth, last completion |

pub mod audit;
mod clock;
pub mod config;
pub mod cycle;
mod guards;
mod listing;
pub mod metrics;
pub mod pacing;
pub mod progress;
pub mod report;

pub use audit::{AuditReport, DanglingReference, OrphanCounts, audit, audit_with_progress};
pub use config::{CleanerConfig, ConfigError, MAX_DELETE_BATCH, MAX_PAGE_SIZE, SweepMode};
pub use cycle::{Cleaner, Preflight};
pub use pacing::DeleteRate;
pub use progress::{Progress, ProgressSnapshot};
pub use report::{CycleReport, Outcome, SweepKind};
