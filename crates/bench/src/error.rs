//! Why a benchmark run failed. A missed goal is not a failure: only a harness that
//! could not measure is.

use profilestore_core::error::{ServiceError, StoreError};

/// A failure of the harness itself: a store that would not open, an operation that
/// failed while setting up or measuring, a child process that did not answer.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The settings cannot be run (no scenario, zero runs, an unknown scenario name).
    #[error("invalid benchmark settings: {0}")]
    Config(String),
    /// A store could not be opened.
    #[error("cannot open a store")]
    Open(#[from] profilestore_stores::OpenError),
    /// The stores could not be paired or verified.
    #[error("cannot pair the stores")]
    Pairing(#[from] profilestore_core::pairing::PairingError),
    /// A store operation failed during setup (seeding, populating).
    #[error("a store operation failed while setting up")]
    Store(#[from] StoreError),
    /// A profile operation failed during setup (seeding users).
    #[error("a profile operation failed while setting up")]
    Service(#[from] ServiceError),
    /// The cleaner refused its configuration.
    #[error("the cleaner refused the sweep's configuration")]
    Cleaner(#[from] profilestore_cleaner::ConfigError),
    /// The model checker refused its configuration.
    #[error("the model checker refused its configuration")]
    Model(#[from] profilestore_modelcheck::ConfigError),
    /// A scenario's every operation failed, so it measured nothing.
    #[error("scenario {scenario} measured nothing: {errors} operations failed, the first with: {first}")]
    NothingMeasured {
        /// Which side of which scenario.
        scenario: String,
        /// How many operations failed.
        errors: u64,
        /// The first failure.
        first: String,
    },
    /// The in-process HTTP server or client failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// A child process (sweep or model checker) failed or answered nonsense.
    #[error("child process: {0}")]
    Child(String),
    /// Reading or writing a file or a process's pipes failed.
    #[error("I/O: {what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl BenchError {
    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }
}
