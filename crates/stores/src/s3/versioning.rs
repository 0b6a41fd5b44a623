//! [`check_versioning`]: what the blob bucket's versioning means for erasure, read once
//! when a server or a cleaner starts.
//!
//! The cleaner deletes with plain deletes. On a bucket whose versioning is on (or was,
//! and is suspended) such a delete only adds a delete marker: the photo's bytes stay as
//! a noncurrent version until a lifecycle rule (`NoncurrentVersionExpiration`) removes
//! them, so the erasure bound `docs/security.md` gives does not hold by itself. The
//! check says so in the log and in a gauge; it never stops a start, since a server
//! that works must not be taken down by a check of its bucket's settings.

use std::time::Duration;

use metrics::gauge;
use profilestore_core::time::Timestamp;

use super::bucket_config::{BucketConfigClient, BucketConfigError, Versioning};
use super::location::Location;
use crate::measured::{BLOB_BUCKET_VERSIONING, BLOB_NONCURRENT_EXPIRATION_DAYS};
use crate::open::S3Options;

/// How long the whole check (versioning, then lifecycle) may take before it is given
/// up as unknown: it runs before the process serves or cleans.
pub const CHECK_LIMIT: Duration = Duration::from_secs(15);

/// The `state` label values of the versioning gauge, each set to 1 when it is the
/// state found and 0 otherwise.
const STATES: [&str; 4] = ["off", "enabled", "suspended", "unknown"];

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersioningCheck {
    /// The bucket is not versioned: a delete removes the bytes.
    Off,
    /// The bucket is versioned (enabled or suspended): deleted photos' bytes stay as
    /// noncurrent versions until a lifecycle rule expires them.
    Versioned {
        /// `Enabled` or `Suspended`.
        state: Versioning,
        /// What the lifecycle rules do about noncurrent versions under the store's prefix.
        expiry: NoncurrentExpiry,
    },
    /// The versioning could not be read; why.
    Unknown(String),
}

/// What a versioned bucket's lifecycle rules do about the store's noncurrent versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoncurrentExpiry {
    /// An enabled rule covering every key under the prefix removes noncurrent versions
    /// this many days after they become noncurrent (the fewest, if several do).
    After {
        /// The days.
        days: u32,
        /// The rule's `ID`, when it has one.
        rule: Option<String>,
    },
    /// No rule surely removes them.
    Never,
    /// The rules could not be read; why.
    Unknown(String),
}

/// Reads the versioning of the bucket in `bucket_and_prefix` (the blob URL after
/// `s3://`) on the server `options` describe, signing at `now`, and when it is
/// versioned its lifecycle rules; within [`CHECK_LIMIT`]. Logs what that means for
/// erasure (a warning when versioned or unknown, an info line otherwise) and sets the
/// gauges `profilestore_blob_bucket_versioning{state}` and, when a rule expires
/// noncurrent versions, `profilestore_blob_noncurrent_expiration_days`.
///
/// Never fails: a check that cannot be made (no permission, a server without the
/// API, a timeout) is reported as [`VersioningCheck::Unknown`] and logged.
pub async fn check_versioning(bucket_and_prefix: &str, options: &S3Options, now: Timestamp) -> VersioningCheck {
    let prefix = Location::parse(bucket_and_prefix)
        .ok()
        .and_then(|location| location.prefix)
        .map(|prefix| prefix.to_string())
        .unwrap_or_default();
    let found = match tokio::time::timeout(CHECK_LIMIT, read(bucket_and_prefix, &prefix, options, now)).await {
        Ok(found) => found,
        Err(_) => VersioningCheck::Unknown(format!("no answer within {}s", CHECK_LIMIT.as_secs())),
    };
    let bucket = bucket_and_prefix.split('/').next().unwrap_or_default();
    report(bucket, &prefix, &found);
    found
}

async fn read(bucket_and_prefix: &str, prefix: &str, options: &S3Options, now: Timestamp) -> VersioningCheck {
    let reading = async {
        let client = BucketConfigClient::new(bucket_and_prefix, options)?;
        let state = client.versioning(now).await?;
        Ok::<_, BucketConfigError>((client, state))
    };
    let (client, state) = match reading.await {
        Ok((_, Versioning::Off)) => return VersioningCheck::Off,
        Ok(found) => found,
        Err(e) => return VersioningCheck::Unknown(e.to_string()),
    };
    let expiry = match client.lifecycle(now).await {
        Ok(rules) => rules
            .iter()
            .filter_map(|rule| rule.expires_noncurrent_under(prefix).map(|days| (days, rule.id.clone())))
            .min_by_key(|(days, _)| *days)
            .map_or(NoncurrentExpiry::Never, |(days, rule)| NoncurrentExpiry::After { days, rule }),
        Err(e) => NoncurrentExpiry::Unknown(e.to_string()),
    };
    VersioningCheck::Versioned { state, expiry }
}

/// The log line and the gauges for `found`.
fn report(bucket: &str, prefix: &str, found: &VersioningCheck) {
    let state = match found {
        VersioningCheck::Off => "off",
        VersioningCheck::Versioned { state, .. } => state.as_str(),
        VersioningCheck::Unknown(_) => "unknown",
    };
    for label in STATES {
        gauge!(BLOB_BUCKET_VERSIONING, "state" => label).set(if label == state { 1.0 } else { 0.0 });
    }
    let keys = if prefix.is_empty() { "the whole bucket".to_owned() } else { format!("prefix {prefix}/") };
    let (versioned, expiry) = match found {
        VersioningCheck::Off => {
            tracing::info!(
                bucket,
                versioning = state,
                "blob bucket versioning is off: a cleaner's delete removes a photo's bytes, within the erasure bound of docs/security.md"
            );
            return;
        }
        VersioningCheck::Unknown(why) => {
            tracing::warn!(
                bucket,
                error = %why,
                "could not check the blob bucket's versioning (going on): if versioning is on, deleted photos' bytes stay \
                 in the bucket as noncurrent versions until a lifecycle rule (NoncurrentVersionExpiration) expires them, \
                 and the erasure bound of docs/security.md does not hold without one"
            );
            return;
        }
        VersioningCheck::Versioned { state: Versioning::Suspended, expiry } => (
            "blob bucket versioning is suspended: photos stored while it was enabled keep their bytes in the bucket as \
             noncurrent versions after the cleaner deletes them, until a lifecycle rule expires them",
            expiry,
        ),
        VersioningCheck::Versioned { expiry, .. } => (
            "blob bucket versioning is enabled: the cleaner's deletes only add delete markers, and deleted photos' bytes \
             stay in the bucket as noncurrent versions until a lifecycle rule expires them",
            expiry,
        ),
    };
    match expiry {
        NoncurrentExpiry::After { days, rule } => {
            gauge!(BLOB_NONCURRENT_EXPIRATION_DAYS).set(f64::from(*days));
            tracing::warn!(
                bucket,
                versioning = state,
                noncurrent_days = days,
                rule = rule.as_deref().unwrap_or("(no ID)"),
                "{versioned}; a lifecycle rule expires noncurrent versions under {keys} {days} days after the delete, \
                 so the erasure bound of docs/security.md is {days} days longer (plus however long the server takes \
                 to run its lifecycle)"
            );
        }
        NoncurrentExpiry::Never => tracing::warn!(
            bucket,
            versioning = state,
            "{versioned}; no lifecycle rule expires noncurrent versions under {keys}: the erasure bound of \
             docs/security.md does NOT hold, and deleted photos stay in the bucket indefinitely, unless you add a \
             NoncurrentVersionExpiration rule (see docs/deploy.md)"
        ),
        NoncurrentExpiry::Unknown(why) => tracing::warn!(
            bucket,
            versioning = state,
            error = %why,
            "{versioned}; the lifecycle rules could not be read, so whether a NoncurrentVersionExpiration rule \
             expires them is unknown: the erasure bound of docs/security.md holds only if one covers {keys}"
        ),
    }
}
