//! The driver's operational guards: refusals that have nothing to do with the timing
//! rules but everything to do with a deployment gone wrong.
//!
//! The step machine proves the cleaner safe *given* a truthful database. These guards
//! catch the cases where it is not: a wiped or wrong database makes every image look
//! unreferenced, and a cycle that is about to delete most of what it saw is more
//! likely looking at such a database than at real garbage. A deleted image cannot
//! come back; an orphan left for an operator to look at costs a few cents.

/// Why a cycle refuses when the database is empty but the blob store is not.
pub(crate) fn empty_database_refusal(images: u64, listing_complete: bool) -> String {
    let at_least = if listing_complete { "" } else { "at least " };
    format!(
        "the database holds no records while the blob store holds {at_least}{images} images: refusing to delete; \
         pass --allow-empty-database if that is really so"
    )
}

/// Tracks how much of what a cycle saw it has agreed to delete, against the
/// configured `max_unreferenced_fraction`.
#[derive(Debug, Clone)]
pub(crate) struct DeleteBudget {
    max_fraction: Option<f64>,
    old_enough_seen: u64,
    admitted: u64,
}

impl DeleteBudget {
    /// A budget allowing at most `max_fraction` of the old-enough images seen to be
    /// deleted; `None` allows everything.
    pub fn new(max_fraction: Option<f64>) -> Self {
        DeleteBudget { max_fraction, old_enough_seen: 0, admitted: 0 }
    }

    /// Counts `n` more listed images old enough to be considered.
    pub fn saw_old_enough(&mut self, n: u64) {
        self.old_enough_seen = self.old_enough_seen.saturating_add(n);
    }

    /// Admits a batch of `n` images for deletion, counting it as deleted from now on
    /// (so batches in flight count too), or says why the cycle must stop instead.
    pub fn admit(&mut self, n: u64) -> Result<(), String> {
        let after = self.admitted.saturating_add(n);
        if let Some(max) = self.max_fraction {
            // With nothing seen, any deletion is an unbounded fraction.
            let fraction =
                if self.old_enough_seen == 0 { f64::INFINITY } else { after as f64 / self.old_enough_seen as f64 };
            if fraction > max {
                return Err(format!(
                    "deleting {after} of the {seen} old-enough images seen so far ({pct:.1}%) would exceed the allowed \
                     unreferenced fraction of {max_pct:.1}%: stopping before this batch, since that many unreferenced \
                     images more likely means a wrong or damaged database than real garbage (raise \
                     --max-unreferenced-fraction if it is expected)",
                    seen = self.old_enough_seen,
                    pct = fraction * 100.0,
                    max_pct = max * 100.0,
                ));
            }
        }
        self.admitted = after;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_admits_everything() {
        let mut b = DeleteBudget::new(None);
        assert!(b.admit(1_000_000).is_ok());
    }

    #[test]
    fn the_fraction_counts_earlier_batches_and_compares_strictly() {
        let mut b = DeleteBudget::new(Some(0.5));
        b.saw_old_enough(10);
        assert!(b.admit(3).is_ok());
        assert!(b.admit(2).is_ok(), "5 of 10 is exactly the limit");
        let reason = b.admit(1).unwrap_err();
        assert!(reason.contains("deleting 6 of the 10"), "{reason}");
        // A refused batch is not counted: more listing may make room again.
        b.saw_old_enough(10);
        assert!(b.admit(5).is_ok(), "10 of 20");
    }

    #[test]
    fn nothing_seen_means_nothing_may_go() {
        let mut b = DeleteBudget::new(Some(1.0));
        assert!(b.admit(1).is_err());
    }

    #[test]
    fn the_refusal_names_the_flag() {
        let m = empty_database_refusal(3, true);
        assert!(m.starts_with("the database holds no records while the blob store holds 3 images"), "{m}");
        assert!(m.contains("--allow-empty-database"));
        assert!(empty_database_refusal(3, false).contains("at least 3 images"));
    }
}
