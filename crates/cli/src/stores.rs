//! Opening the stores a command needs, pairing or verifying them, and settling the
//! timings the process runs with.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use profilestore_core::pairing::{pair_or_verify, verify};
use profilestore_core::settings::Timings;
use profilestore_core::store::{BlobStore, MetadataStore, Pairing};
use profilestore_core::time::Clock;
use profilestore_stores::{OpenMode, redact_url as redact};

use crate::args::{StoreArgs, TimingArgs};

/// The directory of the embedded default stores when `--data-dir` is not given.
pub const DEFAULT_DATA_DIR: &str = "profilestore-data";

/// Both stores, paired, and the timings this process must run with.
pub struct Opened {
    /// The metadata database.
    pub metadata: Arc<dyn MetadataStore>,
    /// The blob store.
    pub blobs: Arc<dyn BlobStore>,
    /// The cluster this pair belongs to.
    pub cluster_id: uuid::Uuid,
    /// The cluster's timings (this process's flags agree with them).
    pub timings: Timings,
}

/// The database and blob store URLs, defaults filled in from the data directory.
pub fn urls(args: &StoreArgs) -> anyhow::Result<(String, String, Option<PathBuf>)> {
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let data_dir =
        std::path::absolute(&data_dir).with_context(|| format!("bad data directory {}", data_dir.display()))?;
    let uses_data_dir = args.database.is_none() || args.blobs.is_none();
    let database =
        args.database.clone().unwrap_or_else(|| format!("sqlite://{}", data_dir.join("profilestore.db").display()));
    let blobs = args.blobs.clone().unwrap_or_else(|| format!("file://{}", data_dir.join("blobs").display()));
    Ok((database, blobs, uses_data_dir.then_some(data_dir)))
}

/// For `serve` and `init`: creates and migrates the stores as needed, pairs them on
/// first use (storing these timings), and verifies them otherwise.
pub async fn open_and_pair(stores: &StoreArgs, timings: &TimingArgs, clock: Arc<dyn Clock>) -> anyhow::Result<Opened> {
    let (database, blob_url, data_dir) = urls(stores)?;
    if let Some(dir) = data_dir {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
    }
    let metadata = profilestore_stores::open_metadata(&database, OpenMode::Migrate, clock.clone()).await?;
    let blobs = profilestore_stores::open_blobs(&blob_url, OpenMode::Migrate, clock, &stores.s3.options()).await?;
    let first_timings = checked(timings.overrides().apply_to(&Timings::default()), timings.allow_unsafe_timing)?;
    #[allow(clippy::disallowed_methods)] // a cluster id is made once, at pairing; not core logic
    let first = Pairing { cluster_id: uuid::Uuid::now_v7(), timings: first_timings };
    let pairing = pair_or_verify(metadata.as_ref(), blobs.as_ref(), &first)
        .await
        .with_context(|| format!("database {} and blob store {}", redact(&database), redact(&blob_url)))?;
    finish(metadata, blobs, pairing, timings)
}

/// For `clean` and `audit`: opens existing stores without creating, migrating or
/// pairing anything, and refuses unless they are paired with each other and this
/// process's timing flags agree with the cluster's.
pub async fn open_paired(stores: &StoreArgs, timings: &TimingArgs, clock: Arc<dyn Clock>) -> anyhow::Result<Opened> {
    let (metadata, blobs, pairing) = open_existing(stores, clock).await?;
    finish(metadata, blobs, pairing, timings)
}

/// Opens existing stores read-only as far as pairing goes, and returns their
/// pairing; an error naming both stores unless they are paired with each other.
pub async fn open_existing(
    stores: &StoreArgs,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Arc<dyn MetadataStore>, Arc<dyn BlobStore>, Pairing)> {
    let (database, blob_url, _) = urls(stores)?;
    let metadata = profilestore_stores::open_metadata(&database, OpenMode::Existing, clock.clone()).await?;
    let blobs = profilestore_stores::open_blobs(&blob_url, OpenMode::Existing, clock, &stores.s3.options()).await?;
    let pairing = verify(metadata.as_ref(), blobs.as_ref())
        .await
        .with_context(|| format!("database {} and blob store {}", redact(&database), redact(&blob_url)))?;
    Ok((metadata, blobs, pairing))
}

/// For `serve` and `clean` at start, on an S3 blob store: reads the bucket's
/// versioning (and lifecycle rules) and logs what it means for erasure: a warning when
/// deleted photos' bytes outlive the documented bound. Never fails and never stops the
/// start; bounded by [`profilestore_stores::s3::CHECK_LIMIT`]. Other blob stores have
/// no versions: nothing to check.
pub async fn check_bucket_versioning(stores: &StoreArgs, clock: &dyn Clock) {
    let Ok((_, blob_url, _)) = urls(stores) else { return };
    if let Some(location) = profilestore_stores::resolve::s3_bucket_and_prefix(&blob_url) {
        profilestore_stores::s3::check_versioning(&location, &stores.s3.options(), clock.now()).await;
    }
}

/// The timings a process runs under once the cluster's are `pairing.timings`: the
/// stored ones, unless timings given explicitly to this process differ (an error).
pub fn adopt_timings(pairing: &Pairing, args: &TimingArgs) -> anyhow::Result<Timings> {
    let timings = args.overrides().check_against(&pairing.timings)?;
    checked(timings, args.allow_unsafe_timing)
}

fn finish(
    metadata: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    pairing: Pairing,
    args: &TimingArgs,
) -> anyhow::Result<Opened> {
    let timings = adopt_timings(&pairing, args)?;
    Ok(Opened { metadata, blobs, cluster_id: pairing.cluster_id, timings })
}

/// The new timings for `set-timings`: the stored ones with the given flags applied.
pub fn updated_timings(stored: &Timings, args: &TimingArgs) -> anyhow::Result<Timings> {
    checked(args.overrides().apply_to(stored), args.allow_unsafe_timing)
}

/// `timings` if they keep every safety rule; with `allow_unsafe` they pass anyway,
/// after a loud warning.
pub fn checked(timings: Timings, allow_unsafe: bool) -> anyhow::Result<Timings> {
    match timings.validate() {
        Ok(()) => Ok(timings),
        Err(broken) if allow_unsafe => {
            tracing::warn!(rules = %broken, "UNSAFE TIMINGS: running with timings that break the design's safety rules; images can be lost. For simulation and demonstration only.");
            Ok(timings)
        }
        Err(broken) => Err(anyhow::anyhow!(
            "unsafe timings refused: {broken} (pass --allow-unsafe-timing only for simulation or demonstration)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unsafe_timings_are_refused_unless_explicitly_allowed() {
        let unsafe_timings = Timings { delete_delay: Duration::ZERO, ..Timings::default() };
        let err = checked(unsafe_timings, false).unwrap_err().to_string();
        assert!(err.contains("delete-delay"), "{err}");
        assert_eq!(checked(unsafe_timings, true).unwrap(), unsafe_timings);
    }

    #[test]
    fn default_urls_live_in_the_data_directory() {
        let args = StoreArgs { data_dir: Some("d".into()), ..Default::default() };
        let (database, blobs, dir) = urls(&args).unwrap();
        assert!(database.starts_with("sqlite://") && database.ends_with("profilestore.db"), "{database}");
        assert!(blobs.starts_with("file://") && blobs.ends_with("blobs"), "{blobs}");
        assert!(dir.is_some());
    }
}
