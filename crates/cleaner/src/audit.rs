//! The read-only audit: how the two stores relate right now.
//!
//! It counts records and blobs, finds orphans (images no record references) and
//! dangling references (records whose image is missing). It never writes. Memory stays
//! flat in the size of the stores: records are paged with `records_after`, blobs with
//! the listing, and only bounded samples of what it finds are kept.

use std::fmt;

use futures::stream::{self, StreamExt};

use profilestore_core::error::StoreError;
use profilestore_core::ids::{BlobKey, ImageId, UserId};
use profilestore_core::settings::{Timings, old_enough};
use profilestore_core::store::{BlobStore, MetadataStore, Record};
use profilestore_core::time::{Clock, Timestamp};

use crate::listing::ImageGrouper;
use crate::progress::Progress;

/// Records fetched per `records_after` call, and objects per listing page.
const PAGE: usize = 1000;
/// How many `exists` checks run at once.
const CONCURRENT_CHECKS: usize = 16;
const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// How many samples (foreign keys, collectable orphans) a report keeps.
pub const MAX_SAMPLES: usize = 20;
/// How many dangling references a report lists; the count goes on past it.
pub const MAX_DANGLING_LISTED: usize = 1000;

/// A record whose image's blob is missing, confirmed by re-reading the record and
/// checking the blob again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DanglingReference {
    /// Whose record it is.
    pub user_id: UserId,
    /// The image the record names (as re-read), whose original blob is missing.
    pub image_id: ImageId,
}

/// Images no record references, by whether the cleaner may take them yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OrphanCounts {
    /// Younger than `min_blob_age + clock_skew`: possibly a write still in flight, not
    /// yet collectable.
    pub in_flight: u64,
    /// Their total size in bytes.
    pub in_flight_bytes: u64,
    /// Old enough: the next cleaner cycle deletes them (after its delete delay).
    pub collectable: u64,
    /// Their total size in bytes.
    pub collectable_bytes: u64,
    /// Collectable orphans more than a day old: a sign that no cleaner is running
    /// (a running one takes them within about `min_blob_age + delete_delay`).
    pub collectable_older_than_a_day: u64,
    /// Collectable orphans more than a week old.
    pub collectable_older_than_a_week: u64,
    /// Up to [`MAX_SAMPLES`] collectable orphans.
    pub collectable_samples: Vec<ImageId>,
    /// Collectable orphans in the superseded-image queue: the next cycles take them
    /// once their delete delay has passed.
    pub collectable_queued: u64,
    /// Collectable orphans incremental cleaning left behind: minted at or before the
    /// listing horizon and not queued, so no incremental cycle will list them; only
    /// the next full sweep takes them.
    pub left_behind: u64,
    /// Up to [`MAX_SAMPLES`] of those.
    pub left_behind_samples: Vec<ImageId>,
}

/// What an audit found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditReport {
    /// When the audit started, by its clock.
    #[serde(serialize_with = "rfc3339")]
    pub audited_at: Timestamp,
    /// Records in the database.
    pub records: u64,
    /// Objects in the blob store, in the layout or not.
    pub blob_objects: u64,
    /// Images (layout keys merged per image) in the blob store.
    pub images: u64,
    /// Total size of those images in bytes.
    pub image_bytes: u64,
    /// Objects outside the key layout, the pairing marker excepted; no cleaner touches them.
    pub foreign_keys: u64,
    /// Up to [`MAX_SAMPLES`] of those keys.
    pub foreign_key_samples: Vec<String>,
    /// Whether the listing showed the pairing marker.
    pub pairing_marker: bool,
    /// Images no record references.
    pub orphans: OrphanCounts,
    /// The listing horizon completed cleaner cycles stored, if any.
    #[serde(serialize_with = "rfc3339_opt")]
    pub listing_horizon: Option<Timestamp>,
    /// When the last completed full sweep started, if any.
    #[serde(serialize_with = "rfc3339_opt")]
    pub last_full_sweep: Option<Timestamp>,
    /// Entries in the superseded-image queue.
    pub superseded_queued: u64,
    /// Confirmed dangling references: how many.
    pub dangling_count: u64,
    /// Confirmed dangling references: the first [`MAX_DANGLING_LISTED`].
    pub dangling: Vec<DanglingReference>,
}

impl AuditReport {
    /// Whether every record names an existing blob (orphans are normal and do not
    /// count against health).
    pub fn healthy(&self) -> bool {
        self.dangling_count == 0
    }
}

/// Audits the two stores without writing to either.
///
/// A record whose blob looks missing is a suspect only; it is reported as dangling
/// when re-reading the record (a concurrent write may have replaced it) still names
/// a missing blob. Orphans are judged old enough by `clock` and `timings` exactly as
/// the cleaner judges them. Any store error ends the audit with that error.
pub async fn audit(
    metadata: &dyn MetadataStore,
    blobs: &dyn BlobStore,
    clock: &dyn Clock,
    timings: &Timings,
) -> Result<AuditReport, StoreError> {
    audit_with_progress(metadata, blobs, clock, timings, &Progress::new()).await
}

/// [`audit()`], counting on `progress` as it goes: records checked (out of a total
/// counted first) and objects listed.
///
/// Counting the records is one more store call, made only for the total; if it fails
/// the total stays unknown and the audit goes on, since progress must never change
/// what an audit finds.
pub async fn audit_with_progress(
    metadata: &dyn MetadataStore,
    blobs: &dyn BlobStore,
    clock: &dyn Clock,
    timings: &Timings,
    progress: &Progress,
) -> Result<AuditReport, StoreError> {
    progress.start();
    match metadata.count_records().await {
        Ok(n) => progress.set_total(n),
        Err(e) => tracing::debug!(error = %e, "counting records for the progress total failed; going on without it"),
    }
    let mut report = AuditReport {
        audited_at: clock.now(),
        records: 0,
        blob_objects: 0,
        images: 0,
        image_bytes: 0,
        foreign_keys: 0,
        foreign_key_samples: Vec::new(),
        pairing_marker: false,
        orphans: OrphanCounts::default(),
        listing_horizon: None,
        last_full_sweep: None,
        superseded_queued: 0,
        dangling_count: 0,
        dangling: Vec::new(),
    };
    let scanned = async {
        // Read before the listing: an orphan minted at or before a horizon stored
        // later may still be listed by the cycle that stores it.
        let marks = metadata.sweep_marks().await?;
        report.listing_horizon = marks.listing_horizon;
        report.last_full_sweep = marks.last_full_sweep;
        report.superseded_queued = metadata.count_superseded().await?;
        scan_records(metadata, blobs, progress, &mut report).await?;
        scan_blobs(metadata, blobs, clock, timings, progress, &mut report).await
    }
    .await;
    progress.finish();
    scanned.map(|()| report)
}

async fn scan_records(
    metadata: &dyn MetadataStore,
    blobs: &dyn BlobStore,
    progress: &Progress,
    report: &mut AuditReport,
) -> Result<(), StoreError> {
    let mut after: Option<UserId> = None;
    loop {
        let page = metadata.records_after(after.as_ref(), PAGE).await?;
        let full = page.len() >= PAGE;
        report.records += page.len() as u64;
        after = page.last().map(|r| r.user_id.clone());
        let checks: Vec<Result<Option<Record>, StoreError>> = stream::iter(page)
            .map(|record| async move {
                let present = blobs.exists(&BlobKey::original(record.image_id)).await?;
                progress.checked(1);
                Ok((!present).then_some(record))
            })
            .buffer_unordered(CONCURRENT_CHECKS)
            .collect()
            .await;
        for check in checks {
            let Some(suspect) = check? else { continue };
            if let Some(dangling) = confirm_dangling(metadata, blobs, &suspect.user_id).await? {
                tracing::error!(
                    user = %dangling.user_id,
                    image_id = %dangling.image_id,
                    "dangling reference: the record names an image whose blob is missing"
                );
                report.dangling_count += 1;
                if report.dangling.len() < MAX_DANGLING_LISTED {
                    report.dangling.push(dangling);
                }
            }
        }
        if !full {
            return Ok(());
        }
    }
}

/// Re-reads `user`'s record and checks its blob directly: only a record that still
/// names a missing blob is dangling.
async fn confirm_dangling(
    metadata: &dyn MetadataStore,
    blobs: &dyn BlobStore,
    user: &UserId,
) -> Result<Option<DanglingReference>, StoreError> {
    let Some(record) = metadata.get(user).await? else {
        return Ok(None);
    };
    if blobs.exists(&BlobKey::original(record.image_id)).await? {
        return Ok(None);
    }
    Ok(Some(DanglingReference { user_id: record.user_id, image_id: record.image_id }))
}

async fn scan_blobs(
    metadata: &dyn MetadataStore,
    blobs: &dyn BlobStore,
    clock: &dyn Clock,
    timings: &Timings,
    progress: &Progress,
    report: &mut AuditReport,
) -> Result<(), StoreError> {
    let mut grouper = ImageGrouper::default();
    let mut listing = blobs.list(PAGE);
    loop {
        let (page, last) = match listing.next().await {
            None => (grouper.finish(), true),
            Some(blobs) => (grouper.page(&blobs?), false),
        };
        let listed_at = clock.now();
        report.blob_objects += page.objects;
        progress.listed(page.objects);
        report.pairing_marker |= page.markers > 0;
        report.foreign_keys += page.foreign.len() as u64;
        let room = MAX_SAMPLES.saturating_sub(report.foreign_key_samples.len());
        report.foreign_key_samples.extend(page.foreign.into_iter().take(room));
        report.images += page.images.len() as u64;
        report.image_bytes += page.images.iter().map(|i| i.bytes).sum::<u64>();
        if !page.images.is_empty() {
            let ids: Vec<ImageId> = page.images.iter().map(|i| i.id).collect();
            let referenced = metadata.referenced(&ids).await?;
            let collectable: Vec<ImageId> = page
                .images
                .iter()
                .filter(|i| !referenced.contains(&i.id) && old_enough(i.created, listed_at, timings))
                .map(|i| i.id)
                .collect();
            let queued = metadata.superseded_among(&collectable).await?;
            let horizon = report.listing_horizon;
            let orphans = &mut report.orphans;
            for image in page.images.iter().filter(|i| !referenced.contains(&i.id)) {
                if old_enough(image.created, listed_at, timings) {
                    if queued.contains(&image.id) {
                        orphans.collectable_queued += 1;
                    } else if horizon.is_some_and(|h| image.id.minted_at() <= h) {
                        orphans.left_behind += 1;
                        if orphans.left_behind_samples.len() < MAX_SAMPLES {
                            orphans.left_behind_samples.push(image.id);
                        }
                    }
                    orphans.collectable += 1;
                    orphans.collectable_bytes += image.bytes;
                    let age = listed_at.saturating_since(image.created);
                    orphans.collectable_older_than_a_day += u64::from(age > DAY);
                    orphans.collectable_older_than_a_week += u64::from(age > 7 * DAY);
                    if orphans.collectable_samples.len() < MAX_SAMPLES {
                        orphans.collectable_samples.push(image.id);
                    }
                } else {
                    orphans.in_flight += 1;
                    orphans.in_flight_bytes += image.bytes;
                }
            }
        }
        if last {
            return Ok(());
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

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.healthy() {
            writeln!(f, "audit at {}: healthy (every record names an existing image)", self.audited_at)?;
        } else {
            writeln!(f, "audit at {}: UNHEALTHY: {} dangling references", self.audited_at, self.dangling_count)?;
        }
        writeln!(f, "  records:          {}", self.records)?;
        writeln!(f, "  blob objects:     {}", self.blob_objects)?;
        writeln!(f, "  images:           {} ({} bytes)", self.images, self.image_bytes)?;
        let marker = if self.pairing_marker { "present" } else { "not listed" };
        writeln!(f, "  pairing marker:   {marker}")?;
        write!(f, "  foreign keys:     {} (outside the key layout; never deleted)", self.foreign_keys)?;
        for key in &self.foreign_key_samples {
            write!(f, "\n    {key}")?;
        }
        let o = &self.orphans;
        write!(
            f,
            "\n  orphans:          {} in flight, not yet collectable ({} bytes)",
            o.in_flight, o.in_flight_bytes
        )?;
        write!(
            f,
            "\n                    {} collectable ({} bytes; {} older than a day, {} older than a week)",
            o.collectable, o.collectable_bytes, o.collectable_older_than_a_day, o.collectable_older_than_a_week
        )?;
        for id in &o.collectable_samples {
            write!(f, "\n    {id}")?;
        }
        write!(f, "\n                    {} of them queued as superseded (taken after their delete delay)", o.collectable_queued)?;
        let never = |t: Option<Timestamp>| t.map_or_else(|| "never".to_owned(), |t| t.to_string());
        write!(
            f,
            "\n  sweeps:           listing horizon {}, last full sweep {}, {} superseded images queued",
            never(self.listing_horizon),
            never(self.last_full_sweep),
            self.superseded_queued
        )?;
        if o.left_behind > 0 {
            write!(
                f,
                "\n  left behind:      {} collectable orphans minted before the listing horizon and not queued: \
                 incremental cycles do not list them; the next full sweep takes them",
                o.left_behind
            )?;
            for id in &o.left_behind_samples {
                write!(f, "\n    {id}")?;
            }
        }
        for d in &self.dangling {
            write!(f, "\n  dangling:         user {} names missing image {}", d.user_id, d.image_id)?;
        }
        let unlisted = self.dangling_count.saturating_sub(self.dangling.len() as u64);
        if unlisted > 0 {
            write!(f, "\n    ... and {unlisted} more dangling references")?;
        }
        Ok(())
    }
}
