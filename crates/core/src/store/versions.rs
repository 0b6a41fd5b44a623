//! What conditional and keyed changes of a record name: a profile's version, the
//! precondition a change requires of the current record, and the idempotency key a
//! write may be stored under.

use std::time::Duration;

use super::{CommitOutcome, Record};
use crate::ids::ImageId;

impl Record {
    /// This record's version: equal for two records exactly when they name the same
    /// image and hold the same metadata (a digest of both), so it changes with every
    /// write, including one that keeps the image. Stable across releases: clients keep
    /// it as an entity tag.
    pub fn version(&self) -> ProfileVersion {
        use sha2::Digest as _;
        let mut digest = sha2::Sha256::new();
        digest.update(self.image_id.to_string().as_bytes());
        digest.update([0]);
        digest.update(self.metadata.as_bytes());
        let hex: String = digest.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect();
        ProfileVersion(hex)
    }
}

/// An opaque version of a profile, as [`Record::version`] makes it: 32 lowercase hex
/// digits, the entity tag HTTP clients send back in `If-Match`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProfileVersion(String);

impl ProfileVersion {
    /// The version a client sent, if it has the form versions have (anything else
    /// names no version this server ever made).
    pub fn parse(text: &str) -> Option<ProfileVersion> {
        (text.len() == 32 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| ProfileVersion(text.to_owned()))
    }

    /// The version's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ProfileVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a conditional record write or delete requires of the user's current record,
/// checked in the same transaction as the change (so no other change slips between
/// the check and the change).
///
/// Generic over the image id and the metadata so that the step machines and the model
/// checker use the same rule; the stores take it over [`ImageId`] and JSON text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Precondition<Id = ImageId, Meta = String> {
    /// No requirement: the plain write or delete.
    #[default]
    Any,
    /// There must be no record (`If-None-Match: *`: create only).
    Absent,
    /// There must be a record (`If-Match: *`).
    Present,
    /// The record must be exactly this version: name this image and hold this
    /// metadata (`If-Match` with the version a read returned, and the compare-and-set
    /// of a metadata-only update, which must find the image id it read).
    Is {
        /// The image the record must name.
        image_id: Id,
        /// The metadata the record must hold.
        metadata: Meta,
    },
}

impl<Id: PartialEq, Meta: PartialEq> Precondition<Id, Meta> {
    /// Whether a user whose record names `current` (`None`: no record) meets it.
    pub fn holds(&self, current: Option<(&Id, &Meta)>) -> bool {
        match self {
            Precondition::Any => true,
            Precondition::Absent => current.is_none(),
            Precondition::Present => current.is_some(),
            Precondition::Is { image_id, metadata } => current.is_some_and(|(i, m)| i == image_id && m == metadata),
        }
    }
}

/// A write's idempotency key: a retry of the same request with the same key answers
/// the first write's record instead of writing again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The client's key, unique per user (1 to 255 visible ASCII characters).
    pub key: String,
    /// What identifies the request the key was sent with; a retry carries the same,
    /// another request reusing the key does not.
    pub fingerprint: String,
    /// How long the database keeps the key after the write, by its own clock.
    pub keep_for: Duration,
}

/// What a keyed write ([`MetadataStore::put_keyed_before`](super::MetadataStore::put_keyed_before)) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyedOutcome {
    /// The record and its key are stored.
    Committed,
    /// An earlier write with the same key committed `record` under `fingerprint`:
    /// nothing was written now.
    Earlier {
        /// The record the earlier write committed (the profile may have changed since).
        record: Record,
        /// The fingerprint the earlier write was keyed with.
        fingerprint: String,
    },
    /// The database's clock had reached the deadline: nothing was written.
    DeadlineExceeded,
    /// The current record did not meet the write's precondition: nothing was written.
    PreconditionFailed,
}

impl From<CommitOutcome> for KeyedOutcome {
    fn from(outcome: CommitOutcome) -> Self {
        match outcome {
            CommitOutcome::Committed => KeyedOutcome::Committed,
            CommitOutcome::DeadlineExceeded => KeyedOutcome::DeadlineExceeded,
            CommitOutcome::PreconditionFailed => KeyedOutcome::PreconditionFailed,
        }
    }
}
