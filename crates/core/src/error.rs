//! Errors: what a store reports, and what the service reports to its callers.
//!
//! Backends map their own error codes (SQLSTATEs, S3 codes, I/O errors) into
//! [`StoreError`] where they enter, so nothing above the store layer branches on a
//! backend's vocabulary.

use std::fmt;

use crate::ids::{ImageId, UserId};

/// Input a client sent that the service refuses. `code` is a stable machine-readable
/// token (e.g. `invalid_user_id`), `message` says what is wrong in plain words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidInput {
    /// Stable machine-readable token.
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

impl InvalidInput {
    /// An invalid-input error with a stable `code` and a human `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        InvalidInput { code, message: message.into() }
    }
}

/// What the caller of a store can do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// The store could not be reached or did not answer in time; retrying may work.
    Unavailable,
    /// A create-only put found the key already present; nothing was written.
    AlreadyExists,
    /// The store answered with something it should never hold (unreadable row,
    /// malformed listing); retrying will not help.
    Corrupt,
    /// The store refused us (credentials, missing bucket or table): fix the setup.
    Misconfigured,
    /// A write's commit was under way when the call failed or was abandoned: it may or
    /// may not have landed. Reading tells which.
    CommitUnknown,
    /// The cluster's stored timings are no longer the ones this process runs under:
    /// nothing was done; reload them and retry.
    TimingsChanged,
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreErrorKind::Unavailable => "store unavailable",
            StoreErrorKind::AlreadyExists => "already exists",
            StoreErrorKind::Corrupt => "store holds corrupt data",
            StoreErrorKind::Misconfigured => "store misconfigured",
            StoreErrorKind::CommitUnknown => "commit outcome unknown",
            StoreErrorKind::TimingsChanged => "stale timings",
        })
    }
}

/// A failure reported by a metadata or blob store.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// A store error of `kind` described by `message`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError { kind, message: message.into(), source: None }
    }

    /// Attaches the backend error that caused this one.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// A transient failure (connection lost, timed out).
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError::new(StoreErrorKind::Unavailable, message)
    }

    /// What the caller can do about it.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// What failed, in words, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same failure for another caller who shares it (one failed batch answers
    /// each of its jobs); the backend error stays with the original.
    pub fn shared(&self) -> StoreError {
        StoreError::new(self.kind, self.message.clone())
    }
}

/// Coarse class of a [`ServiceError`], telling the caller what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is wrong; do not retry it unchanged.
    InvalidInput,
    /// A store failed or is unreachable; retry later.
    Unavailable,
    /// The request ran out of time; nothing more was done after its deadline.
    DeadlineExceeded,
    /// The stores disagree in a way the design forbids; an operator must look.
    Internal,
    /// The stored profile is not in the state the request required (another write came
    /// first): read it again and decide; retrying unchanged fails the same way.
    Conflict,
}

/// Why a profile operation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The client's input was refused before anything was stored.
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    /// The request reached its deadline; nothing was written or read after it.
    #[error("the request did not finish within its deadline")]
    DeadlineExceeded,
    /// A store failed; the request may be retried.
    #[error("storage is unavailable: {0}")]
    Unavailable(#[source] StoreError),
    /// The record names an image whose blob does not exist: an invariant is broken.
    #[error("the profile of user {user} names image {image_id}, which is missing from the blob store")]
    DanglingReference {
        /// Whose record dangles.
        user: UserId,
        /// The image the record names.
        image_id: ImageId,
    },
    /// The write's commit was under way when it failed or ran out of time: the profile
    /// may or may not have changed. Read it to find out; retrying the write is safe.
    #[error(
        "the write's commit outcome is unknown ({0}); the profile may or may not have changed: read it to find out"
    )]
    CommitUnknown(String),
    /// This process's clock may be further from the database's or the blob store's than
    /// `clock_skew` allows: it writes nothing until the clocks agree again.
    #[error("refusing to write: {0}")]
    ClockOutOfBounds(String),
    /// The cluster's timings changed while this request ran: nothing was done, and the
    /// server now runs under the new ones. Retry.
    #[error("{0}")]
    TimingsChanged(String),
    /// The record changed under the read more often than it retries; try again.
    #[error("the profile changed repeatedly while it was being read")]
    Contended,
    /// The profile is not the version the request's precondition named (or is there
    /// when it must not be, or is missing when it must be): nothing was changed.
    #[error("the profile does not meet the request's precondition; nothing was changed")]
    PreconditionFailed,
    /// Something that should never happen did (corrupt store data, a broken invariant).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// What the caller can do about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServiceError::InvalidInput(_) => ErrorKind::InvalidInput,
            ServiceError::DeadlineExceeded => ErrorKind::DeadlineExceeded,
            ServiceError::Unavailable(_)
            | ServiceError::Contended
            | ServiceError::CommitUnknown(_)
            | ServiceError::ClockOutOfBounds(_)
            | ServiceError::TimingsChanged(_) => ErrorKind::Unavailable,
            ServiceError::DanglingReference { .. } | ServiceError::Internal(_) => ErrorKind::Internal,
            ServiceError::PreconditionFailed => ErrorKind::Conflict,
        }
    }

    /// Stable machine-readable token for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::InvalidInput(e) => e.code,
            ServiceError::DeadlineExceeded => "deadline_exceeded",
            ServiceError::Unavailable(_) => "store_unavailable",
            ServiceError::DanglingReference { .. } => "dangling_reference",
            ServiceError::Contended => "contended",
            ServiceError::CommitUnknown(_) => "commit_unknown",
            ServiceError::ClockOutOfBounds(_) => "clock_out_of_bounds",
            ServiceError::TimingsChanged(_) => "timings_changed",
            ServiceError::Internal(_) => "internal",
            ServiceError::PreconditionFailed => "precondition_failed",
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e.kind() {
            // A create-only put answers AlreadyExists for a fresh id only when the
            // client library retried a put whose first attempt landed: transient.
            StoreErrorKind::Unavailable | StoreErrorKind::Misconfigured | StoreErrorKind::AlreadyExists => {
                ServiceError::Unavailable(e)
            }
            StoreErrorKind::TimingsChanged => ServiceError::TimingsChanged(e.to_string()),
            StoreErrorKind::CommitUnknown => ServiceError::CommitUnknown(e.to_string()),
            StoreErrorKind::Corrupt => ServiceError::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_store_failure_tells_the_caller_what_to_do() {
        let service = |kind| ServiceError::from(StoreError::new(kind, "x"));
        // A fresh id that "already exists" can only be our own put, retried by the
        // client library after its first attempt landed: retry, not an internal error.
        assert_eq!(service(StoreErrorKind::AlreadyExists).code(), "store_unavailable");
        assert_eq!(service(StoreErrorKind::AlreadyExists).kind(), ErrorKind::Unavailable);
        assert_eq!(service(StoreErrorKind::CommitUnknown).code(), "commit_unknown");
        assert_eq!(service(StoreErrorKind::TimingsChanged).code(), "timings_changed");
        assert_eq!(service(StoreErrorKind::Corrupt).kind(), ErrorKind::Internal);
        assert_eq!(service(StoreErrorKind::Unavailable).kind(), ErrorKind::Unavailable);
    }
}
