//! The conformance suites: one suite per store trait, run unchanged against every
//! backend (memory, SQLite, local directory, PostgreSQL, S3).
//!
//! Each check gets a fresh, empty store from the caller's factory, so checks are
//! independent and a failure in one does not cascade. A check fails on a broken
//! promise, a store error, or a panic; the suite runs every check and returns a
//! [`Report`], so a test can also assert that a deliberately broken store *fails*.
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use profilestore_core::memory::MemoryMetadataStore;
//! use profilestore_core::time::Clock;
//! use profilestore_runtime::SystemClock;
//! use profilestore_testkit::conformance::{metadata_store_conformance, MetadataUnderTest};
//!
//! let report = metadata_store_conformance(|| async {
//!     let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
//!     MetadataUnderTest { store: Arc::new(MemoryMetadataStore::new(clock.clone())), clock }
//! })
//! .await;
//! report.assert_passed();
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use profilestore_core::error::StoreError;
use profilestore_core::store::{BlobStore, MetadataStore};
use profilestore_core::time::Clock;

/// Fails the enclosing check with a formatted message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

mod blob;
mod cleaner_state;
mod conditional;
mod metadata;

/// A fresh, empty metadata store for one check, with a clock close to the store's own.
pub struct MetadataUnderTest {
    /// The store, holding no records and no pairing.
    pub store: Arc<dyn MetadataStore>,
    /// Reads (close to) the clock the store evaluates `put_before` deadlines against:
    /// the injected clock of an in-memory store, the system clock for a database on
    /// this machine. The suite's deadlines are at least 10 s away from its `now`.
    pub clock: Arc<dyn Clock>,
}

/// A fresh, empty blob store for one check, with a clock close to the store's own.
pub struct BlobUnderTest {
    /// The store, holding no objects.
    pub store: Arc<dyn BlobStore>,
    /// Reads (close to) the clock the store stamps creation times with.
    pub clock: Arc<dyn Clock>,
    /// The granularity of the store's creation times (they are rounded up to it):
    /// 1 ms for the local directory, 1 s for S3's `Last-Modified`, zero for memory.
    pub timestamp_precision: Duration,
}

/// What one check found.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// The check's name: the function that runs it, naming the promise it checks.
    pub check: &'static str,
    /// Why it failed; `None` when it passed.
    pub failure: Option<String>,
}

/// Every check of one suite run and what it found.
#[derive(Debug, Clone)]
pub struct Report {
    suite: &'static str,
    expected_checks: usize,
    outcomes: Vec<CheckOutcome>,
}

impl Report {
    fn new(suite: &'static str, expected_checks: usize) -> Self {
        Report { suite, expected_checks, outcomes: Vec::new() }
    }

    /// Every check that ran, in order.
    pub fn outcomes(&self) -> &[CheckOutcome] {
        &self.outcomes
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CheckOutcome> {
        self.outcomes.iter().filter(|o| o.failure.is_some())
    }

    /// Whether the check named `check` ran and failed.
    pub fn failed(&self, check: &str) -> bool {
        self.failures().any(|o| o.check == check)
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    /// Panics, listing every failed check, unless all passed and the suite ran as
    /// many checks as it is known to have (a suite that shrank checks less).
    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(self.passed(), "{self}");
        assert_eq!(self.outcomes().len(), self.expected_checks, "the {} suite shrank: {self}", self.suite);
    }

    async fn run<S, Fut>(&mut self, check: &'static str, subject: S, body: impl FnOnce(S) -> Fut)
    where
        Fut: Future<Output = Result<(), String>>,
    {
        let failure = match AssertUnwindSafe(body(subject)).catch_unwind().await {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(why),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(non-text panic payload)".to_owned());
                Some(format!("panicked: {msg}"))
            }
        };
        self.outcomes.push(CheckOutcome { check, failure });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.failures().count();
        writeln!(f, "{} conformance: {} checks, {failed} failed", self.suite, self.outcomes.len())?;
        for outcome in &self.outcomes {
            match &outcome.failure {
                None => writeln!(f, "  ok    {}", outcome.check)?,
                Some(why) => writeln!(f, "  FAIL  {}: {why}", outcome.check)?,
            }
        }
        Ok(())
    }
}

/// Runs the metadata-store suite, taking a fresh empty store from `make` for each check.
pub async fn metadata_store_conformance<F, Fut>(make: F) -> Report
where
    F: Fn() -> Fut,
    Fut: Future<Output = MetadataUnderTest>,
{
    metadata::run(make).await
}

/// Runs the blob-store suite, taking a fresh empty store from `make` for each check.
pub async fn blob_store_conformance<F, Fut>(make: F) -> Report
where
    F: Fn() -> Fut,
    Fut: Future<Output = BlobUnderTest>,
{
    blob::run(make).await
}

/// Store results inside checks: a store error fails the check, saying what was done.
trait Doing<T> {
    fn doing(self, what: &str) -> Result<T, String>;
}

impl<T> Doing<T> for Result<T, StoreError> {
    fn doing(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: unexpected store error: {e}"))
    }
}
