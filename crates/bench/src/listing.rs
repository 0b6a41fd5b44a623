//! The S3 listing: how many keys a second the blob store lists at its configured
//! concurrency (parallel across the shard prefixes), against one sequential listing
//! of the same keys, alternating.
//!
//! The cleaner's full sweep on S3 is bounded by this listing, and S3 answers one
//! listing request at a time per continuation, so a sequential listing waits on each
//! round trip in turn. The objects are tiny (the listing does not read them) and
//! live under a fresh prefix of the run's bucket, removed after the runs.

use std::num::NonZeroUsize;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use profilestore_core::ids::{BlobKey, IdSource};
use profilestore_core::store::BlobStore;
use profilestore_runtime::UuidV7Ids;
use profilestore_stores::OpenMode;
use profilestore_stores::s3::{DEFAULT_LIST_CONCURRENCY, ListingRun, S3BlobStore, max_pages_held, time_listing};

use crate::config::BenchConfig;
use crate::error::BenchError;
use crate::fixture;
use crate::load::{Interleaved, interleave};
use crate::stats::{Spread, ratio};

/// Keys per listing request, as the cleaner asks.
const PAGE_SIZE: usize = 1000;

/// How many objects are put (and deleted) at once while setting up.
const SETUP_CONCURRENCY: usize = 32;

/// What the listing scenario records when the run has no S3 blob store.
pub const NEEDS_S3: &str = "s3-listing: needs an s3:// --blobs URL (the test command's gateway, or a bucket)";

/// One listing, as measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ListingMeasure {
    /// Prefixes listed at once (1 for the sequential listing).
    pub concurrency: usize,
    /// Keys listed: every object of the prefix, or the run is refused.
    pub keys: u64,
    /// Wall time of the listing.
    pub seconds: f64,
    /// Keys listed per second.
    pub keys_per_second: f64,
    /// The most pages of up to 1,000 keys held at once: the listing's memory, which
    /// depends on the concurrency and not on the number of keys.
    pub peak_pages_held: usize,
    /// The share of the machine's CPU time (every core, every process: the gateway
    /// included when it runs here) that was busy during the listing, from
    /// `/proc/stat`; `None` where there is none. Near 1, no concurrency can list
    /// faster on this machine.
    #[serde(default)]
    pub machine_busy: Option<f64>,
}

impl From<ListingRun> for ListingMeasure {
    fn from(run: ListingRun) -> Self {
        ListingMeasure {
            concurrency: run.concurrency,
            keys: run.keys,
            seconds: run.elapsed.as_secs_f64(),
            keys_per_second: run.keys_per_second(),
            peak_pages_held: run.peak_pages_held,
            machine_busy: None,
        }
    }
}

/// The listing at one size.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ListingResult {
    /// Objects under the prefix listed.
    pub keys: u64,
    /// The parallel side's concurrency.
    pub concurrency: usize,
    /// The most pages the parallel listing may hold by construction.
    pub max_pages_held: usize,
    /// Sequential (floor) and parallel (product) runs, in the order they ran.
    pub runs: Interleaved<ListingMeasure>,
    /// Parallel keys/s over sequential keys/s, run by run.
    pub rate_ratio: Option<Spread>,
}

/// Measures the listing at every sweep size, under a fresh prefix of the run's S3
/// blob store; `Ok(None)` when the run's blob store is not S3.
pub(crate) async fn run(config: &BenchConfig) -> Result<Option<Vec<ListingResult>>, BenchError> {
    let Some(url) = config.stores.blobs.as_deref().and_then(|u| u.strip_prefix("s3://")) else { return Ok(None) };
    let concurrency = config.stores.s3.list_concurrency.map_or(DEFAULT_LIST_CONCURRENCY, NonZeroUsize::get);
    let mut out = Vec::new();
    for &keys in &config.sweep_sizes {
        let location = format!("{}/bench-listing-{:08x}", url.trim_end_matches('/'), fixture::fresh_u128() as u32);
        let store = open(config, &location, concurrency).await?;
        eprintln!("bench: S3 listing of {keys} keys: putting them under s3://{location}");
        put_tiny_objects(&store, keys).await?;
        eprintln!("bench: S3 listing of {keys} keys: sequential vs {concurrency} prefixes at once");
        let sequential = open(config, &location, 1).await?;
        let measured = {
            let (seq, par) = (sequential.clone(), store.clone());
            interleave(
                config.runs,
                move |_| Box::pin(timed(seq.clone(), keys)),
                move |_| Box::pin(timed(par.clone(), keys)),
            )
            .await
        };
        remove_all(&store).await?;
        let runs = measured?;
        let rate_ratio =
            Spread::of(runs.floor.iter().zip(&runs.product).map(|(f, p)| ratio(p.keys_per_second, f.keys_per_second)));
        out.push(ListingResult { keys, concurrency, max_pages_held: max_pages_held(concurrency), runs, rate_ratio });
    }
    Ok(Some(out))
}

async fn open(config: &BenchConfig, location: &str, concurrency: usize) -> Result<S3BlobStore, BenchError> {
    let mut options = config.stores.s3.clone();
    options.list_concurrency = NonZeroUsize::new(concurrency);
    let redacted = format!("s3://{location}");
    Ok(S3BlobStore::open(location, redacted, OpenMode::Migrate, &options).await?)
}

/// One listing of every key; a listing that misses or invents keys measured nothing.
async fn timed(store: S3BlobStore, keys: u64) -> Result<ListingMeasure, BenchError> {
    let before = cpu_times();
    let run = time_listing(&store, PAGE_SIZE).await?;
    let busy = before.zip(cpu_times()).and_then(|(a, b)| busy_share(a, b));
    if run.keys != keys {
        return Err(BenchError::Config(format!(
            "the listing at concurrency {} returned {} keys of {keys}",
            run.concurrency, run.keys
        )));
    }
    Ok(ListingMeasure { machine_busy: busy, ..run.into() })
}

/// The machine's CPU time so far, in clock ticks: (busy, total), from the first line
/// of `/proc/stat` (user nice system idle iowait irq softirq steal ...).
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // Guest time is already counted in user time: only the first eight fields.
    let ticks: Vec<u64> = fields.take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
    let idle = ticks.get(3)? + ticks.get(4)?;
    let total: u64 = ticks.iter().sum();
    Some((total - idle, total))
}

/// The busy share of the CPU time between two readings.
fn busy_share(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.1.checked_sub(before.1).filter(|&t| t > 0)?;
    Some(after.0.saturating_sub(before.0) as f64 / total as f64)
}

async fn put_tiny_objects(store: &S3BlobStore, keys: u64) -> Result<(), BenchError> {
    futures::stream::iter(0..keys)
        .map(|_| async move {
            let key = BlobKey::original(UuidV7Ids.next_image_id());
            store.put_new(&key, Bytes::from_static(b"listing")).await
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    Ok(())
}

/// Deletes every object the scenario put, a listed page at a time.
async fn remove_all(store: &S3BlobStore) -> Result<(), BenchError> {
    let mut pages = store.list(PAGE_SIZE);
    while let Some(page) = pages.try_next().await? {
        let keys: Vec<BlobKey> = page.into_iter().filter_map(|b| BlobKey::parse(&b.key)).collect();
        store.delete_many(&keys).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_share_counts_idle_and_iowait_as_not_busy() {
        let before = parse_cpu_line("cpu  100 0 50 800 50 0 0 0 0 0").unwrap();
        let after = parse_cpu_line("cpu  160 0 70 860 60 0 0 0 7 0").unwrap();
        assert_eq!(before, (150, 1000));
        // 80 busy ticks (60 user, 20 system) of 150.
        assert_eq!(busy_share(before, after), Some(80.0 / 150.0));
        assert_eq!(busy_share(after, after), None, "no time passed");
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4 5 6 7 8"), None, "one core's line is not the machine's");
    }
}
