//! How a [`Cleaner`](crate::Cleaner) runs, and the checks that refuse an unsafe setup.

use std::time::Duration;

use profilestore_core::machine::CycleLimits;
use profilestore_core::settings::{TimingViolations, Timings};

use crate::pacing::DeleteRate;

/// The largest listing page the cleaner uses: what one S3 listing request returns.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The most keys one delete request (`BlobStore::delete_many` call) names: what one
/// S3 `DeleteObjects` request allows.
pub const MAX_DELETE_BATCH: usize = 1000;

/// Which blobs a cycle lists. Every cycle, in either mode, also reclaims the images of
/// the superseded-image queue whose delete delay has passed, before its listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepMode {
    /// Every cycle lists the whole blob store.
    Full,
    /// A cycle lists only images minted at or after the listing horizon the last
    /// completed cycles stored, so its cost follows what changed. It lists everything
    /// (a full sweep, the safety net) when no horizon is stored yet, or when the last
    /// full sweep recorded in the database started `full_every` or longer ago.
    Incremental {
        /// How often a full sweep runs instead.
        full_every: Duration,
    },
}

/// How a [`Cleaner`](crate::Cleaner) runs its cycles.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// The cluster-wide timings; only `min_blob_age`, `clock_skew` and `delete_delay`
    /// matter here, and all must obey the rules of [`Timings::validate`].
    pub timings: Timings,
    /// Objects per listing page, 1 to [`MAX_PAGE_SIZE`].
    pub page_size: usize,
    /// List and query as usual but delete nothing (not even staging files); the
    /// report names what a real cycle would have deleted.
    pub dry_run: bool,
    /// Delete even when the database holds no records at all.
    pub allow_empty_database: bool,
    /// Stop a cycle before it deletes more than this fraction (0 to 1) of the
    /// old-enough images it has seen; `None` for no limit.
    pub max_unreferenced_fraction: Option<f64>,
    /// How far the cycle's pipeline runs ahead of itself.
    pub limits: CycleLimits,
    /// Run even with timings that break a safety rule (simulation and demonstration
    /// of the flawed designs only; the caller warns loudly).
    pub allow_unsafe_timing: bool,
    /// Longest wait for any one store call (a listing page, a query, a delete batch);
    /// a call that takes longer fails the cycle, which deletes nothing more.
    pub call_timeout: Duration,
    /// Keys per delete request, 1 to [`MAX_DELETE_BATCH`].
    pub delete_batch_size: usize,
    /// The most keys deleted per unit of time, on average, over the whole cycle
    /// (concurrent batches share it; the first request goes at once); `None` for no
    /// limit. Delete requests wait their turn before their call timeout starts.
    pub delete_rate: Option<DeleteRate>,
    /// Whether cycles list everything or only what is new since the listing horizon.
    pub sweep: SweepMode,
}

impl Default for CleanerConfig {
    /// The case study's timings, full pages and delete requests, no delete rate
    /// limit, real deletes, every guard on, no fraction limit.
    fn default() -> Self {
        CleanerConfig {
            timings: Timings::CASE_STUDY,
            page_size: MAX_PAGE_SIZE,
            dry_run: false,
            allow_empty_database: false,
            max_unreferenced_fraction: None,
            limits: CycleLimits::default(),
            allow_unsafe_timing: false,
            call_timeout: Duration::from_secs(300),
            delete_batch_size: MAX_DELETE_BATCH,
            delete_rate: None,
            sweep: SweepMode::Full,
        }
    }
}

/// A [`CleanerConfig`] the cleaner refuses to run with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The timings break a safety rule.
    #[error(transparent)]
    Timings(#[from] TimingViolations),
    /// `page_size` is 0 or above [`MAX_PAGE_SIZE`].
    #[error("page size {0} is out of range: it must be 1 to {MAX_PAGE_SIZE}")]
    PageSize(usize),
    /// `max_unreferenced_fraction` is not a number from 0 to 1.
    #[error("max unreferenced fraction {0} is out of range: it must be a number from 0 to 1")]
    Fraction(f64),
    /// `call_timeout` is zero, which would fail every call.
    #[error("the store call timeout must be longer than zero")]
    CallTimeout,
    /// `delete_batch_size` is 0 or above [`MAX_DELETE_BATCH`].
    #[error("delete batch size {0} is out of range: it must be 1 to {MAX_DELETE_BATCH}")]
    DeleteBatchSize(usize),
    /// A cycle limit is 0, which would stall every cycle.
    #[error("cycle limits must all be at least 1, got {0:?}")]
    Limits(CycleLimits),
}

impl CleanerConfig {
    /// `Ok` when the cleaner can run safely with this configuration (or, with
    /// `allow_unsafe_timing`, at least without stalling).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.allow_unsafe_timing {
            self.timings.validate()?;
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(ConfigError::PageSize(self.page_size));
        }
        if let Some(f) = self.max_unreferenced_fraction
            && !(0.0..=1.0).contains(&f)
        {
            return Err(ConfigError::Fraction(f));
        }
        if !(1..=MAX_DELETE_BATCH).contains(&self.delete_batch_size) {
            return Err(ConfigError::DeleteBatchSize(self.delete_batch_size));
        }
        if self.call_timeout.is_zero() {
            return Err(ConfigError::CallTimeout);
        }
        let l = self.limits;
        if l.max_pending_ids == 0 || l.max_concurrent_queries == 0 || l.max_concurrent_deletes == 0 {
            return Err(ConfigError::Limits(l));
        }
        Ok(())
    }
}
