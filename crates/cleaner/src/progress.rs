//! Live counters of a cleaner cycle or an audit, for whoever wants to show progress.
//!
//! The cleaner and the audit only add to the counters as they go; they know nothing
//! of terminals or of how (or whether) anyone shows them. A caller shares one
//! [`Progress`] through an `Arc` and reads [`Progress::snapshot`] whenever it likes:
//! every counter is a relaxed atomic, so reading never slows the work down, and a
//! snapshot is a consistent-enough picture for a person (the counters are read one
//! after the other, not at one instant).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// `total`'s value while the total is unknown.
const UNKNOWN: u64 = u64::MAX;

/// Counters one cleaner cycle (or one audit) updates while it runs.
///
/// For a cleaner, [`Cleaner::run_cycle`](crate::Cleaner::run_cycle) resets them when
/// a cycle starts, so they always describe the cycle in progress, or the last one.
/// For an audit they describe that audit. See [`ProgressSnapshot`] for what each
/// counter counts.
#[derive(Debug)]
pub struct Progress {
    listed: AtomicU64,
    checked: AtomicU64,
    waiting: AtomicU64,
    deleted: AtomicU64,
    kept: AtomicU64,
    total: AtomicU64,
    running: AtomicBool,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProgressSnapshot {
    /// Objects (keys) the blob listing returned so far, in the layout or not.
    pub listed: u64,
    /// Cleaner: old-enough images the database has answered for. Audit: records
    /// whose image has been checked for existence.
    pub checked: u64,
    /// Cleaner: unreferenced images now waiting for the delete delay (or for their
    /// turn under a delete rate). It falls as they are deleted, and is zero once the
    /// cycle has ended, however it ended. Audit: always zero.
    pub waiting: u64,
    /// Cleaner: images deleted (in a dry run: reported as would-delete). Audit:
    /// always zero.
    pub deleted: u64,
    /// Cleaner: listed images left alone, being too young or referenced. Audit:
    /// always zero.
    pub kept: u64,
    /// What `checked` will reach, when known: the audit counts records first. A
    /// cleaner cycle never knows it (a listing does not say how long it is).
    pub total: Option<u64>,
    /// Whether a cycle or audit is in progress.
    pub running: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            listed: AtomicU64::new(0),
            checked: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            kept: AtomicU64::new(0),
            total: AtomicU64::new(UNKNOWN),
            running: AtomicBool::new(false),
        }
    }
}

impl Progress {
    /// All counters zero, total unknown, nothing running.
    pub fn new() -> Self {
        Progress::default()
    }

    /// The counters now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let total = self.total.load(Ordering::Relaxed);
        ProgressSnapshot {
            listed: self.listed.load(Ordering::Relaxed),
            checked: self.checked.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            deleted: self.deleted.load(Ordering::Relaxed),
            kept: self.kept.load(Ordering::Relaxed),
            total: (total != UNKNOWN).then_some(total),
            running: self.running.load(Ordering::Relaxed),
        }
    }

    /// Zeroes every counter, forgets the total and marks the work as running.
    pub(crate) fn start(&self) {
        for counter in [&self.listed, &self.checked, &self.waiting, &self.deleted, &self.kept] {
            counter.store(0, Ordering::Relaxed);
        }
        self.total.store(UNKNOWN, Ordering::Relaxed);
        self.running.store(true, Ordering::Relaxed);
    }

    /// Marks the work as ended. Nothing waits any more: a cycle that ended early
    /// dropped its waiting batches with it.
    pub(crate) fn finish(&self) {
        self.waiting.store(0, Ordering::Relaxed);
        self.running.store(false, Ordering::Relaxed);
    }

    pub(crate) fn set_total(&self, total: u64) {
        self.total.store(total.min(UNKNOWN - 1), Ordering::Relaxed);
    }

    pub(crate) fn listed(&self, n: u64) {
        self.listed.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn checked(&self, n: u64) {
        self.checked.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn kept(&self, n: u64) {
        self.kept.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` unreferenced images start waiting to be deleted.
    pub(crate) fn waiting(&self, n: u64) {
        self.waiting.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` waiting images were deleted (or, in a dry run, reported).
    pub(crate) fn deleted(&self, n: u64) {
        // Saturating: a counter shown to people must never wrap to a huge number.
        let _ = self.waiting.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| Some(w.saturating_sub(n)));
        self.deleted.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_resets_what_the_last_run_left_and_a_finish_empties_the_wait() {
        let p = Progress::new();
        assert_eq!(p.snapshot(), ProgressSnapshot::default());
        p.start();
        p.set_total(7);
        p.listed(5);
        p.checked(3);
        p.kept(1);
        p.waiting(2);
        p.deleted(1);
        let s = p.snapshot();
        assert_eq!((s.listed, s.checked, s.kept, s.waiting, s.deleted, s.total), (5, 3, 1, 1, 1, Some(7)));
        assert!(s.running);
        p.finish();
        let s = p.snapshot();
        assert_eq!((s.waiting, s.deleted, s.running), (0, 1, false));
        p.start();
        assert_eq!(p.snapshot(), ProgressSnapshot { running: true, ..ProgressSnapshot::default() });
    }

    #[test]
    fn deleting_more_than_waits_never_wraps() {
        let p = Progress::new();
        p.deleted(3);
        assert_eq!(p.snapshot().waiting, 0);
        assert_eq!(p.snapshot().deleted, 3);
    }
}
