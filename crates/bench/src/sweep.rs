//! The cleaner's sweep: one cycle over N blobs, a tenth of them orphans, against the
//! least any cleaner must do, listing every blob and scanning every record's image
//! id once.
//!
//! The sweep's stores are paired with a zero age filter and a zero delete delay (and
//! so may not be shared with anything else): one cycle then lists, queries and
//! deletes without waiting, which is what a cycle costs once its waits are over.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use profilestore_cleaner::{Cleaner, CleanerConfig, MAX_PAGE_SIZE};
use profilestore_core::ids::{BlobKey, IdSource, UserId};
use profilestore_core::settings::Timings;
use profilestore_core::store::{CommitOutcome, Record};
use profilestore_core::time::Deadline;
use profilestore_runtime::UuidV7Ids;
use profilestore_stores::{OpenMode, S3Options};

use crate::bulk::{self, BulkTarget};
use crate::child::{self, ChildOutcome, ChildTask, SweepStores, peak_rss_bytes};
use crate::config::{BenchConfig, StoreTarget};
use crate::error::BenchError;
use crate::fixture::{self, METADATA, Stores};
use crate::load::{Interleaved, interleave};
use crate::stats::{Spread, ratio};

/// The sweep stores' timings: nothing is too young and nothing waits. Unsafe for a
/// cluster with writers; the sweep has none while it is measured.
pub const SWEEP_TIMINGS: Timings = Timings {
    request_timeout: Duration::from_secs(60),
    min_blob_age: Duration::ZERO,
    delete_delay: Duration::ZERO,
    clock_skew: Duration::ZERO,
};

/// How many puts and commits populate the stores at once.
const POPULATE_CONCURRENCY: usize = 16;

/// One sweep size measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepResult {
    /// Blobs in the store at the start of every run.
    pub blobs: u64,
    /// How many of them no record references (re-created after every cleaner run).
    pub orphans: u64,
    /// Each side's runs, in the order they ran.
    pub runs: Interleaved<ChildOutcome>,
    /// Cleaner time over floor time, run by run.
    pub time_ratio: Option<Spread>,
}

/// Runs the sweep at every configured size.
pub(crate) async fn run(config: &BenchConfig) -> Result<Vec<SweepResult>, BenchError> {
    let mut out = Vec::new();
    for &blobs in &config.sweep_sizes {
        let orphans = blobs / 10;
        let stores = open(&config.stores).await?;
        eprintln!("bench: sweep of {blobs} blobs ({orphans} orphans): populating");
        populate(&stores, blobs - orphans, orphans).await?;
        let task = SweepStores { database: stores.urls.0.clone(), blobs: stores.urls.1.clone() };
        eprintln!("bench: sweep of {blobs} blobs: cleaner cycle vs list+scan");
        let (exe, s3) = (config.child_exe.clone(), config.stores.s3.clone());
        let stores = Arc::new(stores);
        let (floor_task, floor_exe, floor_s3) = (ChildTask::SweepFloor(task.clone()), exe.clone(), s3.clone());
        let runs = interleave(
            config.runs,
            move |_| {
                let (task, exe, s3) = (floor_task.clone(), floor_exe.clone(), floor_s3.clone());
                Box::pin(async move { child::run(exe.as_deref(), &task, &s3).await })
            },
            move |_| {
                let (task, exe, s3) = (ChildTask::SweepCleaner(task.clone()), exe.clone(), s3.clone());
                let stores = stores.clone();
                Box::pin(async move {
                    let outcome = child::run(exe.as_deref(), &task, &s3).await?;
                    if outcome.deleted != orphans {
                        return Err(BenchError::Child(format!(
                            "the cleaner deleted {} images of {orphans} orphans",
                            outcome.deleted
                        )));
                    }
                    // Every run starts from the same store: put back what the cycle took.
                    populate(&stores, 0, orphans).await?;
                    Ok(outcome)
                })
            },
        )
        .await?;
        let time_ratio = Spread::of(runs.floor.iter().zip(&runs.product).map(|(f, p)| ratio(p.seconds, f.seconds)));
        out.push(SweepResult { blobs, orphans, runs, time_ratio });
    }
    Ok(out)
}

/// Fresh sweep stores: a SQLite file in a temporary directory, and a blob directory
/// beside it or, when the run's blob store is S3, a fresh prefix under its URL.
async fn open(target: &StoreTarget) -> Result<Stores, BenchError> {
    let blobs = target.blobs.as_deref().filter(|url| url.starts_with("s3://")).map(|url| {
        let url = url.trim_end_matches('/');
        format!("{url}/bench-sweep-{:08x}", fixture::fresh_u128() as u32)
    });
    let target = StoreTarget { database: None, blobs, s3: target.s3.clone() };
    Stores::open(&target, SWEEP_TIMINGS).await
}

/// Adds `referenced` blobs each named by a record of a user of its own, and
/// `orphans` blobs nobody references: in bulk on the embedded default (see `bulk`),
/// through the store traits elsewhere.
async fn populate(stores: &Stores, referenced: u64, orphans: u64) -> Result<(), BenchError> {
    let image = fixture::image(0);
    let tag = format!("{:08x}", fixture::fresh_u128() as u32);
    if let Some(bulk) = BulkTarget::of(stores).await? {
        return bulk.populate(stores, &format!("sweep-{tag}"), referenced, orphans, &image).await;
    }
    futures::stream::iter(0..referenced + orphans)
        .map(|i| {
            let (image, tag) = (image.clone(), &tag);
            async move {
                let image_id = UuidV7Ids.next_image_id();
                let image_size = image.len() as u64;
                stores.blobs.put_new(&BlobKey::original(image_id), image).await?;
                if i >= referenced {
                    return Ok(());
                }
                let user_id = bulk::user_id(&format!("sweep-{tag}"), i as usize);
                let record = Record {
                    user_id,
                    metadata: METADATA.to_owned(),
                    image_id,
                    content_type: "image/png".to_owned(),
                    image_size,
                    updated_at: stores.clock.now(),
                };
                let deadline =
                    Deadline::after(stores.clock.clone(), stores.timings.request_timeout).under(stores.timings);
                match stores.metadata.put_before(&record, &deadline).await? {
                    CommitOutcome::Committed => Ok(()),
                    other => Err(BenchError::Config(format!("a sweep record was not committed: {other:?}"))),
                }
            }
        })
        .buffer_unordered(POPULATE_CONCURRENCY)
        .try_collect::<()>()
        .await
}

async fn open_existing(stores: &SweepStores, s3: &S3Options) -> Result<Stores, BenchError> {
    Stores::open_urls(&stores.database, &stores.blobs, s3, SWEEP_TIMINGS, OpenMode::Existing).await
}

/// The floor, in the process that measures it: every listing page and every record
/// page, concurrently (as the cleaner overlaps them), keeping nothing but counts.
pub(crate) async fn floor(target: &SweepStores, s3: &S3Options) -> Result<ChildOutcome, BenchError> {
    let stores = open_existing(target, s3).await?;
    let started = stores.clock.ticks();
    let list = stores.blobs.list(MAX_PAGE_SIZE).try_fold(0u64, |n, page| async move { Ok(n + page.len() as u64) });
    let scan = async {
        let (mut records, mut after): (u64, Option<UserId>) = (0, None);
        loop {
            let page = stores.metadata.records_after(after.as_ref(), MAX_PAGE_SIZE).await?;
            let Some(last) = page.last() else { break };
            // The image ids are what a cleaner needs from a scan: touch every one.
            records += page.iter().filter(|r| !r.image_id.as_uuid().is_nil()).count() as u64;
            after = Some(last.user_id.clone());
        }
        Ok(records)
    };
    let (listed, records) = futures::try_join!(list, scan)?;
    let seconds = stores.clock.ticks().saturating_sub(started).as_secs_f64();
    Ok(ChildOutcome { seconds, peak_rss_bytes: peak_rss_bytes(), listed, records, ..ChildOutcome::default() })
}

/// The product, in the process that measures it: one cleaner cycle, which must
/// complete.
pub(crate) async fn cleaner(target: &SweepStores, s3: &S3Options) -> Result<ChildOutcome, BenchError> {
    let stores = open_existing(target, s3).await?;
    let config = CleanerConfig { timings: stores.timings, allow_unsafe_timing: true, ..CleanerConfig::default() };
    let cleaner = Cleaner::new(stores.metadata.clone(), stores.blobs.clone(), stores.clock.clone(), config)?;
    let started = stores.clock.ticks();
    let report = cleaner.run_cycle().await;
    let seconds = stores.clock.ticks().saturating_sub(started).as_secs_f64();
    if !report.completed() {
        return Err(BenchError::Child(format!("the cleaner cycle did not complete: {}", report.outcome)));
    }
    Ok(ChildOutcome {
        seconds,
        peak_rss_bytes: peak_rss_bytes(),
        listed: report.listed_objects,
        deleted: report.deleted,
        ..ChildOutcome::default()
    })
}
