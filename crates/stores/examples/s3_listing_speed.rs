//! How fast the S3 store lists N objects (default 100,000) sequentially and in
//! parallel, and how many pages each listing held at most.
//!
//! Runs against the server the S3 tests use (`PROFILESTORE_TEST_S3_*`, printed by
//! `scripts/services/s3.sh start DIR`). The objects live under
//! `listing-speed-N/` in the test bucket and are kept between runs; missing ones are
//! put first, 32 at a time.
//!
//! ```sh
//! cargo run --release -p profilestore-stores --example s3_listing_speed -- 100000
//! ```

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use profilestore_core::ids::{BlobKey, IdSource};
use profilestore_core::store::BlobStore;
use profilestore_runtime::UuidV7Ids;
use profilestore_stores::s3::{S3BlobStore, time_listing};
use profilestore_stores::{OpenMode, S3Options};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: start a server with scripts/services/s3.sh"))
}

async fn open(location: &str, concurrency: usize) -> S3BlobStore {
    let options = S3Options {
        endpoint: Some(var("PROFILESTORE_TEST_S3_ENDPOINT")),
        access_key_id: Some(var("PROFILESTORE_TEST_S3_ACCESS_KEY_ID")),
        secret_access_key: Some(var("PROFILESTORE_TEST_S3_SECRET_ACCESS_KEY")),
        list_concurrency: std::num::NonZeroUsize::new(concurrency),
        ..S3Options::default()
    };
    S3BlobStore::open(location, format!("s3://{location}"), OpenMode::Migrate, &options).await.expect("open")
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args().nth(1).map_or(100_000, |a| a.parse().expect("N is a number"));
    let location = format!("{}/listing-speed-{n}", var("PROFILESTORE_TEST_S3_BUCKET"));
    let store = open(&location, 8).await;
    let have = time_listing(&store, 1000).await.expect("count").keys;
    if have < n {
        eprintln!("putting {} objects under {location} ...", n - have);
        futures::stream::iter(have..n)
            .map(|_| {
                let key = BlobKey::original(UuidV7Ids.next_image_id());
                let store = &store;
                async move { store.put_new(&key, Bytes::from_static(b"0123456789")).await }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<()>>()
            .await
            .expect("put");
    }
    println!("concurrency  keys  seconds  keys/s  peak pages held");
    for concurrency in [1, 8, 1, 8, 1, 8] {
        let store = open(&location, concurrency).await;
        let run = time_listing(&store, 1000).await.expect("list");
        println!(
            "{:>11}  {}  {:.2}  {:.0}  {}",
            run.concurrency,
            run.keys,
            run.elapsed.as_secs_f64(),
            run.keys_per_second(),
            run.peak_pages_held
        );
    }
}
