//! Pairing: a database and a blob store record each other's identity, with the
//! cluster-wide timings, so that no process can run against a mismatched pair.
//!
//! Why: a cleaner pointed at the right bucket but the wrong (or a wiped) database sees
//! every image as unreferenced and would delete live images. Servers pair on first
//! use; cleaners and audits only verify.

use bytes::Bytes;

use crate::error::{StoreError, StoreErrorKind};
use crate::settings::{Timings, fmt_duration};
use crate::store::{BlobStore, MetadataStore, Pairing};

/// Why a process refuses to run against its stores.
#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    /// Neither store was ever paired, and this process may not pair them.
    #[error("the database and the blob store are not paired: run `profilestore init` (or `serve`) against them first")]
    NotPaired,
    /// The database holds a pairing, the blob store holds no marker.
    #[error(
        "the database belongs to cluster {cluster_id} but the blob store has no pairing marker: refusing to run against a blob store of another (or no) cluster"
    )]
    BlobStoreNotPaired {
        /// The database's cluster.
        cluster_id: uuid::Uuid,
    },
    /// The blob store holds a marker, the database holds no pairing.
    #[error(
        "the blob store belongs to cluster {cluster_id} but the database holds no pairing: a wiped or different database would make every image look unreferenced; refusing"
    )]
    DatabaseNotPaired {
        /// The blob store's cluster.
        cluster_id: uuid::Uuid,
    },
    /// The two stores belong to different clusters.
    #[error(
        "the database belongs to cluster {database} but the blob store to cluster {blob_store}: they are not paired with each other"
    )]
    Mismatch {
        /// The database's cluster.
        database: uuid::Uuid,
        /// The blob store's cluster.
        blob_store: uuid::Uuid,
    },
    /// The marker object is unreadable.
    #[error("the blob store's pairing marker is unreadable: {0}")]
    BadMarker(String),
    /// This process was started with timings other than the cluster's.
    #[error("{0}")]
    TimingsDiffer(TimingMismatch),
    /// A store failed while pairing.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Settings given explicitly to this process that differ from the stored ones.
#[derive(Debug)]
pub struct TimingMismatch(pub Vec<(&'static str, std::time::Duration, std::time::Duration)>);

impl std::fmt::Display for TimingMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("this process was started with timings other than the cluster's: ")?;
        for (i, (name, ours, stored)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "--{name} {} but the cluster stores {}", fmt_duration(*ours), fmt_duration(*stored))?;
        }
        f.write_str(" (change them with `profilestore set-timings`, or leave the flags unset to use the stored values)")
    }
}

/// The timing settings a process was started with, each `None` when not given: the
/// timings type over optional values, so a new timing needs no second struct here.
pub type TimingOverrides = Timings<Option<std::time::Duration>>;

impl Default for TimingOverrides {
    /// No timing given.
    fn default() -> Self {
        Timings { request_timeout: None, min_blob_age: None, delete_delay: None, clock_skew: None }
    }
}

impl TimingOverrides {
    /// `base` with every given setting applied.
    pub fn apply_to(&self, base: &Timings) -> Timings {
        Timings {
            request_timeout: self.request_timeout.unwrap_or(base.request_timeout),
            min_blob_age: self.min_blob_age.unwrap_or(base.min_blob_age),
            delete_delay: self.delete_delay.unwrap_or(base.delete_delay),
            clock_skew: self.clock_skew.unwrap_or(base.clock_skew),
        }
    }

    /// The stored timings, unless a given setting differs from them.
    pub fn check_against(&self, stored: &Timings) -> Result<Timings, PairingError> {
        let differences = self.apply_to(stored).differences(stored);
        if differences.is_empty() { Ok(*stored) } else { Err(PairingError::TimingsDiffer(TimingMismatch(differences))) }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Marker {
    cluster_id: uuid::Uuid,
}

/// Pairs the stores when neither is paired yet (storing `first` with its timings),
/// completes a pairing a crash interrupted before any record was written, and
/// otherwise verifies it. Safe when many
/// processes start at once: the database decides which pairing wins.
pub async fn pair_or_verify(
    metadata: &dyn MetadataStore,
    blobs: &dyn BlobStore,
    first: &Pairing,
) -> Result<Pairing, PairingError> {
    let stored = match metadata.read_pairing().await? {
        Some(p) => {
            // A database that already holds records had its marker written before the
            // first of them (servers start only once paired), so a blob store without
            // a marker is the wrong one, or a wiped one: adopting it would leave every
            // record dangling. Only a crash before any write is completed here.
            if read_marker(blobs).await?.is_none() && metadata.has_records().await? {
                return Err(PairingError::BlobStoreNotPaired { cluster_id: p.cluster_id });
            }
            p
        }
        None => {
            if let Some(cluster_id) = read_marker(blobs).await? {
                return Err(PairingError::DatabaseNotPaired { cluster_id });
            }
            metadata.create_pairing(first).await?
        }
    };
    let marker = serde_json::to_vec(&Marker { cluster_id: stored.cluster_id }).expect("marker serialises");
    match blobs.create_marker(Bytes::from(marker)).await {
        Ok(()) => Ok(stored),
        Err(e) if e.kind() == StoreErrorKind::AlreadyExists => verify(metadata, blobs).await,
        Err(e) => Err(e.into()),
    }
}

/// The stores' pairing when both are paired with each other; an error naming both
/// otherwise. Never writes.
pub async fn verify(metadata: &dyn MetadataStore, blobs: &dyn BlobStore) -> Result<Pairing, PairingError> {
    let (database, marker) = (metadata.read_pairing().await?, read_marker(blobs).await?);
    match (database, marker) {
        (None, None) => Err(PairingError::NotPaired),
        (Some(p), None) => Err(PairingError::BlobStoreNotPaired { cluster_id: p.cluster_id }),
        (None, Some(cluster_id)) => Err(PairingError::DatabaseNotPaired { cluster_id }),
        (Some(p), Some(blob_store)) if p.cluster_id == blob_store => Ok(p),
        (Some(p), Some(blob_store)) => Err(PairingError::Mismatch { database: p.cluster_id, blob_store }),
    }
}

async fn read_marker(blobs: &dyn BlobStore) -> Result<Option<uuid::Uuid>, PairingError> {
    match blobs.read_marker().await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice::<Marker>(&bytes)
            .map(|m| Some(m.cluster_id))
            .map_err(|e| PairingError::BadMarker(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryBlobStore, MemoryMetadataStore};
    use crate::time::{ManualClock, Timestamp};
    use std::sync::Arc;

    fn stores() -> (MemoryMetadataStore, MemoryBlobStore) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
        (MemoryMetadataStore::new(clock.clone()), MemoryBlobStore::new(clock))
    }

    fn pairing(n: u128) -> Pairing {
        Pairing { cluster_id: uuid::Uuid::from_u128(n), timings: Timings::CASE_STUDY }
    }

    #[tokio::test]
    async fn first_start_pairs_and_later_starts_agree() {
        let (m, b) = stores();
        assert!(matches!(verify(&m, &b).await, Err(PairingError::NotPaired)));
        assert_eq!(pair_or_verify(&m, &b, &pairing(1)).await.unwrap(), pairing(1));
        assert_eq!(pair_or_verify(&m, &b, &pairing(2)).await.unwrap(), pairing(1), "the stored pairing wins");
        assert_eq!(verify(&m, &b).await.unwrap(), pairing(1));
    }

    #[tokio::test]
    async fn stores_of_different_clusters_are_refused() {
        let (m1, b1) = stores();
        let (m2, b2) = stores();
        pair_or_verify(&m1, &b1, &pairing(1)).await.unwrap();
        pair_or_verify(&m2, &b2, &pairing(2)).await.unwrap();
        assert!(matches!(verify(&m1, &b2).await, Err(PairingError::Mismatch { .. })));
        assert!(matches!(pair_or_verify(&m1, &b2, &pairing(3)).await, Err(PairingError::Mismatch { .. })));
    }

    #[tokio::test]
    async fn a_fresh_database_against_a_paired_blob_store_is_refused_even_by_serve() {
        let (m1, b1) = stores();
        pair_or_verify(&m1, &b1, &pairing(1)).await.unwrap();
        let (wiped, _) = stores();
        assert!(matches!(pair_or_verify(&wiped, &b1, &pairing(2)).await, Err(PairingError::DatabaseNotPaired { .. })));
        assert!(wiped.read_pairing().await.unwrap().is_none(), "nothing was written");
    }

    #[tokio::test]
    async fn verify_never_completes_a_half_pairing_and_serve_only_before_any_record() {
        let (m, b) = stores();
        m.create_pairing(&pairing(1)).await.unwrap();
        assert!(matches!(verify(&m, &b).await, Err(PairingError::BlobStoreNotPaired { .. })));
        assert_eq!(pair_or_verify(&m, &b, &pairing(9)).await.unwrap(), pairing(1), "serve completes it");
    }

    #[tokio::test]
    async fn a_paired_database_with_records_refuses_a_blob_store_without_the_marker() {
        use crate::ids::{ImageId, UserId};
        use crate::store::Record;
        let (m, b) = stores();
        pair_or_verify(&m, &b, &pairing(1)).await.unwrap();
        let record = Record {
            user_id: UserId::parse("alice").unwrap(),
            metadata: "{}".into(),
            image_id: "01900000-0000-7000-8000-0000000000ab".parse::<ImageId>().unwrap(),
            content_type: "image/png".into(),
            image_size: 1,
            updated_at: Timestamp::from_millis(1_700_000_000_000),
        };
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
        m.put_before(&record, &crate::time::Deadline::after(clock, std::time::Duration::from_secs(1))).await.unwrap();
        let (_, fresh_blobs) = stores();
        let err = pair_or_verify(&m, &fresh_blobs, &pairing(2)).await.unwrap_err();
        assert!(matches!(err, PairingError::BlobStoreNotPaired { .. }), "{err:?}");
        assert!(fresh_blobs.read_marker().await.unwrap().is_none(), "the wrong store was not adopted");
    }

    #[test]
    fn explicit_timings_must_match_the_stored_ones() {
        let stored = Timings::CASE_STUDY;
        let none = TimingOverrides::default();
        assert_eq!(none.check_against(&stored).unwrap(), stored);
        let same = TimingOverrides { delete_delay: Some(stored.delete_delay), ..Default::default() };
        assert_eq!(same.check_against(&stored).unwrap(), stored);
        let other = TimingOverrides { delete_delay: Some(std::time::Duration::from_secs(60)), ..Default::default() };
        let err = other.check_against(&stored).unwrap_err().to_string();
        assert!(err.contains("--delete-delay 1m but the cluster stores 1h"), "{err}");
    }
}
