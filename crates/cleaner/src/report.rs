//! What one cleaner cycle did, for people ([`Display`](std::fmt::Display)), for
//! scripts (`serde`), and for the cycle's log line.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use profilestore_core::ids::ImageId;
use profilestore_core::settings::fmt_duration;
use profilestore_core::time::Timestamp;

/// Skip reason: a listed key that is not `{shard}/{image_id}/{variant}`. Such keys are
/// never handed to the cycle, so never deleted.
pub const SKIP_NOT_IN_LAYOUT: &str = "not in the key layout";
/// Skip reason: an image younger than `min_blob_age + clock_skew` by the cleaner's clock.
pub const SKIP_TOO_YOUNG: &str = "younger than min-blob-age + clock-skew";
/// Skip reason: an old-enough image that some record references.
pub const SKIP_REFERENCED: &str = "referenced by a record";

/// How many would-delete ids a dry-run report lists; the count goes on past it.
pub const MAX_LISTED_IDS: usize = 10_000;

/// How a cycle ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "reason", rename_all = "snake_case")]
pub enum Outcome {
    /// Every page was listed and every unreferenced batch deleted (or, in a dry run,
    /// reported).
    Completed,
    /// A store call failed; nothing was deleted after the failure. The next cycle
    /// starts over.
    Failed(String),
    /// A guard refused the cycle before it deleted anything.
    Refused(String),
    /// A guard stopped the cycle part way; batches deleted before it stay deleted.
    Stopped(String),
}

impl Outcome {
    /// The one-word kind: `completed`, `failed`, `refused` or `stopped`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed(_) => "failed",
            Outcome::Refused(_) => "refused",
            Outcome::Stopped(_) => "stopped",
        }
    }

    /// Why the cycle did not complete, if it did not.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Completed => None,
            Outcome::Failed(r) | Outcome::Refused(r) | Outcome::Stopped(r) => Some(r),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            None => f.write_str(self.kind()),
            Some(reason) => write!(f, "{}: {reason}", self.kind()),
        }
    }
}

/// The counters and outcome of one cleaner cycle.
///
/// Counts are of what this cycle saw and did; with several cleaners at work, one
/// cycle's `deleted` may include images another cycle deleted first (deletes are
/// idempotent).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CycleReport {
    /// When the cycle started, by the cleaner's clock.
    #[serde(serialize_with = "rfc3339")]
    pub started_at: Timestamp,
    /// Whether this was a dry run (nothing deleted, not even staging files).
    pub dry_run: bool,
    /// How the cycle ended.
    pub outcome: Outcome,
    /// How long the cycle took, by the cleaner's clock.
    pub duration_ms: u64,
    /// Every object the listing returned, in the layout or not.
    pub listed_objects: u64,
    /// Images (keys in the layout, merged per image) the listing returned.
    pub images_listed: u64,
    /// Listed images old enough to be asked about.
    pub old_enough: u64,
    /// Old-enough images the database said no record references.
    pub unreferenced: u64,
    /// Images whose blobs this cycle deleted.
    pub deleted: u64,
    /// Dry run: how many images a real cycle would have deleted.
    pub would_delete_count: u64,
    /// Dry run: the first [`MAX_LISTED_IDS`] of those images.
    pub would_delete: Vec<ImageId>,
    /// Listed objects or images not deleted, by reason (see the `SKIP_*` constants).
    pub skipped: BTreeMap<String, u64>,
    /// Staging files an interrupted put left behind, removed at the cycle's start.
    pub staging_files_removed: u64,
    /// Why the staging sweep failed, if it did (the cycle goes on without it).
    pub staging_sweep_error: Option<String>,
    /// Whether the listing covered the whole store (`full`) or only images minted at
    /// or after the listing horizon (`incremental`).
    pub sweep: SweepKind,
    /// The listing horizon an incremental cycle listed from.
    #[serde(serialize_with = "rfc3339_opt")]
    pub listed_since: Option<Timestamp>,
    /// The listing horizon this cycle stored on completing (not in a dry run).
    #[serde(serialize_with = "rfc3339_opt")]
    pub horizon_stored: Option<Timestamp>,
    /// Superseded images whose queue entries a cleaner saw for the first time in this
    /// cycle: their delete delay started.
    pub superseded_first_seen: u64,
    /// Superseded images past their delete delay and named by no record: deleted (or,
    /// in a dry run, would be; they then count in `would_delete_count` too).
    pub superseded_deleted: u64,
    /// Superseded images a record names again: their entries dropped, blobs kept.
    pub superseded_named: u64,
}

/// Which listing a cycle made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepKind {
    /// The whole blob store.
    Full,
    /// Images minted at or after the listing horizon.
    Incremental,
}

impl CycleReport {
    /// An empty report of a cycle starting at `started_at`; the outcome stays
    /// `Failed` until the cycle sets it.
    pub(crate) fn new(started_at: Timestamp, dry_run: bool) -> Self {
        CycleReport {
            started_at,
            dry_run,
            outcome: Outcome::Failed("the cycle did not finish".into()),
            duration_ms: 0,
            listed_objects: 0,
            images_listed: 0,
            old_enough: 0,
            unreferenced: 0,
            deleted: 0,
            would_delete_count: 0,
            would_delete: Vec::new(),
            skipped: BTreeMap::new(),
            staging_files_removed: 0,
            staging_sweep_error: None,
            sweep: SweepKind::Full,
            listed_since: None,
            horizon_stored: None,
            superseded_first_seen: 0,
            superseded_deleted: 0,
            superseded_named: 0,
        }
    }

    /// Whether the cycle completed (every page listed, every due batch handled).
    pub fn completed(&self) -> bool {
        self.outcome == Outcome::Completed
    }

    /// How many were skipped for `reason` (one of the `SKIP_*` constants).
    pub fn skipped_for(&self, reason: &str) -> u64 {
        self.skipped.get(reason).copied().unwrap_or(0)
    }

    pub(crate) fn skip(&mut self, reason: &str, n: u64) {
        if n > 0 {
            *self.skipped.entry(reason.to_owned()).or_insert(0) += n;
        }
    }

    pub(crate) fn would_delete(&mut self, ids: &[ImageId]) {
        self.would_delete_count += ids.len() as u64;
        let room = MAX_LISTED_IDS.saturating_sub(self.would_delete.len());
        self.would_delete.extend(ids.iter().take(room));
    }

    /// Logs the cycle's one line: outcome, duration and counters (a warning when the
    /// cycle did not complete).
    pub(crate) fn log(&self) {
        let r = self;
        macro_rules! cycle_line {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    outcome = r.outcome.kind(),
                    reason = r.outcome.reason(),
                    dry_run = r.dry_run,
                    duration_ms = r.duration_ms,
                    listed_objects = r.listed_objects,
                    images_listed = r.images_listed,
                    old_enough = r.old_enough,
                    unreferenced = r.unreferenced,
                    deleted = r.deleted,
                    would_delete = r.would_delete_count,
                    not_in_layout = r.skipped_for(SKIP_NOT_IN_LAYOUT),
                    staging_files_removed = r.staging_files_removed,
                    sweep = ?r.sweep,
                    listed_since = r.listed_since.map(Timestamp::to_rfc3339),
                    superseded_deleted = r.superseded_deleted,
                    superseded_named = r.superseded_named,
                    "cleaner cycle finished"
                )
            };
        }
        if r.completed() {
            cycle_line!(tracing::Level::INFO);
        } else {
            cycle_line!(tracing::Level::WARN);
        }
    }
}

fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339()),
        None => s.serialize_none(),
    }
}

impl fmt::Display for CycleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let took = fmt_duration(Duration::from_millis(self.duration_ms));
        let mode = if self.dry_run { "dry-run cleaner cycle" } else { "cleaner cycle" };
        writeln!(f, "{mode} started {} took {took}: {}", self.started_at, self.outcome)?;
        match self.listed_since {
            Some(h) => writeln!(f, "  listing:          incremental, images minted since {h}")?,
            None => writeln!(f, "  listing:          full")?,
        }
        if let Some(h) = self.horizon_stored {
            writeln!(f, "  horizon stored:   {h}")?;
        }
        writeln!(
            f,
            "  superseded:       {} {}, {} newly seen, {} named again (kept)",
            self.superseded_deleted,
            if self.dry_run { "would be deleted" } else { "deleted" },
            self.superseded_first_seen,
            self.superseded_named
        )?;
        writeln!(f, "  listed objects:   {}", self.listed_objects)?;
        writeln!(f, "  images listed:    {}", self.images_listed)?;
        writeln!(f, "  old enough:       {}", self.old_enough)?;
        writeln!(f, "  unreferenced:     {}", self.unreferenced)?;
        if self.dry_run {
            writeln!(f, "  would delete:     {}", self.would_delete_count)?;
        } else {
            writeln!(f, "  deleted:          {}", self.deleted)?;
        }
        for (reason, n) in &self.skipped {
            writeln!(f, "  skipped:          {n} {reason}")?;
        }
        write!(f, "  staging removed:  {}", self.staging_files_removed)?;
        if let Some(e) = &self.staging_sweep_error {
            write!(f, " (sweep failed: {e})")?;
        }
        if self.dry_run && !self.would_delete.is_empty() {
            write!(f, "\n  would delete these images:")?;
            for id in &self.would_delete {
                write!(f, "\n    {id}")?;
            }
            let unlisted = self.would_delete_count - self.would_delete.len() as u64;
            if unlisted > 0 {
                write!(f, "\n    ... and {unlisted} more")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_as_kind_and_reason() {
        assert_eq!(Outcome::Completed.to_string(), "completed");
        assert_eq!(Outcome::Failed("store down".into()).to_string(), "failed: store down");
        let json = serde_json::to_value(Outcome::Refused("empty".into())).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "refused", "reason": "empty"}));
    }

    #[test]
    fn the_summary_names_every_counter_and_the_ids_of_a_dry_run() {
        let mut r = CycleReport::new(Timestamp::from_millis(0), true);
        r.outcome = Outcome::Completed;
        r.skip(SKIP_NOT_IN_LAYOUT, 2);
        r.skip(SKIP_REFERENCED, 0);
        let id: ImageId = "01900000-0000-7000-8000-0000000000ab".parse().unwrap();
        r.would_delete(&[id]);
        let text = r.to_string();
        assert!(text.contains("dry-run cleaner cycle started 1970-01-01T00:00:00.000Z took 0s: completed"), "{text}");
        assert!(text.contains("skipped:          2 not in the key layout"), "{text}");
        assert!(!text.contains(SKIP_REFERENCED), "zero counts are left out: {text}");
        assert!(text.contains("would delete:     1"), "{text}");
        assert!(text.contains(&id.to_string()), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["started_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(json["would_delete"][0], id.to_string());
    }

    #[test]
    fn a_dry_run_lists_a_bounded_number_of_ids_but_counts_all() {
        let mut r = CycleReport::new(Timestamp::from_millis(0), true);
        let id: ImageId = "01900000-0000-7000-8000-0000000000ab".parse().unwrap();
        r.would_delete(&vec![id; MAX_LISTED_IDS + 5]);
        assert_eq!(r.would_delete.len(), MAX_LISTED_IDS);
        assert_eq!(r.would_delete_count, MAX_LISTED_IDS as u64 + 5);
        assert!(r.to_string().ends_with("... and 5 more"));
    }
}
