//! Timing a whole listing, for `examples/s3_listing_speed.rs` and the bench suite.

use std::time::Duration;

use futures::StreamExt;
use profilestore_core::error::StoreError;
use profilestore_core::store::BlobStore;

use super::S3BlobStore;

/// What one timed listing saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListingRun {
    /// The list concurrency the store ran with.
    pub concurrency: usize,
    /// Keys listed.
    pub keys: u64,
    /// From the listing's start to its end.
    pub elapsed: Duration,
    /// The most listed pages (≤ 1000 keys each) held at once; 0 for a sequential
    /// listing, which holds one page inside the S3 client.
    pub peak_pages_held: usize,
}

impl ListingRun {
    /// Keys listed per second of `elapsed`.
    pub fn keys_per_second(&self) -> f64 {
        self.keys as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Lists every object of `store` in pages of `page_size`, dropping each page as it
/// comes, and says how long that took and how many pages were held at most.
pub async fn time_listing(store: &S3BlobStore, page_size: usize) -> Result<ListingRun, StoreError> {
    store.listing_stats().reset_peaks();
    // Real elapsed time is what is measured here: no Clock seam applies.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let mut keys = 0u64;
    let mut pages = store.list(page_size);
    while let Some(page) = pages.next().await {
        keys += page?.len() as u64;
    }
    Ok(ListingRun {
        concurrency: store.list_concurrency(),
        keys,
        elapsed: started.elapsed(),
        peak_pages_held: store.listing_stats().peak_pages_held(),
    })
}
